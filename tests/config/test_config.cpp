// Composition loading and validation: the malformed corpus, the good examples, overrides and
// the helpers behind the messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nexus/config/composition.hpp"
#include "nexus/config/diagnostic.hpp"
#include "nexus/config/loader.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace nexus::config;
using nexus::test::TempDir;

namespace {

const std::string kCompositions = std::string(NEXUS_TEST_DATA_DIR) + "/compositions";

// Mirrors the built-in plugins; the tests must not depend on the plugin registry.
PluginCatalog test_catalog() {
  return {
      {"teacher", "torchscript", "1.0.0",
       "path:path!,modality:choice(text|image|audio|id|tensor)=tensor,input_shape:list,width:int"},
      {"tower", "linear", "1.0.0", "d_in:int!,d_out:int!,bias:bool=true"},
      {"tower", "mlp", "1.0.0",
       "d_in:int!,d_out:int!,hidden:int=256,layers:int=2,activation:choice(relu|gelu|tanh)=gelu,"
       "dropout:float=0"},
      {"router", "softmax", "1.0.0", "d_in:int!,n_experts:int!,temperature:float=1"},
      {"router", "topk", "1.0.0", "d_in:int!,n_experts:int!,k:int=1,temperature:float=1"},
      {"loss", "mse", "1.0.0", ""},
      {"loss", "cosine", "1.0.0", ""},
      {"loss", "cross_entropy", "1.0.0", "label_smoothing:float=0"},
  };
}

std::vector<std::string> yaml_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// Lines "# set: a.b=c" at the top of a good composition are overrides it needs.
std::vector<std::string> header_overrides(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> sets;
  const std::string prefix = "# set: ";
  for (std::string line; std::getline(in, line) && line.rfind("#", 0) == 0;)
    if (line.rfind(prefix, 0) == 0) sets.push_back(line.substr(prefix.size()));
  return sets;
}

// Runs `f` and returns the diagnostics of the ConfigError it must throw.
template <typename F>
std::vector<Diagnostic> config_errors(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.diagnostics();
  }
  return {};
}

std::vector<Diagnostic> validate_text(const std::string& text, Composition* out = nullptr) {
  Composition c;
  Node root = load_string(text, "test.yaml");
  auto diags = validate(root, test_catalog(), c);
  if (out) *out = c;
  return diags;
}

const char* const kMinimal = R"(nexus: 1
name: demo
shared_dim: 256
teachers:
  - name: bert
    plugin: torchscript
    options: {path: bert.pt}
    tower: {plugin: linear}
router: {plugin: softmax}
heads:
  - {name: cls, task: sentiment, outputs: 3, plugin: linear}
losses:
  - {plugin: cross_entropy, head: cls}
)";

}  // namespace

TEST_CASE("every malformed composition fails with the expected first diagnostic") {
  const auto files = yaml_files(kCompositions + "/bad");
  REQUIRE(files.size() >= 30);
  for (const auto& path : files) {
    CAPTURE(path);
    const std::string header = first_line(path);
    const std::string tag = "# expect: ";
    REQUIRE(header.rfind(tag, 0) == 0);
    const std::string expect = header.substr(tag.size());
    const auto c1 = expect.find(':');
    const auto c2 = expect.find(':', c1 + 1);
    REQUIRE(c2 != std::string::npos);
    const int line = std::stoi(expect.substr(0, c1));
    const int col = std::stoi(expect.substr(c1 + 1, c2 - c1 - 1));
    const std::string substring = expect.substr(c2 + 2);

    std::vector<Diagnostic> diags;
    bool threw_config_error = false;
    try {
      load_composition(path, {}, test_catalog());
    } catch (const ConfigError& e) {
      threw_config_error = true;
      diags = e.diagnostics();
    } catch (const std::exception& e) {
      FAIL_CHECK("unexpected exception type: " << e.what());
    }
    REQUIRE(threw_config_error);
    REQUIRE(!diags.empty());
    const Diagnostic& first = diags.front();
    CAPTURE(first.str());
    CHECK(first.loc.file == path);
    CHECK(first.loc.line == line);
    CHECK(first.loc.column == col);
    CHECK(first.message.find(substring) != std::string::npos);
    for (const auto& d : diags) {
      CHECK(!d.loc.file.empty());
      CHECK(d.loc.line >= 1);
      CHECK(d.loc.column >= 1);
    }
  }
}

