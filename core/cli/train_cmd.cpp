// nexus train FILE: cache the teachers' features, then train towers, router and heads on them.
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>

#include <spdlog/spdlog.h>

#include <filesystem>
#include <iomanip>
#include <iostream>

#include "cli.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/core/caching.hpp"
#include "nexus/core/system.hpp"
#include "nexus/core/trainer.hpp"

namespace po = boost::program_options;

namespace nexus::cli {

// sha256 over every trainable parameter and buffer (feature statistics), in a fixed order: equal digests = bitwise equal weights.
std::string weights_digest(const ComposedSystem& sys) {
  Sha256 h;
  for (const auto& [name, module] : sys.trainable_modules())
    for (const auto& item : module->named_parameters()) {
      auto c = item.value().detach().contiguous().to(torch::kCPU);
      h.update(name + "." + item.key());
      h.update(c.data_ptr(), size_t(c.nbytes()));
    }
  for (const auto& [name, module] : sys.trainable_modules())
    for (const auto& item : module->named_buffers()) {
      auto c = item.value().detach().contiguous().to(torch::kCPU);
      h.update(name + "." + item.key());
      h.update(c.data_ptr(), size_t(c.nbytes()));
    }
  return h.hex();
}

int cmd_train(const Globals& g, const std::vector<std::string>& args) {
  bool json = false, resume = false, fp16 = false, no_eval = false;
  std::string file, run_dir, cache_root;
  std::vector<std::string> overrides;
  po::options_description opts("Usage: nexus train FILE --run DIR [--resume] [--set key=value]... [--json]\n\nOptions");
  opts.add_options()("run", po::value(&run_dir), "run folder: checkpoints, metrics.jsonl (default runs/<name>)")
      ("resume", po::bool_switch(&resume), "continue from the run's latest checkpoint")
      ("set", po::value(&overrides)->composing(), "override a composition value (repeatable)")
      ("cache", po::value(&cache_root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("fp16", po::bool_switch(&fp16), "cache features as fp16")
      ("no-eval", po::bool_switch(&no_eval), "skip the evaluation (probes, retention) after training")
      ("json", po::bool_switch(&json), "machine-readable summary on stdout");
  if (!parse_command(args, opts, {{"file", &file}})) return kOk;
  if (file.empty()) throw UsageError("train needs a composition FILE");
  const auto reg = scanned_registry(g);
  const auto comp = config::load_composition(file, overrides, plugin_catalog(reg));
  for (const auto& h : comp.heads)
    if (!comp.tasks.count(h.task))
      throw UsageError("head '" + h.name + "' trains on task '" + h.task + "', which data.tasks does not define");
  if (run_dir.empty()) run_dir = "runs/" + comp.name;
  torch::manual_seed(uint64_t(comp.trainer.seed));  // tower, router and head initialisation draw from it
  auto sys = ComposedSystem::build(comp, reg);

  cache::FeatureCache store(feature_cache_root(cache_root));
  CachingOptions co;
  if (no_eval) co.splits = {"train", "val"};  // else the test split too, for the evaluation
  co.dtype = fp16 ? cache::DType::F16 : cache::DType::F32;
  co.progress = !json;
  for (const auto& r : cache_features(comp, sys, store, co))
    spdlog::info("features {} {}/{}: {}", r.teacher, r.dataset, r.split, r.computed_rows ? "computed" : "cached");
  const auto data = load_task_data(comp, sys, store);

  if (!resume || !std::filesystem::exists(std::filesystem::path(run_dir) / "run.json"))
    write_run_info(run_dir, file, overrides);
  TrainOptions to;
  to.run_dir = run_dir;
  to.resume = resume;
  to.progress = !json;
  const auto result = train(comp, sys, data, to);
  const auto digest = weights_digest(sys);
  nlohmann::json eval_json;
  int rc = kOk;
  if (!json) {
    std::cout << "trained " << comp.name << " for " << result.steps << " steps (best at step " << result.best_step
              << ", " << result.rollbacks << " rollbacks" << (result.stopped_early ? ", stopped early" : "") << ") -> "
              << run_dir << "\n";
    for (const auto& [task, acc] : result.val_accuracy)
      std::cout << "  " << std::left << std::setw(24) << task << "val accuracy " << std::fixed << std::setprecision(4) << acc << "\n";
  }
  if (!no_eval) {
    if (!json) std::cout << "\nevaluation on the test splits (" << run_dir << "/eval.json):\n";
    rc = evaluate_and_report(comp, sys, store, run_dir, json, &eval_json);
  }
  if (json) {
    std::cout << nlohmann::json{{"run", run_dir},
                                {"steps", result.steps},
                                {"best_step", result.best_step},
                                {"best_val_loss", result.best_val_loss},
                                {"val_accuracy", result.val_accuracy},
                                {"rollbacks", result.rollbacks},
                                {"resumed", result.resumed},
                                {"stopped_early", result.stopped_early},
                                {"step_seconds", result.step_seconds},
                                {"samples_per_second", result.samples_per_second},
                                {"eval", eval_json},
                                {"shared_variance", result.shared_variance},
                                {"weights_sha256", digest}}
                     .dump(2)
              << "\n";
  }
  return rc;
}

}  // namespace nexus::cli
