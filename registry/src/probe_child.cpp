// The probe itself, run inside the nexus-plugin-probe child process. It reports each stage before
// entering it, so that when the child dies the parent knows where.
#include <boost/dll/shared_library.hpp>

#include <nexus/plugin_api.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "nexus/registry/handshake.hpp"
#include "nexus/registry/probe.hpp"
#include "record_json.hpp"

namespace nexus::registry {
namespace {

// Writes each event at once, unbuffered: the next step may crash the process.
class Report {
 public:
  explicit Report(int fd) : fd_(fd) {}
  void emit(const nlohmann::json& j) const {
    const std::string line = "@nexus " + j.dump() + "\n";
    for (size_t done = 0; done < line.size();) {
      const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the parent is gone: nobody is listening
      done += size_t(n);
    }
  }

 private:
  int fd_;
};

void stage(const Report& out, const std::string& what) { out.emit({{"event", "stage"}, {"stage", what}}); }
int fail(const Report& out, Status status, const std::string& reason) {
  out.emit({{"event", "error"}, {"status", to_string(status)}, {"reason", reason}});
  return 0;
}

// Boost.DLL wraps dlerror() in a longer sentence; keep the part that helps.
std::string dlerror_or(const std::string& what) {
  const std::string tag = "dlerror system message: ";
  auto b = what.find(tag);
  if (b == std::string::npos) return what;
  b += tag.size();
  auto e = what.rfind(")");
  return what.substr(b, e == std::string::npos || e < b ? std::string::npos : e - b);
}

void self_test(const std::string& kind, void* object) {
  if (kind == "teacher") static_cast<Teacher*>(object)->self_test();
  else if (kind == "tower") static_cast<Tower*>(object)->self_test();
  else if (kind == "router") static_cast<Router*>(object)->self_test();
  else if (kind == "loss") static_cast<Loss*>(object)->self_test();
  else throw std::runtime_error("unknown component kind '" + kind + "'");
}

}  // namespace

int probe_in_this_process(const std::string& path, int report_fd) {
  const Report out(report_fd);
  out.emit({{"event", "hello"}, {"protocol", kProbeProtocol}});
  stage(out, "checking the file");
  if (auto why = check_elf_file(path); !why.empty()) return fail(out, Status::Broken, why);

  stage(out, "loading the library");
  boost::dll::shared_library lib;
  try {
    lib.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return fail(out, Status::Broken, std::string("cannot load the library: ") + dlerror_or(e.what()));
  }
  for (const char* symbol : {NEXUS_QUERY_SYMBOL, NEXUS_CREATE_SYMBOL, NEXUS_DESTROY_SYMBOL})
    if (!lib.has(symbol))
      return fail(out, Status::Broken,
                  std::string("not a NEXUS plugin: missing export symbol '") + symbol +
                      "' (declare the plugin with NEXUS_PLUGIN_BEGIN/NEXUS_PLUGIN_END)");

  stage(out, "querying the plugin info");
  const nexus_plugin_info* info = lib.get<const nexus_plugin_info*()>(NEXUS_QUERY_SYMBOL)();
  if (!info) return fail(out, Status::Broken, "nexus_plugin_query() returned no info");
  const auto host = HostAbi::current();
  const auto why = check_handshake(*info, host);
  LibraryRecord rec;
  rec.abi = std::to_string(info->abi_major) + "." + std::to_string(info->abi_minor);
  if (why.empty() || info->struct_size >= sizeof(nexus_plugin_info)) {
    rec.plugin_name = info->plugin_name ? info->plugin_name : "";
    rec.plugin_version = info->plugin_version ? info->plugin_version : "";
    rec.torch_version = info->torch_version ? info->torch_version : "";
    rec.cxx11_abi = info->cxx11_abi;
    rec.cuda = info->cuda;
    for (uint32_t i = 0; info->components && i < info->component_count; ++i) {
      const auto& c = info->components[i];
      ComponentRecord cr;
      cr.kind = c.kind ? c.kind : "";
      cr.name = c.name ? c.name : "";
      cr.description = c.description ? c.description : "";
      cr.options_schema = c.options_schema ? c.options_schema : "";
      cr.selftest_options = c.selftest_options ? c.selftest_options : "";
      rec.components.push_back(cr);
    }
  }
  out.emit({{"event", "library"}, {"record", to_json(rec)}});
  if (!why.empty()) return fail(out, Status::Incompatible, why);

  auto create = lib.get<int(const char*, const char*, const void*, void**, char*, size_t)>(NEXUS_CREATE_SYMBOL);
  auto destroy = lib.get<void(const char*, void*)>(NEXUS_DESTROY_SYMBOL);
  for (const auto& c : rec.components) {
    const std::string what = c.kind + " '" + c.name + "'";
    nlohmann::json result = {{"event", "component"}, {"kind", c.kind}, {"name", c.name}, {"status", "ok"}, {"reason", ""}};
    nexus::Options options;
    try {
      options = nexus::Options::parse(c.selftest_options);
    } catch (const std::exception& e) {
      result["status"] = "broken";
      result["reason"] = std::string("bad self-test options: ") + e.what();
      out.emit(result);
      continue;
    }
    stage(out, "creating " + what);
    void* object = nullptr;
    char error[2048] = {0};
    if (create(c.kind.c_str(), c.name.c_str(), &options, &object, error, sizeof error) != 0 || !object) {
      result["status"] = "broken";
      result["reason"] = std::string("factory failed: ") + (error[0] ? error : "no object and no message");
      out.emit(result);
      continue;
    }
    stage(out, "running the self-test of " + what);
    try {
      self_test(c.kind, object);
    } catch (const c10::Error& e) {
      result["status"] = "broken";
      result["reason"] = std::string("self-test failed: ") + e.what_without_backtrace();
    } catch (const std::exception& e) {
      result["status"] = "broken";
      result["reason"] = std::string("self-test failed: ") + e.what();
    }
    destroy(c.kind.c_str(), object);
    out.emit(result);
  }
  out.emit({{"event", "done"}});
  return 0;
}

}  // namespace nexus::registry
