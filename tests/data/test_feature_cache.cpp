// The feature cache: keyed contents, checksums, resumable and concurrent builds.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <thread>

#include "nexus/base/files.hpp"
#include "nexus/data/feature_cache.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::cache;
using namespace nexus::test;

namespace {

// Deterministic "teacher output": row r, column c -> r + c/100.
at::Tensor rows_of(int64_t first, int64_t count, int64_t width) {
  auto r = torch::arange(first, first + count, torch::kFloat).unsqueeze(1);
  auto c = torch::arange(width, torch::kFloat).unsqueeze(0) / 100.0;
  return r + c;
}

EntryKey key_for(const std::string& teacher, const std::string& fingerprint, const std::string& split = "train") {
  return {teacher, fingerprint, "dataset-v1", split};
}

BuildOptions shards_of(int64_t n, DType dtype = DType::F32) {
  BuildOptions o;
  o.shard_rows = n;
  o.dtype = dtype;
  return o;
}

}  // namespace

TEST_CASE("cache round trip in fp32 and fp16") {
  TempDir dir;
  FeatureCache cache(dir.str());
  auto m = cache.build(key_for("a", "fp-a"), 100, 6, [](int64_t f, int64_t n) { return rows_of(f, n, 6); }, shards_of(32));
  CHECK(m.complete);
  CHECK(m.shards.size() == 4);
  CHECK(torch::equal(cache.load(m), rows_of(0, 100, 6)));
  auto h = cache.build(key_for("a", "fp-a", "val"), 50, 6, [](int64_t f, int64_t n) { return rows_of(f, n, 6); },
                       shards_of(32, DType::F16));
  CHECK(torch::allclose(cache.load(h), rows_of(0, 50, 6), 1e-3, 1e-2));
  CHECK(fs::file_size(fs::path(h.dir) / "shard-00000.nxf") == 32 + 32 * 6 * 2);
  CHECK(cache.list().size() == 2);
}

TEST_CASE("a changed teacher fingerprint misses exactly its own entries") {
  TempDir dir;
  FeatureCache cache(dir.str());
  int calls = 0;
  auto enc = [&](int64_t f, int64_t n) {
    ++calls;
    return rows_of(f, n, 4);
  };
  cache.build(key_for("a", "a@1|w1|mean"), 10, 4, enc, shards_of(10));
  cache.build(key_for("b", "b@1|w9|cls"), 10, 4, enc, shards_of(10));
  CHECK(calls == 2);
  // Same keys again: nothing is computed.
  cache.build(key_for("a", "a@1|w1|mean"), 10, 4, enc, shards_of(10));
  CHECK(calls == 2);
  // Teacher a gets new weights: only a's entry misses; b's is still found.
  CHECK_FALSE(cache.find(key_for("a", "a@1|w2|mean")).has_value());
  CHECK(cache.find(key_for("b", "b@1|w9|cls")).has_value());
  cache.build(key_for("a", "a@1|w2|mean"), 10, 4, enc, shards_of(10));
  CHECK(calls == 3);
  CHECK(key_for("a", "x").id() != key_for("a", "x", "val").id());
  CHECK(EntryKey{"a", "ab", "c", "s"}.id() != EntryKey{"a", "a", "bc", "s"}.id());  // fields cannot run together
  // gc keeps what a composition still uses and removes the stale entry.
  auto removed = cache.gc({key_for("a", "a@1|w2|mean").id(), key_for("b", "b@1|w9|cls").id()}, false);
  REQUIRE(removed.size() == 1);
  CHECK(fs::path(removed[0]).filename() == key_for("a", "a@1|w1|mean").id());
  CHECK(cache.list().size() == 2);
}

TEST_CASE("a corrupt shard is detected by checksum and named, never used") {
  TempDir dir;
  FeatureCache cache(dir.str());
  auto m = cache.build(key_for("a", "fp"), 64, 8, [](int64_t f, int64_t n) { return rows_of(f, n, 8); }, shards_of(16));
  const auto shard = fs::path(m.dir) / "shard-00002.nxf";
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  auto problems = cache.verify(m);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "corrupt shard " + shard.string() + ": checksum mismatch");
  const auto expected = "corrupt shard " + shard.string() + ": checksum mismatch";
  CHECK_THROWS_WITH_AS(cache.load(m), doctest::Contains(expected.c_str()), CacheError);
  fs::resize_file(shard, 40);
  CHECK(cache.verify(m)[0] == "corrupt shard " + shard.string() + ": 40 bytes, expected " + std::to_string(32 + 16 * 8 * 4));
  std::ofstream(fs::path(m.dir) / "manifest.json") << "{not json";
  CHECK_THROWS_WITH_AS(cache.find(key_for("a", "fp")), doctest::Contains("corrupt cache manifest"), CacheError);
}

