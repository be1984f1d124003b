// A composition built end to end from YAML through real plugins.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>

#include "nexus/config/composition.hpp"
#include "nexus/model/compute_threads.hpp"
#include "nexus/model/device.hpp"
#include "nexus/model/system.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

std::string write(const TempDir& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir.path / name) << text;
  return (dir.path / name).string();
}

const std::string kTwoModalities = test_composition(
    "two-modalities",
    torchscript_teacher("image_a", "image", "[1, 4, 4]", "def forward(self, x):\\n    return x.flatten(1)") +
        torchscript_teacher("tabular", "tensor", "[5]", "def forward(self, x):\\n    return x * 3.0", "{plugin: mlp, options: {hidden: 7}}") +
        torchscript_teacher("image_b", "image", "[1, 4, 4]", "def forward(self, x):\\n    return x.mean(3).flatten(1)"),
    "t", 3, "");

// The two-modality composition with the given router, written to `dir`; returns its path.
std::string with_router(const TempDir& dir, const std::string& router) {
  auto text = kTwoModalities;
  text.replace(text.find("plugin: softmax"), 15, "plugin: " + router);
  return write(dir, router + ".yaml", text);
}

}  // namespace

TEST_CASE("a composition builds from plugins and routes only over teachers of the input's modality") {
  TempDir dir;
  const auto& reg = builtin_registry();
  auto comp = config::load_composition(with_router(dir, "softmax"), {}, plugin_catalog(reg));
  auto sys = ComposedSystem::build(comp, reg);
  REQUIRE(sys.teachers().size() == 3);
  CHECK(sys.teachers()[0].tower->in_features() == 16);  // filled in from the real teacher
  CHECK(sys.teachers()[2].tower->in_features() == 4);
  CHECK(sys.router()->num_experts() == 3);

  auto r = sys.forward(sys.teachers()[0].teacher->example_input(6), "image");
  CHECK(r.ran == std::vector<std::string>{"image_a", "image_b"});
  CHECK(r.shared.sizes() == torch::IntArrayRef({6, 8}));
  CHECK(r.heads.at("cls").sizes() == torch::IntArrayRef({6, 3}));
  CHECK(torch::allclose(r.weights.sum(1), torch::ones({6})));
  CHECK(r.weights.select(1, 1).abs().sum().item<double>() == 0.0);  // the tensor teacher is not an image teacher

  // Gradients reach the towers, the router and the head through the fused space.
  r.heads.at("cls").sum().backward();
  CHECK(sys.heads()[0].tower->parameters()[0].grad().defined());
  CHECK(sys.teachers()[0].tower->parameters()[0].grad().defined());
  CHECK(sys.router()->parameters()[0].grad().defined());
}

TEST_CASE("a top-k router runs sparse and a declared width that is wrong is reported where it was declared") {
  TempDir dir;
  const auto& reg = builtin_registry();
  const auto path = with_router(dir, "topk");
  auto comp = config::load_composition(path, {}, plugin_catalog(reg));
  auto sys = ComposedSystem::build(comp, reg);
  auto r = sys.forward(sys.teachers()[0].teacher->example_input(5), "image");
  CHECK(((r.weights > 0).sum(1) == 1).all().item<bool>());

  // width 99 is legal YAML and passes static validation; only the real teacher shows it is wrong.
  auto bad = config::load_composition(path, {"teachers.0.width=99"}, plugin_catalog(reg));
  try {
    ComposedSystem::build(bad, reg);
    FAIL("expected ConfigError");
  } catch (const config::ConfigError& e) {
    REQUIRE(e.diagnostics().size() == 1);
    CHECK(e.diagnostics()[0].loc.file == path);
    CHECK(e.diagnostics()[0].loc.line == 5);
    CHECK(e.diagnostics()[0].message == "teacher 'image_a' declares width 99 but its plugin produces 16");
  }
}

TEST_CASE("routed inference runs each teacher only on the rows the router chose, with forward()'s result") {
  TempDir dir;
  const auto& reg = builtin_registry();
  torch::manual_seed(3);
  // The router reads image_b's own features, so it can decide before image_a runs.
  auto comp = config::load_composition(with_router(dir, "topk"), {"router.input=teacher:image_b"}, plugin_catalog(reg));
  auto sys = ComposedSystem::build(comp, reg);
  torch::NoGradGuard no_grad;
  TeacherInput batch;
  batch.tensor = torch::randn({64, 1, 4, 4}) * 3;  // varied enough that the gate picks both
  const auto dense = sys.forward(batch, "image");
  std::vector<int64_t> rows;
  const auto routed = sys.forward_routed(batch, "image", "", &rows);
  CHECK(torch::allclose(dense.heads.at("cls"), routed.heads.at("cls"), 1e-5, 1e-6));
  CHECK(torch::equal(dense.selected, routed.selected));
  const int64_t chose_a = dense.selected.select(1, 0).sum().item<int64_t>();
  CHECK(chose_a > 0);
  CHECK(chose_a < 64);           // both experts are chosen for some rows: a real test of the grouping
  CHECK(rows == std::vector<int64_t>{chose_a, 0, 64});  // image_a only on its rows; the gate on all

  // With the default router input (the mean of every projection) all teachers must run first.
  auto mean_input = config::load_composition(with_router(dir, "topk"), {}, plugin_catalog(reg));
  auto sys2 = ComposedSystem::build(mean_input, reg);
  sys2.forward_routed(batch, "image", "", &rows);
  CHECK(rows == std::vector<int64_t>{64, 0, 64});
}