TEST_CASE("every good composition validates, with the overrides it declares") {
  const auto files = yaml_files(kCompositions + "/good");
  REQUIRE(files.size() >= 3);
  for (const auto& path : files) {
    CAPTURE(path);
    const auto sets = header_overrides(path);
    std::string errors;
    try {
      Composition c = load_composition(path, sets, test_catalog());
      CHECK(c.source == path);
      CHECK(!c.teachers.empty());
    } catch (const ConfigError& e) {
      errors = e.what();
    }
    CHECK_MESSAGE(errors.empty(), errors);
  }
}

TEST_CASE("a composition that needs an override fails without it") {
  const std::string path = kCompositions + "/good/needs_override.yaml";
  REQUIRE(!header_overrides(path).empty());
  auto diags = config_errors([&] { load_composition(path, {}, test_catalog()); });
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message.find("'trainer.lr' must be a number > 0") != std::string::npos);
  Composition c = load_composition(path, header_overrides(path), test_catalog());
  CHECK(c.trainer.lr == doctest::Approx(3e-4));
}

TEST_CASE("the full example is read into the typed composition") {
  Composition c = load_composition(kCompositions + "/good/full.yaml", {}, test_catalog());
  CHECK(c.name == "text-image-distill");
  CHECK(c.shared_dim == 512);
  REQUIRE(c.teachers.size() == 2);
  const TeacherSpec& bert = c.teachers[0];
  CHECK(bert.name == "bert-base");
  CHECK(bert.teacher.plugin == "torchscript");
  CHECK(bert.teacher.version == "1.0.0");
  CHECK(bert.width == 768);
  CHECK(bert.modality == "text");
  CHECK(bert.teacher.options.at("input_shape") == "1,128");  // sequences are joined with ','
  CHECK(bert.tower.plugin == "mlp");
  CHECK(bert.tower.options.at("d_in") == "768");
  CHECK(bert.tower.options.at("dropout") == "0.1");
  CHECK(bert.tower.option_locs.at("d_in").line > 0);
  CHECK(bert.teacher.loc.file.find("full.yaml") != std::string::npos);
  CHECK(c.teachers[1].tower.options.at("bias") == "false");
  CHECK_FALSE(c.teachers[1].tower.options.count("d_in"));  // left for the host to fill in
  CHECK(c.router.router.plugin == "topk");
  CHECK(c.router.input == "teacher:bert-base");
  REQUIRE(c.heads.size() == 2);
  CHECK(c.heads[1].outputs == 20);
  CHECK(c.heads[1].tower.plugin == "linear");
  REQUIRE(c.losses.size() == 3);
  CHECK(c.losses[0].head == "sentiment_head");
  CHECK(c.losses[0].weight == doctest::Approx(1.0));
  CHECK(c.losses[1].warmup_steps == 200);
  CHECK(c.losses[1].start_factor == doctest::Approx(0.1));
  CHECK(c.losses[2].head.empty());
  CHECK(c.data_root == "/data/nexus");
  REQUIRE(c.tasks.count("topic"));
  CHECK(c.tasks.at("topic").dataset == "agnews");
  CHECK(c.tasks.at("topic").params.at("max_len") == "128");
  CHECK(c.trainer.steps == 5000);
  CHECK(c.trainer.lr == doctest::Approx(3e-4));
  CHECK(c.trainer.seed == 7);
  CHECK(c.trainer.device == "cuda:0");  // trainer.device wins over the top-level device
  CHECK(c.retention.default_min == doctest::Approx(0.9));
  CHECK(c.retention.per_task.at("topic") == doctest::Approx(0.95));
}

TEST_CASE("defaults apply when optional sections are absent") {
  Composition c;
  REQUIRE(validate_text(kMinimal, &c).empty());
  CHECK(c.trainer.steps == TrainerSpec{}.steps);
  CHECK(c.trainer.device == "auto");
  CHECK(c.router.input == "projected_mean");
  CHECK(c.retention.default_min == 0.0);
  CHECK(c.tasks.empty());
}

