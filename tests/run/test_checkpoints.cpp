// Checkpoints are data: safetensors written and read back bit for bit, refused when they do not
// fit, never deserialised as pickles, and named only inside their run folder.
#include <doctest/doctest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "nexus/base/files.hpp"
#include "nexus/model/system.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/support/arrays.hpp"
#include "nexus/training/convert.hpp"
#include "nexus/training/optimizer_state.hpp"
#include "nexus/training/trainer.hpp"
#include "synthetic_training.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

// A trained synthetic run (checkpoints step-0 and step-20) and its best checkpoint folder.
struct TrainedRun {
  TrainingFixture f{{"trainer.steps=20"}};
  std::string run = (f.dir.path / "run").string();
  fs::path best;
  TrainedRun() {
    train(f.comp, *f.sys, {f.data}, f.options("run"));
    best = run::run_checkpoint(run);
  }
};

// A TorchScript archive whose unpickling runs code: its __setstate__ fails with a marker, so
// whoever deserialises it shows the marker in the error (what torch::load of a checkpoint did).
void write_code_running_archive(const fs::path& file) {
  torch::jit::Module m("Payload");
  m.register_attribute("x", c10::IntType::get(), int64_t(1));
  m.define(R"(
def __getstate__(self) -> int:
    return self.x

def __setstate__(self, state: int) -> None:
    assert state == 0, "NEXUS-TEST: code in a checkpoint ran"
)");
  m.save(file.string());
}

}  // namespace

