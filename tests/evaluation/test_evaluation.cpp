// Scoring a trained composition (core/evaluation): the composite beside each teacher's own probe,
// retention and its contract, probe scores kept and reused, and the report (eval.json, table).
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>

#include <numeric>
#include <sstream>

#include "nexus/base/files.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/data/caching.hpp"
#include "nexus/evaluation/report.hpp"
#include "nexus/model/inference.hpp"
#include "nexus/model/system.hpp"
#include "nexus/training/trainer.hpp"
#include "test_support.hpp"
#include "toy_data.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

// The toy composition trained for its 120 steps on cached features.
struct Trained : ToyFixture {
  std::string run_dir = (toy.dir.path / "run").string();

  Trained() {
    torch::manual_seed(1);
    sys = std::make_unique<ComposedSystem>(ComposedSystem::build(comp, reg));
    CachingOptions co;
    co.progress = false;
    cache_features(comp, *sys, store, co);
    TrainOptions to;
    to.run_dir = run_dir;
    to.progress = false;
    train(comp, *sys, load_task_data(comp, *sys, store), to);
  }
  Evaluation evaluate_with(const std::string& probe_dir) {
    EvalOptions o;
    o.probe_dir = probe_dir;
    o.progress = false;
    return evaluate(comp, *sys, store, o);
  }
};

}  // namespace

TEST_CASE("evaluation: the composite beside each teacher's own probe; retention is composite / best probe") {
  Trained t;
  const auto ev = t.evaluate_with("");
  CHECK(ev.teachers == std::vector<std::string>{"pixels", "rows"});
  REQUIRE(ev.tasks.size() == 1);
  const auto& task = ev.tasks[0];
  CHECK(task.task == "toy");
  CHECK(task.rows == 100);
  // The composite's accuracy, computed independently from its head's outputs.
  const auto test = load_split_features(t.comp, *t.sys, t.store, "toy", "test");
  const auto outputs = head_outputs(*t.sys, test.features, "toy", "cls");
  CHECK(task.accuracy == doctest::Approx((outputs.argmax(1) == test.labels).to(torch::kDouble).mean().item<double>()));
  REQUIRE(task.probes.size() == 2);
  CHECK(task.probes[0].teacher == "pixels");
  CHECK(task.probes[0].steps == probe_budget(t.comp));
  const auto best = std::max(task.probes[0].test_accuracy, task.probes[1].test_accuracy);
  CHECK(task.best_probe == best);
  CHECK(task.best_teacher == (task.probes[0].test_accuracy >= task.probes[1].test_accuracy ? "pixels" : "rows"));
  CHECK(task.retention == task.accuracy / best);
  CHECK(task.probes[0].test_accuracy > 0.6);  // the full pixels determine the label: a probe learns it
  CHECK(task.mean_weight[0] + task.mean_weight[1] == doctest::Approx(1.0));
  CHECK(task.contract == 0);
  CHECK_FALSE(task.violated);
  CHECK(ev.violations.empty());
}

TEST_CASE("evaluation: a task below its retention contract is named, with its figures") {
  Trained t;
  const auto retention = t.evaluate_with("").tasks[0].retention;
  t.comp.retention.per_task["toy"] = retention - 0.01;
  CHECK(t.evaluate_with("").violations.empty());
  t.comp.retention.per_task["toy"] = retention + 0.01;
  const auto ev = t.evaluate_with("");
  CHECK(ev.tasks[0].violated);
  REQUIRE(ev.violations.size() == 1);
  CHECK(ev.violations[0].rfind("task 'toy': retention ", 0) == 0);
  CHECK(ev.violations[0].find("< contract") != std::string::npos);
  std::ostringstream table;
  print_table(ev, table);
  CHECK(table.str().find("VIOLATED") != std::string::npos);
  CHECK(table.str().find("retention contract violated: task 'toy'") != std::string::npos);
}

