// Caching a composition's features (core/data/caching): every (teacher, split) entry computed
// once and reused, sliced splits under their own keys, parts that processes build side by side
// and a merge that names what is missing.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>

#include <cstdlib>

#include "nexus/config/composition.hpp"
#include "nexus/data/caching.hpp"
#include "nexus/data/task_features.hpp"
#include "nexus/model/system.hpp"
#include "test_support.hpp"
#include "toy_data.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

struct Cached : ToyFixture {
  using ToyFixture::ToyFixture;
  CachingOptions options() const {
    CachingOptions o;
    o.progress = false;
    return o;
  }
};

}  // namespace

TEST_CASE("caching computes each teacher's features of each split once, and reuses them") {
  Cached c;
  const auto first = cache_features(c.comp, *c.sys, c.store, c.options());
  REQUIRE(first.size() == 6);  // 2 teachers x 3 splits
  for (const auto& r : first) {
    CAPTURE(r.teacher + " " + r.split);
    CHECK(r.manifest.complete);
    CHECK(r.computed_rows == (r.split == "train" ? 300 : 100));
    CHECK(r.manifest.width == (r.teacher == "pixels" ? 16 : 4));
  }
  const auto again = cache_features(c.comp, *c.sys, c.store, c.options());
  for (size_t i = 0; i < again.size(); ++i) {
    CHECK(again[i].computed_rows == 0);
    CHECK(again[i].manifest.key == first[i].manifest.key);
  }
  // What training reads is exactly what the teacher computes.
  const auto train = load_split_features(c.comp, *c.sys, c.store, "toy", "train");
  const auto data = load_task_split(c.comp, c.comp.tasks.at("toy"), "train");
  torch::NoGradGuard no_grad;
  CHECK(torch::equal(train.features[0], c.sys->teachers()[0].teacher->encode(data.batch(0, 300))));
  CHECK(torch::equal(train.labels, data.labels));
}

TEST_CASE("a task's train_rows caches a prefix of the split under its own key") {
  Cached full;
  cache_features(full.comp, *full.sys, full.store, full.options());
  Cached sliced({"data.tasks.toy.train_rows=120"});
  auto o = sliced.options();
  o.splits = {"train"};
  const auto r = cache_features(sliced.comp, *sliced.sys, full.store, o);
  REQUIRE(r.size() == 2);
  CHECK(r[0].split == "train[:120]");
  CHECK(r[0].manifest.rows == 120);
  CHECK(r[0].computed_rows == 120);  // not taken from the full split's entry
  const auto whole = load_split_features(full.comp, *full.sys, full.store, "toy", "train");
  const auto prefix = load_split_features(sliced.comp, *sliced.sys, full.store, "toy", "train");
  CHECK(torch::equal(prefix.features[0], whole.features[0].narrow(0, 0, 120)));
}

TEST_CASE("parts build side by side; merge joins them, and names the shards of a part that never ran") {
  Cached c;
  auto part = [&](int index) {
    auto o = c.options();
    o.part = {index, 2};
    return o;
  };
  const auto zero = cache_features(c.comp, *c.sys, c.store, part(0));
  int64_t computed = 0;
  for (const auto& r : zero) computed += r.computed_rows;
  CHECK(computed > 0);
  CHECK(computed < 1000);  // part 0 alone does not compute everything
  try {
    merge_features(c.comp, *c.sys, c.store, part(0));
    FAIL("merge without part 1 succeeded");
  } catch (const cache::CacheError& e) {
    CHECK(std::string(e.what()).find("(rows 0..") != std::string::npos);
    CHECK(std::string(e.what()).find("part 1 of 2") != std::string::npos);
  }
  const auto one = cache_features(c.comp, *c.sys, c.store, part(1));
  for (const auto& r : one) computed += r.computed_rows;
  CHECK(computed == 1000);  // together the parts computed every row once
  for (const auto& r : merge_features(c.comp, *c.sys, c.store, part(0))) CHECK(r.manifest.complete);
  // The merged entries are complete: a whole build finds nothing to compute.
  for (const auto& r : cache_features(c.comp, *c.sys, c.store, c.options())) CHECK(r.computed_rows == 0);
}

TEST_CASE("--part takes R/N with 0 <= R < N") {
  const auto p = cache::Part::parse("1/3");
  CHECK(p.index == 1);
  CHECK(p.count == 3);
  CHECK_THROWS_WITH_AS(cache::Part::parse("3/3"), "--part 3/3: R must be in [0, N)", InputError);
  CHECK_THROWS_WITH_AS(cache::Part::parse("1of2"), "--part takes R/N, e.g. --part 0/2, not '1of2'", InputError);
  CHECK_THROWS_AS(cache::Part::parse("1/2x"), InputError);
}

TEST_CASE("training needs data for every head, and the cache folder follows NEXUS_CACHE_DIR") {
  Cached c;
  auto comp = c.comp;
  comp.tasks.clear();
  CHECK_THROWS_WITH_AS(require_task_data(comp), "head 'cls' trains on task 'toy', which data.tasks does not define", InputError);
  CHECK(feature_cache_root("/somewhere") == "/somewhere");
  const char* before = std::getenv("NEXUS_CACHE_DIR");
  const std::string saved = before ? before : "";
  ::setenv("NEXUS_CACHE_DIR", c.toy.dir.str().c_str(), 1);
  CHECK(feature_cache_root() == c.toy.dir.str() + "/features");
  if (before) ::setenv("NEXUS_CACHE_DIR", saved.c_str(), 1);
  else ::unsetenv("NEXUS_CACHE_DIR");
}
