// nexus train FILE: cache the teachers' features, then train towers, router and heads on them
// (pipeline/train.hpp). With --from RUN, an incremental run (increments/); with --nproc N, N
// data-parallel workers (distributed/launcher.hpp).
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iomanip>
#include <iostream>

#include "cli.hpp"
#include "increment.hpp"
#include "nexus/distributed/launcher.hpp"
#include "nexus/increments/increment.hpp"
#include "nexus/pipeline/train.hpp"

namespace po = boost::program_options;

namespace nexus::cli {

namespace {

struct TrainArgs {
  TrainRequest request;
  std::string file, from, backend = "auto";
  bool json = false, no_eval = false, no_bf16 = false;
  int nproc = 1;
  IncrementRequest increment;
};

void add_options(po::options_description& opts, TrainArgs& a) {
  auto& r = a.request;
  opts.add_options()("run", po::value(&r.run_dir), "run folder: checkpoints, metrics.jsonl (default runs/<name>)")
      ("resume", po::bool_switch(&r.resume), "continue from the run's latest checkpoint")
      ("set", po::value(&r.overrides)->composing(), "override a composition value (repeatable)")
      ("cache", po::value(&r.cache_root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("fp16", po::bool_switch(&r.fp16_cache), "cache features as fp16")
      ("no-eval", po::bool_switch(&a.no_eval), "skip the evaluation (probes, retention) after training")
      ("device", po::value(&r.device), "auto, cpu, cuda or cuda:N (default: the composition's device, auto)")
      ("no-bf16", po::bool_switch(&a.no_bf16), "on a GPU, train towers and router in fp32 instead of bf16 autocast")
      ("json", po::bool_switch(&a.json), "machine-readable summary on stdout")
      ("nproc", po::value(&a.nproc)->default_value(a.nproc), "data-parallel worker processes on this machine")
      ("dist-backend", po::value(&a.backend)->default_value(a.backend),
       "c10d backend: auto (NCCL on CUDA devices when libtorch has it, else Gloo), gloo or nccl")
      ("dist-timeout", po::value(&r.dist_timeout_seconds)->default_value(r.dist_timeout_seconds),
       "seconds a worker waits for the others (joining, each all-reduce) before failing")
      ("from", po::value(&a.from), "a trained run: train only what FILE adds to it");
  add_increment_options(opts, a.increment, "with --from: ");
}

// Checks the options and fills in what follows from them; the torchrun variables, when set, make
// this process a worker of a data-parallel job.
void finish_args(TrainArgs& a) {
  auto& r = a.request;
  if (a.file.empty()) throw UsageError("train needs a composition FILE");
  if (a.nproc < 1 || a.nproc > 256) throw UsageError("--nproc must be between 1 and 256");
  if (!(r.dist_timeout_seconds > 0)) throw UsageError("--dist-timeout must be positive");
  r.dist = dist::options_from_environment();
  if (a.backend == "auto") r.backend = TrainRequest::Backend::Auto;
  else if (a.backend == "gloo") r.backend = TrainRequest::Backend::Gloo;
  else if (a.backend == "nccl") r.backend = TrainRequest::Backend::Nccl;
  else throw UsageError("--dist-backend must be auto, gloo or nccl, got '" + a.backend + "'");
  if (a.backend == "nccl" && !dist::nccl_available())
    throw UsageError("--dist-backend nccl: this libtorch has no NCCL (a CPU build; see docs/gpu.md)");
  const bool parallel = a.nproc > 1 || (r.dist && r.dist->world_size > 1);
  if (parallel && !a.from.empty())
    throw UsageError(a.nproc > 1 && !r.dist ? "--nproc does not combine with --from (yet)"
                                            : "data-parallel training does not combine with --from (yet)");
  r.composition_file = a.file;
  r.evaluate = !a.no_eval;
  r.bf16_autocast = !a.no_bf16;
  r.progress = !a.json;
}

// `--nproc N` without the torchrun variables: this process launches the workers.
int launch(const Globals& g, const TrainArgs& a, const std::vector<std::string>& args) {
  dist::WorkerLaunch launch;
  launch.nproc = a.nproc;
  launch.argv = {std::filesystem::read_symlink("/proc/self/exe").string()};
  for (const auto& p : g.plugin_paths) launch.argv.insert(launch.argv.end(), {"--plugin-path", p});
  launch.argv.insert(launch.argv.end(), {"--probe-timeout", std::to_string(g.probe_timeout)});
  const auto level = spdlog::level::to_string_view(spdlog::get_level());
  launch.argv.insert(launch.argv.end(), {"--log-level", std::string(level.data(), level.size())});
  if (g.no_probe_cache) launch.argv.push_back("--no-probe-cache");
  if (g.compute_threads > 0) launch.argv.insert(launch.argv.end(), {"--compute-threads", std::to_string(g.compute_threads)});
  launch.argv.push_back("train");
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") ++i;  // the workers are the processes
    else if (args[i].rfind("--nproc=", 0) != 0) launch.argv.push_back(args[i]);
  }
  return dist::launch_workers(launch);
}

void print_trained(const TrainOutcome& o) {
  const auto& r = o.result;
  std::cout << "trained " << o.name << " for " << r.steps << " steps (best at step " << r.best_step << ", " << r.rollbacks
            << " rollbacks" << (r.stopped_early ? ", stopped early" : "") << ") -> " << o.run_dir << "\n";
  for (const auto& [task, acc] : r.val_accuracy)
    std::cout << "  " << std::left << std::setw(24) << task << "val accuracy " << std::fixed << std::setprecision(4) << acc << "\n";
}

nlohmann::json summary(const TrainOutcome& o) {
  const auto& r = o.result;
  return {{"run", o.run_dir},
          {"steps", r.steps},
          {"best_step", r.best_step},
          {"best_val_loss", r.best_val_loss},
          {"val_accuracy", r.val_accuracy},
          {"rollbacks", r.rollbacks},
          {"resumed", r.resumed},
          {"stopped_early", r.stopped_early},
          {"step_seconds", r.step_seconds},
          {"samples_per_second", r.samples_per_second},
          {"processes", o.processes},
          {"device", o.device},
          {"dist_backend", o.dist_backend},
          {"eval", o.evaluation ? o.evaluation->json : nlohmann::json()},
          {"shared_variance", r.shared_variance},
          {"weights_sha256", o.weights_sha256}};
}

}  // namespace

int cmd_train(const Globals& g, const std::vector<std::string>& args) {
  TrainArgs a;
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
  add_options(opts, a);
  if (!parse_command(args, opts, {{"file", &a.file}})) return kOk;
  finish_args(a);
  if (a.nproc > 1 && !a.request.dist) return launch(g, a, args);
  const auto reg = scanned_registry(g);
  if (!a.from.empty()) {
    if (a.request.run_dir.empty()) throw UsageError("train --from needs --run DIR for the new run");
    a.increment.base_run = a.from;
    a.increment.out = a.request.run_dir;
    a.increment.cache_root = a.request.cache_root;
    a.increment.resume = a.request.resume;
    a.increment.fp16_cache = a.request.fp16_cache;
    a.increment.progress = !a.json;
    return report_increment(train_from(a.increment, a.file, a.request.overrides, reg), a.increment, a.json);
  }
  if (!a.json) a.request.on_trained = print_trained;
  const auto outcome = train_composition(a.request, reg);
  if (!outcome.reporter) return kOk;  // rank 0 reports
  int rc = kOk;
  if (outcome.evaluation) {
    if (!a.json) std::cout << "\nevaluation on the test splits (" << outcome.run_dir << "/eval.json):\n";
    rc = report_evaluation(*outcome.evaluation, a.json);
  }
  if (a.json) std::cout << summary(outcome).dump(2) << "\n";
  return rc;
}

}  // namespace nexus::cli
