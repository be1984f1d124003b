// Growing and shrinking a trained run (core/increments): what a plan keeps and trains, the plans
// it refuses, carrying the kept components over bit for bit, editing compositions, the proof.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <sstream>

#include <nexus/plugin_api.hpp>

#include "nexus/config/composition.hpp"
#include "nexus/config/loader.hpp"
#include "nexus/increments/carry_over.hpp"
#include "nexus/increments/edit.hpp"
#include "nexus/increments/plan.hpp"
#include "nexus/increments/proof.hpp"
#include "nexus/increments/repair.hpp"
#include "nexus/data/task_features.hpp"
#include "nexus/model/inference.hpp"
#include "nexus/model/system.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

std::string teacher(const std::string& name, int width, const std::string& tower = "linear",
                    const std::string& modality = "tensor") {
  std::string shape = "[";  // appended, not "[" + std::to_string(...): GCC 12 at C++20 warns falsely on that
  shape += std::to_string(width) + "]";
  return torchscript_teacher(name, modality, shape, "def forward(self, x):\\n    return x * 1.0", "{plugin: " + tower + "}");
}

std::string composition(const std::string& teachers) {
  return test_composition("inc", teachers, "synth", 3, "data:\n  tasks:\n    synth: {dataset: none, modality: tensor}\n");
}

struct Systems {
  TempDir dir;
  const registry::Registry& reg = builtin_registry();
  int files = 0;

  config::Composition load(const std::string& text) {
    const auto path = (dir.path / ("c" + std::to_string(files++) + ".yaml")).string();
    std::ofstream(path) << text;
    return config::load_composition(path, {}, plugin_catalog(reg));
  }
  ComposedSystem build(const config::Composition& c, uint64_t seed) {
    torch::manual_seed(seed);
    return ComposedSystem::build(c, reg);
  }
};

at::Tensor router_weight(const ComposedSystem& sys) {
  for (const auto& p : sys.router()->named_parameters())
    if (p.value().dim() == 2) return p.value();
  throw std::runtime_error("no router matrix");
}

}  // namespace

TEST_CASE("increment plan: a new teacher trains its tower and the router; everything kept is frozen") {
  Systems s;
  const auto base = s.load(composition(teacher("a", 6) + teacher("b", 4)));
  const auto next = s.load(composition(teacher("a", 6) + teacher("b", 4) + teacher("c", 5)));
  const auto bs = s.build(base, 1), ns = s.build(next, 2);
  const auto plan = plan_increment(base, bs, next, ns, true);
  CHECK(plan.added_teachers == std::vector<std::string>{"c"});
  CHECK(plan.kept_teachers == std::vector<std::string>{"a", "b"});
  CHECK(plan.removed_teachers.empty());
  CHECK(plan.kept_heads == std::vector<std::string>{"cls"});
  CHECK(plan.frozen == std::set<std::string>{"norm.a", "tower.a", "norm.b", "tower.b", "head.cls"});
  CHECK(plan.trained == std::vector<std::string>{"norm.c", "tower.c", "router"});
  CHECK(plan.changes_anything());
  CHECK(plan.notes.empty());
  // Without retraining the router, it is frozen too (and mapped by carry_over).
  CHECK(plan_increment(base, bs, next, ns, false).frozen.count("router"));
}

TEST_CASE("increment plan: a teacher whose tower or weights changed counts as new, and says why") {
  Systems s;
  const auto base = s.load(composition(teacher("a", 6) + teacher("b", 4)));
  auto changed = composition(teacher("a", 6, "mlp") + teacher("b", 4));
  const auto next = s.load(changed);
  const auto plan = plan_increment(base, s.build(base, 1), next, s.build(next, 1), true);
  CHECK(plan.added_teachers == std::vector<std::string>{"a"});
  REQUIRE(plan.notes.size() == 1);
  CHECK(plan.notes[0] == "the tower of teacher 'a' changed: retrained");
  auto other = composition(teacher("a", 6) + teacher("b", 4));
  other.replace(other.find("x * 1.0"), 7, "x * 2.0");  // teacher a's "weights"
  const auto next2 = s.load(other);
  const auto plan2 = plan_increment(base, s.build(base, 1), next2, s.build(next2, 1), true);
  CHECK(plan2.added_teachers == std::vector<std::string>{"a"});
  CHECK(plan2.notes.at(0).rfind("teacher 'a' changed (fingerprint ", 0) == 0);
  // Removing a teacher and a head.
  const auto smaller = s.load(composition(teacher("a", 6)));
  const auto plan3 = plan_increment(base, s.build(base, 1), smaller, s.build(smaller, 1), true);
  CHECK(plan3.removed_teachers == std::vector<std::string>{"b"});
  CHECK(plan3.trained == std::vector<std::string>{"router"});
}

