#include "nexus/run/run_folder.hpp"

#include <nexus/sha256.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "nexus/base/errors.hpp"
#include "nexus/base/files.hpp"
#include "nexus/config/emit.hpp"
#include "nexus/config/loader.hpp"
#include "nexus/config/paths.hpp"

namespace nexus::run {
namespace fs = std::filesystem;

void write_run_info(const std::string& run_dir, const RunRecord& r, const config::PluginCatalog& catalog) {
  fs::create_directories(run_dir);
  const auto path = fs::absolute(r.composition_file).lexically_normal().string();
  const auto recorded = r.composition_recorded.empty() ? path : fs::absolute(r.composition_recorded).lexically_normal().string();
  // The resolved copy first: run.json naming it is what makes a run use it.
  auto tree = config::load_file(path);
  for (const auto& o : r.overrides) config::apply_override(tree, o);
  for (const auto& o : r.data_sized) config::apply_override(tree, o);
  config::resolve_tree_paths(tree, catalog, fs::path(path).parent_path().string());
  write_file_atomically(fs::path(run_dir) / kResolvedComposition,
                        "# The composition this run was made from (" + recorded + "), with its includes merged,\n"
                        "# its overrides applied and its paths made absolute. Written by nexus; commands on this run\n"
                        "# read this copy.\n" + config::to_yaml(tree));
  nlohmann::json teachers = nlohmann::json::object();
  for (const auto& [name, fingerprint] : r.teachers) teachers[name] = fingerprint;
  nlohmann::json j{{"format", 1},
                   {"composition", recorded},
                   {"composition_sha256", sha256_file(path)},
                   {"overrides", r.overrides},
                   {"resolved_composition", kResolvedComposition},
                   {"teachers", teachers}};
  if (!r.data_sized.empty()) j["data_sized"] = r.data_sized;
  if (!r.base_run.empty()) j["base_run"] = r.base_run;
  if (!r.kind.empty()) j["kind"] = r.kind;
  write_json_file((fs::path(run_dir) / "run.json").string(), j.dump(1));
}

RunInfo read_run_info(const std::string& run_dir) {
  const auto info_file = fs::path(run_dir) / "run.json";
  if (!fs::exists(info_file))
    throw InputError(run_dir + " is not a run folder: no run.json (runs are written by `nexus train FILE --run DIR`)");
  RunInfo r;
  bool resolved = false;
  std::string recorded_sha256;
  try {
    const auto info = nlohmann::json::parse(read_file(info_file));
    r.original = info.at("composition").get<std::string>();
    r.overrides = info.value("overrides", std::vector<std::string>{});
    recorded_sha256 = info.value("composition_sha256", "");
    resolved = info.value("resolved_composition", "") == kResolvedComposition;
    const auto teachers = info.value("teachers", nlohmann::json::object());
    for (const auto& [name, fingerprint] : teachers.items()) r.teachers.emplace_back(name, fingerprint.get<std::string>());
  } catch (const std::exception& e) {
    throw RuntimeFailure("corrupt " + info_file.string() + ": " + e.what());
  }
  // Hashing a device or a FIFO (/dev/zero) would never end: only a regular file counts as there.
  std::error_code ec;
  const bool original_there = fs::is_regular_file(r.original, ec);
  r.changed = !original_there || sha256_file(r.original) != recorded_sha256;
  if (resolved) {
    // Found relative to wherever the run folder is now.
    r.composition = (fs::absolute(run_dir) / kResolvedComposition).lexically_normal().string();
    if (!fs::is_regular_file(r.composition, ec))
      throw InputError("run " + run_dir + " has lost its " + kResolvedComposition + " (run.json names it)");
    r.overrides.clear();  // applied in the copy
    return r;
  }
  if (!fs::exists(r.original, ec)) throw InputError("the composition of run " + run_dir + ", " + r.original + ", no longer exists");
  if (!original_there) throw InputError("the composition of run " + run_dir + ", " + r.original + ", is not a regular file");
  r.composition = r.original;
  return r;
}

std::string composition_note(const RunInfo& info, const std::string& run_dir) {
  if (!info.changed) return "";
  const bool own_copy = fs::path(info.composition).filename() == kResolvedComposition;
  const std::string what = fs::exists(info.original) ? "changed since the run was trained" : "is gone";
  return info.original + " " + what + "; " +
         (own_copy ? "using the composition recorded in the run (" + info.composition + ")"
                   : "this run predates recorded compositions, so its current content is used");
}

config::Composition load_run_composition(const RunInfo& info, const config::PluginCatalog& catalog) {
  return config::load_composition(info.composition, info.overrides, catalog);
}

void write_json_file(const std::string& path, const std::string& json_text) { write_file_atomically(path, json_text + "\n"); }

}  // namespace nexus::run
