// nexus cache build|merge|ls|verify|gc
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <iostream>

#include "cli.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/data/caching.hpp"
#include "nexus/data/feature_cache.hpp"
#include "nexus/model/system.hpp"

namespace po = boost::program_options;

namespace nexus::cli {
namespace {

struct CacheArgs {
  std::string action, root, file, splits = "train,val,test", part;
  std::vector<std::string> overrides;
  int64_t batch = 512;
  bool json = false, dry_run = false, fp16 = false;
};

uint64_t entry_bytes(const cache::Manifest& m) {
  uint64_t n = 0;
  for (const auto& s : m.shards) n += s.bytes;
  return n;
}

nlohmann::json entry_json(const cache::Manifest& m) {
  return {{"key", m.key},     {"teacher", m.teacher}, {"fingerprint", m.fingerprint}, {"dataset_id", m.dataset_id},
          {"split", m.split}, {"rows", m.rows},       {"cached_rows", m.cached_rows()}, {"width", m.width},
          {"dtype", cache::to_string(m.dtype)}, {"complete", m.complete}, {"bytes", entry_bytes(m)}, {"dir", m.dir}};
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  for (size_t b = 0, e; b <= text.size(); b = e + 1) {
    e = text.find(',', b);
    if (e == std::string::npos) e = text.size();
    if (e > b) out.push_back(text.substr(b, e - b));
  }
  return out;
}

int build(const Globals& g, const CacheArgs& a, cache::FeatureCache& store) {
  if (a.file.empty()) throw UsageError("cache " + a.action + " needs a composition FILE");
  if (a.batch < 1) throw UsageError("--batch must be >= 1");
  CachingOptions co;
  co.splits = split_list(a.splits);
  co.dtype = a.fp16 ? cache::DType::F16 : cache::DType::F32;
  co.batch_size = a.batch;
  co.progress = !a.json;
  if (!a.part.empty()) co.part = cache::Part::parse(a.part);
  const auto reg = scanned_registry(g);
  const auto comp = config::load_composition(a.file, a.overrides, plugin_catalog(reg));
  auto sys = ComposedSystem::build(comp, reg);
  const bool merge = a.action == "merge";
  const auto results = merge ? merge_features(comp, sys, store, co) : cache_features(comp, sys, store, co);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : results) {
    out.push_back({{"teacher", r.teacher}, {"task", r.task}, {"dataset", r.dataset}, {"split", r.split},
                   {"rows", r.manifest.rows}, {"width", r.manifest.width}, {"computed_rows", r.computed_rows},
                   {"seconds", r.seconds}, {"key", r.manifest.key}, {"dir", r.manifest.dir}});
    if (a.json) continue;
    char took[64];
    std::snprintf(took, sizeof took, "computed %lld rows in %.2f s", (long long)r.computed_rows, r.seconds);
    std::cout << std::left << std::setw(16) << r.teacher << std::setw(36) << r.dataset + "/" + r.split + " " << std::setw(8)
              << r.manifest.rows << (r.computed_rows ? took : merge ? "merged" : "cached") << "\n";
  }
  if (a.json) std::cout << out.dump(2) << "\n";
  return kOk;
}

// Columns as wide as their longest value: split names like "train[:6000]" and row counts like
// "4096/60000" must not run into their neighbours.
int list(const std::vector<cache::Manifest>& entries, const cache::FeatureCache& store, bool json) {
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& m : entries) out.push_back(entry_json(m));
    std::cout << out.dump(2) << "\n";
    return kOk;
  }
  auto rows = [](const cache::Manifest& m) {
    return m.complete ? std::to_string(m.rows) : std::to_string(m.cached_rows()) + "/" + std::to_string(m.rows);
  };
  size_t teacher = 7, split = 5, count = 4;
  for (const auto& m : entries) {
    teacher = std::max(teacher, m.teacher.size());
    split = std::max(split, m.split.size());
    count = std::max(count, rows(m).size());
  }
  auto column = [](size_t width) { return std::setw(int(width) + 2); };
  std::cout << std::left << std::setw(34) << "KEY" << column(teacher) << "TEACHER" << column(split) << "SPLIT" << column(count)
            << "ROWS" << std::setw(7) << "WIDTH" << std::setw(6) << "TYPE" << "MB\n";
  for (const auto& m : entries)
    std::cout << std::left << std::setw(34) << m.key << column(teacher) << m.teacher << column(split) << m.split
              << column(count) << rows(m) << std::setw(7) << m.width << std::setw(6) << cache::to_string(m.dtype)
              << std::fixed << std::setprecision(1) << double(entry_bytes(m)) / 1e6 << "\n";
  if (entries.empty()) std::cout << "(empty: " << store.root() << ")\n";
  return kOk;
}