TEST_CASE("increment plan: changing nothing, or adding a teacher no head can use, is refused") {
  Systems s;
  const auto base = s.load(composition(teacher("a", 6)));
  const auto bs = s.build(base, 1);
  const auto same = plan_increment(base, bs, base, bs, true);
  CHECK_THROWS_WITH_AS(check_plan(same, base, bs, "runs/base"),
                       "the composition adds and removes no teacher or head of run runs/base: nothing to train "
                       "incrementally (train it from scratch without --from)",
                       InputError);
  const auto with_image = s.load(composition(teacher("a", 6) + teacher("img", 16, "linear", "image")));
  const auto is = s.build(with_image, 1);
  try {
    check_plan(plan_increment(base, bs, with_image, is, true), with_image, is, "runs/base");
    FAIL("an image teacher with only tensor heads was accepted");
  } catch (const config::ConfigError& e) {
    const auto& d = e.diagnostics().at(0);
    CHECK(d.message == "teacher 'img' takes image inputs, and no head trains on an image task");
    CHECK(d.loc.line == 9);  // the teacher's entry in the new composition
    CHECK(d.hint.find("the run's heads take tensor inputs") == 0);
  }
}

TEST_CASE("carry-over: kept components bit for bit, the router's rows follow their teachers by name") {
  Systems s;
  const auto base = s.load(composition(teacher("a", 6) + teacher("b", 4)));
  const auto next = s.load(composition(teacher("c", 5) + teacher("a", 6) + teacher("b", 4)));
  const auto bs = s.build(base, 1);
  auto ns = s.build(next, 2);
  const auto plan = plan_increment(base, bs, next, ns, true);
  const auto fresh = router_weight(ns).clone();
  CHECK(carry_over(plan, bs, ns) == "");
  for (const auto& name : plan.frozen) CHECK_MESSAGE(module_digest(bs, name) == module_digest(ns, name), name);
  const auto from = router_weight(bs);
  const auto to = router_weight(ns);
  REQUIRE(to.size(0) == 3);
  CHECK(torch::equal(to[1], from[0]));  // a moved from row 0 to row 1
  CHECK(torch::equal(to[2], from[1]));  // b from 1 to 2
  CHECK(torch::equal(to[0], fresh[0]));  // the new teacher keeps its fresh initialisation
  // Removing a teacher drops its row.
  const auto smaller = s.load(composition(teacher("b", 4)));
  auto ss = s.build(smaller, 3);
  CHECK(carry_over(plan_increment(base, bs, smaller, ss, false), bs, ss) == "");
  CHECK(torch::equal(router_weight(ss)[0], from[1]));
}

