// Training hygiene: rollback on NaN, collapse detection, resume.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>
#include <nlohmann/json.hpp>

#include "nexus/config/composition.hpp"
#include "nexus/model/system.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/training/keeper.hpp"
#include "nexus/training/optimizer_state.hpp"
#include "nexus/training/schedule.hpp"
#include "nexus/training/trainer.hpp"
#include "synthetic_training.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

TEST_CASE("training on cached features learns, and keeps one file per component") {
  TrainingFixture f;
  auto r = train(f.comp, *f.sys, {f.data}, f.options("run"));
  CHECK(r.val_accuracy.at("synth") > 0.8);
  CHECK(r.rollbacks == 0);
  const auto best = f.dir.path / "run" / "checkpoints" / read_text(f.dir.path / "run" / "checkpoints" / "best");
  for (auto file : {"tower.a.safetensors", "tower.b.safetensors", "router.safetensors", "head.cls.safetensors",
                    "optimizer.safetensors", "optimizer.json", "rng.safetensors", "state.json"})
    CHECK_MESSAGE(fs::exists(best / file), file);
}

TEST_CASE("a NaN in a batch triggers a rollback instead of training on garbage") {
  TrainingFixture f;
  f.data.train[0] = f.data.train[0].clone();
  f.data.train[0][5][2] = std::numeric_limits<float>::quiet_NaN();  // one poisoned row of 192
  auto opts = f.options("run");
  opts.max_rollbacks = 1000;
  auto r = train(f.comp, *f.sys, {f.data}, opts);
  CHECK(r.rollbacks >= 1);
  for (const auto& [name, module] : f.sys->trainable_modules())
    for (const auto& p : module->parameters()) CHECK(p.isfinite().all().item<bool>());
  const auto metrics = read_text(f.dir.path / "run" / "metrics.jsonl");
  CHECK(metrics.find("\"rollback\":\"loss is nan on task 'synth'\"") != std::string::npos);
  // With no patience left the run stops with a clear error instead.
  TrainingFixture g;
  g.data.train = f.data.train;
  auto strict = g.options("strict");
  strict.max_rollbacks = 0;
  CHECK_THROWS_WITH_AS(train(g.comp, *g.sys, {g.data}, strict), doctest::Contains("training diverged: loss is nan"),
                       TrainingError);
}

TEST_CASE("a collapsing shared space is caught") {
  // Huge weight decay drives every tower to zero: the shared space loses all its variance.
  TrainingFixture f({"trainer.weight_decay=50", "trainer.lr=0.02"});
  try {
    train(f.comp, *f.sys, {f.data}, f.options("run"));
    FAIL("no collapse detected; metrics: " << read_text(f.dir.path / "run" / "metrics.jsonl"));
  } catch (const TrainingError& e) {
    CHECK(std::string(e.what()).find("the shared space collapsed at step") != std::string::npos);
  }
}

TEST_CASE("early stopping: patience validations without improvement end the run at its best checkpoint") {
  // Labels that are pure noise: validation loss can only get worse once the heads memorise.
  TrainingFixture f({"trainer.patience=2", "trainer.steps=2000", "trainer.lr=0.05"});
  auto gen = at::detail::createCPUGenerator(5);
  f.data.train_labels = torch::randint(3, {192}, gen, torch::kLong);
  f.data.val_labels = torch::randint(3, {64}, gen, torch::kLong);
  auto opts = f.options("run");
  opts.max_rollbacks = 1000;
  auto r = train(f.comp, *f.sys, {f.data}, opts);
  CHECK(r.stopped_early);
  CHECK(r.steps < 2000);
  CHECK(r.steps - r.best_step <= 2 * 20);  // stopped within `patience` validations of the best
  const auto metrics = read_text(f.dir.path / "run" / "metrics.jsonl");
  CHECK(metrics.find("\"early_stop\":true") != std::string::npos);
  // Without patience the same run goes the distance.
  TrainingFixture g({"trainer.steps=300", "trainer.lr=0.05"});
  g.data.train_labels = f.data.train_labels;
  g.data.val_labels = f.data.val_labels;
  auto all = g.options("all");
  all.max_rollbacks = 1000;
  auto full = train(g.comp, *g.sys, {g.data}, all);
  CHECK_FALSE(full.stopped_early);
  CHECK(full.steps == 300);
}

