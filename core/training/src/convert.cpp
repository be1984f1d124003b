#include "nexus/training/convert.hpp"

#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "nexus/base/errors.hpp"
#include "nexus/base/files.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/training/optimizer_state.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

// Module::save's archive: parameters and buffers as tensors, each child module as a nested
// archive; flattened to the names Module::named_parameters gives ("net.0.weight").
void flatten_archive(torch::serialize::InputArchive& archive, const std::string& prefix,
                     std::map<std::string, at::Tensor>& out) {
  for (const auto& key : archive.keys()) {
    c10::IValue value;
    torch::serialize::InputArchive child;
    if (archive.try_read(key, value) && value.isTensor()) out[prefix + key] = value.toTensor().detach().clone();
    else if (archive.try_read(key, child)) flatten_archive(child, prefix + key + ".", out);
  }
}

// The old optimizer.pt (torch::save of an AdamW): its parameter groups and their sizes and
// options are read from the archive; torch::load then fills placeholders position by position,
// which is how it always mapped the state to parameters.
void convert_optimizer(const fs::path& file) {
  torch::serialize::InputArchive archive, groups_archive;
  archive.load_from(file.string());
  archive.read("param_groups", groups_archive);
  at::Tensor count;
  groups_archive.read("param_groups/size", count);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  size_t params = 0;
  for (int64_t g = 0; g < count.item<int64_t>(); ++g) {
    torch::serialize::InputArchive group, options_archive;
    groups_archive.read("param_groups/" + std::to_string(g), group);
    at::Tensor size;
    group.read("params/size", size);
    group.read("options", options_archive);
    torch::optim::AdamWOptions options(0);
    options.serialize(options_archive);
    std::vector<at::Tensor> placeholders;
    for (int64_t i = 0; i < size.item<int64_t>(); ++i) placeholders.push_back(torch::zeros({0}));
    params += placeholders.size();
    groups.emplace_back(placeholders, std::make_unique<torch::optim::AdamWOptions>(options));
  }
  torch::optim::AdamW optimizer(groups);
  torch::load(optimizer, file.string());
  save_optimizer_state(optimizer, std::vector<std::optional<std::string>>(params), file.parent_path());
}

int convert_folder(const fs::path& dir) {
  std::vector<fs::path> pickled;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".pt") pickled.push_back(e.path());
  std::map<std::string, at::Tensor> rng;
  for (const auto& file : pickled) {
    const auto stem = file.stem().string();
    try {
      if (stem == "optimizer") {
        convert_optimizer(file);
      } else if (stem == "rng_sampler" || stem == "rng_global") {
        at::Tensor state;
        torch::load(state, file.string());
        rng[stem.substr(4)] = state;
      } else {
        torch::serialize::InputArchive archive;
        archive.load_from(file.string());
        std::map<std::string, at::Tensor> tensors;
        flatten_archive(archive, "", tensors);
        run::write_checkpoint_tensors(dir / (stem + ".safetensors"), tensors);
      }
    } catch (const c10::Error& e) {
      throw RuntimeFailure("cannot convert " + file.string() + ": " + e.what_without_backtrace());
    }
  }
  if (!rng.empty()) {
    if (rng.size() != 2) throw RuntimeFailure("cannot convert " + dir.string() + ": it has only one of rng_sampler.pt and rng_global.pt");
    run::write_checkpoint_tensors(dir / "rng.safetensors", rng);
  }
  for (const auto& file : pickled) fs::remove(file);
  sync_path(dir);
  return int(pickled.size());
}

}  // namespace

ConversionReport convert_pickled_run(const std::string& run_dir) {
  if (!fs::is_directory(fs::path(run_dir) / "checkpoints"))
    throw InputError(run_dir + " has no checkpoints folder: is it a run folder written by `nexus train`?");
  std::vector<fs::path> folders;
  for (const auto& e : fs::recursive_directory_iterator(run_dir)) {  // symbolic links are not followed
    const auto name = e.path().filename().string();
    if (e.is_directory() && e.path().parent_path().filename() == "checkpoints" && name.rfind("step-", 0) == 0 &&
        e.path().extension() != ".tmp")
      folders.push_back(e.path());
  }
  ConversionReport report;
  for (const auto& dir : folders)
    if (const int n = convert_folder(dir)) {
      report.folders.push_back(dir.string());
      report.files += n;
    }
  return report;
}

}  // namespace nexus
