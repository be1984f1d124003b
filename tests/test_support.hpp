// Helpers shared by the tests.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nexus/teacher.hpp>

#include "nexus/registry/registry.hpp"

namespace nexus::test {
namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "nexus-test-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

inline registry::Registry scan_only(const std::vector<std::string>& dirs, double timeout = 30.0,
                                    const std::string& cache_dir = "") {
  registry::RegistryOptions o;
  o.plugin_paths = dirs;
  o.use_environment = false;
  o.use_default_paths = false;
  o.use_probe_cache = !cache_dir.empty();
  o.cache_dir = cache_dir;
  o.probe_timeout_seconds = timeout;
  registry::Registry r(o);
  r.scan();
  return r;
}

inline const registry::ComponentRecord* row(const registry::Registry& r, const std::string& name) {
  static std::vector<registry::ComponentRecord> keep;
  keep = r.components();
  for (const auto& c : keep)
    if (c.name == name) return &c;
  return nullptr;
}

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True if a file with this name is mapped into this process.
inline bool is_mapped(const std::string& file_name) {
  return read_text("/proc/self/maps").find("/" + file_name) != std::string::npos;
}

// A batch of texts for a text teacher.
inline TeacherInput texts(std::vector<std::string> t) {
  TeacherInput in;
  in.texts = std::move(t);
  return in;
}

// The built-in plugins, scanned once per test process. Their probe results are cached for the
// build tree (keyed on each library's path, size and mtime), so that each of the many test
// processes does not probe them again; the registry's own tests scan without it.
inline const registry::Registry& builtin_registry() {
  static const auto r = scan_only({NEXUS_BUILTIN_PLUGIN_DIR}, 30.0, NEXUS_TEST_PROBE_CACHE_DIR);
  return r;
}

// One teacher entry of a test composition: a TorchScript teacher (inline source, a YAML double-quoted
// string) over inputs of `shape`, with its tower.
inline std::string torchscript_teacher(const std::string& name, const std::string& modality, const std::string& shape,
                                       const std::string& source, const std::string& tower = "{plugin: linear}") {
  return "  - name: " + name + "\n    plugin: torchscript\n    options: {modality: " + modality + ", input_shape: " + shape +
         ", source: \"" + source + "\"}\n    tower: " + tower + "\n";
}

// A test composition: the teachers, a softmax router, one head `cls` with `outputs` classes on `task`
// trained with cross-entropy; `rest` adds the data and trainer sections.
inline std::string test_composition(const std::string& name, const std::string& teachers, const std::string& task,
                                    int outputs, const std::string& rest) {
  return "nexus: 1\nname: " + name + "\nshared_dim: 8\nteachers:\n" + teachers + "router: {plugin: softmax}\nheads:\n" +
         "  - {name: cls, task: " + task + ", outputs: " + std::to_string(outputs) + ", plugin: linear}\nlosses:\n" +
         "  - {plugin: cross_entropy, head: cls}\n" + rest;
}

inline std::string builtin(const std::string& lib) { return std::string(NEXUS_BUILTIN_PLUGIN_DIR) + "/" + lib; }
inline std::string test_plugin(const std::string& lib) { return std::string(NEXUS_TEST_PLUGIN_DIR) + "/" + lib; }

}  // namespace nexus::test