TEST_CASE("composition edits: a teacher file is appended with its paths resolved; a removal takes what only it served") {
  Systems s;
  const auto catalog = plugin_catalog(s.reg);
  auto tree = config::load_string(composition(teacher("a", 6) + teacher("img", 16, "linear", "image")), "base.yaml");
  tree.find("heads")->items.push_back(config::load_string("{name: pics, task: pics, outputs: 2, plugin: linear}", "pics.yaml"));
  const auto sub = s.dir.path / "teachers";
  fs::create_directories(sub);
  std::ofstream(sub / "t.yaml") << "name: t\nplugin: torchscript\noptions: {path: model.pt, modality: tensor, input_shape: [3]}\n"
                                   "tower: {plugin: linear}\n";
  add_teacher_file(tree, (sub / "t.yaml").string(), catalog);
  const auto& added = tree.find("teachers")->items.back();
  CHECK(added.find("options")->find("path")->scalar == (sub / "model.pt").string());
  std::ofstream(sub / "clash.yaml") << "teachers: []\ndata: {tasks: {synth: {dataset: x, modality: tensor}}}\n";
  CHECK_THROWS_WITH_AS(add_teacher_file(tree, (sub / "clash.yaml").string(), catalog),
                       doctest::Contains("task 'synth' is already defined by the run's composition"), config::ConfigError);
  std::ofstream(sub / "odd.yaml") << "teachers: []\nrouters: {}\n";
  CHECK_THROWS_WITH_AS(add_teacher_file(tree, (sub / "odd.yaml").string(), catalog),
                       doctest::Contains("unexpected key 'routers' in a teacher file"), config::ConfigError);

  const auto base = s.load(composition(teacher("a", 6) + teacher("img", 16, "linear", "image")));
  const auto bs = s.build(base, 1);
  CHECK_THROWS_WITH_AS(plan_removal(base, bs, "nope", "r"), "run r has no teacher 'nope' (it has a, img)", InputError);
  const auto one = s.load(composition(teacher("a", 6)));
  CHECK_THROWS_WITH_AS(plan_removal(one, s.build(one, 1), "a", "r"), "'a' is the run's only teacher: nothing would be left",
                       InputError);
  auto removal = plan_removal(base, bs, "img", "r");
  CHECK(removal.lost_heads.empty());  // only tensor heads here: removing the image teacher loses nothing
  removal.lost_heads = {"pics"};
  removal.lost_tasks = {"pics"};
  remove_teacher(tree, removal);
  CHECK(tree.find("teachers")->items.size() == 2);  // a and t
  CHECK(tree.find("heads")->items.size() == 1);
}

TEST_CASE("proof.json: checksums where they exist, the verdict from violations and frozen components") {
  Proof p;
  p.kind = "add-teacher";
  p.components = {{"tower.a", "frozen", std::string("abc"), "abc", true}, {"tower.c", "new", std::nullopt, "def", std::nullopt}};
  p.tasks.push_back({"synth", 0.5, 0.6, 1.01, 0.97, false, {}, {{"c", 0.55}}});
  auto j = to_json(p);
  CHECK(j.at("status") == "ok");
  CHECK(j.at("format") == 1);
  CHECK(j.at("components")[0].at("identical") == true);
  CHECK_FALSE(j.at("components")[1].contains("before"));
  CHECK_FALSE(j.at("components")[1].contains("identical"));
  CHECK(j.at("tasks")[0].at("before") == 0.5);
  CHECK(j.at("tasks")[0].at("new_teacher_probes").at("c") == 0.55);
  CHECK_FALSE(j.contains("full_retrain"));
  p.frozen_identical = false;
  CHECK(to_json(p).at("status") == "failing");
  p.frozen_identical = true;
  p.violations = {"task 'synth': retention 0.9 < contract 0.97"};
  CHECK(to_json(p).at("status") == "failing");
  std::ostringstream out;
  print_proof(p, out);
  CHECK(out.str().find("tower.a") != std::string::npos);
  CHECK(out.str().find("identical") != std::string::npos);
  CHECK(out.str().find("status: failing") != std::string::npos);
}

namespace {

// Two tensor teachers on one task and an image teacher on another, each task with its head.
std::string two_modalities() {
  return "nexus: 1\nname: repair\nshared_dim: 8\nteachers:\n" + teacher("a", 6) + teacher("b", 4) +
         torchscript_teacher("i", "image", "[1, 2, 2]", "def forward(self, x):\\n    return x.flatten(1)") +
         "router: {plugin: softmax}\nheads:\n  - {name: cls, task: synth, outputs: 3, plugin: linear}\n"
         "  - {name: pic, task: pics, outputs: 2, plugin: linear}\nlosses:\n  - {plugin: cross_entropy, head: cls}\n"
         "  - {plugin: cross_entropy, head: pic}\ndata:\n  tasks:\n    synth: {dataset: none, modality: tensor}\n"
         "    pics: {dataset: none, modality: image}\nretention: {default: 0.9, tasks: {pics: 0.5}}\n";
}

std::set<std::string> everything(const ComposedSystem& sys) {
  std::set<std::string> all;
  for (const auto& [name, module] : sys.trainable_modules()) all.insert(name);
  return all;
}

TaskData task_data(const std::string& task, const std::string& head, std::vector<int64_t> widths, int64_t classes) {
  TaskData d;
  d.task = task;
  d.head = head;
  for (const auto w : widths) {
    d.train.push_back(w ? torch::randn({40, w}) : at::Tensor());
    d.val.push_back(w ? torch::randn({30, w}) : at::Tensor());
  }
  d.train_labels = torch::randint(classes, {40}, torch::kLong);
  d.val_labels = torch::randint(classes, {30}, torch::kLong);
  return d;
}

}  // namespace