TEST_CASE("safetensors written by NEXUS read back bit for bit, every dtype, with its metadata") {
  TempDir dir;
  auto gen = at::detail::createCPUGenerator(1);
  std::map<std::string, torch::Tensor> tensors = {
      {"f32", torch::randn({3, 5}, gen)},
      {"f64", torch::randn({2}, gen, torch::kDouble)},
      {"bf16", torch::randn({4, 2}, gen).to(torch::kBFloat16)},
      {"f16", torch::randn({7}, gen).to(torch::kHalf)},
      {"i64", torch::arange(-3, 9, torch::kLong)},
      {"i32", torch::arange(5, torch::kInt)},
      {"u8", torch::randint(256, {5056}, gen, torch::kByte)},
      {"transposed", torch::randn({4, 3}, gen).t()},  // not contiguous: stored in C order
      {"empty", torch::zeros({0, 4})},
      {"scalar", torch::tensor(2.5)}};
  const auto bytes = support::safetensors_bytes(tensors, {{"format", "pt"}});
  write_file_atomically(dir.path / "t.safetensors", bytes);
  const auto back = support::load_safetensors((dir.path / "t.safetensors").string());
  REQUIRE(back.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    CAPTURE(name);
    REQUIRE(back.count(name));
    CHECK((back.at(name).scalar_type() == t.scalar_type()));
    CHECK((back.at(name).sizes() == t.sizes()));
    CHECK(torch::equal(back.at(name), t));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | uint8_t(bytes[size_t(i)]);
  CHECK((8 + header_len) % 8 == 0);  // the data starts aligned
  CHECK(bytes.find("\"__metadata__\":{\"format\":\"pt\"}") != std::string::npos);
  CHECK_THROWS_WITH(support::safetensors_bytes({{"b", torch::ones({2}, torch::kBool)}}), doctest::Contains("tensor 'b'"));
}

TEST_CASE("a checkpoint holds one safetensors file per module, and a file that does not fit is refused, naming the parameter") {
  TrainedRun r;
  for (const auto& [name, module] : r.f.sys->trainable_modules()) {
    CAPTURE(name);
    const auto stored = support::load_safetensors((r.best / (name + ".safetensors")).string());
    const auto params = module->named_parameters();
    for (const auto& p : params) CHECK(torch::equal(stored.at(p.key()), p.value()));
  }
  for (const auto& e : fs::directory_iterator(r.best)) CHECK_MESSAGE(e.path().extension() != ".pt", e.path());

  auto other = r.f.build();
  const auto fresh = weights_digest(*other);
  // The head's weight of another composition (another width): refused before anything is copied.
  auto head = support::load_safetensors((r.best / "head.cls.safetensors").string());
  REQUIRE(head.count("linear.weight"));
  head["linear.weight"] = torch::zeros({3, 7});
  write_file_atomically(r.best / "head.cls.safetensors", support::safetensors_bytes(head));
  CHECK_THROWS_WITH_AS(run::load_run_weights(*other, r.run),
                       doctest::Contains("head.cls.safetensors does not fit the composition: parameter 'linear.weight' is [3, 7] Float, the composition needs [3, 8] Float"),
                       run::CheckpointError);
  head.erase("linear.weight");
  head["extra"] = torch::zeros({1});
  write_file_atomically(r.best / "head.cls.safetensors", support::safetensors_bytes(head));
  CHECK_THROWS_WITH_AS(run::load_run_weights(*other, r.run), doctest::Contains("it has no parameter 'linear.weight'"),
                       run::CheckpointError);
  head["linear.weight"] = torch::zeros({3, 8});  // shared_dim 8, 3 classes: fits
  write_file_atomically(r.best / "head.cls.safetensors", support::safetensors_bytes(head));
  CHECK_THROWS_WITH_AS(run::load_run_weights(*other, r.run), doctest::Contains("it holds 'extra', which the composition's module does not have"),
                       run::CheckpointError);
  write_file_atomically(r.best / "head.cls.safetensors", "not a checkpoint");
  CHECK_THROWS_WITH_AS(run::load_run_weights(*other, r.run), doctest::Contains("corrupt checkpoint file"),
                       run::CheckpointError);
  // A shape whose product overflows (2^62 x 4 floats "fit" in 0 bytes): an error, not a crash.
  const std::string header = R"({"linear.weight":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})";
  std::string overflowing(8, '\0');
  for (size_t i = 0; i < 8; ++i) overflowing[i] = char((header.size() >> (8 * i)) & 0xff);
  write_file_atomically(r.best / "head.cls.safetensors", overflowing + header);
  CHECK_THROWS_WITH_AS(run::load_run_weights(*other, r.run), doctest::Contains("corrupt checkpoint file"),
                       run::CheckpointError);
  // Modules before the head in the composition's order loaded; the head itself is untouched.
  CHECK(module_digest(*other, "head.cls") == module_digest(*r.f.build(), "head.cls"));
  CHECK(weights_digest(*other) != fresh);
}

TEST_CASE("loading a checkpoint never deserialises a pickle: an old .pt file is refused unread") {
  TrainedRun r;
  // The old format's file name, holding an archive whose loading runs code; torch::load (the old
  // loader) raises the payload's marker.
  fs::remove(r.best / "head.cls.safetensors");
  write_code_running_archive(r.best / "head.cls.pt");
  {
    auto m = torch::nn::Linear(2, 3);
    CHECK_THROWS_WITH(torch::load(m, (r.best / "head.cls.pt").string()), doctest::Contains("NEXUS-TEST: code in a checkpoint ran"));
  }
  auto sys = r.f.build();
  try {
    run::load_run_weights(*sys, r.run);
    FAIL("an old pickled checkpoint was accepted");
  } catch (const run::CheckpointRefused& e) {
    const std::string what = e.what();
    CHECK(what.find("code in a checkpoint ran") == std::string::npos);
    CHECK(what.find("is in the old pickled format (head.cls.pt)") != std::string::npos);
    CHECK(what.find("nexus convert-run " + r.run) != std::string::npos);
  }
  // The same archive under the new name is just a corrupt file.
  fs::rename(r.best / "head.cls.pt", r.best / "head.cls.safetensors");
  try {
    run::load_run_weights(*sys, r.run);
    FAIL("a TorchScript archive was accepted as safetensors");
  } catch (const run::CheckpointError& e) {
    CHECK(std::string(e.what()).find("code in a checkpoint ran") == std::string::npos);
    CHECK(std::string(e.what()).find("corrupt checkpoint file") != std::string::npos);
  }
}

TEST_CASE("names read from a run folder stay inside it: best and latest name a checkpoint folder or are refused") {
  TrainedRun r;
  const auto dir = fs::path(r.run) / "checkpoints";
  fs::create_directories(fs::path(r.run) / "outside" / "step-00000020");
  const std::vector<std::string> bad_names = {"../outside/step-00000020", "/etc", "step-00000020/../../outside/step-00000020",
                                             "..", "", "step-", "step-12 x", "step-0000002\x01",
                                             "step-" + std::string(100000, '0')};  // not read whole
  for (const auto& bad : bad_names) {
    const auto shown = bad.substr(0, 40);
    CAPTURE(shown);
    write_file_atomically(dir / "best", bad);
    CHECK_THROWS_WITH_AS(run::run_checkpoint(r.run), doctest::Contains("which is not a checkpoint folder"),
                         run::CheckpointRefused);
    write_file_atomically(dir / "latest", bad);
    CHECK_THROWS_AS(run::latest_checkpoint(r.run), run::CheckpointRefused);
  }
  write_file_atomically(dir / "best", "step-00000020\n");  // as an editor leaves it
  CHECK(run::run_checkpoint(r.run) == (dir / "step-00000020").string());
}

TEST_CASE("convert-run rewrites an old pickled run: the same weights, optimizer and generator states, and it resumes") {
  TrainedRun r;
  const auto trained = weights_digest(*r.f.sys);
  std::vector<fs::path> folders;
  for (const auto& e : fs::directory_iterator(fs::path(r.run) / "checkpoints"))
    if (e.is_directory()) folders.push_back(e.path());
  std::map<fs::path, std::map<std::string, torch::Tensor>> optimizer_tensors, rng_tensors;
  // The old format, written as the old code wrote it: torch::save of each module, the optimizer
  // (with the state this checkpoint holds) and each generator's state.
  for (const auto& folder : folders) {
    auto copy = r.f.build();
    run::load_modules(copy->trainable_modules(), folder);
    for (const auto& [name, module] : copy->trainable_modules()) {
      torch::save(module, (folder / (name + ".pt")).string());
      fs::remove(folder / (name + ".safetensors"));
    }
    std::vector<torch::Tensor> params;
    for (const auto& [name, module] : r.f.sys->trainable_modules())
      for (const auto& p : module->parameters()) params.push_back(p);
    torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(0.01));
    load_optimizer_state(optimizer, optimizer_parameter_names(r.f.sys->trainable_modules(), optimizer), folder);
    torch::save(optimizer, (folder / "optimizer.pt").string());
    optimizer_tensors[folder] = support::load_safetensors((folder / "optimizer.safetensors").string());
    rng_tensors[folder] = support::load_safetensors((folder / "rng.safetensors").string());
    torch::save(rng_tensors[folder].at("sampler"), (folder / "rng_sampler.pt").string());
    torch::save(rng_tensors[folder].at("global"), (folder / "rng_global.pt").string());
    for (const auto* f : {"optimizer.safetensors", "optimizer.json", "rng.safetensors"}) fs::remove(folder / f);
  }
  CHECK(std::any_of(folders.begin(), folders.end(), [&](const auto& f) { return !optimizer_tensors[f].empty(); }));
  auto sys = r.f.build();
  CHECK_THROWS_AS(run::load_run_weights(*sys, r.run), run::CheckpointRefused);

  const auto report = convert_pickled_run(r.run);
  CHECK(report.folders.size() == folders.size());
  CHECK(report.files == int(folders.size() * (r.f.sys->trainable_modules().size() + 3)));
  run::load_run_weights(*sys, r.run);
  CHECK(weights_digest(*sys) == trained);
  for (const auto& folder : folders) {
    CAPTURE(folder);
    for (auto* kept : {&optimizer_tensors, &rng_tensors}) {
      const auto& before = kept->at(folder);
      const auto after = support::load_safetensors((folder / (kept == &rng_tensors ? "rng.safetensors" : "optimizer.safetensors")).string());
      REQUIRE(after.size() == before.size());
      for (const auto& [key, t] : before) CHECK(torch::equal(after.at(key), t));
    }
    for (const auto& e : fs::directory_iterator(folder)) CHECK(e.path().extension() != ".pt");
  }
  // The converted run resumes (its latest checkpoint is its last step: nothing left to train).
  auto resumed = r.f.build();
  auto options = r.f.options("run");
  options.resume = true;
  CHECK(train(r.f.comp, *resumed, {r.f.data}, options).resumed);
  CHECK(weights_digest(*resumed) == trained);
  CHECK(convert_pickled_run(r.run).files == 0);  // again: nothing left to convert
  CHECK_THROWS_AS(convert_pickled_run((r.f.dir.path / "nothing").string()), InputError);
}