TEST_CASE("an interrupted build resumes and computes only what is missing") {
  TempDir dir;
  FeatureCache cache(dir.str());
  int64_t computed = 0;
  auto flaky = [&](int64_t f, int64_t n) {
    if (f >= 48) throw std::runtime_error("teacher crashed");
    computed += n;
    return rows_of(f, n, 5);
  };
  CHECK_THROWS_WITH(cache.build(key_for("a", "fp"), 100, 5, flaky, shards_of(16)), "teacher crashed");
  auto partial = cache.find(key_for("a", "fp"));
  REQUIRE(partial);
  CHECK_FALSE(partial->complete);
  CHECK(partial->cached_rows() == 48);
  CHECK_THROWS_AS(cache.load(*partial), CacheError);
  computed = 0;
  auto m = cache.build(key_for("a", "fp"), 100, 5, [&](int64_t f, int64_t n) {
    computed += n;
    return rows_of(f, n, 5);
  }, shards_of(16));
  CHECK(computed == 52);
  CHECK(torch::equal(cache.load(m), rows_of(0, 100, 5)));
}

TEST_CASE("a builder killed with SIGKILL leaves a consistent entry that resumes") {
  TempDir dir;
  const auto key = key_for("a", "fp-kill");
  const pid_t pid = ::fork();
  if (pid == 0) {
    FeatureCache cache(dir.str());
    cache.build(key, 400, 4, [](int64_t f, int64_t n) {
      std::this_thread::sleep_for(std::chrono::milliseconds(40));
      return rows_of(f, n, 4);
    }, shards_of(8));
    ::_exit(0);
  }
  FeatureCache cache(dir.str());
  for (int i = 0; i < 500; ++i) {  // until at least 3 shards are on disk
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    try {
      auto m = cache.find(key);
      if (m && m->shards.size() >= 3) break;
    } catch (const CacheError&) {
    }
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  auto partial = cache.find(key);
  REQUIRE(partial);
  CHECK_FALSE(partial->complete);
  const int64_t done = partial->cached_rows();
  CHECK(done >= 24);
  CHECK(done < 400);
  int64_t computed = 0;
  auto m = cache.build(key, 400, 4, [&](int64_t f, int64_t n) {
    computed += n;
    return rows_of(f, n, 4);
  }, shards_of(8));
  CHECK(computed == 400 - done);
  CHECK(torch::equal(cache.load(m), rows_of(0, 400, 4)));
}

TEST_CASE("concurrent builders of one entry do not corrupt it or compute it twice") {
  TempDir dir;
  std::atomic<int64_t> computed{0};
  auto enc = [&](int64_t f, int64_t n) {
    computed += n;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return rows_of(f, n, 3);
  };
  std::vector<Manifest> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] { results[size_t(t)] = FeatureCache(dir.str()).build(key_for("a", "fp"), 80, 3, enc, shards_of(8)); });
  for (auto& t : threads) t.join();
  CHECK(computed.load() == 80);
  for (const auto& r : results) CHECK(r.complete);
  FeatureCache cache(dir.str());
  CHECK(cache.verify(results[0]).empty());
  CHECK(torch::equal(cache.load(results[0]), rows_of(0, 80, 3)));
}

// Rows of the shards of an entry (rows, shards of `shard_rows`) that part r of n owns.
std::vector<int64_t> owned_firsts(const EntryKey& key, int64_t rows, int64_t shard_rows, int r, int n) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i * shard_rows < rows; ++i)
    if (Part{r, n}.owns(size_t(i), key.id())) out.push_back(i * shard_rows);
  return out;
}

int64_t owned_rows(const EntryKey& key, int64_t rows, int64_t shard_rows, int r, int n) {
  int64_t total = 0;
  for (const auto f : owned_firsts(key, rows, shard_rows, r, n)) total += std::min(shard_rows, rows - f);
  return total;
}

