// Discovery, the probe and the handshake against a zoo of broken plugins.
#include <doctest/doctest.h>
#include <elf.h>
#include <torch/version.h>

#include <nexus/plugin_api.hpp>

#include <map>
#include <set>

#include "nexus/base/files.hpp"
#include "nexus/registry/handshake.hpp"
#include "nexus/registry/probe.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;
using registry::Status;

namespace {

void copy_into(const std::string& from, const fs::path& dir, const std::string& as = "") {
  fs::copy_file(from, dir / (as.empty() ? fs::path(from).filename() : fs::path(as)));
}

std::string abi(unsigned major, unsigned minor) { return std::to_string(major) + "." + std::to_string(minor); }

registry::Registry scan_copy_of(const std::string& library, const TempDir& dir) {
  copy_into(test_plugin(library), dir.path);
  return scan_only({dir.str()});
}

// A registry that scanned a folder holding one test plugin, whose component `name` probed ok.
struct OnePlugin {
  TempDir dir;
  registry::Registry reg;
  const registry::ComponentRecord* c;
  OnePlugin(const std::string& library, const std::string& name) : reg(scan_copy_of(library, dir)), c(row(reg, name)) {
    REQUIRE(c != nullptr);
    CHECK(c->status == Status::Ok);
  }
};

}  // namespace

TEST_CASE("every built-in plugin probes ok, each from its own library") {
  auto reg = scan_only({NEXUS_BUILTIN_PLUGIN_DIR});
  std::map<std::string, std::string> expected = {
      {"linear", "tower"},        {"mlp", "tower"},          {"lowrank", "tower"},         {"softmax", "router"},
      {"topk", "router"},         {"sigmoid", "router"},     {"conditioned", "router"},    {"mse", "loss"},
      {"cosine", "loss"},         {"cross_entropy", "loss"}, {"kl", "loss"},               {"load_balance", "loss"},
      {"z_loss", "loss"},         {"routing_entropy", "loss"}, {"torchscript", "teacher"}, {"hf_encoder", "teacher"},
      {"feature_file", "teacher"}, {"decoder_llm", "teacher"}};
  REQUIRE(expected.size() == 18);
  std::set<std::string> libs;
  for (const auto& [name, kind] : expected) {
    const auto* c = reg.find(kind, name);
    REQUIRE_MESSAGE(c != nullptr, kind << " " << name);
    CHECK(c->status == Status::Ok);
    CHECK(c->reason.empty());
    libs.insert(c->library);
  }
  CHECK(libs.size() == 7);
  CHECK(reg.libraries().size() == 7);
}