TEST_CASE("a TorchScript file teacher: loads a saved module and fingerprints its bytes") {
  TempDir dir;
  torch::jit::Module m("Scaled");
  m.register_parameter("w", torch::full({3}, 2.0), false);
  m.define("def forward(self, x):\n    return x * self.w\n");
  m.save((dir.path / "scaled.pt").string());
  const auto& reg = builtin_registry();
  auto t = reg.create_teacher("torchscript", Options().set("path", (dir.path / "scaled.pt").string()).set("input_shape", "3"));
  CHECK(t->width() == 3);
  CHECK(t->fingerprint().weights_hash == sha256_file((dir.path / "scaled.pt").string()));
  TeacherInput in;
  in.tensor = torch::ones({2, 3});
  CHECK(torch::allclose(t->encode(in), torch::full({2, 3}, 2.0)));
  CHECK_THROWS_WITH_AS(reg.create_teacher("torchscript", Options().set("path", "/nonexistent.pt").set("input_shape", "3")),
                       doctest::Contains("cannot load TorchScript file '/nonexistent.pt'"), registry::PluginError);
}

TEST_CASE("compute threads: the flag, then OMP_NUM_THREADS, then every core; nonsense is refused") {
  CHECK(choose_compute_threads(3, "2", 16).count == 3);
  CHECK(choose_compute_threads(3, "2", 16).reason == "--compute-threads");
  CHECK(choose_compute_threads(0, "2", 16).count == 2);
  CHECK(choose_compute_threads(0, "4,2", 16).count == 4);  // OpenMP's nested list: the outer level
  CHECK(choose_compute_threads(0, nullptr, 16).count == 16);
  CHECK(choose_compute_threads(0, "", 16).reason == "all 16 cores");
  CHECK(choose_compute_threads(0, nullptr, 0).count == 1);  // hardware_concurrency() may not know
  CHECK_THROWS_AS(choose_compute_threads(-1, nullptr, 2), InputError);
  for (const char* bad : {"0", "-2", "two", "2x", "99999"})
    CHECK_THROWS_WITH_AS(choose_compute_threads(0, bad, 2), doctest::Contains("OMP_NUM_THREADS"), InputError);
  // Applied, libtorch reports the count chosen (restored afterwards for the other tests).
  const int before = at::get_num_threads();
  CHECK(apply_compute_threads(2).count == 2);
  CHECK(at::get_num_threads() == 2);
  at::set_num_threads(before);
}

TEST_CASE("device specs: cpu and auto run here; a GPU that is not there is refused with the reason") {
  CHECK(nexus::resolve_device("cpu").is_cpu());
  if (torch::cuda::is_available()) {
    CHECK(nexus::resolve_device("auto").is_cuda());
    return;
  }
  CHECK(nexus::resolve_device("auto").is_cpu());
  CHECK(nexus::resolve_device("auto", 3).is_cpu());
  for (const char* spec : {"cuda", "cuda:0", "cuda:7"}) {
    const std::string want = std::string("device '") + spec + "' asked for";
    CHECK_THROWS_WITH_AS(nexus::resolve_device(spec), doctest::Contains(want.c_str()), nexus::DeviceError);
  }
  CHECK_THROWS_AS(nexus::resolve_device("tpu"), nexus::DeviceError);
  CHECK(nexus::describe_device(c10::Device(c10::kCPU)) == "cpu");
}

TEST_CASE("bf16 autocast is on inside a guard for a CUDA device only, and restored after") {
  // Autocast is thread-local dispatcher state: this needs no GPU to check.
  REQUIRE_FALSE(nexus::bf16_autocast_active());
  {
    nexus::AutocastGuard on(c10::Device(c10::kCUDA, 0), true);
    CHECK(nexus::bf16_autocast_active());
    {
      nexus::AutocastGuard nested(c10::Device(c10::kCUDA, 0), true);
      CHECK(nexus::bf16_autocast_active());
    }
    CHECK(nexus::bf16_autocast_active());  // the inner guard restored the outer state
  }
  CHECK_FALSE(nexus::bf16_autocast_active());
  {
    nexus::AutocastGuard cpu(c10::Device(c10::kCPU), true);
    CHECK_FALSE(nexus::bf16_autocast_active());
    nexus::AutocastGuard off(c10::Device(c10::kCUDA, 0), false);
    CHECK_FALSE(nexus::bf16_autocast_active());
  }
}