TEST_CASE("includes merge maps and let the including file win") {
  const std::string path = kCompositions + "/good/with_include.yaml";
  Node root = load_file(path);
  CHECK(root.find("include") == nullptr);
  Composition c = load_composition(path, {}, test_catalog());
  CHECK(c.name == "minimal-longer");
  CHECK(c.trainer.steps == 20000);
  CHECK(c.trainer.lr == doctest::Approx(1e-4));
  CHECK(c.trainer.batch_size == TrainerSpec{}.batch_size);
  REQUIRE(c.teachers.size() == 1);
  // Values keep the file they came from.
  CHECK(c.teachers[0].loc.file.find("minimal.yaml") != std::string::npos);
  CHECK(root.find("name")->loc.file == path);
}

TEST_CASE("an include cycle names the whole chain") {
  const std::string path = kCompositions + "/bad/include_cycle.yaml";
  auto diags = config_errors([&] { load_file(path); });
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message.find("cycle_partner.yaml") != std::string::npos);
  CHECK(diags[0].hint.find("leads back to") != std::string::npos);
}

TEST_CASE("apply_override sets, creates and replaces values") {
  Node root = load_string(kMinimal, "test.yaml");
  apply_override(root, "trainer.lr=1e-4");
  apply_override(root, "name=renamed");
  apply_override(root, "teachers.0.options.input_shape=[1, 128]");
  Composition c;
  auto diags = validate(root, test_catalog(), c);
  REQUIRE(diags.empty());
  CHECK(c.trainer.lr == doctest::Approx(1e-4));
  CHECK(c.name == "renamed");
  CHECK(c.teachers[0].teacher.options.at("input_shape") == "1,128");
  const Node* lr = root.find("trainer")->find("lr");
  REQUIRE(lr);
  CHECK(lr->loc.file == "<--set>");
  CHECK(lr->loc.line == 1);
  CHECK(lr->loc.column == 12);  // "trainer.lr=" is 11 characters
}

TEST_CASE("apply_override indexes sequences with numbers") {
  Node root = load_string(kMinimal, "test.yaml");
  apply_override(root, "teachers.0.width=384");
  const Node& width = *root.find("teachers")->items[0].find("width");
  CHECK(width.scalar == "384");
  CHECK(width.loc.column == 18);
  // The override location is what a later diagnostic points at.
  apply_override(root, "heads.0.outputs=abc");
  Composition c;
  auto diags = validate(root, test_catalog(), c);
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].loc.str() == "<--set>:1:17");
  CHECK(diags[0].message.find("'outputs' of head 'cls' must be a positive integer") !=
        std::string::npos);
}

TEST_CASE("malformed overrides are errors at <--set>") {
  Node root = load_string(kMinimal, "test.yaml");
  auto diag_of = [&](const std::string& assignment) {
    auto diags = config_errors([&] { apply_override(root, assignment); });
    REQUIRE(diags.size() == 1);
    CHECK(diags[0].loc.file == "<--set>");
    CHECK(diags[0].loc.line == 1);
    return diags[0];
  };
  SUBCASE("empty path") {
    auto d = diag_of("=x");
    CHECK(d.loc.column == 1);
    CHECK(d.message.find("key path before '=' is empty") != std::string::npos);
  }
  SUBCASE("no '='") {
    CHECK(diag_of("trainer.lr").message.find("no '='") != std::string::npos);
  }
  SUBCASE("empty component") {
    CHECK(diag_of("trainer..lr=1").loc.column == 9);
  }
  SUBCASE("path through a scalar") {
    auto d = diag_of("name.first=x");
    CHECK(d.loc.column == 6);
    CHECK(d.message.find("'name' is a scalar") != std::string::npos);
  }
  SUBCASE("index out of range") {
    auto d = diag_of("teachers.3.width=1");
    CHECK(d.loc.column == 10);
    CHECK(d.message.find("out of range") != std::string::npos);
  }
  SUBCASE("non-numeric index into a sequence") {
    CHECK(diag_of("teachers.bert.width=1").message.find("must be an index") !=
          std::string::npos);
  }
  SUBCASE("invalid YAML value") {
    auto d = diag_of("trainer.lr=[1, 2");
    CHECK(d.message.find("not closed") != std::string::npos);
    CHECK(d.loc.column >= 12);
  }
}

