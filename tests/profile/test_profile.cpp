// Profiling (core/profile): spectra and ranks, the randomised path against the exact one, linear
// CKA's invariances, principal directions, data-sized towers (`rank: auto`) end to end, and the
// principal-direction initialisation of the lowrank tower.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>
#include <nlohmann/json.hpp>

#include <numeric>

#include "nexus/base/files.hpp"
#include "nexus/pipeline/train.hpp"
#include "nexus/profile/profile.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/run/run_folder.hpp"
#include "test_support.hpp"
#include "toy_data.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

// rows x width features that live in a `rank`-dimensional subspace, plus a little noise.
at::Tensor low_rank(int64_t rows, int64_t width, int64_t rank, uint64_t seed, double noise = 1e-3) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn({rows, rank}, gen).matmul(torch::randn({rank, width}, gen)) + noise * torch::randn({rows, width}, gen);
}

double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("spectrum: a rank-5 teacher needs 5 components; fractions descend and sum to 1; dead dimensions counted") {
  auto x = low_rank(2000, 40, 5, 1);
  x.select(1, 7).fill_(3.0);  // a dimension that never changes
  const auto s = profile::spectrum(x);
  CHECK(s.rows == 2000);
  CHECK(s.width == 40);
  CHECK(s.dead_dims == 1);
  CHECK(s.rank_99 == 5);
  CHECK(s.rank_90 <= s.rank_95);
  CHECK(s.rank_95 <= s.rank_99);
  CHECK(sum(s.explained) == doctest::Approx(1.0).epsilon(1e-9));
  for (size_t i = 1; i < s.explained.size(); ++i) CHECK(s.explained[i] <= s.explained[i - 1] + 1e-12);
  CHECK(s.effective_rank > 1.0);
  CHECK(s.effective_rank < 5.5);
  // Isotropic features: every direction carries the same share, the effective rank is the width.
  const auto iso = profile::spectrum(torch::randn({20000, 16}, at::detail::createCPUGenerator(2)));
  CHECK(iso.rank_99 >= 15);
  CHECK(iso.effective_rank == doctest::Approx(16).epsilon(0.01));
  // Norms are of the raw rows.
  const auto unit = torch::nn::functional::normalize(torch::randn({100, 8}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  CHECK(profile::spectrum(unit).norm_mean == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(profile::rank_for({0.5, 0.3, 0.15, 0.05}, 0.9) == 3);
  CHECK(profile::rank_for({0.5, 0.3}, 0.99) == 2);  // never reached: all of them
}

TEST_CASE("principal components: orthonormal, largest first, the planted directions; the randomised path agrees") {
  auto gen = at::detail::createCPUGenerator(3);
  // Three planted directions with variances 9, 4, 1 and nothing else.
  const auto basis = std::get<0>(torch::linalg_qr(torch::randn({30, 3}, gen, torch::kDouble))).t().to(torch::kFloat);
  const auto x = (torch::randn({5000, 3}, gen) * torch::tensor({3.f, 2.f, 1.f})).matmul(basis) + 0.5;
  const auto pc = profile::principal_components(x, 3);
  CHECK(pc.components.sizes() == torch::IntArrayRef({3, 30}));
  CHECK(torch::allclose(pc.components.matmul(pc.components.t()), torch::eye(3), 1e-4, 1e-4));
  CHECK(pc.variances[0].item<float>() > pc.variances[1].item<float>());
  CHECK(pc.variances[1].item<float>() > pc.variances[2].item<float>());
  CHECK(pc.variances[0].item<float>() == doctest::Approx(9).epsilon(0.08));
  for (int64_t i = 0; i < 3; ++i) CHECK(std::abs(pc.components[i].dot(basis[i]).item<float>()) > 0.999);
  CHECK(pc.mean.mean().item<float>() == doctest::Approx(0.5).epsilon(0.05));
  const auto fast = profile::sketched_principal_components(x, 3);
  CHECK(torch::allclose(fast.variances, pc.variances, 1e-3, 1e-3));
  for (int64_t i = 0; i < 3; ++i) CHECK(std::abs(fast.components[i].dot(pc.components[i]).item<float>()) > 0.999);
}

TEST_CASE("linear CKA: 1 under rotation and scale, symmetric, near 0 for unrelated features, between for partial overlap") {
  auto gen = at::detail::createCPUGenerator(4);
  const auto x = torch::randn({4000, 12}, gen);
  const auto q = std::get<0>(torch::linalg_qr(torch::randn({12, 12}, gen)));
  CHECK(profile::linear_cka(x, 3.0 * x.matmul(q) + 1.0) == doctest::Approx(1.0).epsilon(1e-6));
  const auto y = torch::randn({4000, 10}, gen);
  CHECK(profile::linear_cka(x, y) < 0.05);
  const auto half = torch::cat({x.narrow(1, 0, 6), torch::randn({4000, 6}, gen)}, 1);  // shares half of x
  const double partial = profile::linear_cka(x, half);
  CHECK(partial > 0.3);
  CHECK(partial < 0.7);
  CHECK(partial == doctest::Approx(profile::linear_cka(half, x)).epsilon(1e-9));
}

TEST_CASE("thin_rows keeps every k-th row, at most the cap") {
  const auto x = torch::arange(10).view({10, 1});
  CHECK(profile::thin_rows(x, 20).size(0) == 10);
  const auto t = profile::thin_rows(x, 4);
  CHECK(t.size(0) == 4);
  CHECK(t[1].item<int64_t>() == 3);  // stride ceil(10 / 4) = 3
}

TEST_CASE("suggested rank: 99 % rounded up to a multiple of 8, within min(d_in, d_out)") {
  profile::Spectrum s;
  s.rank_99 = 13;
  CHECK(profile::suggested_rank(s, 384, 256) == 16);
  s.rank_99 = 300;
  CHECK(profile::suggested_rank(s, 384, 256) == 256);
  s.rank_99 = 0;
  CHECK(profile::suggested_rank(s, 4, 4) == 4);  // 8 clamped to the widths
}

TEST_CASE("lowrank tower: starts from the principal directions it is given, centred; init: random ignores them") {
  const auto& reg = builtin_registry();
  auto t = reg.create_tower("lowrank", Options::parse("d_in=6;d_out=5;rank=2"));
  auto* fits = dynamic_cast<InitialisedFromData*>(t.get());  // across the plugin boundary
  REQUIRE(fits != nullptr);
  CHECK(fits->components_wanted() == 2);
  CHECK(dynamic_cast<InitialisedFromData*>(reg.create_tower("linear", Options::parse("d_in=6;d_out=5")).get()) == nullptr);

  const auto x = low_rank(3000, 6, 2, 5, 0.05) + 2.0;
  const auto pc = profile::principal_components(x, 2);
  const auto bias_before = t->named_parameters()["up.bias"].clone();
  fits->initialise_from({pc.mean, pc.components, pc.variances, x.size(0)});
  const auto down = t->named_parameters()["down.weight"];
  CHECK(torch::allclose(down, pc.components, 1e-6, 1e-6));  // one principal direction per row, largest first
  torch::NoGradGuard no_grad;
  const auto h = x.matmul(down.t());
  CHECK(torch::allclose(h.var(0), pc.variances, 0.01, 0.01));  // the bottleneck carries the data's top variances
  CHECK(torch::allclose(t->forward(pc.mean.unsqueeze(0)).squeeze(0), bias_before, 1e-4, 1e-4));  // the mean maps to the old bias
  const auto up = t->named_parameters()["up.weight"];
  CHECK(torch::allclose(up.t().matmul(up), torch::eye(2), 1e-5, 1e-5));  // orthogonal columns
  CHECK_THROWS_AS(fits->initialise_from({pc.mean, torch::randn({2, 7}), pc.variances, 10}), std::invalid_argument);
  auto random = reg.create_tower("lowrank", Options::parse("d_in=6;d_out=5;rank=2;init=random"));
  const auto before = random->named_parameters()["down.weight"].clone();
  dynamic_cast<InitialisedFromData*>(random.get())->initialise_from({pc.mean, pc.components, pc.variances, x.size(0)});
  CHECK(torch::equal(random->named_parameters()["down.weight"], before));
}

TEST_CASE("rank: auto is accepted in a teacher's tower only, and only for options declared int|auto") {
  ToyImages toy;
  const auto& reg = builtin_registry();
  const auto catalog = plugin_catalog(reg);
  const auto comp = config::load_composition(toy.composition, {"teachers.0.tower={plugin: lowrank, options: {rank: auto}}"}, catalog);
  CHECK(comp.teachers[0].tower.options.at("rank") == "auto");
  const auto err = [&](const std::string& set) {
    try {
      config::load_composition(toy.composition, {set}, catalog);
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(has(err("heads.0={name: cls, task: toy, outputs: 3, plugin: lowrank, options: {rank: auto}}"),
            "can be sized from the data only in a teacher's tower"));
  CHECK(has(err("teachers.0.tower={plugin: mlp, options: {hidden: auto}}"), "expects an int"));
  CHECK(has(err("teachers.0.tower={plugin: lowrank, options: {rank: \"auto\"}}"), "expects an int or auto"));
}

TEST_CASE("rank: auto, end to end: nexus train measures the teacher, builds and records the tower at that rank") {
  ToyImages toy;
  const auto& reg = builtin_registry();
  TrainRequest r;
  r.composition_file = toy.composition;
  // pixels: 16 features that are 2 numbers repeated 8 times (rank 2); shared space 32 wide.
  r.overrides = {"shared_dim=32", "teachers.0.options.source=\"def forward(self, x):\\n    return x.flatten(1).narrow(1, 0, 2).repeat(1, 8)\"",
                 "teachers.0.tower={plugin: lowrank, options: {rank: auto}}"};
  r.run_dir = (toy.dir.path / "run").string();
  r.cache_root = toy.cache_root;
  r.evaluate = false;
  r.progress = false;
  const auto out = train_composition(r, reg);
  const auto run_json = nlohmann::json::parse(read_file(fs::path(r.run_dir) / "run.json"));
  // 2 components hold 99 %: rounded up to 8, within min(16, 32).
  CHECK(run_json.at("data_sized") == nlohmann::json::array({"teachers.0.tower.options.rank=8"}));
  const auto info = run::read_run_info(r.run_dir);
  const auto comp = run::load_run_composition(info, plugin_catalog(reg));
  CHECK(comp.teachers[0].tower.options.at("rank") == "8");
  // The run's own copy rebuilds the same tower, and its checkpoint loads into it.
  auto sys = ComposedSystem::build(comp, reg);
  CHECK(sys.teachers()[0].tower->named_parameters()["down.weight"].sizes() == torch::IntArrayRef({8, 16}));
  CHECK_NOTHROW(run::load_run_weights(sys, r.run_dir));
  CHECK(out.result.steps > 0);
}