TEST_CASE("feature statistics are fit on the training data and saved with the checkpoint") {
  TrainingFixture f;
  f.data.train[1] = f.data.train[1] * 50.0 + 7.0;  // a teacher on a very different scale
  f.data.val[1] = f.data.val[1] * 50.0 + 7.0;
  train(f.comp, *f.sys, {f.data}, f.options("run"));
  const auto& norm = f.sys->teachers()[1].norm;
  CHECK(torch::allclose(norm->mean, f.data.train[1].mean(0), 1e-4, 1e-4));  // the training rows', not val's
  CHECK(norm->forward(f.data.train[1]).std().item<double>() == doctest::Approx(1.0).epsilon(0.05));
  const auto best = f.dir.path / "run" / "checkpoints" / read_text(f.dir.path / "run" / "checkpoints" / "best");
  CHECK(fs::exists(best / "norm.b.safetensors"));
}

TEST_CASE("the learning-rate schedule: linear warmup, then cosine to zero") {
  const WarmupCosineSchedule s(1.0, 10, 110);
  CHECK(s.lr(0) == doctest::Approx(0.1));
  CHECK(s.lr(9) == doctest::Approx(1.0));
  CHECK(s.lr(10) == doctest::Approx(1.0));
  CHECK(s.lr(60) == doctest::Approx(0.5));
  CHECK(s.lr(110) == doctest::Approx(0.0));
  CHECK(s.lr(500) == doctest::Approx(0.0));
  CHECK(s.lr(60, 0.5) == doctest::Approx(0.25));
  const WarmupCosineSchedule flat(0.3, 0, 1);
  CHECK(flat.lr(0) == doctest::Approx(0.3));
}

TEST_CASE("the checkpoint keeper: a better loss becomes the best, a worse one rolls back with half the rate") {
  TrainingFixture f;
  const auto run = (f.dir.path / "kept").string();
  torch::optim::AdamW optimizer(f.sys->trainable_modules()[2].second->parameters(), torch::optim::AdamWOptions(0.01));
  auto sampler = at::detail::createCPUGenerator(7);
  std::vector<nlohmann::json> logged;
  KeeperOptions ko;
  ko.patience = 2;
  CheckpointKeeper keeper(run, {f.sys->trainable_modules(), optimizer, sampler}, ko, [&](const nlohmann::json& j) { logged.push_back(j); }, true);
  auto& s = keeper.state();
  s.best_val = 1.0;
  s.initial_variance = 1.0;
  s.best_dir = "step-00000000";
  keeper.save();

  s.step = 10;
  CHECK(keeper.judge(0.9, 1.0) == CheckpointKeeper::Verdict::Improved);
  CHECK(s.best_step == 10);
  CHECK(s.best_dir == "step-00000010");
  const auto best = weights_digest(*f.sys);

  // The weights move on; a loss above 1.05 x the best brings back the best checkpoint's.
  torch::NoGradGuard no_grad;
  for (auto& p : f.sys->trainable_modules()[2].second->parameters()) p.add_(1.0);
  CHECK(weights_digest(*f.sys) != best);
  s.step = 20;
  CHECK(keeper.judge(0.96, 1.0) == CheckpointKeeper::Verdict::RolledBack);
  CHECK(weights_digest(*f.sys) == best);
  CHECK(s.step == 20);  // the schedule goes on
  CHECK(s.lr_factor == 0.5);
  CHECK(s.rollbacks == 1);
  CHECK(logged.back().at("rollback").get<std::string>().rfind("validation loss 0.960000 > 1.050000 x best 0.900000", 0) == 0);
  // Not better twice (a rollback counts): patience 2 stops the run.
  CHECK(s.stale_validations == 1);
  s.step = 30;
  CHECK(keeper.judge(0.91, 1.0) == CheckpointKeeper::Verdict::NotBetter);
  CHECK(s.stopped_early);
  // A collapsing shared space ends training with an error.
  CHECK_THROWS_WITH_AS(keeper.judge(0.5, 1e-4), doctest::Contains("the shared space collapsed at step 30"), TrainingError);
  // finish() restores the best checkpoint and names it.
  const auto at_end = keeper.finish();
  CHECK(at_end.step == 30);
  CHECK(weights_digest(*f.sys) == best);
  CHECK(read_text(fs::path(run) / "checkpoints" / "best") == "step-00000010");
}