TEST_CASE("evaluation: probe scores are kept, reused while their key holds, retrained when it changes") {
  Trained t;
  const auto probes = t.toy.dir.path / "probes";
  const auto first = t.evaluate_with(probes.string());
  CHECK_FALSE(first.tasks[0].probes[0].reused);
  CHECK(fs::exists(probes / "toy.pixels.json"));
  const auto second = t.evaluate_with(probes.string());
  CHECK(second.tasks[0].probes[0].reused);
  CHECK(second.tasks[0].probes[0].test_accuracy == first.tasks[0].probes[0].test_accuracy);
  // Another recipe (learning rate) is another key; an unreadable score is retrained, not trusted.
  t.comp.trainer.lr = 0.01;
  CHECK_FALSE(t.evaluate_with(probes.string()).tasks[0].probes[0].reused);
  std::ofstream(probes / "toy.rows.json") << "{corrupt";
  const auto after = t.evaluate_with(probes.string());
  CHECK(after.tasks[0].probes[0].reused);
  CHECK_FALSE(after.tasks[0].probes[1].reused);
}

TEST_CASE("evaluation report: eval.json holds what was printed, with probes and routing per teacher") {
  Trained t;
  const auto report = evaluate_run(t.comp, *t.sys, t.store, t.run_dir, false);
  CHECK(report.ok());
  const auto saved = nlohmann::json::parse(read_file(fs::path(t.run_dir) / "eval.json"));
  CHECK(saved == report.json);
  CHECK(saved.at("teachers") == nlohmann::json{"pixels", "rows"});
  const auto& task = saved.at("tasks")[0];
  CHECK(task.at("accuracy").get<double>() == report.evaluation.tasks[0].accuracy);
  CHECK(task.at("probes").at("rows").at("steps").get<int64_t>() == probe_budget(t.comp));
  CHECK(task.at("routing").at("pixels").at("mean_weight").get<double>() == report.evaluation.tasks[0].mean_weight[0]);
  CHECK(fs::exists(fs::path(t.run_dir) / "probes" / "toy.pixels.json"));
}

TEST_CASE("evaluation: the all-teachers concatenated probe beside the single ones; routing per class adds up") {
  Trained t;
  const auto probes = t.toy.dir.path / "probes";
  const auto ev = t.evaluate_with(probes.string());
  const auto& task = ev.tasks[0];
  REQUIRE(task.concat_probe.has_value());
  CHECK(task.concat_teachers == std::vector<std::string>{"pixels", "rows"});
  CHECK(task.concat_probe->steps == probe_budget(t.comp));
  // pixels alone determine the label and rows are a function of pixels: the concatenation knows
  // at least what pixels know, give or take the optimiser.
  CHECK(task.concat_probe->test_accuracy > task.probes[0].test_accuracy - 0.05);
  CHECK(fs::exists(probes / "toy.+concat.json"));
  CHECK(t.evaluate_with(probes.string()).tasks[0].concat_probe->reused);
  // Per class: every test row counted once, each class's weights a distribution over the teachers,
  // and the row-weighted mean over classes is the task's mean weight.
  const auto& c = task.class_routing;
  REQUIRE(c.classes == std::vector<std::string>{"a", "b", "c"});
  CHECK(std::accumulate(c.rows.begin(), c.rows.end(), int64_t(0)) == task.rows);
  double pixels = 0;
  for (size_t k = 0; k < c.classes.size(); ++k) {
    CHECK(c.weights[k][0] + c.weights[k][1] == doctest::Approx(1.0).epsilon(1e-5));
    pixels += c.weights[k][0] * double(c.rows[k]) / double(task.rows);
  }
  CHECK(pixels == doctest::Approx(task.mean_weight[0]).epsilon(1e-4));
  const auto json = to_json(ev).at("tasks")[0];
  CHECK(json.at("concat_probe").at("test_accuracy").get<double>() == task.concat_probe->test_accuracy);
  CHECK(json.at("routing_per_class").at("teachers") == nlohmann::json{"pixels", "rows"});
  std::ostringstream table;
  print_table(ev, table);
  CHECK(table.str().find("all concatenated") != std::string::npos);
}