TEST_CASE("repair policy: auto widens as needed up to heads; a named scope runs every stage up to it") {
  CHECK(parse_repair_policy("auto").scope == RepairScope::Heads);
  CHECK(parse_repair_policy("auto").when == RepairPolicy::When::AsNeeded);
  CHECK(parse_repair_policy("towers").scope == RepairScope::Towers);
  CHECK(parse_repair_policy("towers").when == RepairPolicy::When::Always);
  CHECK(parse_repair_policy("none").scope == RepairScope::None);
  CHECK(to_string(parse_repair_policy("auto")) == "auto");
  CHECK(to_string(parse_repair_policy("heads")) == "heads");
  CHECK_THROWS_WITH_AS(parse_repair_policy("all"), doctest::Contains("auto, router, towers, heads or none"), InputError);
}

TEST_CASE("repair widening: towers of the failing task's modality, then its head; never another modality's, never norms") {
  Systems s;
  const auto comp = s.load(two_modalities());
  const auto sys = s.build(comp, 3);
  const std::vector<ContractCheck> checks{{"synth", "a", 0.5, 0.8, 0.625, 0.9}};
  auto frozen = everything(sys);
  frozen.erase("router");

  const auto towers = widen(RepairScope::Towers, {"synth"}, comp, sys, frozen, checks);
  CHECK(towers.components == std::vector<std::string>{"tower.a", "tower.b"});
  CHECK(towers.why.at("tower.a") == "retention synth 0.6250 < 0.90");
  // A tower that already trains (a new teacher's) is not widened again.
  auto partly = frozen;
  partly.erase("tower.b");
  CHECK(widen(RepairScope::Towers, {"synth"}, comp, sys, partly, checks).components == std::vector<std::string>{"tower.a"});

  const auto heads = widen(RepairScope::Heads, {"synth"}, comp, sys, frozen, checks);
  CHECK(heads.components == std::vector<std::string>{"head.cls"});
  // The image task's own stages touch only its components; the router stage widens nothing.
  CHECK(widen(RepairScope::Towers, {"pics"}, comp, sys, frozen, {}).components == std::vector<std::string>{"tower.i"});
  CHECK(widen(RepairScope::Towers, {"pics"}, comp, sys, frozen, {}).why.at("tower.i") == "--repair towers (pics)");
  // Both kinds of reason, for the tasks of an explicit scope that would have kept their contract.
  const std::vector<ContractCheck> one_fails{{"synth", "a", 0.5, 0.8, 0.625, 0.9}, {"pics", "i", 0.9, 0.9, 1.0, 0.5}};
  CHECK(widen(RepairScope::Heads, {"synth", "pics"}, comp, sys, frozen, one_fails).why.at("head.cls") ==
        "retention synth 0.6250 < 0.90");
  CHECK(widen(RepairScope::Heads, {"synth", "pics"}, comp, sys, frozen, one_fails).why.at("head.pic") == "--repair heads (pics)");
  CHECK(widen(RepairScope::Heads, {"pics"}, comp, sys, frozen, {}).components == std::vector<std::string>{"head.pic"});
  CHECK(widen(RepairScope::Router, {"synth", "pics"}, comp, sys, frozen, checks).components.empty());
  for (const auto scope : {RepairScope::Towers, RepairScope::Heads})
    for (const auto& name : widen(scope, {"synth", "pics"}, comp, sys, frozen, checks).components)
      CHECK(name.rfind("norm.", 0) == std::string::npos);
}

