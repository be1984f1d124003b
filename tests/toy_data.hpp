// A small labelled image dataset written the way scripts/build_datasets.py writes real ones (IDX
// files and a manifest with checksums), with a composition of two TorchScript teachers over it:
// for tests of caching, evaluation and increments that need real files but not real data.
#pragma once

#include <nexus/sha256.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/data/feature_cache.hpp"
#include "nexus/model/system.hpp"
#include "test_support.hpp"

namespace nexus::test {

// 4x4 images whose label (0-2) is the brightest of three pixel blocks.
inline void write_toy_split(const fs::path& dir, const std::string& split, int64_t rows, uint64_t seed,
                            nlohmann::json& files) {
  auto gen = at::detail::createCPUGenerator(seed);
  const auto images = torch::randint(0, 256, {rows, 4, 4}, gen, torch::kLong).to(torch::kUInt8);
  const auto blocks = images.to(torch::kFloat).view({rows, 16}).narrow(1, 0, 12).view({rows, 3, 4}).sum(2);
  const auto labels = blocks.argmax(1).to(torch::kUInt8);
  auto idx = [&](const std::string& name, const at::Tensor& t, std::vector<int64_t> dims) {
    std::string bytes = {0, 0, 0x08, char(dims.size())};
    for (auto d : dims)
      for (int s = 24; s >= 0; s -= 8) bytes += char((d >> s) & 0xff);
    bytes.append(reinterpret_cast<const char*>(t.contiguous().data_ptr<uint8_t>()), size_t(t.numel()));
    std::ofstream(dir / name, std::ios::binary) << bytes;
    files[name] = sha256_hex(bytes);
  };
  idx("images_" + split + ".idx", images, {rows, 4, 4});
  idx("labels_" + split + ".idx", labels, {rows});
}

inline const std::string kToyComposition = test_composition(
    "toy",
    torchscript_teacher("pixels", "image", "[1, 4, 4]", "def forward(self, x):\\n    return x.flatten(1)") +
        torchscript_teacher("rows", "image", "[1, 4, 4]", "def forward(self, x):\\n    return x.mean(3).flatten(1)"),
    "toy", 3,
    "data:\n  root: data\n  tasks:\n    toy: {dataset: toy_images, modality: image}\n"
    "trainer: {steps: 120, batch_size: 32, lr: 0.02, validate_every: 40, seed: 1, weight_decay: 0.0}\n");

struct ToyImages {
  TempDir dir;
  std::string composition = (dir.path / "toy.yaml").string();
  std::string cache_root = (dir.path / "cache").string();

  explicit ToyImages(const std::string& extra_yaml = "") {
    const auto data = dir.path / "data" / "toy_images";
    fs::create_directories(data);
    nlohmann::json files = nlohmann::json::object();
    write_toy_split(data, "train", 300, 1, files);
    write_toy_split(data, "val", 100, 2, files);
    write_toy_split(data, "test", 100, 3, files);
    std::ofstream(data / "manifest.json") << nlohmann::json{{"dataset_id", "toy-images-1"}, {"classes", {"a", "b", "c"}},
                                                            {"files", files}}.dump();
    std::ofstream(composition) << kToyComposition << extra_yaml;
  }
};

// The toy composition built from the built-in plugins, with a feature cache of its own.
struct ToyFixture {
  ToyImages toy;
  const registry::Registry& reg = builtin_registry();
  config::Composition comp;
  std::unique_ptr<ComposedSystem> sys;
  cache::FeatureCache store{toy.cache_root};

  explicit ToyFixture(const std::vector<std::string>& overrides = {}) {
    comp = config::load_composition(toy.composition, overrides, plugin_catalog(reg));
    sys = std::make_unique<ComposedSystem>(ComposedSystem::build(comp, reg));
  }
};

}  // namespace nexus::test
