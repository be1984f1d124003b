// Serving without HTTP: the endpoints' answers, the micro-batcher and hot swaps (core/serving).
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>

#include <future>
#include <thread>

#include "nexus/config/composition.hpp"
#include "nexus/model/system.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/run/run_folder.hpp"
#include "nexus/serving/batcher.hpp"
#include "nexus/serving/requests.hpp"
#include "nexus/serving/service.hpp"
#include "nexus/training/trainer.hpp"
#include "synthetic_training.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

// Two teachers of one input (6 numbers); teacher `a` refuses an input with a value above 3, or one
// that starts with two values of 1 (255 as served), as a teacher that breaks on some inputs would.
const std::string kServed = test_composition(
    "served",
    torchscript_teacher("a", "tensor", "[6]", "def forward(self, x):\\n    assert bool((x <= 3.0).all()) and not bool(((x[:, 0] == 1.0) & (x[:, 1] == 1.0)).any()), "
                        "\\\"poisoned input\\\"\\n    return x") +
        torchscript_teacher("b", "tensor", "[6]", "def forward(self, x):\\n    return x[:, :4] * 2.0", "{plugin: mlp, options: {hidden: 16}}"),
    "synth", 3, synthetic_training(40));

// Trained runs of kServed (a few steps each, from the teachers' own outputs), with run.json.
struct ServedRuns {
  TempDir dir;
  std::string composition = (dir.path / "served.yaml").string();
  const registry::Registry& reg = builtin_registry();

  ServedRuns() { std::ofstream(composition) << kServed; }

  std::string train_run(const std::string& name, int64_t seed) {
    const auto comp = config::load_composition(composition, {"trainer.seed=" + std::to_string(seed)}, plugin_catalog(reg));
    torch::manual_seed(uint64_t(seed));
    auto sys = ComposedSystem::build(comp, reg);
    auto gen = at::detail::createCPUGenerator(uint64_t(seed) + 11);
    const auto x = torch::rand({256, 6}, gen);
    const auto labels = x.narrow(1, 0, 3).argmax(1);
    const auto fb = x.narrow(1, 0, 4) * 2.0;
    TaskData data{"synth", "cls", {x.narrow(0, 0, 192), fb.narrow(0, 0, 192)}, {x.narrow(0, 192, 64), fb.narrow(0, 192, 64)},
                  labels.narrow(0, 0, 192), labels.narrow(0, 192, 64)};
    TrainOptions o;
    o.run_dir = (dir.path / name).string();
    o.progress = false;
    train(comp, sys, {data}, o);
    run::write_run_info(o.run_dir, {composition, "", {"trainer.seed=" + std::to_string(seed)}, "", "", {}}, plugin_catalog(reg));
    return o.run_dir;
  }

  serving::ServiceOptions options(const std::string& token = "") {
    serving::ServiceOptions o;
    o.admin_token = token;
    o.device = "cpu";
    o.scan = [] { return builtin_registry(); };  // a copy of the scan: what a rescan finds here
    return o;
  }

  // The run's own system with its weights: what a server must answer.
  std::unique_ptr<ComposedSystem> loaded(const std::string& run_dir) {
    const auto comp = run::load_run_composition(run::read_run_info(run_dir), plugin_catalog(reg));
    auto sys = std::make_unique<ComposedSystem>(ComposedSystem::build(comp, reg));
    run::load_run_weights(*sys, run_dir);
    return sys;
  }
};

std::string predict_body(const std::vector<std::vector<double>>& inputs) {
  return nlohmann::json{{"task", "synth"}, {"inputs", inputs}, {"routing", true}}.dump();
}

// Softmax scores of the run's own system on pixel-style inputs (values / 255, as served).
at::Tensor expected_scores(ComposedSystem& sys, const std::vector<std::vector<double>>& inputs) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> rows;
  for (const auto& in : inputs) rows.push_back(torch::tensor(in, torch::kFloat) / 255.0f);
  TeacherInput batch;
  batch.tensor = torch::stack(rows);
  return torch::softmax(sys.forward(batch, "tensor", "synth").heads.at("cls"), 1);
}

}  // namespace

