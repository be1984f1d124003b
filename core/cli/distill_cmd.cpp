// nexus distill RUN --student FILE --out DIR: a trained composition consolidated into one
// teacher-free student (distill/distill.hpp).
#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli.hpp"
#include "nexus/distill/distill.hpp"

namespace po = boost::program_options;

namespace nexus::cli {

int cmd_distill(const Globals& g, const std::vector<std::string>& args) {
  distill::DistillRequest r;
  bool json = false;
  po::options_description opts(
      "Usage: nexus distill RUN --student FILE --out DIR [--resume] [--json]\n\n"
      "Trains one student per modality (text: a BERT started from one of RUN's text teachers) to\n"
      "reproduce RUN's shared-space embedding and head outputs, then writes DIR: the student as a\n"
      "Hugging Face folder (DIR/model, loadable with transformers.AutoModel, heads beside it) and\n"
      "as a run that `nexus serve DIR` serves. Prints the student beside the composition and the\n"
      "best teacher probe per task; exits 1 naming every task below the retention contract.\n\nOptions");
  opts.add_options()("student", po::value(&r.student_file), "the student file (configs/students/*.yaml)")
      ("out", po::value(&r.out_dir), "output folder (a run folder)")
      ("set", po::value(&r.overrides)->composing(), "override a student-file value, e.g. trainer.steps=200 (repeatable)")
      ("resume", po::bool_switch(&r.resume), "continue from DIR's latest checkpoint")
      ("cache", po::value(&r.cache_root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("json", po::bool_switch(&json), "machine-readable results on stdout");
  if (!parse_command(args, opts, {{"run", &r.run_dir}})) return kOk;
  if (r.run_dir.empty()) throw UsageError("distill needs a RUN folder (written by `nexus train`)");
  if (r.student_file.empty()) throw UsageError("distill needs --student FILE");
  if (r.out_dir.empty()) throw UsageError("distill needs --out DIR");
  r.progress = !json;
  const auto outcome = distill::distill(r, scanned_registry(g));
  if (json) {
    std::cout << distill::to_json_text(outcome) << "\n";
    for (const auto& v : outcome.violations) spdlog::error("retention contract violated: {}", v);
  } else {
    distill::print_table(outcome, std::cout);
    std::cout << "student: " << outcome.model_dir << " (transformers.AutoModel), run: " << outcome.out_dir
              << " (nexus serve)\n";
  }
  return outcome.violations.empty() ? kOk : kRuntimeFailure;
}

}  // namespace nexus::cli
