#include "nexus/run/checkpoints.hpp"

#include <torch/torch.h>

#include <cstdio>
#include <fstream>

#include "nexus/base/files.hpp"
#include "nexus/model/system.hpp"

namespace nexus::run {
namespace fs = std::filesystem;

namespace {

std::string read_word(const fs::path& p) {
  std::ifstream in(p);
  std::string w;
  in >> w;
  return w;
}

// torch::load takes a stored tensor's shape as it is (Tensor::set_), so a file from another
// composition would load "fine" and fail later, mid-forward: compare shapes here.
void load_module(const std::shared_ptr<torch::nn::Module>& module, const fs::path& file, const c10::Device& device) {
  if (!fs::exists(file))
    throw CheckpointError("checkpoint " + file.parent_path().string() + " has no " + file.filename().string() +
                          ": the run was trained with a different composition");
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& p : module->named_parameters()) shapes.emplace_back(p.key(), p.value().sizes().vec());
  try {
    auto m = module;
    torch::load(m, file.string(), device);
  } catch (const c10::Error& e) {
    throw CheckpointError("corrupt checkpoint file " + file.string() + ": " + e.what_without_backtrace());
  }
  const auto loaded = module->named_parameters();
  for (const auto& [key, shape] : shapes)
    if (!loaded.contains(key) || loaded[key].sizes().vec() != shape)
      throw CheckpointError("checkpoint file " + file.string() + " does not fit: parameter '" + key + "' has shape " +
                            (loaded.contains(key) ? c10::str(loaded[key].sizes()) : std::string("(none)")) +
                            ", the composition needs " + c10::str(c10::IntArrayRef(shape)));
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", (long long)step);
  return name;
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  const auto file = fs::path(run_dir) / "checkpoints" / "latest";
  if (!fs::exists(file)) return std::nullopt;
  return read_word(file);
}

std::string run_checkpoint(const std::string& run_dir) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::string name;
  if (fs::exists(dir / "best")) name = read_word(dir / "best");
  else if (fs::exists(dir / "latest")) name = read_word(dir / "latest");
  if (name.empty()) throw CheckpointError(run_dir + " has no checkpoints: is it a run folder written by `nexus train`?");
  return (dir / name).string();
}

std::string load_run_weights(ComposedSystem& sys, const std::string& run_dir, const std::map<std::string, std::string>& sources) {
  const auto ckpt = run_checkpoint(run_dir);
  for (const auto& [mod_name, module] : sys.trainable_modules()) {
    const auto source = sources.find(mod_name);
    load_module(module, fs::path(source != sources.end() ? source->second : ckpt) / (mod_name + ".pt"), sys.device());
  }
  for (const auto& [mod_name, module] : sys.trainable_modules()) module->eval();
  return ckpt;
}

void load_modules(ComposedSystem& sys, const fs::path& dir) {
  for (const auto& [mod_name, module] : sys.trainable_modules()) load_module(module, dir / (mod_name + ".pt"), sys.device());
}

void write_checkpoint(const std::string& run_dir, const std::string& name, const ComposedSystem& sys,
                      const std::function<void(const fs::path&)>& write_more, const std::string& keep) {
  const auto dir = fs::path(run_dir) / "checkpoints";
  fs::create_directories(dir);
  const auto final_dir = dir / name;
  const auto tmp = dir / (name + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  for (const auto& [mod_name, module] : sys.trainable_modules()) torch::save(module, (tmp / (mod_name + ".pt")).string());
  if (write_more) write_more(tmp);
  for (const auto& e : fs::directory_iterator(tmp)) sync_path(e.path());
  fs::remove_all(final_dir);  // a step saved before a rollback is superseded
  fs::rename(tmp, final_dir);
  sync_path(dir);
  write_file_atomically(dir / "latest", name);
  // Keep the latest and the best; older checkpoints only cost disk.
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto n = e.path().filename().string();
    if (e.is_directory() && n != name && n != keep && n.rfind("step-", 0) == 0) fs::remove_all(e.path());
  }
}

void set_best_checkpoint(const std::string& run_dir, const std::string& name) {
  write_file_atomically(fs::path(run_dir) / "checkpoints" / "best", name);
}

}  // namespace nexus::run