TEST_CASE("load_composition applies overrides before validating") {
  auto diags = config_errors([&] {
    load_composition(kCompositions + "/good/minimal.yaml", {"trainer.steps=zero"},
                     test_catalog());
  });
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].loc.str() == "<--set>:1:15");
}

TEST_CASE("did_you_mean finds close candidates only") {
  const std::vector<std::string> keys = {"lr", "steps", "batch_size", "weight_decay"};
  CHECK(did_you_mean("stpes", keys) == "steps");            // transposition counts as one edit
  CHECK(did_you_mean("batchsize", keys) == "batch_size");
  CHECK(did_you_mean("Weight_Decay", keys) == "weight_decay");  // case is ignored
  CHECK(did_you_mean("lx", keys) == "lr");                  // short words still allow one edit
  CHECK(did_you_mean("optimizer", keys).empty());
  CHECK(did_you_mean("steps", {}).empty());
  CHECK(did_you_mean("linaer", {"mlp", "linear"}) == "linear");
  CHECK(did_you_mean("lnr", {"linear"}).empty());  // 3 edits for a 3-letter word is too far
}

TEST_CASE("Diagnostic::str formats location, message and hint") {
  Diagnostic d{Location{"a.yaml", 3, 7}, "bad thing", ""};
  CHECK(d.str() == "a.yaml:3:7: error: bad thing");
  d.hint = "do this";
  CHECK(d.str() == "a.yaml:3:7: error: bad thing\n  hint: do this");
  ConfigError e({d, Diagnostic{Location{"a.yaml", 4, 1}, "other", ""}});
  CHECK(std::string(e.what()) == d.str() + "\na.yaml:4:1: error: other");
  CHECK(e.diagnostics().size() == 2);
}

TEST_CASE("unknown plugins suggest a name and list what is installed") {
  std::string text = kMinimal;
  text.replace(text.find("{plugin: linear}"), 16, "{plugin: lineer}");
  auto diags = validate_text(text);
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message == "unknown tower plugin 'lineer'");
  CHECK(diags[0].hint == "did you mean 'linear'? available tower plugins: linear, mlp");
  CHECK(diags[0].loc.str() == "test.yaml:8:21");
}

TEST_CASE("all problems are reported, in file order") {
  const char* text = R"(nexus: 1
name: demo
shared_dim: 0
teachers:
  - name: bert
    plugin: torchscript
    tower: {plugin: mlp, options: {hidden: wide}}
router: {plugin: softmax, input: teacher:nobody}
heads:
  - {name: cls, task: sentiment, outputs: -1, plugin: linear}
losses:
  - {plugin: mse, head: clx, weight: heavy}
trainer: {lr: fast}
)";
  auto diags = validate_text(text);
  std::vector<std::string> where;
  for (const auto& d : diags) where.push_back(d.loc.str().substr(10));  // drop "test.yaml:"
  const std::vector<std::string> expected = {"3:13", "6:13", "7:44", "8:34", "10:43",
                                             "12:25", "12:38", "13:15"};
  CHECK(where == expected);
}

TEST_CASE("host-filled options are not required, other required options are") {
  // No d_in/d_out anywhere: the host fills them.
  CHECK(validate_text(kMinimal).empty());
  std::string text = kMinimal;
  text.replace(text.find("    options: {path: bert.pt}\n"), 29, "");
  auto diags = validate_text(text);
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message.find("requires option 'path'") != std::string::npos);
  CHECK(diags[0].loc.str() == "test.yaml:6:13");  // at the plugin: value
}

TEST_CASE("plugin versions are matched exactly, first on the search path when omitted") {
  PluginCatalog catalog = test_catalog();
  // The catalog is in search order: 1.10.0 comes from a directory searched before the others.
  catalog.insert(catalog.begin(), {"tower", "linear", "1.10.0", "d_in:int!,d_out:int!,bias:bool=true,init:string"});
  catalog.push_back({"tower", "linear", "1.9.0", "d_in:int!,d_out:int!"});
  Node root = load_string(kMinimal, "test.yaml");
  apply_override(root, "teachers.0.tower.options.init=xavier");
  Composition c;
  CHECK(validate(root, catalog, c).empty());  // 1.10.0 is found first and knows 'init'
  apply_override(root, "teachers.0.tower.version=1.9.0");
  auto diags = validate(root, catalog, c);
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message.find("unknown option 'init'") != std::string::npos);
  apply_override(root, "teachers.0.tower.version=3");
  diags = validate(root, catalog, c);
  REQUIRE(diags.size() >= 1);
  CHECK(diags[0].hint.find("1.0.0, 1.9.0, 1.10.0") != std::string::npos);
}