TEST_CASE("broken plugins are listed with exact reasons and the host keeps working") {
  TempDir dir, dir2;
  // Not a library at all.
  std::ofstream(dir.path / "not_a_library.so") << "this is a text file, not an ELF shared object\n";
  // A library cut off by a failed copy: keep the first 64 KiB.
  {
    std::ifstream in(builtin("nexus_towers.so"), std::ios::binary);
    std::vector<char> head(65536);
    in.read(head.data(), std::streamsize(head.size()));
    std::ofstream(dir.path / "truncated.so", std::ios::binary).write(head.data(), in.gcount());
  }
  for (auto lib : {"no_exports_plugin.so", "abi_major_plugin.so", "abi_minor_plugin.so", "torch_mismatch_plugin.so",
                   "cxx11_mismatch_plugin.so", "throwing_plugin.so", "segfault_plugin.so", "hanging_plugin.so",
                   "silent_plugin.so", "good_plugin.so"})
    copy_into(test_plugin(lib), dir.path);
  copy_into(test_plugin("good_plugin.so"), dir2.path);  // same plugin again, later in the search path
  for (auto lib : {"nexus_towers.so"}) copy_into(builtin(lib), dir.path);

  auto reg = scan_only({dir.str(), dir2.str()}, /*timeout=*/6.0);  // generous: probes start libtorch, slow on a loaded 2-core machine

  auto reason = [&](const std::string& name) {
    const auto* r = row(reg, name);
    REQUIRE_MESSAGE(r != nullptr, name);
    return r->reason;
  };
  auto status = [&](const std::string& name) {
    const auto* r = row(reg, name);
    REQUIRE_MESSAGE(r != nullptr, name);
    return r->status;
  };

  CHECK(status("not_a_library.so") == Status::Broken);
  CHECK(reason("not_a_library.so") == "not a shared library: the file does not start with an ELF header");

  Elf64_Ehdr h{};
  std::ifstream(builtin("nexus_towers.so"), std::ios::binary).read(reinterpret_cast<char*>(&h), sizeof h);
  const auto headers_end = std::max(h.e_phoff + uint64_t(h.e_phnum) * h.e_phentsize, h.e_shoff + uint64_t(h.e_shnum) * h.e_shentsize);
  CHECK(status("truncated.so") == Status::Broken);
  CHECK(reason("truncated.so") == "truncated library: its headers end at byte " + std::to_string(headers_end) +
                                      " but the file has 65536 bytes");

  CHECK(status("no_exports_plugin.so") == Status::Broken);
  CHECK(reason("no_exports_plugin.so") ==
        "not a NEXUS plugin: missing export symbol 'nexus_plugin_query' (declare the plugin with "
        "NEXUS_PLUGIN_BEGIN/NEXUS_PLUGIN_END)");

  const auto host = abi(NEXUS_ABI_MAJOR, NEXUS_ABI_MINOR);
  CHECK(status("abi_major_plugin_tower") == Status::Incompatible);
  CHECK(reason("abi_major_plugin_tower") == "plugin ABI " + abi(NEXUS_ABI_MAJOR + 1, NEXUS_ABI_MINOR) + " is newer than this host's ABI " +
                                                host + ": upgrade nexus to one with plugin ABI " + std::to_string(NEXUS_ABI_MAJOR + 1) + ".x, or rebuild the "
                                                "plugin against this host's plugin_api");
  CHECK(status("abi_minor_plugin_tower") == Status::Incompatible);
  CHECK(reason("abi_minor_plugin_tower") == "plugin needs ABI " + abi(NEXUS_ABI_MAJOR, 99) + " but this host provides " +
                                                host + ": upgrade nexus, or rebuild the plugin against this host's plugin_api");
  CHECK(status("torch_mismatch_plugin_tower") == Status::Incompatible);
  CHECK(reason("torch_mismatch_plugin_tower") == std::string("plugin was built against libtorch 9.9.9 but this host uses libtorch ") +
                                                     TORCH_VERSION + ": rebuild the plugin against libtorch " + TORCH_VERSION);
  CHECK(status("cxx11_mismatch_plugin_tower") == Status::Incompatible);
  CHECK(reason("cxx11_mismatch_plugin_tower") ==
        "plugin was built with _GLIBCXX_USE_CXX11_ABI=0 but this host uses 1: rebuild the plugin with the flags of the "
        "host's libtorch (TORCH_CXX_FLAGS)");

  CHECK(status("throwing_plugin") == Status::Broken);
  CHECK(reason("throwing_plugin") == "factory failed: weights file is corrupt");
  CHECK(status("segfault_plugin") == Status::Broken);
  CHECK(reason("segfault_plugin") == "probe crashed with signal 11 (SIGSEGV) while creating tower 'segfault_plugin'");
  CHECK(status("hanging_plugin") == Status::Broken);
  CHECK(reason("hanging_plugin") == "probe timed out after 6 s while creating tower 'hanging_plugin'");
  // Closing its report without exiting does not stall the scan either.
  CHECK(status("silent_plugin") == Status::Broken);
  CHECK(reason("silent_plugin") == "probe timed out after 6 s while creating tower 'silent_plugin'");

  // The first good_plugin wins; the copy later in the search path is listed as a duplicate.
  const auto first = fs::canonical(dir.path / "good_plugin.so").string();
  std::vector<registry::ComponentRecord> goods;
  for (const auto& c : reg.components())
    if (c.name == "good_plugin_tower") goods.push_back(c);
  REQUIRE(goods.size() == 2);
  CHECK(goods[0].status == Status::Ok);
  CHECK(goods[0].library == first);
  CHECK(goods[1].status == Status::Duplicate);
  CHECK(goods[1].reason == "duplicate: tower 'good_plugin_tower' 1.0.0 is already provided by " + first +
                               ", which comes first in the search path");

  // None of the broken libraries was ever loaded into this process...
  for (auto lib : {"segfault_plugin.so", "hanging_plugin.so", "silent_plugin.so", "throwing_plugin.so", "abi_major_plugin.so",
                   "torch_mismatch_plugin.so", "truncated.so"})
    CHECK_MESSAGE(!is_mapped(lib), lib);
  // ...and the good ones still work.
  auto tower = reg.create_tower("linear", Options().set("d_in", "3").set("d_out", "2"));
  CHECK(tower->forward(torch::ones({1, 3})).size(1) == 2);
  CHECK(reg.create_tower("good_plugin_tower", Options())->out_features() == 4);

  // Asking for a broken component explains why instead of loading it.
  try {
    reg.create_tower("throwing_plugin", Options());
    FAIL("expected PluginError");
  } catch (const registry::PluginError& e) {
    CHECK(std::string(e.what()).find("broken: factory failed: weights file is corrupt") != std::string::npos);
  }
  try {
    reg.create_tower("lineer", Options());
    FAIL("expected PluginError");
  } catch (const registry::PluginError& e) {
    CHECK(std::string(e.what()).rfind("no tower plugin named 'lineer' (available: good_plugin_tower, linear, mlp, lowrank)", 0) == 0);
  }
}

