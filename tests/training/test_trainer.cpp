// Training hygiene: rollback on NaN, collapse detection, resume.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>
#include <nlohmann/json.hpp>

#include "nexus/config/composition.hpp"
#include "nexus/model/system.hpp"
#include "nexus/training/keeper.hpp"
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
  for (auto file : {"tower.a.pt", "tower.b.pt", "router.pt", "head.cls.pt", "optimizer.pt", "state.json"})
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
  CHECK(fs::exists(best / "norm.b.pt"));
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
  CheckpointKeeper keeper(run, {*f.sys, optimizer, sampler}, ko, [&](const nlohmann::json& j) { logged.push_back(j); }, true);
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
