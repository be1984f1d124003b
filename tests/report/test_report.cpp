// The HTML report (core/report): what it reads from a run folder and how it embeds it. The page
// itself is checked in a real browser by tests/report/report_browser_test.py.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "nexus/report/report.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("report: curves from metrics.jsonl: training, validation, rollbacks with their target step, the end") {
  TempDir dir;
  const auto file = (dir.path / "metrics.jsonl").string();
  std::ofstream(file) << R"({"loss":1.5,"lr":0.001,"step":10,"task":"a"})" << "\n"
                      << R"({"loss":0.9,"lr":0.001,"step":10,"task":"b"})" << "\n"
                      << R"({"shared_variance":1.1,"step":20,"val_accuracy":{"a":0.5,"b":0.7},"val_loss":1.2})" << "\n"
                      << R"({"lr_factor":0.5,"rollback":"validation loss 2 > 1.05 x best 1.2","step":40,"to":"step-00000020"})" << "\n"
                      << "not json\n[1, 2]\n"
                      << R"({"best_step":20,"early_stop":true,"step":40})" << "\n"
                      << R"({"loss":0.8,"lr":)";  // a run killed mid-line
  const auto c = report::read_curves(file);
  CHECK(c.at("train").size() == 2);
  CHECK(c.at("train")[1].at("task") == "b");
  CHECK(c.at("validation").size() == 1);
  CHECK(c.at("validation")[0].at("val_accuracy").at("b") == 0.7);
  REQUIRE(c.at("rollbacks").size() == 1);
  CHECK(c.at("rollbacks")[0].at("to_step") == 20);
  CHECK(c.at("rollbacks")[0].at("lr_factor") == 0.5);
  CHECK(c.at("best_step") == 20);
  CHECK(c.at("early_stop") == true);
}

TEST_CASE("report: an incremental run's repair stages continue its curves, each from where the previous one ended") {
  TempDir dir;
  const auto run = dir.path / "run";
  fs::create_directories(run / "repair" / "2-towers");
  std::ofstream(run / "metrics.jsonl") << R"({"loss":1.5,"step":10,"task":"a"})" << "\n"
                                        << R"({"step":20,"val_accuracy":{"a":0.5},"val_loss":1.2})" << "\n"
                                        << R"({"best_step":20,"early_stop":false,"step":20})" << "\n";
  std::ofstream(run / "repair" / "2-towers" / "metrics.jsonl")
      << R"({"loss":0.9,"step":5,"task":"a"})" << "\n"
      << R"({"lr_factor":0.5,"rollback":"validation loss","step":8,"to":"step-00000004"})" << "\n"
      << R"({"step":10,"val_accuracy":{"a":0.7},"val_loss":0.8})" << "\n"
      << R"({"best_step":10,"early_stop":true,"step":10})" << "\n";
  fs::create_directories(dir.path / "abs");  // outside the run, named by an absolute path
  std::ofstream(dir.path / "abs" / "metrics.jsonl") << R"({"loss":0.1,"step":5,"task":"a"})" << "\n";
  std::ofstream(run / "proof.json") << R"({"repair": {"policy": "auto", "stages": [
      {"scope": "router", "folder": ".", "widened": ["router"]},
      {"scope": "towers", "folder": "repair/2-towers", "widened": ["tower.a"]},
      {"scope": "heads", "folder": "../../elsewhere", "widened": ["head.a"]},
      {"scope": "heads", "folder": ")" << (dir.path / "abs").string() << R"(", "widened": ["head.a"]}]}})";
  const auto c = report::report_data(run.string(), config::Composition{}, nullptr).at("curves");
  REQUIRE(c.at("train").size() == 2);
  CHECK(c.at("train")[1].at("step") == 25);
  REQUIRE(c.at("validation").size() == 2);
  CHECK(c.at("validation")[1].at("step") == 30);
  REQUIRE(c.at("rollbacks").size() == 1);
  CHECK(c.at("rollbacks")[0].at("step") == 28);
  CHECK(c.at("rollbacks")[0].at("to_step") == 24);
  CHECK(c.at("best_step") == 30);  // the run's weights: the last stage's best
  CHECK(c.at("early_stop") == true);
  // One marker, where the towers stage began; a folder outside the run is never read.
  CHECK(c.at("stages") == nlohmann::json::parse(R"([{"step": 20, "scope": "towers", "widened": ["tower.a"]}])"));
}

TEST_CASE("report: the page embeds Chart.js and the data once each; nothing in the data can end its script element") {
  const nlohmann::json data{{"title", "</script><script>alert(1)</script>"}, {"tasks", {"/*@NEXUS_CHARTJS@*/"}}};
  const auto page = report::render_html(data);
  CHECK(count(page, "/*@NEXUS_DATA@*/") == 0);
  CHECK(count(page, "/*@NEXUS_CHARTJS@*/") == 1);  // the one inside the data, as data
  CHECK(page.find("Chart.js v3") != std::string::npos);
  CHECK(page.find("<script>alert(1)") == std::string::npos);
  CHECK(page.find(R"(\u003c/script>\u003cscript>alert(1)\u003c/script>)") != std::string::npos);
  // The embedded document parses back to the data.
  const auto begin = page.find('>', page.find("id=\"nexus-data\"")) + 1;
  const auto end = page.find("</script>", begin);
  CHECK(nlohmann::json::parse(page.substr(begin, end - begin)) == data);
  // Self-contained: nothing is fetched from anywhere.
  for (const char* fetch : {"src=\"http", "href=\"http", "url(http", "@import"}) CHECK(page.find(fetch) == std::string::npos);
}