TEST_CASE("a plugin that prints what looks like a probe report cannot forge one") {
  OnePlugin p("chatty_plugin.so", "chatty_plugin");
  CHECK(p.c->reason.empty());
  CHECK(p.reg.create_tower("chatty_plugin", Options())->out_features() == 2);
}

TEST_CASE("the plugin guide's first example builds, loads and works as written") {
  OnePlugin p("doc_example_plugin.so", "my_tower");
  CHECK(p.c->plugin_name == "my_towers");
  const auto tower = p.reg.create_tower("my_tower", Options().set("d_in", "5").set("d_out", "3"));
  CHECK(tower->forward(torch::ones({2, 5})).sizes() == torch::IntArrayRef{2, 3});
}

TEST_CASE("a probe that speaks another protocol, or reports on stdout, is not believed") {
  TempDir dir, plugins;
  copy_into(test_plugin("good_plugin.so"), plugins.path);
  auto with_probe = [&](const std::string& script) {
    const auto exe = dir.path / "probe.sh";
    std::ofstream(exe) << "#!/bin/sh\n" << script << "\n";
    fs::permissions(exe, fs::perms::owner_all);
    ::setenv("NEXUS_PROBE_EXE", exe.c_str(), 1);
    auto reg = scan_only({plugins.str()});
    ::unsetenv("NEXUS_PROBE_EXE");
    const auto* r = row(reg, "good_plugin.so");  // no component was ever reported: the library is the row
    REQUIRE(r != nullptr);
    return *r;
  };
  // A probe of another installation, speaking protocol 1: refused with the reason.
  auto r = with_probe("echo '@nexus {\"event\":\"hello\",\"protocol\":1}' >&3; echo '@nexus {\"event\":\"done\"}' >&3");
  CHECK(r.status == Status::Broken);
  CHECK(r.reason.find("speaks probe protocol 1, this nexus " + std::to_string(registry::kProbeProtocol)) != std::string::npos);
  // Events without a hello (a probe older than the protocol) are not taken for a report.
  r = with_probe("echo '@nexus {\"event\":\"done\"}' >&3");
  CHECK(r.status == Status::Broken);
  CHECK(r.reason == "probe ended without a report while starting the probe");
  // A report on stdout instead of the report descriptor never reaches the parent.
  r = with_probe("echo '@nexus {\"event\":\"hello\",\"protocol\":" + std::to_string(registry::kProbeProtocol) +
                 "}'; echo '@nexus {\"event\":\"done\"}'");
  CHECK(r.status == Status::Broken);
  CHECK(r.reason == "probe ended without a report while starting the probe");
}