TEST_CASE("YAML details: quoted scalars, null values, aliases") {
  Node root = load_string("a: '1'\nb: 1\nc:\nd: &x [1, 2]\ne: *x\n", "t.yaml");
  CHECK(root.find("a")->quoted);
  CHECK_FALSE(root.find("b")->quoted);
  CHECK(root.find("c")->is_null());
  CHECK(root.find("c")->loc.line == 3);  // empty values point at their key
  CHECK(root.find("e")->items.size() == 2);
  CHECK(root.key_loc("d")->line == 4);
  CHECK(root.key_loc("zz") == nullptr);
  CHECK(root.kind_name() == "mapping");
  // An alias inside its own anchor must not hang or crash.
  auto diags = config_errors([] { load_string("a: &x [*x]\n", "t.yaml"); });
  REQUIRE(!diags.empty());
  CHECK(diags[0].hint.find("alias") != std::string::npos);
}

TEST_CASE("a missing composition file is a ConfigError") {
  auto diags = config_errors([] { load_file(kCompositions + "/does_not_exist.yaml"); });
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message.find("cannot read") != std::string::npos);
}

// ---- Limits (loader.hpp): hostile compositions are refused quickly, with file:line:col ----

namespace {

// `levels` anchors, each a list of nine aliases of the one before: 9^levels values once expanded.
std::string billion_laughs(int levels) {
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= levels; ++i) {
    const std::string prev = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 9; ++k) text += (k ? ", " : "") + prev;
    text += "]\n";
  }
  return text;
}

}  // namespace

TEST_CASE("aliases that expand past kMaxCompositionNodes are refused where the limit is reached") {
  // 9^8 = 43 million values from 380 bytes: the old converter took gigabytes and minutes.
  const auto diags = config_errors([] { load_string(billion_laughs(8), "laughs.yaml"); });
  REQUIRE(diags.size() == 1);
  CAPTURE(diags[0].str());
  CHECK(diags[0].message.find("more than 100000 values (limit kMaxCompositionNodes)") != std::string::npos);
  CHECK(diags[0].hint.find("alias") != std::string::npos);
  CHECK(diags[0].loc.file == "laughs.yaml");
  // At the key whose value crosses the limit: a0..a4 expand to 74,732 values, a5 to 597,871.
  CHECK(diags[0].loc.line == 6);
  CHECK(diags[0].loc.column == 1);
  // A few levels stay far below the limit and load.
  CHECK(load_string(billion_laughs(3), "laughs.yaml").find("a3")->items.size() == 9);
}

TEST_CASE("aliases of a long string are bounded by kMaxCompositionScalarBytes") {
  std::string text = "s: &s '" + std::string(1 << 20, 'x') + "'\nl: [";
  for (int i = 0; i < 20; ++i) text += std::string(i ? ", " : "") + "*s";
  text += "]\n";
  const auto diags = config_errors([&] { load_string(text, "long.yaml"); });
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message.find("(limit kMaxCompositionScalarBytes)") != std::string::npos);
  CHECK(diags[0].loc.line == 2);
}

