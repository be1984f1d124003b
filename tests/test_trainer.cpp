// Training hygiene: rollback on NaN, collapse detection, resume.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>

#include "nexus/config/composition.hpp"
#include "nexus/core/system.hpp"
#include "nexus/core/trainer.hpp"
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