TEST_CASE("shards are spread over the parts: entries start at different parts") {
  std::vector<int> first_owner_count(3, 0);
  for (int e = 0; e < 60; ++e) ++first_owner_count[size_t(Part::owner(0, key_for("t", "fp" + std::to_string(e)).id(), 3))];
  for (const int n : first_owner_count) CHECK(n >= 10);  // ~20 each; all on part 0 would starve the others
  for (size_t i = 0; i < 9; ++i) CHECK(Part::owner(i + 1, "00000000ab", 3) == (Part::owner(i, "00000000ab", 3) + 1) % 3);
}

TEST_CASE("the parts of a sharded build are disjoint and merge into the whole entry") {
  TempDir dir;
  const auto key = key_for("a", "fp-parts");
  std::vector<std::vector<int64_t>> firsts(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      auto o = shards_of(16);
      o.part = {r, 2};
      const auto m = FeatureCache(dir.str()).build(key, 100, 5, [&](int64_t f, int64_t n) {
        firsts[size_t(r)].push_back(f);
        return rows_of(f, n, 5);
      }, o);
      CHECK(m.complete);  // this part is
    });
  for (auto& t : threads) t.join();
  CHECK(firsts[0] == owned_firsts(key, 100, 16, 0, 2));
  CHECK(firsts[1] == owned_firsts(key, 100, 16, 1, 2));
  CHECK(firsts[0].size() + firsts[1].size() == 7);
  CHECK(firsts[0].size() >= 3);
  CHECK(firsts[1].size() >= 3);
  FeatureCache cache(dir.str());
  auto before = cache.find(key);
  CHECK_FALSE((before && before->complete));  // not usable until merged
  auto o = shards_of(16);
  o.part = {0, 2};
  const auto m = cache.merge(key, 100, 5, o);
  CHECK(m.complete);
  CHECK(m.shards.size() == 7);
  CHECK(cache.verify(m).empty());
  CHECK(torch::equal(cache.load(m), rows_of(0, 100, 5)));
  for (const auto& e : std::filesystem::directory_iterator(m.dir)) CHECK(e.path().filename().string().rfind("part-", 0) != 0);
  // A complete entry is not built again, whatever part asks.
  int64_t computed = 0;
  cache.build(key, 100, 5, [&](int64_t f, int64_t n) { computed += n; return rows_of(f, n, 5); }, o);
  CHECK(computed == 0);
}

TEST_CASE("a shard no part holds is named by merge; a rebuild computes only it") {
  TempDir dir;
  FeatureCache cache(dir.str());
  const auto key = key_for("img", "fp-missing");
  auto part = [](int r, int n) {
    auto o = shards_of(10);
    o.part = {r, n};
    return o;
  };
  int64_t computed = 0;
  auto enc = [&](int64_t f, int64_t n) {
    computed += n;
    return rows_of(f, n, 3);
  };
  cache.build(key, 45, 3, enc, part(0, 2));  // part 1 of 2 never ran
  CHECK(computed == owned_rows(key, 45, 10, 0, 2));
  const auto missing = owned_firsts(key, 45, 10, 1, 2);
  REQUIRE_FALSE(missing.empty());
  try {
    cache.merge(key, 45, 3, part(0, 2));
    FAIL("merge accepted an entry with missing shards");
  } catch (const CacheError& e) {
    const std::string what = e.what();
    CHECK(what.find("missing " + std::to_string(missing.size()) + " of 5 shards") != std::string::npos);
    char first[64];
    std::snprintf(first, sizeof first, "shard-%05lld.nxf (rows %lld..%lld, part 1 of 2)", (long long)(missing[0] / 10),
                  (long long)missing[0], (long long)std::min<int64_t>(missing[0] + 9, 44));
    CHECK_MESSAGE(what.find(first) != std::string::npos, what);
    CHECK(what.find("(teacher 'img', train)") != std::string::npos);
  }
  // A shard file lost after its part finished is named too.
  cache.build(key, 45, 3, enc, part(1, 2));
  const int64_t lost = owned_firsts(key, 45, 10, 0, 2).front();
  char lost_name[32];
  std::snprintf(lost_name, sizeof lost_name, "shard-%05lld.nxf", (long long)(lost / 10));
  std::filesystem::remove(std::filesystem::path(dir.str()) / key.id() / lost_name);
  CHECK_THROWS_WITH_AS(cache.merge(key, 45, 3, part(0, 2)), doctest::Contains((std::string(lost_name) + " (rows ").c_str()),
                       CacheError);
  // Three processes now: only the lost shard is computed, by the part it belongs to.
  computed = 0;
  for (int r = 0; r < 3; ++r) cache.build(key, 45, 3, enc, part(r, 3));
  CHECK(computed == std::min<int64_t>(10, 45 - lost));
  const auto m = cache.merge(key, 45, 3, part(0, 3));
  CHECK(torch::equal(cache.load(m), rows_of(0, 45, 3)));
}