TEST_CASE("serving: predictions are the run's own outputs, from one named snapshot") {
  ServedRuns runs;
  const auto run = runs.train_run("run", 3);
  serving::Service service(run, runs.options());
  const auto version = service.snapshot()->version;
  CHECK(version.rfind("run@step-", 0) == 0);
  CHECK(version.find('#') != std::string::npos);

  const std::vector<std::vector<double>> inputs{{10, 200, 30, 40, 50, 60}, {250, 5, 5, 5, 5, 5}, {0, 0, 255, 0, 0, 0}};
  const auto reply = service.predict(predict_body(inputs));
  REQUIRE(reply.status == 200);
  CHECK(reply.body.at("version") == version);
  const auto want = expected_scores(*runs.loaded(run), inputs);
  const auto& preds = reply.body.at("predictions");
  REQUIRE(preds.size() == 3);
  for (int64_t i = 0; i < 3; ++i) {
    CHECK(preds[size_t(i)].at("label").get<int64_t>() == want[i].argmax().item<int64_t>());
    for (int64_t k = 0; k < 3; ++k)
      CHECK(preds[size_t(i)].at("scores")[size_t(k)].get<double>() == doctest::Approx(want[i][k].item<double>()).epsilon(1e-5));
    const auto& routing = preds[size_t(i)].at("routing");
    CHECK(routing.at("a").get<double>() + routing.at("b").get<double>() == doctest::Approx(1.0));
  }
  const auto embed = service.embed(nlohmann::json{{"task", "synth"}, {"inputs", inputs}}.dump());
  REQUIRE(embed.status == 200);
  CHECK(embed.body.at("embeddings").size() == 3);
  CHECK(embed.body.at("embeddings")[0].size() == 8);
  CHECK(service.readyz().body.at("version") == version);
}

TEST_CASE("serving: malformed requests are answered 4xx with the reason, and counted") {
  ServedRuns runs;
  serving::Service service(runs.train_run("run", 3), runs.options());
  auto ask = [&](const std::string& body) { return service.answer("predict", [&] { return service.predict(body); }); };
  auto error_of = [](const serving::Reply& r) { return r.body.at("error").get<std::string>(); };

  auto r = ask("{not json");
  CHECK(r.status == 400);
  CHECK(error_of(r).rfind("malformed JSON", 0) == 0);
  CHECK(ask("[1, 2]").status == 400);
  r = ask(R"({"inputs": [[1,2,3,4,5,6]]})");
  CHECK(r.status == 400);
  CHECK(error_of(r) == "'task' (a string) is required");
  r = ask(R"({"task": "nope", "inputs": [[1,2,3,4,5,6]]})");
  CHECK(r.status == 404);
  CHECK(error_of(r) == "unknown task 'nope' (this run serves synth)");
  r = ask(R"({"task": "synth", "inputs": [[1,2,3,4,5]]})");
  CHECK(r.status == 400);
  CHECK(error_of(r) == "an image must have 6 values, got 5 (shape 6)");
  r = ask(predict_body(std::vector<std::vector<double>>(257, std::vector<double>(6, 1.0))));
  CHECK(r.status == 400);
  CHECK(error_of(r) == "at most 256 inputs per request, got 257");
  // A teacher that throws on an input: 422 naming the incident (the teacher's message, which may
  // name its files, goes to the log only), and the server goes on.
  r = ask(predict_body({{255, 255, 1, 1, 1, 1}}));
  CHECK(r.status == 422);
  CHECK(error_of(r) == "the system could not process these inputs (incident 1 in the server log)");
  CHECK(ask(predict_body({{1, 1, 1, 1, 1, 1}})).status == 200);

  const auto metrics = service.metrics_text();
  CHECK(metrics.find("nexus_requests_total{endpoint=\"predict\",code=\"400\"} 5") != std::string::npos);
  CHECK(metrics.find("nexus_requests_total{endpoint=\"predict\",code=\"404\"} 1") != std::string::npos);
  CHECK(metrics.find("nexus_requests_total{endpoint=\"predict\",code=\"422\"} 1") != std::string::npos);
  CHECK(metrics.find("nexus_request_seconds_count{endpoint=\"predict\"} 8") != std::string::npos);

  // Bounded request JSON: every one of these is a 400 before any forward. The deep one crashed
  // the server (a recursive walk over the image), "routing" of another type was a 500 after the
  // forward, and 1e300 was cast to float (undefined behaviour).
  const auto deep = R"({"task": "synth", "inputs": [)" + std::string(100000, '[') + std::string(100000, ']') + "]}";
  const std::vector<std::pair<std::string, std::string>> refused{
      {deep, "JSON nested more than 32 levels deep"},
      {R"({"task": "synth", "inputs": [[1,2,3,4,5,6]], "routing": "yes"})", "'routing' must be true or false"},
      {R"({"task": "synth", "inputs": [[1,2,3,4,5,6]], "rooting": true})", "unknown field 'rooting' (expected task, inputs, routing)"},
      {R"({"task": "synth", "inputs": [[1e300,2,3,4,5,6]]})", "pixel values must be between 0 and 255, got 1e+300 (shape 6)"},
      {R"({"task": "synth", "inputs": [[-1,2,3,4,5,6]]})", "pixel values must be between 0 and 255, got -1 (shape 6)"},
      {R"({"task": "synth", "inputs": [[true,2,3,4,5,6]]})", "an image must be an array of numbers (0-255), found a boolean (shape 6)"},
      {R"({"task": "synth", "inputs": [[1,2,3,4,5,6,7]]})", "an image must have 6 values, got more (shape 6)"},
      {R"({"task": "synth", "inputs": [[[1,2,3],[4,5,6]]]})", ""},
  };
  for (const auto& [body, message] : refused) {
    r = ask(body);
    if (message.empty()) {
      CHECK(r.status == 200);  // nesting rows is fine: only the count of values matters
      continue;
    }
    CHECK(r.status == 400);
    CHECK(error_of(r) == message);
  }
  r = service.answer("embed", [&] { return service.embed(R"({"task": "synth", "inputs": [[1,2,3,4,5,6]], "routing": true})"); });
  CHECK(r.status == 400);
  CHECK(error_of(r) == "unknown field 'routing' (expected task, inputs)");
  // Anything unexpected is a 500 that names an incident, never the exception's text.
  r = service.answer("predict", []() -> serving::Reply { throw std::runtime_error("cannot open /secret/path/model.pt"); });
  CHECK(r.status == 500);
  CHECK(error_of(r) == "internal error (incident 2 in the server log)");
}