TEST_CASE("repair: a task is trained only when something that trains can change its outputs") {
  Systems s;
  const auto comp = s.load(two_modalities());
  auto sys = s.build(comp, 4);
  const auto synth = task_data("synth", "cls", {6, 4, 0}, 3);
  const auto pics = task_data("pics", "pic", {0, 0, 4}, 2);
  auto frozen = everything(sys);
  CHECK_FALSE(can_change(sys, synth, frozen));
  CHECK_FALSE(can_change(sys, pics, frozen));
  frozen.erase("router");  // two teachers weigh synth; the image teacher alone has weight exactly 1
  CHECK(can_change(sys, synth, frozen));
  CHECK_FALSE(can_change(sys, pics, frozen));
  auto towers = everything(sys);
  towers.erase("tower.a");
  CHECK(can_change(sys, synth, towers));
  CHECK_FALSE(can_change(sys, pics, towers));
  auto head = everything(sys);
  head.erase("head.pic");
  CHECK(can_change(sys, pics, head));
  CHECK_FALSE(can_change(sys, synth, head));
}

TEST_CASE("repair: the contract is judged as the gate judges it: the test split against the best probe's test accuracy") {
  Systems s;
  const auto comp = s.load(two_modalities());
  auto sys = s.build(comp, 5);
  SplitFeatures test;
  test.features = {torch::randn({30, 6}), torch::randn({30, 4}), at::Tensor()};
  test.labels = torch::randint(3, {30}, torch::kLong);
  ProbeScore a, b;
  a.teacher = "a";
  a.val_accuracy = 0.9;  // a probe's validation accuracy (selected on it) never decides
  a.test_accuracy = 0.4;
  b.teacher = "b";
  b.val_accuracy = 0.1;
  b.test_accuracy = 0.5;
  const auto& head = comp.heads.at(0);
  const auto c = check_contract(comp, sys, test, head, {a, b});
  const double composite =
      (head_outputs(sys, test.features, "synth", "cls").argmax(1) == test.labels).to(torch::kDouble).mean().item<double>();
  CHECK(c.task == "synth");
  CHECK(c.best_teacher == "b");
  CHECK(c.best_probe == 0.5);
  CHECK(c.composite == doctest::Approx(composite));
  CHECK(c.retention == doctest::Approx(composite / 0.5));
  CHECK(c.contract == 0.9);
  CHECK(c.holds() == (composite / 0.5 >= 0.9));
  SplitFeatures pics;
  pics.features = {at::Tensor(), at::Tensor(), torch::randn({10, 4})};
  pics.labels = torch::randint(2, {10}, torch::kLong);
  CHECK(check_contract(comp, sys, pics, comp.heads.at(1), {b}).contract == 0.5);  // retention.tasks
}

TEST_CASE("proof.json: repair stages round-trip, widened components say why") {
  RepairStage st{RepairScope::Towers, {"tower.a"}, {"synth"}, 75, 40, "repair/2-towers",
                 {{"synth", "a", 0.7, 0.8, 0.875, 0.97}}, {{"tower.a", "synth would miss its contract"}}};
  const auto back = repair_stage_from_json(to_json(st));
  CHECK(back.scope == RepairScope::Towers);
  CHECK(back.widened == st.widened);
  CHECK(back.why == st.why);
  CHECK(back.steps == 75);
  CHECK(back.folder == "repair/2-towers");
  REQUIRE(back.checks.size() == 1);
  CHECK_FALSE(back.checks[0].holds());
  CHECK(back.checks[0].retention == 0.875);
  Proof p;
  p.kind = "remove-teacher";
  p.repair_policy = "auto";
  p.stages = {st};
  p.components.push_back({"tower.a", "widened", std::string("0011"), "2233", std::nullopt, "synth would miss its contract"});
  const auto j = to_json(p);
  CHECK(j["repair"]["policy"] == "auto");
  CHECK(j["repair"]["stages"][0]["checks"][0]["holds"] == false);
  CHECK(back.best_step == 40);
  CHECK(j["components"][0]["why"] == "synth would miss its contract");
  std::ostringstream out;
  print_proof(p, out);
  CHECK(out.str().find("widened by the repair") != std::string::npos);
  CHECK(out.str().find("2. towers  also trains tower.a on synth, 75 steps") == std::string::npos);  // one stage: numbered 1
  CHECK(out.str().find("1. towers  trains tower.a on synth, 75 steps") != std::string::npos);
  CHECK(out.str().find("synth 0.7000 / 0.8000 (a) = 0.8750 < 0.97  would fail") != std::string::npos);
  p.stages[0].best_step = 0;
  std::ostringstream kept;
  print_proof(p, kept);
  CHECK(kept.str().find("kept the weights it started from") == std::string::npos);  // only said of a widening stage
}
