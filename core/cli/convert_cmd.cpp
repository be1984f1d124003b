// nexus convert-run RUN: rewrite a run's old pickled checkpoints as safetensors (training/convert.hpp).
#include <boost/program_options.hpp>

#include <iostream>

#include "cli.hpp"
#include "nexus/training/convert.hpp"

namespace po = boost::program_options;

namespace nexus::cli {

int cmd_convert_run(const Globals&, const std::vector<std::string>& args) {
  std::string run_dir;
  po::options_description opts(
      "Usage: nexus convert-run RUN\n\n"
      "Rewrites the checkpoints of a run made by an older NEXUS (torch::save pickles: *.pt) in the\n"
      "current format (safetensors and JSON), which NEXUS reads without running anything. Loading\n"
      "a pickle can run code that is stored in it: convert only a run whose origin you trust. Every\n"
      "checkpoint folder of RUN is converted in place; running it again is harmless.\n\nOptions");
  if (!parse_command(args, opts, {{"run", &run_dir}})) return kOk;
  if (run_dir.empty()) throw UsageError("convert-run needs a RUN folder");
  const auto report = convert_pickled_run(run_dir);
  if (report.folders.empty()) std::cout << run_dir << ": no pickled checkpoints; nothing to convert\n";
  else
    std::cout << run_dir << ": converted " << report.files << " files in " << report.folders.size()
              << " checkpoint folders\n";
  return kOk;
}

}  // namespace nexus::cli
