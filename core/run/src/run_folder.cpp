#include "nexus/run/run_folder.hpp"

#include <nexus/sha256.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "nexus/base/errors.hpp"
#include "nexus/base/files.hpp"

namespace nexus::run {
namespace fs = std::filesystem;

void write_run_info(const std::string& run_dir, const RunRecord& r) {
  fs::create_directories(run_dir);
  const auto path = fs::absolute(r.composition_file).lexically_normal().string();
  const auto recorded = r.composition_recorded.empty() ? path : fs::absolute(r.composition_recorded).lexically_normal().string();
  nlohmann::json j{{"format", 1}, {"composition", recorded}, {"composition_sha256", sha256_file(path)}, {"overrides", r.overrides}};
  if (!r.base_run.empty()) j["base_run"] = r.base_run;
  if (!r.kind.empty()) j["kind"] = r.kind;
  write_json_file((fs::path(run_dir) / "run.json").string(), j.dump(1));
}

RunInfo read_run_info(const std::string& run_dir) {
  const auto info_file = fs::path(run_dir) / "run.json";
  if (!fs::exists(info_file))
    throw InputError(run_dir + " is not a run folder: no run.json (runs are written by `nexus train FILE --run DIR`)");
  RunInfo r;
  std::string recorded_sha256;
  try {
    const auto info = nlohmann::json::parse(read_file(info_file));
    r.composition = info.at("composition");
    r.overrides = info.value("overrides", std::vector<std::string>{});
    recorded_sha256 = info.value("composition_sha256", "");
  } catch (const std::exception& e) {
    throw RuntimeFailure("corrupt " + info_file.string() + ": " + e.what());
  }
  if (!fs::exists(r.composition)) throw InputError("the composition of run " + run_dir + ", " + r.composition + ", no longer exists");
  // Hashing a device or a FIFO (/dev/zero) would never end.
  if (!fs::is_regular_file(r.composition))
    throw InputError("the composition of run " + run_dir + ", " + r.composition + ", is not a regular file");
  r.changed = sha256_file(r.composition) != recorded_sha256;
  return r;
}

config::Composition load_run_composition(const RunInfo& info, const config::PluginCatalog& catalog) {
  return config::load_composition(info.composition, info.overrides, catalog);
}

void write_json_file(const std::string& path, const std::string& json_text) { write_file_atomically(path, json_text + "\n"); }

}  // namespace nexus::run