TEST_CASE("probe results are cached on (path, content)") {
  TempDir plugins, cache;
  copy_into(test_plugin("good_plugin.so"), plugins.path);
  copy_into(test_plugin("throwing_plugin.so"), plugins.path);
  auto first = scan_only({plugins.str()}, 30.0, cache.str());
  for (const auto& lib : first.libraries()) CHECK_FALSE(lib.from_cache);
  auto second = scan_only({plugins.str()}, 30.0, cache.str());
  for (const auto& lib : second.libraries()) CHECK(lib.from_cache);
  CHECK(row(second, "throwing_plugin")->reason == "factory failed: weights file is corrupt");
  // Touching a library changes nothing: the content is the key.
  const auto good = plugins.path / "good_plugin.so";
  fs::last_write_time(good, fs::last_write_time(good) + std::chrono::seconds(5));
  auto third = scan_only({plugins.str()}, 30.0, cache.str());
  for (const auto& lib : third.libraries()) CHECK(lib.from_cache);
  // Changing a library in place, size and modification time kept, makes it probed again (a key
  // of size and mtime would trust the old result); the other stays cached.
  const auto throwing = plugins.path / "throwing_plugin.so";
  const auto mtime = fs::last_write_time(throwing);
  auto bytes = read_file(throwing);
  const auto at = bytes.find("weights file is corrupt");
  REQUIRE(at != std::string::npos);
  bytes.replace(at, 7, "WEIGHTS");
  {
    std::ofstream out(throwing, std::ios::binary | std::ios::in);  // in place: no new file, same size
    out.write(bytes.data(), std::streamsize(bytes.size()));
  }
  fs::last_write_time(throwing, mtime);
  auto fourth = scan_only({plugins.str()}, 30.0, cache.str());
  for (const auto& lib : fourth.libraries())
    CHECK(lib.from_cache == (fs::path(lib.path).filename() == "good_plugin.so"));
  CHECK(row(fourth, "throwing_plugin")->reason == "factory failed: WEIGHTS file is corrupt");
}

TEST_CASE("a library changed after its probe is not loaded") {
  TempDir plugins, cache;
  copy_into(test_plugin("good_plugin.so"), plugins.path, "changed_after_probe.so");
  auto reg = scan_only({plugins.str()}, 30.0, cache.str());
  REQUIRE(row(reg, "good_plugin_tower")->status == Status::Ok);
  // Replaced after the scan, before the first load: the probe's verdict is about other bytes.
  fs::remove(plugins.path / "changed_after_probe.so");
  copy_into(test_plugin("segfault_plugin.so"), plugins.path, "changed_after_probe.so");
  try {
    reg.create_tower("good_plugin_tower", Options());
    FAIL("expected PluginError");
  } catch (const registry::PluginError& e) {
    CHECK(std::string(e.what()).find("changed since it was probed; not loading it") != std::string::npos);
  }
  CHECK_FALSE(is_mapped("changed_after_probe.so"));
}

TEST_CASE("search path order: --plugin-path, NEXUS_PLUGIN_PATH, then defaults") {
  TempDir a, b, c;
  ::setenv("NEXUS_PLUGIN_PATH", (b.str() + ":" + c.str() + ":" + a.str()).c_str(), 1);
  registry::RegistryOptions o;
  o.plugin_paths = {a.str()};
  auto path = registry::plugin_search_path(o);
  ::unsetenv("NEXUS_PLUGIN_PATH");
  REQUIRE(path.size() >= 3);
  CHECK(path[0] == fs::canonical(a.path).string());
  CHECK(path[1] == fs::canonical(b.path).string());
  CHECK(path[2] == fs::canonical(c.path).string());
  CHECK(std::count(path.begin(), path.end(), fs::canonical(a.path).string()) == 1);  // no repeats
  CHECK(path[3] == (fs::path(NEXUS_BIN_DIR).parent_path() / "lib" / "nexus" / "plugins").string());
}

TEST_CASE("handshake sentences say which side to rebuild") {
  const auto host = registry::HostAbi::current();
  nexus_plugin_info info{};
  info.struct_size = sizeof info;
  info.abi_major = host.abi_major;
  info.abi_minor = host.abi_minor;
  info.torch_version = TORCH_VERSION;
  info.cxx11_abi = host.cxx11_abi;
  info.cuda = host.cuda;
  info.plugin_name = "p";
  info.plugin_version = "1";
  CHECK(registry::check_handshake(info, host).empty());
  auto older = info;
  older.abi_major = host.abi_major - 1;
  CHECK(registry::check_handshake(older, host).find("(major versions differ): rebuild the plugin") != std::string::npos);
  auto cuda = info;
  cuda.cuda = 1 - host.cuda;
  CHECK(registry::check_handshake(cuda, host).find("rebuild the plugin against the host's libtorch") != std::string::npos);
  auto tiny = info;
  tiny.struct_size = 4;
  CHECK(registry::check_handshake(tiny, host) == "plugin info is only 4 bytes: not a NEXUS plugin or a corrupt one");
}
