#include "nexus/pipeline/train.hpp"

#include <nexus/plugin_api.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "nexus/data/caching.hpp"
#include "nexus/model/device.hpp"
#include "nexus/model/system.hpp"
#include "nexus/profile/profile.hpp"
#include "nexus/registry/registry.hpp"
#include "nexus/run/run_folder.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Joins the job's process group; null when training in one process.
std::unique_ptr<dist::ProcessGroup> join_group(const TrainRequest& r, const c10::Device& device, std::string& backend) {
  if (!r.dist || r.dist->world_size <= 1) return nullptr;
  auto options = *r.dist;
  options.timeout = std::chrono::milliseconds(int64_t(r.dist_timeout_seconds * 1000));
  options.device = device;
  const bool nccl = r.backend == TrainRequest::Backend::Nccl ||
                    (r.backend == TrainRequest::Backend::Auto && device.is_cuda() && dist::nccl_available());
  if (nccl && !device.is_cuda()) throw InputError("--dist-backend nccl needs a CUDA device (--device cuda)");
  options.backend = nccl ? dist::DistOptions::Backend::Nccl : dist::DistOptions::Backend::Gloo;
  backend = nccl ? "nccl" : "gloo";
  return std::make_unique<dist::ProcessGroup>(options);
}

// Every teacher's features of the composition's data in the cache; data-parallel workers each
// compute a disjoint part of every missing entry (data/caching.hpp).
void cache_teachers(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store, const TrainRequest& r,
           dist::ProcessGroup* group, bool reporter) {
  CachingOptions co;
  if (!r.evaluate) co.splits = {"train", "val"};  // else the test split too, for the evaluation
  co.dtype = r.fp16_cache ? cache::DType::F16 : cache::DType::F32;
  co.progress = r.progress && reporter;
  DistributedCaching cached;
  if (group) cached = cache_features_distributed(comp, sys, store, co, *group, r.dist->local_rank);
  else cached.features = cache_features(comp, sys, store, co);
  const std::string part = cached.sharded ? " (part " + std::to_string(group->rank()) + " of " + std::to_string(group->world_size()) + ")" : "";
  for (const auto& f : cached.features)
    spdlog::info("features {} {}/{}: {}{}", f.teacher, f.dataset, f.split,
                 f.computed_rows ? "computed " + std::to_string(f.computed_rows) + " rows"
                                 : std::string(cached.sharded ? "nothing to compute" : "cached"), part);
}

// What run.json records: the composition, its overrides, and every teacher's fingerprint.
run::RunRecord run_record(const TrainRequest& r, const ComposedSystem& sys) {
  run::RunRecord record{r.composition_file, r.composition_recorded, r.overrides, "", "", {}};
  for (const auto& t : sys.teachers()) record.teachers.emplace_back(t.name, t.teacher->fingerprint().str());
  return record;
}

}  // namespace

TrainOutcome train_composition(const TrainRequest& r, const registry::Registry& reg) {
  auto comp = config::load_composition(r.composition_file, r.overrides, plugin_catalog(reg));
  require_task_data(comp);
  TrainOutcome out;
  out.name = comp.name;
  out.run_dir = r.run_dir.empty() ? "runs/" + comp.name : r.run_dir;
  torch::manual_seed(uint64_t(comp.trainer.seed));  // tower, router and head initialisation draw from it
  auto sys = ComposedSystem::build(comp, reg);
  const auto device = resolve_device(r.device.empty() ? comp.trainer.device : r.device, r.dist ? r.dist->local_rank : 0);
  Placement placement(device);
  placement.bf16_autocast = r.bf16_autocast;
  placement.move_teachers = false;  // the teachers stay on the CPU: training reads their cached features
  sys.to(placement);
  out.device = describe_device(device);
  out.reporter = !r.dist || r.dist->world_size <= 1 || r.dist->rank == 0;
  if (out.reporter && !device.is_cpu())
    spdlog::info("training on {}{}", out.device, sys.autocast() ? " (towers and router in bf16)" : "");
  const auto group = join_group(r, device, out.dist_backend);
  out.processes = group ? group->world_size() : 1;

  auto t = Clock::now();
  cache::FeatureCache store(feature_cache_root(r.cache_root));
  cache_teachers(comp, sys, store, r, group.get(), out.reporter);
  const auto data = load_task_data(comp, sys, store);
  out.cache_seconds = since(t);
  const auto sizes = profile::size_towers(comp, sys, data, reg);
  if (!sizes.empty()) sys.to(placement);  // the rebuilt towers

  if (out.reporter && (!r.resume || !fs::exists(fs::path(out.run_dir) / "run.json"))) {
    auto record = run_record(r, sys);
    for (const auto& s : sizes) record.data_sized.push_back(s.assignment());
    run::write_run_info(out.run_dir, record, plugin_catalog(reg));
  }
  TrainOptions to;
  to.run_dir = out.run_dir;
  to.resume = r.resume;
  to.progress = r.progress;
  to.group = group.get();
  t = Clock::now();
  out.result = train(comp, sys, data, to);
  out.train_seconds = since(t);
  if (!out.reporter) return out;  // rank 0 evaluates and reports
  out.weights_sha256 = weights_digest(sys);
  if (r.on_trained) r.on_trained(out);
  if (r.evaluate) {
    t = Clock::now();
    out.evaluation = evaluate_run(comp, sys, store, out.run_dir, r.progress);
    out.eval_seconds = since(t);
  }
  return out;
}

}  // namespace nexus