TEST_CASE("a whole build takes over the shards that parts left") {
  TempDir dir;
  FeatureCache cache(dir.str());
  const auto key = key_for("a", "fp-takeover");
  auto o = shards_of(8);
  o.part = {1, 2};
  int64_t computed = 0;
  auto enc = [&](int64_t f, int64_t n) {
    computed += n;
    return rows_of(f, n, 2);
  };
  cache.build(key, 40, 2, enc, o);
  const int64_t by_part = owned_rows(key, 40, 8, 1, 2);
  CHECK(computed == by_part);
  computed = 0;
  const auto m = cache.build(key, 40, 2, enc, shards_of(8));
  CHECK(computed == 40 - by_part);
  CHECK(m.complete);
  CHECK(torch::equal(cache.load(m), rows_of(0, 40, 2)));
  CHECK_THROWS_AS(cache.build(key, 40, 2, enc, [] { auto b = shards_of(8); b.part = {2, 2}; return b; }()), CacheError);
}

TEST_CASE("a manifest that lists too few shards is not trusted; verify names the gap, a build fills it") {
  TempDir dir;
  FeatureCache cache(dir.str());
  int calls = 0;
  auto enc = [&](int64_t f, int64_t n) {
    ++calls;
    return rows_of(f, n, 4);
  };
  auto m = cache.build(key_for("a", "fp-a"), 100, 4, enc, shards_of(32));
  REQUIRE(calls == 4);
  // Drop shard 1 (rows 32..63) from the manifest, which still says complete.
  const auto file = fs::path(m.dir) / "manifest.json";
  auto j = nlohmann::json::parse(read_file(file));
  j["shards"].erase(1);
  write_file_atomically(file, j.dump());
  const auto edited = *cache.find(key_for("a", "fp-a"));
  CHECK(edited.complete);
  CHECK(coverage_gaps(edited) == std::vector<std::string>{"rows 32..63 are in no shard"});
  const auto problems = cache.verify(edited);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "entry " + m.dir + ": rows 32..63 are in no shard (the manifest lists 3 shards): rerun the cache build to fill them");
  // Loading would have left those rows as whatever memory held.
  CHECK_THROWS_WITH_AS(cache.load(edited), doctest::Contains("rows 32..63 are in no shard"), CacheError);
  // A build computes only the missing shard, and the entry is whole again.
  auto rebuilt = cache.build(key_for("a", "fp-a"), 100, 4, enc, shards_of(32));
  CHECK(calls == 5);
  CHECK(coverage_gaps(rebuilt).empty());
  CHECK(torch::equal(cache.load(rebuilt), rows_of(0, 100, 4)));
}

TEST_CASE("a manifest's numbers and file names are bounded before anything trusts them") {
  TempDir dir;
  FeatureCache cache(dir.str());
  auto m = cache.build(key_for("a", "fp-a"), 64, 4, [](int64_t f, int64_t n) { return rows_of(f, n, 4); }, shards_of(32));
  const auto file = fs::path(m.dir) / "manifest.json";
  const auto original = read_file(file);
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> edits{
      {[](nlohmann::json& j) { j["shards"][0]["file"] = "../../outside.nxf"; }, "shard file '../../outside.nxf' is not a shard name"},
      {[](nlohmann::json& j) { j["shards"][0]["file"] = "/etc/passwd"; }, "is not a shard name"},
      {[](nlohmann::json& j) { j["shards"][1]["first_row"] = 40; }, "shard shard-00001.nxf covers rows outside 0..64"},
      {[](nlohmann::json& j) { j["shards"][0]["rows"] = -32; }, "covers rows outside"},
      {[](nlohmann::json& j) { j["rows"] = int64_t(1) << 62; }, "rows must be between 0 and"},
      {[](nlohmann::json& j) { j["width"] = int64_t(1) << 40; }, "width must be between 1 and"},
      {[](nlohmann::json& j) { j["shards"][0]["bytes"] = 1; }, "records 1 bytes, its rows need 544"},
  };
  for (const auto& [edit, message] : edits) {
    auto j = nlohmann::json::parse(original);
    edit(j);
    write_file_atomically(file, j.dump());
    CHECK_THROWS_WITH_AS(cache.find(key_for("a", "fp-a")), doctest::Contains(message.c_str()), CacheError);
  }
}
