// nexus profile FILE|RUN and nexus report RUN: seeing inside a composition (profile/, report/).
#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli.hpp"
#include "nexus/profile/profile.hpp"
#include "nexus/report/report.hpp"

namespace po = boost::program_options;

namespace nexus::cli {

int cmd_profile(const Globals& g, const std::vector<std::string>& args) {
  bool json = false;
  profile::ProfileRequest r;
  po::options_description opts(
      "Usage: nexus profile FILE|RUN [--json]\n\n"
      "Profiles every teacher from its cached training features (computing what is missing):\n"
      "per teacher and task the eigen-spectrum of its standardised features (rank at 90/95/99 %\n"
      "of the variance, effective rank, dead dimensions, feature norms), per task the linear CKA\n"
      "between every pair of teachers, and per teacher the low-rank tower size its features call\n"
      "for (what `rank: auto` takes). A run keeps the result in RUN/profile.json.\n\nOptions");
  opts.add_options()("cache", po::value(&r.cache_root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("max-rows", po::value(&r.options.max_rows)->default_value(profile::kDefaultMaxRows),
       "rows per spectrum; more are thinned by a fixed stride")
      ("json", po::bool_switch(&json), "machine-readable profile on stdout");
  if (!parse_command(args, opts, {{"target", &r.target}})) return kOk;
  if (r.target.empty()) throw UsageError("profile needs a composition FILE or a RUN folder");
  if (r.options.max_rows < 2) throw UsageError("--max-rows must be at least 2");
  r.progress = !json;
  const auto out = profile::profile_target(r, scanned_registry(g));
  if (json) std::cout << out.json.dump(2) << "\n";
  else profile::print_profile(out.profile, std::cout);
  if (!out.written.empty()) spdlog::info("wrote {}", out.written);
  return kOk;
}

int cmd_report(const Globals& g, const std::vector<std::string>& args) {
  report::ReportRequest r;
  po::options_description opts(
      "Usage: nexus report RUN --out report.html\n\n"
      "Writes one self-contained HTML file (no network needed to open it) with plots of the run:\n"
      "training curves with rollbacks, retention against every teacher's probe and the contract,\n"
      "routing per task and per class, the teachers' spectra and CKA redundancy (profiling the run\n"
      "first when it has no profile.json), and add/remove-teacher proofs.\n\nOptions");
  opts.add_options()("out", po::value(&r.out), "the HTML file to write")
      ("cache", po::value(&r.cache_root), "feature cache folder, for profiling (default $NEXUS_CACHE_DIR/features)");
  if (!parse_command(args, opts, {{"run", &r.run_dir}})) return kOk;
  if (r.run_dir.empty()) throw UsageError("report needs a RUN folder (written by `nexus train`)");
  if (r.out.empty()) throw UsageError("report needs --out FILE.html");
  const auto out = report::write_report(r, scanned_registry(g));
  std::cout << "wrote " << out.written << " (" << out.bytes / 1024 << " KiB" << (out.profiled ? "; profiled the run first" : "")
            << ")\n";
  return kOk;
}

}  // namespace nexus::cli
