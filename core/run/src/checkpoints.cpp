#include "nexus/run/checkpoints.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "nexus/base/files.hpp"
#include "nexus/model/system.hpp"
#include "nexus/support/arrays.hpp"

namespace nexus::run {
namespace fs = std::filesystem;

namespace {

// The name a pointer file (`best`, `latest`) holds, checked: it is joined to checkpoints/, so a
// hostile one must not reach outside it (nor be read whole if it is huge).
std::string read_pointer(const fs::path& file) {
  if (const auto size = fs::file_size(file); size > 64)
    throw CheckpointRefused(file.string() + " holds " + std::to_string(size) +
                            " bytes, which is not a checkpoint folder's name (step-NNNNNNNN)");
  std::string name = read_file(file);
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
  return checked_checkpoint_name(name, file.string());
}

std::string describe(const at::Tensor& t) { return c10::str(t.sizes()) + " " + std::string(c10::toString(t.scalar_type())); }

// Every parameter and buffer must be in the file with the composition's shape and dtype, and the
// file must hold nothing else; all of it is checked before anything is copied, so a file from
// another composition changes no weight.
void load_module(torch::nn::Module& module, const fs::path& file) {
  const auto stored = read_checkpoint_tensors(file);
  auto targets = module_tensors(module);
  const auto misfit = [&](const std::string& what) {
    return CheckpointError("checkpoint file " + file.string() + " does not fit the composition: " + what);
  };
  for (const auto& [key, target] : targets) {
    const auto s = stored.find(key);
    if (s == stored.end()) throw misfit("it has no parameter '" + key + "'");
    if (s->second.sizes() != target.sizes() || s->second.scalar_type() != target.scalar_type())
      throw misfit("parameter '" + key + "' is " + describe(s->second) + ", the composition needs " + describe(target));
  }
  for (const auto& [key, t] : stored)
    if (!targets.count(key)) throw misfit("it holds '" + key + "', which the composition's module does not have");
  torch::NoGradGuard no_grad;
  for (auto& [key, target] : targets) target.copy_(stored.at(key));
}

fs::path module_file(const fs::path& dir, const std::string& module) { return dir / (module + ".safetensors"); }

}  // namespace

std::map<std::string, at::Tensor> module_tensors(const torch::nn::Module& module) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : module.named_parameters()) out.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers())
    if (b.value().defined()) out.emplace(b.key(), b.value());
  return out;
}

std::string checked_checkpoint_name(const std::string& name, const std::string& where) {
  const bool ok = name.size() > 5 && name.size() <= 32 && name.rfind("step-", 0) == 0 &&
                  std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!ok)
    throw CheckpointRefused(where + " names '" + name + "', which is not a checkpoint folder (step-NNNNNNNN) " +
                            "of this run: a run folder's names stay inside it");
  return name;
}

std::string pickled_checkpoint_message(const fs::path& file) {
  auto run = file.parent_path().parent_path().parent_path();
  return "checkpoint " + file.parent_path().string() + " is in the old pickled format (" + file.filename().string() +
         "), which can run code when loaded, so NEXUS no longer reads it; if you trust where the run came from, " +
         "convert it once with `nexus convert-run " + run.string() + "`";
}

void write_checkpoint_tensors(const fs::path& file, const std::map<std::string, at::Tensor>& tensors) {
  write_file_atomically(file, support::safetensors_bytes(tensors, {{"format", "pt"}}));
}

std::map<std::string, at::Tensor> read_checkpoint_tensors(const fs::path& file) {
  if (!fs::exists(file)) {
    if (fs::exists(fs::path(file).replace_extension(".pt")))
      throw CheckpointRefused(pickled_checkpoint_message(fs::path(file).replace_extension(".pt")));
    throw CheckpointError("checkpoint " + file.parent_path().string() + " has no " + file.filename().string() +
                          ": the run was trained with a different composition");
  }
  try {
    return support::read_safetensors(support::MappedFile::open(file.string()), support::Storage::Copy);
  } catch (const c10::Error& e) {  // a header whose shapes libtorch cannot allocate
    throw CheckpointError("corrupt checkpoint file " + file.string() + ": " + e.what_without_backtrace());
  } catch (const std::runtime_error& e) {
    throw CheckpointError(std::string("corrupt checkpoint file: ") + e.what());
  }
}

std::string checkpoint_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", (long long)step);
  return name;
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  const auto file = fs::path(run_dir) / "checkpoints" / "latest";
  if (!fs::exists(file)) return std::nullopt;
  return read_pointer(file);
}

std::string run_checkpoint(const std::string& run_dir) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::string name;
  if (fs::exists(dir / "best")) name = read_pointer(dir / "best");
  else if (fs::exists(dir / "latest")) name = read_pointer(dir / "latest");
  else throw CheckpointError(run_dir + " has no checkpoints: is it a run folder written by `nexus train`?");
  return (dir / name).string();
}

std::string load_run_weights(ComposedSystem& sys, const std::string& run_dir, const std::map<std::string, std::string>& sources) {
  const auto ckpt = run_checkpoint(run_dir);
  for (const auto& [mod_name, module] : sys.trainable_modules()) {
    const auto source = sources.find(mod_name);
    load_module(*module, module_file(source != sources.end() ? source->second : ckpt, mod_name));
  }
  for (const auto& [mod_name, module] : sys.trainable_modules()) module->eval();
  return ckpt;
}

void load_modules(const NamedModules& modules, const fs::path& dir) {
  for (const auto& [mod_name, module] : modules) load_module(*module, module_file(dir, mod_name));
}

void write_checkpoint(const std::string& run_dir, const std::string& name, const NamedModules& modules,
                      const std::function<void(const fs::path&)>& write_more, const std::string& keep) {
  const auto dir = fs::path(run_dir) / "checkpoints";
  fs::create_directories(dir);
  const auto final_dir = dir / name;
  const auto tmp = dir / (name + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  for (const auto& [mod_name, module] : modules) write_checkpoint_tensors(module_file(tmp, mod_name), module_tensors(*module));
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