int verify_or_gc(const CacheArgs& a, const std::vector<cache::Manifest>& entries, const cache::FeatureCache& store) {
  nlohmann::json out = nlohmann::json::array();
  std::vector<std::string> keep;
  size_t bad = 0;
  for (const auto& m : entries) {
    const auto problems = store.verify(m);
    if (problems.empty()) keep.push_back(m.key);
    bad += problems.empty() ? 0 : 1;
    out.push_back({{"key", m.key}, {"teacher", m.teacher}, {"split", m.split}, {"problems", problems}});
    if (!a.json && a.action == "verify")
      for (const auto& p : problems) std::cout << m.key << " (" << m.teacher << ", " << m.split << "): " << p << "\n";
  }
  if (a.action == "verify") {
    if (a.json) std::cout << out.dump(2) << "\n";
    else std::cout << entries.size() - bad << " of " << entries.size() << " entries sound\n";
    return bad ? kRuntimeFailure : kOk;
  }
  const auto removed = store.gc(keep, a.dry_run);
  if (a.json) {
    std::cout << nlohmann::json{{"removed", removed}, {"dry_run", a.dry_run}}.dump(2) << "\n";
    return kOk;
  }
  for (const auto& r : removed) std::cout << (a.dry_run ? "would remove " : "removed ") << r << "\n";
  std::cout << removed.size() << " entries " << (a.dry_run ? "would be " : "") << "removed, " << keep.size() << " kept\n";
  return kOk;
}

}  // namespace

int cmd_cache(const Globals& g, const std::vector<std::string>& args) {
  CacheArgs a;
  po::options_description opts(
      "Usage: nexus cache build FILE [--split S,...] [--fp16] [--part R/N] | nexus cache merge FILE\n"
      "       nexus cache ls|verify|gc [--cache DIR] [--json]\n"
      "  build   compute and store the features of every teacher of composition FILE on its task data\n"
      "  merge   join the parts that `build --part R/N` processes wrote; names every missing shard\n"
      "  ls      list cached teacher features\n"
      "  verify  check every shard's checksum; exit 1 naming each corrupt or missing shard\n"
      "  gc      remove incomplete or corrupt entries (--dry-run shows what would go)\n\nOptions");
  opts.add_options()("cache", po::value(&a.root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("dry-run", po::bool_switch(&a.dry_run), "gc: only list what would be removed")
      ("split", po::value(&a.splits)->default_value(a.splits), "build: comma-separated splits")
      ("fp16", po::bool_switch(&a.fp16), "build: store features as fp16 (half the disk and memory)")
      ("batch", po::value(&a.batch)->default_value(a.batch), "build: inputs per teacher call")
      ("part", po::value(&a.part), "build: compute only part R of N (0 <= R < N) of every entry; then `cache merge`")
      ("set", po::value(&a.overrides)->composing(), "build: override a composition value (repeatable)")
      ("json", po::bool_switch(&a.json), "machine-readable output");
  if (!parse_command(args, opts, {{"action", &a.action}, {"file", &a.file}})) return kOk;
  cache::FeatureCache store(feature_cache_root(a.root));
  if (a.action == "build" || a.action == "merge") return build(g, a, store);
  if (a.action == "ls") return list(store.list(), store, a.json);
  if (a.action == "verify" || a.action == "gc") return verify_or_gc(a, store.list(), store);
  throw UsageError(a.action.empty() ? "cache needs an action: build, merge, ls, verify or gc" : "unknown cache action '" + a.action + "'");
}

}  // namespace nexus::cli
