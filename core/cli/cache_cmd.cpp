// nexus cache ls|verify|gc
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iomanip>
#include <iostream>

#include "cli.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/core/caching.hpp"
#include "nexus/core/feature_cache.hpp"
#include "nexus/core/system.hpp"
#include "nexus/registry/probe_cache.hpp"

namespace po = boost::program_options;

namespace nexus::cli {
namespace {

namespace fs = std::filesystem;

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

}  // namespace

std::string feature_cache_root(const std::string& given) {
  if (!given.empty()) return given;
  return (fs::path(registry::default_cache_dir()) / "features").string();
}

int cmd_cache(const Globals& g, const std::vector<std::string>& args) {
  bool json = false, dry_run = false, fp16 = false;
  std::string action, root, file, splits = "train,val,test", part_text;
  std::vector<std::string> overrides;
  int64_t batch = 512;
  po::options_description opts(
      "Usage: nexus cache build FILE [--split S,...] [--fp16] [--part R/N] | nexus cache merge FILE\n"
      "       nexus cache ls|verify|gc [--cache DIR] [--json]\n"
      "  build   compute and store the features of every teacher of composition FILE on its task data\n"
      "  merge   join the parts that `build --part R/N` processes wrote; names every missing shard\n"
      "  ls      list cached teacher features\n"
      "  verify  check every shard's checksum; exit 1 naming each corrupt or missing shard\n"
      "  gc      remove incomplete or corrupt entries (--dry-run shows what would go)\n\nOptions");
  opts.add_options()("cache", po::value(&root), "feature cache folder (default $NEXUS_CACHE_DIR/features)")
      ("dry-run", po::bool_switch(&dry_run), "gc: only list what would be removed")
      ("split", po::value(&splits)->default_value(splits), "build: comma-separated splits")
      ("fp16", po::bool_switch(&fp16), "build: store features as fp16 (half the disk and memory)")
      ("batch", po::value(&batch)->default_value(batch), "build: inputs per teacher call")
      ("part", po::value(&part_text), "build: compute only part R of N (0 <= R < N) of every entry; then `cache merge`")
      ("set", po::value(&overrides)->composing(), "build: override a composition value (repeatable)")
      ("json", po::bool_switch(&json), "machine-readable output");
  if (!parse_command(args, opts, {{"action", &action}, {"file", &file}})) return kOk;
  cache::FeatureCache store(feature_cache_root(root));
  if (action == "build" || action == "merge") {
    if (file.empty()) throw UsageError("cache " + action + " needs a composition FILE");
    if (batch < 1) throw UsageError("--batch must be >= 1");
    const auto reg = scanned_registry(g);
    const auto comp = config::load_composition(file, overrides, plugin_catalog(reg));
    auto sys = ComposedSystem::build(comp, reg);
    CachingOptions co;
    co.splits.clear();
    for (size_t b = 0, e; b <= splits.size(); b = e + 1) {
      e = splits.find(',', b);
      if (e == std::string::npos) e = splits.size();
      if (e > b) co.splits.push_back(splits.substr(b, e - b));
    }
    co.dtype = fp16 ? cache::DType::F16 : cache::DType::F32;
    co.batch_size = batch;
    co.progress = !json;
    if (!part_text.empty()) {
      const auto slash = part_text.find('/');
      try {
        size_t used = 0;
        co.part.index = std::stoi(part_text.substr(0, slash), &used);
        if (slash == std::string::npos || used != slash) throw std::invalid_argument("no slash");
        co.part.count = std::stoi(part_text.substr(slash + 1), &used);
        if (used != part_text.size() - slash - 1) throw std::invalid_argument("trailing text");
      } catch (const std::exception&) {
        throw UsageError("--part takes R/N, e.g. --part 0/2, not '" + part_text + "'");
      }
      if (co.part.count < 1 || co.part.index < 0 || co.part.index >= co.part.count)
        throw UsageError("--part " + part_text + ": R must be in [0, N)");
    }
    const auto results = action == "merge" ? merge_features(comp, sys, store, co) : cache_features(comp, sys, store, co);
    nlohmann::json out = nlohmann::json::array();
    auto seconds = [](double s) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f s", s);
      return std::string(buf);
    };
    for (const auto& r : results) {
      out.push_back({{"teacher", r.teacher}, {"task", r.task}, {"dataset", r.dataset}, {"split", r.split},
                     {"rows", r.manifest.rows}, {"width", r.manifest.width}, {"computed_rows", r.computed_rows},
                     {"seconds", r.seconds}, {"key", r.manifest.key}, {"dir", r.manifest.dir}});
      if (!json)
        std::cout << std::left << std::setw(16) << r.teacher << std::setw(36) << r.dataset + "/" + r.split + " " << std::setw(8)
                  << r.manifest.rows << (r.computed_rows ? "computed " + std::to_string(r.computed_rows) + " rows in " + seconds(r.seconds)
                                                         : std::string(action == "merge" ? "merged" : "cached")) << "\n";
    }
    if (json) std::cout << out.dump(2) << "\n";
    return kOk;
  }
  const auto entries = store.list();
  if (action == "ls") {
    if (json) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& m : entries) out.push_back(entry_json(m));
      std::cout << out.dump(2) << "\n";
      return kOk;
    }
    std::cout << std::left << std::setw(34) << "KEY" << std::setw(16) << "TEACHER" << std::setw(7) << "SPLIT" << std::setw(16)
              << "ROWS" << std::setw(7) << "WIDTH" << std::setw(6) << "TYPE" << "MB\n";
    for (const auto& m : entries) {
      const auto rows = m.complete ? std::to_string(m.rows) : std::to_string(m.cached_rows()) + "/" + std::to_string(m.rows);
      std::cout << std::left << std::setw(34) << m.key << std::setw(16) << m.teacher << std::setw(7) << m.split << std::setw(16)
                << rows << std::setw(7) << m.width << std::setw(6) << cache::to_string(m.dtype) << std::fixed
                << std::setprecision(1) << double(entry_bytes(m)) / 1e6 << "\n";
    }
    if (entries.empty()) std::cout << "(empty: " << store.root() << ")\n";
    return kOk;
  }
  if (action == "verify" || action == "gc") {
    nlohmann::json out = nlohmann::json::array();
    std::vector<std::string> keep;
    size_t bad = 0;
    for (const auto& m : entries) {
      const auto problems = store.verify(m);
      if (problems.empty()) keep.push_back(m.key);
      bad += problems.empty() ? 0 : 1;
      out.push_back({{"key", m.key}, {"teacher", m.teacher}, {"split", m.split}, {"problems", problems}});
      if (!json && action == "verify")
        for (const auto& p : problems) std::cout << m.key << " (" << m.teacher << ", " << m.split << "): " << p << "\n";
    }
    if (action == "verify") {
      if (json) std::cout << out.dump(2) << "\n";
      else std::cout << entries.size() - bad << " of " << entries.size() << " entries sound\n";
      return bad ? kRuntimeFailure : kOk;
    }
    const auto removed = store.gc(keep, dry_run);
    if (json) {
      std::cout << nlohmann::json{{"removed", removed}, {"dry_run", dry_run}}.dump(2) << "\n";
    } else {
      for (const auto& r : removed) std::cout << (dry_run ? "would remove " : "removed ") << r << "\n";
      std::cout << removed.size() << " entries " << (dry_run ? "would be " : "") << "removed, " << keep.size() << " kept\n";
    }
    return kOk;
  }
  throw UsageError(action.empty() ? "cache needs an action: build, merge, ls, verify or gc" : "unknown cache action '" + action + "'");
}

}  // namespace nexus::cli
