// The plugin registry: how NEXUS finds, vets and loads plugin libraries (after GStreamer's
// registry and Triton's backend loader; shared/PLUGIN-DESIGN.md has the reasoning).
//
// Search order: --plugin-path directories, then $NEXUS_PLUGIN_PATH, then <exe>/../lib/nexus/plugins
// (the install prefix; the build tree has the same layout), then the user's data folder. Every
// `.so` in them is a candidate; for a component name, the first usable one in this order wins,
// and later ones with the same kind, name and version are listed as duplicates.
//
// Probing: a library is first loaded in a throw-away child process (nexus-plugin-probe): ELF
// checks, the version handshake (nexus/abi.h) before any plugin code that could hurt runs, then
// each component is created and self-tested. The child reports on a private descriptor in a
// versioned protocol (probe.hpp), so a plugin that crashes, hangs or prints takes down, stalls or
// corrupts only the child. Libraries are probed a few at a time.
//
// Cache states: a probe result is kept in <cache>/plugin-probes.json keyed on the library's
// path and content (sha256) and the host (nexus version, plugin ABI, libtorch, C++ ABI, CUDA flavour,
// probe protocol). A hit is trusted without running the library; a miss, or any change of the
// file or the host, probes again. Statuses: ok, broken (with the probe's reason), incompatible
// (the handshake's), duplicate (shadowed by an earlier library).
//
// Lifetimes: only libraries whose probe passed are ever loaded into this process, and once loaded
// they stay resident until exit: code is never unmapped while a module, tensor grad_fn, exception
// or std::function made by it may be alive. Every object a factory returns also owns its library
// through its deleter, so that holds even without residency.
#include "nexus/registry/registry.hpp"

#include <boost/dll/shared_library.hpp>
#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>
#include <nexus/text.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "nexus/registry/probe.hpp"
#include "nexus/registry/probe_cache.hpp"

namespace nexus::registry {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_path_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == ':') {
      if (i > start) out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  return out;
}

// Libraries loaded into this process stay loaded until it exits ("resident", as GStreamer does):
// code must never be unmapped while a module, tensor grad_fn or exception made by it may be alive.
// Objects also hold their library through their deleter, so this holds even if the policy changes.
std::shared_ptr<boost::dll::shared_library> load_resident(const LibraryRecord& lib) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<boost::dll::shared_library>> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = lib.path + "|" + lib.sha256;
  auto& slot = loaded[key];
  if (!slot) {
    // What was probed is what gets loaded: a library changed since its probe could be anything.
    std::string now;
    try {
      now = sha256_file(lib.path);
    } catch (const std::exception&) {
    }
    if (now != lib.sha256) {
      loaded.erase(key);
      throw PluginError("plugin library " + lib.path + " changed since it was probed; not loading it (run the command again)");
    }
    try {
      slot = std::make_shared<boost::dll::shared_library>(
          lib.path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    } catch (const std::exception& e) {
      loaded.erase(key);
      throw PluginError("cannot load plugin library " + lib.path + ": " + e.what());
    }
  }
  return slot;
}

}  // namespace

std::vector<std::string> plugin_search_path(const RegistryOptions& options) {
  std::vector<std::string> dirs = options.plugin_paths;
  if (options.use_environment)
    if (const char* env = std::getenv("NEXUS_PLUGIN_PATH"); env && *env)
      for (auto& d : split_path_list(env)) dirs.push_back(d);
  if (options.use_default_paths) {
    // <prefix>/bin/nexus -> <prefix>/lib/nexus/plugins; the build tree has the same layout, so a
    // nexus run from the build tree finds the plugins built beside it.
    std::error_code ec;
    const auto self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) dirs.push_back((self.parent_path().parent_path() / "lib" / "nexus" / "plugins").string());
    if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x)
      dirs.push_back((fs::path(x) / "nexus" / "plugins").string());
    else if (const char* h = std::getenv("HOME"); h && *h)
      dirs.push_back((fs::path(h) / ".local" / "share" / "nexus" / "plugins").string());
  }
  std::vector<std::string> unique;
  std::set<std::string> seen;
  for (const auto& d : dirs) {
    std::error_code ec;
    auto canon = fs::weakly_canonical(fs::absolute(d), ec).string();
    if (ec) canon = d;
    if (seen.insert(canon).second) unique.push_back(canon);
  }
  return unique;
}

