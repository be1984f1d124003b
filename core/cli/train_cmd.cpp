// nexus train FILE: cache the teachers' features, then train towers, router and heads on them.
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <nexus/plugin_api.hpp>

#include <spdlog/spdlog.h>

#include <filesystem>
#include <iomanip>
#include <iostream>

#include "cli.hpp"
#include "increment.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/core/caching.hpp"
#include "nexus/core/device.hpp"
#include "nexus/core/distributed.hpp"
#include "nexus/core/incremental.hpp"
#include "nexus/core/system.hpp"
#include "nexus/core/trainer.hpp"

namespace po = boost::program_options;

namespace nexus::cli {

int cmd_train(const Globals& g, const std::vector<std::string>& args) {
  bool json = false, resume = false, fp16 = false, no_eval = false, no_bf16 = false;
  int nproc = 1;
  double dist_timeout = 30;
  std::string file, run_dir, cache_root, device_spec, dist_backend = "auto";
  std::vector<std::string> overrides;
  IncrementRequest inc;
  po::options_description opts(
      "Usage: nexus train FILE --run DIR [--resume] [--set key=value]... [--nproc N] [--json]\n"
      "       nexus train FILE --from RUN --run DIR [--kl-weight W] [--force] [--compare-full]\n\n"
      "With --from, FILE is a trained run's composition with teachers (or heads) added or removed:\n"
      "only what is new is trained, everything else is carried over from RUN bit for bit, and DIR\n"
      "gets the same proof as `nexus add-teacher` (proof.json).\n\n"
      "Data-parallel: --nproc N starts N local worker processes (c10d, Gloo); each trains on its slice\n"
      "of every batch of trainer.batch_size rows and gradients are averaged, so the result matches one\n"
      "process. With torchrun's variables set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)\n"
      "this process joins such a job instead (the run folder must be shared). --resume works with any N.\n\nOptions");
  opts.add_options()("run", po::value(&run_dir), "run folder: checkpoints, metrics.jsonl (default runs/<name>)")
      ("resume", po::bool_switch(&resume), "continue from the run's latest checkpoint")
      ("set", po::value(&overrides)->composing(), "override a composition value (repeatable)")
      ("cache", po::value(&cache_root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("fp16", po::bool_switch(&fp16), "cache features as fp16")
      ("no-eval", po::bool_switch(&no_eval), "skip the evaluation (probes, retention) after training")
      ("device", po::value(&device_spec), "auto, cpu, cuda or cuda:N (default: the composition's device, auto)")
      ("no-bf16", po::bool_switch(&no_bf16), "on a GPU, train towers and router in fp32 instead of bf16 autocast")
      ("json", po::bool_switch(&json), "machine-readable summary on stdout")
      ("nproc", po::value(&nproc)->default_value(nproc), "data-parallel worker processes on this machine")
      ("dist-backend", po::value(&dist_backend)->default_value(dist_backend),
       "c10d backend: auto (NCCL on CUDA devices when libtorch has it, else Gloo), gloo or nccl")
      ("dist-timeout", po::value(&dist_timeout)->default_value(dist_timeout),
       "seconds a worker waits for the others (joining, each all-reduce) before failing")
      ("from", po::value(&inc.base_run), "a trained run: train only what FILE adds to it")
      ("kl-weight", po::value(&inc.kl_weight)->default_value(inc.kl_weight), "with --from: weight of the anti-forgetting KL term")
      ("steps", po::value(&inc.steps), "with --from: training steps (default: a quarter of a task's share of trainer.steps, per task trained)")
      ("force", po::bool_switch(&inc.force), "with --from: write the run even when a retention contract fails")
      ("compare-full", po::bool_switch(&inc.compare_full), "with --from: also train FILE from scratch and compare wall times");
  if (!parse_command(args, opts, {{"file", &file}})) return kOk;
  if (file.empty()) throw UsageError("train needs a composition FILE");
  if (nproc < 1 || nproc > 256) throw UsageError("--nproc must be between 1 and 256");
  if (!(dist_timeout > 0)) throw UsageError("--dist-timeout must be positive");
  auto dist_options = dist::options_from_environment();
  if (dist_backend != "auto" && dist_backend != "gloo" && dist_backend != "nccl")
    throw UsageError("--dist-backend must be auto, gloo or nccl, got '" + dist_backend + "'");
  if (dist_backend == "nccl" && !dist::nccl_available())
    throw UsageError("--dist-backend nccl: this libtorch has no NCCL (a CPU build; see docs/gpu.md)");
  if (nproc > 1 && !dist_options) {
    if (!inc.base_run.empty()) throw UsageError("--nproc does not combine with --from (yet)");
    std::vector<std::string> worker_args;
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--nproc") ++i;                     // the workers are the processes
      else if (args[i].rfind("--nproc=", 0) != 0) worker_args.push_back(args[i]);
    }
    return launch_workers(g, nproc, worker_args);
  }
  const bool parallel = dist_options && dist_options->world_size > 1;
  if (parallel && !inc.base_run.empty()) throw UsageError("data-parallel training does not combine with --from (yet)");
  const bool writer = !parallel || dist_options->rank == 0;
  const auto reg = scanned_registry(g);
  if (!inc.base_run.empty()) {
    if (run_dir.empty()) throw UsageError("train --from needs --run DIR for the new run");
    inc.kind = "train --from";
    inc.out = run_dir;
    inc.composition_file = std::filesystem::absolute(file).lexically_normal().string();
    inc.overrides = overrides;
    inc.cache_root = cache_root;
    inc.resume = resume;
    inc.json = json;
    inc.fp16 = fp16;
    return run_increment(g, reg, inc);
  }
  const auto comp = config::load_composition(file, overrides, plugin_catalog(reg));
  for (const auto& h : comp.heads)
    if (!comp.tasks.count(h.task))
      throw UsageError("head '" + h.name + "' trains on task '" + h.task + "', which data.tasks does not define");
  if (run_dir.empty()) run_dir = "runs/" + comp.name;
  torch::manual_seed(uint64_t(comp.trainer.seed));  // tower, router and head initialisation draw from it
  auto sys = ComposedSystem::build(comp, reg);
  // The teachers stay on the CPU: training reads their cached features.
  const auto device = resolve_device(device_spec.empty() ? comp.trainer.device : device_spec,
                                     dist_options ? dist_options->local_rank : 0);
  sys.to(device, !no_bf16, /*teachers=*/false);
  if (writer && !device.is_cpu())
    spdlog::info("training on {}{}", describe_device(device), sys.autocast() ? " (towers and router in bf16)" : "");
  std::unique_ptr<dist::ProcessGroup> group;
  if (parallel) {
    dist_options->timeout = std::chrono::milliseconds(int64_t(dist_timeout * 1000));
    dist_options->device = device;
    const bool nccl = dist_backend == "nccl" || (dist_backend == "auto" && device.is_cuda() && dist::nccl_available());
    if (nccl && !device.is_cuda()) throw UsageError("--dist-backend nccl needs a CUDA device (--device cuda)");
    dist_options->backend = nccl ? dist::DistOptions::Backend::Nccl : dist::DistOptions::Backend::Gloo;
    group = std::make_unique<dist::ProcessGroup>(*dist_options);
  }

  cache::FeatureCache store(feature_cache_root(cache_root));
  CachingOptions co;
  if (no_eval) co.splits = {"train", "val"};  // else the test split too, for the evaluation
  co.dtype = fp16 ? cache::DType::F16 : cache::DType::F32;
  co.progress = !json && writer;
  // Data-parallel workers each compute a disjoint part of every missing entry (see caching.hpp).
  DistributedCaching cached;
  if (group) cached = cache_features_distributed(comp, sys, store, co, *group, dist_options->local_rank);
  else cached.features = cache_features(comp, sys, store, co);
  const std::string part = cached.sharded ? " (part " + std::to_string(group->rank()) + " of " + std::to_string(group->world_size()) + ")" : "";
  for (const auto& r : cached.features)
    spdlog::info("features {} {}/{}: {}{}", r.teacher, r.dataset, r.split,
                 r.computed_rows ? "computed " + std::to_string(r.computed_rows) + " rows"
                                 : std::string(cached.sharded ? "nothing to compute" : "cached"), part);
  const auto data = load_task_data(comp, sys, store);

  if (writer && (!resume || !std::filesystem::exists(std::filesystem::path(run_dir) / "run.json")))
    write_run_info(run_dir, file, overrides);
  TrainOptions to;
  to.run_dir = run_dir;
  to.resume = resume;
  to.progress = !json;
  to.group = group.get();
  const auto result = train(comp, sys, data, to);
  if (!writer) return kOk;  // rank 0 evaluates and reports
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
                                {"processes", group ? group->world_size() : 1},
                                {"device", describe_device(device)},
                                {"dist_backend", !group ? "none" : dist_options->backend == dist::DistOptions::Backend::Nccl ? "nccl" : "gloo"},
                                {"eval", eval_json},
                                {"shared_variance", result.shared_variance},
                                {"weights_sha256", digest}}
                     .dump(2)
              << "\n";
  }
  return rc;
}

}  // namespace nexus::cli