TEST_CASE("metrics: label values are escaped as the text exposition format says") {
  CHECK(serving::escape_label("plain run@step-00000010") == "plain run@step-00000010");
  CHECK(serving::escape_label("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  serving::Metrics m;
  m.request("pre\"dict\n", 200, 0.01);
  const auto text = m.text("run \"x\"");
  CHECK(text.find("nexus_requests_total{endpoint=\"pre\\\"dict\\n\",code=\"200\"} 1\n") != std::string::npos);
  CHECK(text.find("nexus_serving_info{version=\"run \\\"x\\\"\"} 1\n") != std::string::npos);
}

TEST_CASE("micro-batcher: concurrent requests share one forward; an input that breaks it fails only its own request") {
  ServedRuns runs;
  const auto run = runs.train_run("run", 3);
  const auto snapshot = serving::load_snapshot({serving::run_source(run, runs.reg), {}, "cpu"},
                                               std::make_shared<const registry::Registry>(runs.reg));
  std::mutex mutex;
  std::vector<serving::BatchStats> batches;
  serving::MicroBatcher batcher({64, std::chrono::milliseconds(400), false}, [&](const serving::BatchStats& b) {
    std::lock_guard<std::mutex> lock(mutex);
    batches.push_back(b);
  });
  const std::vector<std::vector<double>> inputs{{0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, {0.9, 0.1, 0.1, 0.1, 0.1, 0.1}, {5, 0, 0, 0, 0, 0},
                                                {0.3, 0.3, 0.9, 0.3, 0.3, 0.3}};
  std::vector<std::future<ForwardResult>> answers;
  for (const auto& in : inputs)
    answers.push_back(std::async(std::launch::async, [&, in] {
      TeacherInput t;
      t.tensor = torch::tensor(in, torch::kFloat).unsqueeze(0);
      return batcher.run(snapshot, "synth", t);
    }));
  auto sys = runs.loaded(run);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i == 2) {
      CHECK_THROWS_WITH(answers[i].get(), doctest::Contains("poisoned input"));
      continue;
    }
    const auto got = answers[i].get().heads.at("cls");
    TeacherInput alone;
    alone.tensor = torch::tensor(inputs[i], torch::kFloat).unsqueeze(0);
    torch::NoGradGuard no_grad;
    CHECK(torch::allclose(got, sys->forward(alone, "tensor", "synth").heads.at("cls"), 1e-5, 1e-6));
  }
  int64_t largest = 0, ok_requests = 0, failed_alone = 0;
  for (const auto& b : batches) {
    largest = std::max(largest, b.requests);
    if (!b.failed) ok_requests += b.requests;
    if (b.failed && b.requests == 1) ++failed_alone;
  }
  CHECK(largest >= 2);          // they were batched together
  CHECK(ok_requests == 3);      // every good request was answered exactly once
  CHECK(failed_alone == 1);     // and only the poisoned one failed on its own
}

TEST_CASE("swaps: whole runs and components; a failed swap keeps the old snapshot serving") {
  ServedRuns runs;
  const auto one = runs.train_run("one", 3), two = runs.train_run("two", 4);
  serving::Service service(one, runs.options("secret"));
  const auto first = service.snapshot()->version;
  const auto body = [](const std::string& run, const std::vector<std::string>& components = {}) {
    nlohmann::json j{{"run", run}};
    if (!components.empty()) j["components"] = components;
    return j.dump();
  };
  auto swap = [&](const std::string& b, const std::string& auth) {
    return service.answer("swap", [&] { return service.swap(b, auth); });
  };
  CHECK(swap(body(two), "").status == 401);
  CHECK(swap(body(two), "Bearer wrong").status == 401);
  auto r = swap(body(runs.dir.str() + "/nowhere"), "Bearer secret");
  CHECK(r.status == 422);
  CHECK(r.body.at("error").get<std::string>().rfind("swap rejected, still serving " + first, 0) == 0);
  r = swap(body(two, {"tower.nope"}), "Bearer secret");
  CHECK(r.status == 422);
  CHECK(r.body.at("error").get<std::string>().find("unknown component 'tower.nope'") != std::string::npos);
  CHECK(service.snapshot()->version == first);
  // Rejected swaps keep nothing: only the first load's registry is held.
  CHECK(service.registries_held() == 1);

  // One head from run two over run one: the version names the mix, the outputs are the mix's.
  r = swap(body(two, {"head.cls"}), "Bearer secret");
  REQUIRE(r.status == 200);
  CHECK(r.body.at("previous") == first);
  const auto mixed = service.snapshot()->version;
  CHECK(mixed.find("+head.cls=two@step-") != std::string::npos);
  auto expected = runs.loaded(one);
  auto donor = runs.loaded(two);
  torch::NoGradGuard no_grad;
  for (auto& [name, module] : expected->trainable_modules())
    if (name == "head.cls") {
      auto params = module->named_parameters();
      for (const auto& p : find_module(*donor, name)->named_parameters()) params[p.key()].copy_(p.value());
    }
  const std::vector<std::vector<double>> inputs{{10, 20, 30, 40, 50, 60}};
  const auto reply = service.predict(predict_body(inputs));
  CHECK(reply.body.at("version") == mixed);
  CHECK(reply.body.at("predictions")[0].at("scores")[0].get<double>() ==
        doctest::Approx(expected_scores(*expected, inputs)[0][0].item<double>()).epsilon(1e-5));

  // The whole of run two.
  r = swap(body(two), "Bearer secret");
  REQUIRE(r.status == 200);
  CHECK(service.snapshot()->version.rfind("two@step-", 0) == 0);
  const auto metrics = service.metrics_text();
  CHECK(metrics.find("nexus_swaps_total 2") != std::string::npos);
  CHECK(metrics.find("nexus_swaps_rejected_total 2") != std::string::npos);
  CHECK(service.registries_held() == 3);  // the first load's and one per successful swap
  CHECK(metrics.find("nexus_plugin_registries_held 3") != std::string::npos);

  serving::Service no_admin(one, runs.options());
  CHECK(no_admin.answer("swap", [&] { return no_admin.swap(body(two), "Bearer secret"); }).status == 403);
}

TEST_CASE("run folders are self-contained: a copy elsewhere serves the same predictions without the composition") {
  ServedRuns runs;
  const auto run = runs.train_run("run", 3);
  const std::vector<std::vector<double>> inputs{{10, 200, 30, 40, 50, 60}, {250, 5, 5, 5, 5, 5}};
  const auto want = serving::Service(run, runs.options()).predict(predict_body(inputs)).body.at("predictions");
  CHECK(fs::exists(fs::path(run) / run::kResolvedComposition));
  const auto info = run::read_run_info(run);
  CHECK_FALSE(info.changed);
  CHECK(info.overrides.empty());  // applied in the run's copy

  // Copied to another folder, the original composition edited and then deleted.
  TempDir elsewhere;
  const auto copy = (elsewhere.path / "moved-run").string();
  fs::copy(run, copy, fs::copy_options::recursive);
  std::ofstream(runs.composition, std::ios::app) << "# edited\n";
  CHECK(run::read_run_info(copy).changed);
  CHECK(run::composition_note(run::read_run_info(copy), copy).find("changed since the run was trained; using the composition "
                                                                  "recorded in the run") != std::string::npos);
  fs::remove(runs.composition);
  fs::remove_all(run);
  const auto got = serving::Service(copy, runs.options()).predict(predict_body(inputs)).body.at("predictions");
  CHECK(got == want);
}