TEST_CASE("the optimizer's state and the generators are saved as tensors and come back bit for bit") {
  TrainingFixture f({"trainer.steps=20"});
  train(f.comp, *f.sys, {f.data}, f.options("run"));
  const auto dir = f.dir.path / "saved";
  fs::create_directories(dir);
  std::vector<torch::Tensor> params;
  for (const auto& [name, module] : f.sys->trainable_modules())
    for (auto& p : module->parameters()) {
      p.set_requires_grad(true);
      p.mutable_grad() = torch::Tensor();  // training left gradients; these steps make their own
      params.push_back(p);
    }
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(0.01).weight_decay(0.1).betas({0.8, 0.9}));
  // Three steps on a loss that reaches some parameters only: the others have no state yet.
  for (int i = 0; i < 3; ++i) {
    optimizer.zero_grad();
    (params[0].pow(2).sum() + params[1].sin().sum()).backward();
    optimizer.step();
  }
  const auto names = optimizer_parameter_names(f.sys->trainable_modules(), optimizer);
  REQUIRE(names.size() == params.size());
  for (const auto& n : names) CHECK((n && n->find('/') != std::string::npos));
  save_optimizer_state(optimizer, names, dir);
  auto sampler = at::detail::createCPUGenerator(5);
  auto global = at::detail::createCPUGenerator(6);
  save_generator_states(sampler, global, dir);

  std::vector<torch::Tensor> copies;
  for (const auto& p : params) copies.push_back(p.detach().clone().requires_grad_());
  torch::optim::AdamW restored(copies, torch::optim::AdamWOptions(0.5));
  load_optimizer_state(restored, names, dir);
  auto& o = static_cast<torch::optim::AdamWOptions&>(restored.param_groups()[0].options());
  CHECK(o.weight_decay() == 0.1);
  CHECK(std::get<0>(o.betas()) == 0.8);
  CHECK(restored.state().size() == 2);
  // One more step on both: bitwise the same parameters.
  for (auto* opt : {&optimizer, &restored}) {
    auto& ps = opt == &optimizer ? params : copies;
    opt->zero_grad();
    (ps[0].pow(2).sum() + ps[1].sin().sum()).backward();
    opt->step();
  }
  CHECK(torch::equal(params[0], copies[0]));
  CHECK(torch::equal(params[1], copies[1]));
  auto sampler2 = at::detail::createCPUGenerator(0), global2 = at::detail::createCPUGenerator(0);
  load_generator_states(sampler2, global2, dir);
  CHECK(torch::equal(sampler2.get_state(), sampler.get_state()));
  CHECK(torch::equal(global2.get_state(), global.get_state()));

  // Another composition's optimizer (its parameters in another order) is refused, naming them.
  auto swapped = names;
  std::swap(swapped[0], swapped[1]);
  const std::string misfit = "does not fit this run: parameter 0 is '" + *names[0] + "', the trainer's is '" + *names[1] + "'";
  CHECK_THROWS_WITH_AS(load_optimizer_state(restored, swapped, dir), doctest::Contains(misfit.c_str()), run::CheckpointError);
  std::vector<torch::Tensor> fewer(copies.begin() + 1, copies.end());
  torch::optim::AdamW other(fewer, torch::optim::AdamWOptions(0.5));
  CHECK_THROWS_WITH_AS(load_optimizer_state(other, std::vector<std::optional<std::string>>(fewer.size()), dir),
                       doctest::Contains("parameters, the trainer's has"), run::CheckpointError);
  // The old pickled optimizer is refused unread.
  fs::rename(dir / "optimizer.json", dir / "optimizer.pt");
  fs::remove(dir / "optimizer.safetensors");
  CHECK_THROWS_WITH_AS(load_optimizer_state(restored, names, dir), doctest::Contains("old pickled format (optimizer.pt)"),
                       run::CheckpointRefused);
}