Registry::Registry(RegistryOptions options) : options_(std::move(options)) {
  if (const char* t = std::getenv("NEXUS_PROBE_TIMEOUT"); t && *t) options_.probe_timeout_seconds = std::atof(t);
  search_path_ = plugin_search_path(options_);
}

void Registry::scan() {
  libraries_.clear();
  std::vector<std::string> files;
  std::set<std::string> seen;
  for (const auto& dir : search_path_) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      spdlog::debug("plugin directory {} does not exist", dir);
      continue;
    }
    std::vector<std::string> here;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.path().extension() == ".so" && !fs::is_directory(entry.path()))
        here.push_back(fs::canonical(entry.path(), ec).string());
    std::sort(here.begin(), here.end());
    for (auto& f : here)
      if (seen.insert(f).second) files.push_back(f);
  }

  ProbeCache cache(options_.use_probe_cache
                       ? ((options_.cache_dir.empty() ? fs::path(default_cache_dir()) : fs::path(options_.cache_dir)) /
                          "plugin-probes.json")
                             .string()
                       : "");
  libraries_.resize(files.size());
  std::vector<size_t> to_probe;
  std::vector<std::string> digests(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    try {
      digests[i] = sha256_file(files[i]);
    } catch (const std::exception&) {
      // unreadable: probed (and reported) like any other library
    }
    if (auto hit = cache.lookup(files[i], digests[i])) libraries_[i] = *hit;
    else to_probe.push_back(i);
  }
  // Probes are separate processes that mostly wait on dlopen and libtorch start-up: run a few at
  // once, each worker taking the next library as soon as its last probe ends, so a library that
  // hangs until the deadline holds one slot rather than a whole batch.
  std::vector<LibraryRecord> probed(to_probe.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t k = next++; k < to_probe.size(); k = next++) try {
        probed[k] = probe_in_child(files[to_probe[k]], options_.probe_timeout_seconds);
      } catch (const std::exception& e) {  // an exception must not leave a std::thread
        probed[k].path = files[to_probe[k]];
        probed[k].status = Status::Broken;
        probed[k].reason = std::string("cannot probe: ") + e.what();
      }
  };
  const size_t slots = std::min<size_t>(to_probe.size(), std::max(2u, std::thread::hardware_concurrency()));
  std::vector<std::thread> workers;
  for (size_t w = 0; w < slots; ++w) workers.emplace_back(worker);
  for (auto& w : workers) w.join();
  for (size_t k = 0; k < to_probe.size(); ++k) {
    auto& rec = probed[k];
    rec.sha256 = digests[to_probe[k]];  // hashed before the probe: a later change fails the load check
    spdlog::debug("probed {} in {:.2f} s: {}", rec.path, rec.probe_seconds, to_string(rec.status));
    libraries_[to_probe[k]] = rec;
    cache.store(rec);
  }
  if (!to_probe.empty()) cache.save();
  for (auto& lib : libraries_)
    for (auto& c : lib.components) {
      c.plugin_name = lib.plugin_name;
      c.plugin_version = lib.plugin_version;
      c.library = lib.path;
    }
  mark_duplicates();
}

void Registry::mark_duplicates() {
  std::map<std::string, const ComponentRecord*> first;
  for (auto& lib : libraries_)
    for (auto& c : lib.components) {
      if (c.status != Status::Ok) continue;
      const auto key = c.kind + "/" + c.name + "/" + c.plugin_version;
      auto [it, inserted] = first.emplace(key, &c);
      if (inserted) continue;
      c.status = Status::Duplicate;
      c.reason = "duplicate: " + c.kind + " '" + c.name + "' " + c.plugin_version + " is already provided by " +
                 it->second->library + ", which comes first in the search path";
      spdlog::warn("{} '{}' {} in {} is shadowed by {}", c.kind, c.name, c.plugin_version, lib.path, it->second->library);
    }
}