TEST_CASE("a web of includes is bounded by kMaxIncludes") {
  // Each file includes every later one three times: no cycle, but 4^11 reads of file 0's tree
  // without the limit.
  TempDir dir;
  const int files = 12;
  for (int i = 0; i < files; ++i) {
    std::string text = "k" + std::to_string(i) + ": " + std::to_string(i) + "\n";
    if (i + 1 < files) {
      text += "include:\n";
      for (int rep = 0; rep < 3; ++rep)
        for (int j = i + 1; j < files; ++j) text += "  - web" + std::to_string(j) + ".yaml\n";
    }
    std::ofstream(dir.path / ("web" + std::to_string(i) + ".yaml")) << text;
  }
  const auto diags = config_errors([&] { load_file((dir.path / "web0.yaml").string()); });
  REQUIRE(!diags.empty());
  CAPTURE(diags[0].str());
  CHECK(diags[0].message.find("more than 64 includes (limit kMaxIncludes") != std::string::npos);
  CHECK(diags[0].loc.file.find("web") != std::string::npos);
  CHECK(diags[0].loc.line > 2);  // at an include entry
  // Two files including a third once each are fine.
  std::ofstream(dir.path / "a.yaml") << "include: [b.yaml, c.yaml]\nname: a\n";
  std::ofstream(dir.path / "b.yaml") << "include: [c.yaml]\nb: 1\n";
  std::ofstream(dir.path / "c.yaml") << "c: 1\n";
  CHECK(load_file((dir.path / "a.yaml").string()).find("c") != nullptr);
}

TEST_CASE("a composition larger than kMaxCompositionBytes is refused before it is parsed") {
  TempDir dir;
  const auto big = (dir.path / "big.yaml").string();
  {
    std::ofstream out(big);
    out << "nexus: 1\n";
    const std::string comment = "# " + std::string(1000, '-') + "\n";
    for (int i = 0; i < 5000; ++i) out << comment;
  }
  auto diags = config_errors([&] { load_file(big); });
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].loc.file == big);
  CHECK(diags[0].message.find("(limit kMaxCompositionBytes") != std::string::npos);
  // Through an include, the include entry is blamed.
  std::ofstream(dir.path / "top.yaml") << "name: x\ninclude: big.yaml\n";
  diags = config_errors([&] { load_file((dir.path / "top.yaml").string()); });
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].loc.line == 2);
  CHECK(diags[0].message.find("(limit kMaxCompositionBytes") != std::string::npos);
}

TEST_CASE("a ',' outside brackets is a syntax error, not yaml-cpp 0.7's endless LoadAll") {
  for (const char* text : {",", "nexus: 1\n,\n", "\"x\",", ", x}"}) {
    CAPTURE(text);
    const auto diags = config_errors([&] { load_string(text, "comma.yaml"); });
    REQUIRE(!diags.empty());
    CHECK(diags[0].loc.file == "comma.yaml");
  }
  const auto diags = config_errors([] { load_string("a: 1\n---\nb: 2\n", "two.yaml"); });
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message.find("found a second one") != std::string::npos);
  CHECK(diags[0].loc.line == 3);
}

TEST_CASE("no real composition comes near the limits") {
  // Every YAML file of the project (compositions, teacher files, examples) loads without
  // touching a limit; the malformed corpus and the fuzz corpora are for the other tests.
  const fs::path root = fs::path(NEXUS_TEST_DATA_DIR).parent_path();
  int loaded = 0;
  for (const char* top : {"configs", "examples", "bench", "tests"})
    for (const auto& e : fs::recursive_directory_iterator(root / top)) {
      const auto p = e.path().string();
      if (e.path().extension() != ".yaml" || p.find("/compositions/bad") != std::string::npos ||
          p.find("/fuzz/") != std::string::npos)
        continue;
      CAPTURE(p);
      std::string error;
      try {
        load_file(p);
        ++loaded;
      } catch (const ConfigError& ex) {
        error = ex.what();
      }
      CHECK_MESSAGE(error.find("(limit k") == std::string::npos, error);
    }
  CHECK(loaded >= 10);
}

TEST_CASE("report_splits: further test splits by name, never train, val or test") {
  Composition c;
  const std::string base = std::string(kMinimal) + "data:\n  tasks:\n    sentiment: {dataset: s, modality: audio, report_splits: ";
  REQUIRE(validate_text(base + "\"real, studio\"}\n", &c).empty());
  CHECK(c.tasks.at("sentiment").report_splits() == std::vector<std::string>{"real", "studio"});
  CHECK(TaskSpec{}.report_splits().empty());
  for (const char* bad : {"test", "\"real, train\"", "\"real,\"", "\"Real Recordings\""}) {
    const auto diags = validate_text(base + bad + "}\n");
    REQUIRE_MESSAGE(diags.size() == 1, bad);
    CHECK(diags[0].message.find("report_splits' names split") != std::string::npos);
  }
}