std::vector<ComponentRecord> Registry::components() const {
  std::vector<ComponentRecord> rows;
  for (const auto& lib : libraries_) {
    if (lib.components.empty()) {
      ComponentRecord row;
      row.kind = "-";
      row.name = fs::path(lib.path).filename().string();
      row.library = lib.path;
      row.plugin_name = lib.plugin_name;
      row.plugin_version = lib.plugin_version;
      row.status = lib.status == Status::Ok ? Status::Broken : lib.status;
      row.reason = lib.status == Status::Ok ? "the library provides no components" : lib.reason;
      rows.push_back(row);
    }
    for (const auto& c : lib.components) rows.push_back(c);
  }
  return rows;
}

const ComponentRecord* Registry::find(const std::string& kind, const std::string& name, const std::string& version) const {
  for (const auto& lib : libraries_)
    for (const auto& c : lib.components)
      if (c.status == Status::Ok && c.kind == kind && c.name == name && (version.empty() || c.plugin_version == version))
        return &c;
  return nullptr;
}

std::vector<std::string> Registry::available(const std::string& kind) const {
  std::vector<std::string> names;
  for (const auto& lib : libraries_)
    for (const auto& c : lib.components)
      if (c.status == Status::Ok && c.kind == kind && std::find(names.begin(), names.end(), c.name) == names.end())
        names.push_back(c.name);
  return names;
}

std::shared_ptr<void> Registry::create(const std::string& kind, const std::string& name, const Options& options,
                                       const std::string& version) const {
  const ComponentRecord* rec = find(kind, name, version);
  if (!rec) {
    std::string why;
    for (const auto& lib : libraries_)
      for (const auto& c : lib.components)
        if (c.kind == kind && c.name == name)
          why += "\n  " + c.library + " (" + c.plugin_version + "): " + to_string(c.status) + ": " + c.reason;
    if (!why.empty())
      throw PluginError("no usable " + kind + " plugin '" + name + "'" + (version.empty() ? "" : " version " + version) +
                        ":" + why);
    std::string dirs;
    for (const auto& d : search_path_) dirs += "\n  " + d;
    throw PluginError("no " + kind + " plugin named '" + name + "' (available: " + join_or(available(kind), "none") +
                      "); searched:" + dirs);
  }
  const LibraryRecord* lib = nullptr;
  for (const auto& l : libraries_)
    if (l.path == rec->library) lib = &l;
  auto handle = load_resident(*lib);
  auto create_fn = handle->get<int(const char*, const char*, const void*, void**, char*, size_t)>(NEXUS_CREATE_SYMBOL);
  auto destroy_fn = handle->get<void(const char*, void*)>(NEXUS_DESTROY_SYMBOL);
  void* object = nullptr;
  char error[4096] = {0};
  if (create_fn(kind.c_str(), name.c_str(), &options, &object, error, sizeof error) != 0 || !object)
    throw PluginError(kind + " '" + name + "' (" + rec->library + "): " + (error[0] ? error : "factory returned nothing"));
  // The deleter owns the library handle: the code that destroys the object stays mapped.
  return std::shared_ptr<void>(object, [handle, destroy_fn, kind](void* p) { destroy_fn(kind.c_str(), p); });
}

namespace {
// Re-owns an object as its base type (so torch's enable_shared_from_this is wired up) while
// keeping the library-owning deleter alive with it.
template <class T>
std::shared_ptr<T> typed(std::shared_ptr<void> holder) {
  T* raw = static_cast<T*>(holder.get());
  return std::shared_ptr<T>(raw, [holder = std::move(holder)](T*) mutable { holder.reset(); });
}
}  // namespace

std::shared_ptr<Teacher> Registry::create_teacher(const std::string& n, const Options& o, const std::string& v) const {
  return typed<Teacher>(create("teacher", n, o, v));
}
std::shared_ptr<Tower> Registry::create_tower(const std::string& n, const Options& o, const std::string& v) const {
  return typed<Tower>(create("tower", n, o, v));
}
std::shared_ptr<Router> Registry::create_router(const std::string& n, const Options& o, const std::string& v) const {
  return typed<Router>(create("router", n, o, v));
}
std::shared_ptr<Loss> Registry::create_loss(const std::string& n, const Options& o, const std::string& v) const {
  return typed<Loss>(create("loss", n, o, v));
}

}  // namespace nexus::registry
