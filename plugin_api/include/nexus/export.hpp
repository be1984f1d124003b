// Declares what a plugin library provides and generates the three exported C functions of the
// boundary (nexus/abi.h). One NEXUS_PLUGIN_BEGIN/END block per library:
//
//   NEXUS_PLUGIN_BEGIN("my_towers", "1.2.0")
//     NEXUS_TOWER(MyTower, "my_tower", "what it does", "d_in:int!,d_out:int!", "d_in=8;d_out=4")
//   NEXUS_PLUGIN_END()
//
// Each component class has a constructor taking `const nexus::Options&`; the generated factory
// checks the options against the schema and fills defaults first, and turns any exception into
// an error message, so nothing is thrown across the boundary.
#pragma once

#include <c10/util/Exception.h>
#include <torch/version.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <exception>
#include <string>

#include "nexus/abi.h"
#include "nexus/loss.hpp"
#include "nexus/options.hpp"
#include "nexus/router.hpp"
#include "nexus/teacher.hpp"
#include "nexus/tower.hpp"

#define NEXUS_EXPORT extern "C" __attribute__((visibility("default")))

// What the handshake reports. Overridable only so that tests can build deliberately mismatched
// plugins (tests/registry/zoo/versioned.cpp redefines them after this header); a real plugin
// never defines these.
#ifndef NEXUS_PLUGIN_BUILD_ABI_MAJOR
#define NEXUS_PLUGIN_BUILD_ABI_MAJOR NEXUS_ABI_MAJOR
#endif
#ifndef NEXUS_PLUGIN_BUILD_ABI_MINOR
#define NEXUS_PLUGIN_BUILD_ABI_MINOR NEXUS_ABI_MINOR
#endif
#ifndef NEXUS_PLUGIN_BUILD_TORCH_VERSION
#define NEXUS_PLUGIN_BUILD_TORCH_VERSION TORCH_VERSION
#endif
#ifndef NEXUS_PLUGIN_BUILD_CXX11_ABI
#define NEXUS_PLUGIN_BUILD_CXX11_ABI _GLIBCXX_USE_CXX11_ABI
#endif
#ifndef NEXUS_TORCH_CUDA  // set by the nexus CMake package from the libtorch it found
#define NEXUS_TORCH_CUDA 0
#endif

namespace nexus::detail {

struct Entry {
  nexus_component_info info;
  void* (*create)(const Options&);
  void (*destroy)(void*);
};

template <class Base> constexpr const char* kind_of();
template <> constexpr const char* kind_of<Teacher>() { return "teacher"; }
template <> constexpr const char* kind_of<Tower>() { return "tower"; }
template <> constexpr const char* kind_of<Router>() { return "router"; }
template <> constexpr const char* kind_of<Loss>() { return "loss"; }

template <class T, class Base>
void* create_as(const Options& options) {
  return static_cast<void*>(static_cast<Base*>(new T(options)));
}
template <class Base>
void destroy_as(void* object) {
  delete static_cast<Base*>(object);
}

template <std::size_t N>
std::array<nexus_component_info, N> collect_infos(const Entry (&entries)[N]) {
  std::array<nexus_component_info, N> out{};
  for (std::size_t i = 0; i < N; ++i) out[i] = entries[i].info;
  return out;
}

inline void write_error(char* buffer, std::size_t size, const std::string& message) {
  if (!buffer || size == 0) return;
  std::strncpy(buffer, message.c_str(), size - 1);
  buffer[size - 1] = '\0';
}

template <std::size_t N>
int create_component(const Entry (&entries)[N], const char* kind, const char* name, const void* options,
                     void** out, char* error, std::size_t error_size) {
  try {
    for (const auto& e : entries) {
      if (std::strcmp(e.info.kind, kind) != 0 || std::strcmp(e.info.name, name) != 0) continue;
      const auto& given = options ? *static_cast<const Options*>(options) : Options();
      *out = e.create(given.with_schema(e.info.options_schema));
      return 0;
    }
    write_error(error, error_size, std::string("this library has no ") + kind + " named '" + name + "'");
    return 2;
  } catch (const c10::Error& ex) {  // its what() carries a C++ backtrace nobody configuring a model needs
    write_error(error, error_size, ex.what_without_backtrace());
  } catch (const std::exception& ex) {
    write_error(error, error_size, ex.what());
  } catch (...) {
    write_error(error, error_size, "unknown exception");
  }
  return 1;
}

template <std::size_t N>
void destroy_component(const Entry (&entries)[N], const char* kind, void* object) {
  for (const auto& e : entries)
    if (std::strcmp(e.info.kind, kind) == 0) return e.destroy(object);
}

}  // namespace nexus::detail

#define NEXUS_COMPONENT_(Base, Class, name, description, options_schema, selftest_options)          \
  ::nexus::detail::Entry{{::nexus::detail::kind_of<Base>(), name, description, options_schema, selftest_options}, \
                         &::nexus::detail::create_as<Class, Base>, &::nexus::detail::destroy_as<Base>},

#define NEXUS_TEACHER(Class, name, description, options_schema, selftest_options) \
  NEXUS_COMPONENT_(::nexus::Teacher, Class, name, description, options_schema, selftest_options)
#define NEXUS_TOWER(Class, name, description, options_schema, selftest_options) \
  NEXUS_COMPONENT_(::nexus::Tower, Class, name, description, options_schema, selftest_options)
#define NEXUS_ROUTER(Class, name, description, options_schema, selftest_options) \
  NEXUS_COMPONENT_(::nexus::Router, Class, name, description, options_schema, selftest_options)
#define NEXUS_LOSS(Class, name, description, options_schema, selftest_options) \
  NEXUS_COMPONENT_(::nexus::Loss, Class, name, description, options_schema, selftest_options)

#define NEXUS_PLUGIN_BEGIN(plugin_name, plugin_version)  \
  namespace {                                            \
  constexpr const char* nexus_plugin_name_ = plugin_name; \
  constexpr const char* nexus_plugin_version_ = plugin_version; \
  const ::nexus::detail::Entry nexus_entries_[] = {

#define NEXUS_PLUGIN_END()                                                                             \
  };                                                                                                   \
  }                                                                                                    \
  NEXUS_EXPORT const nexus_plugin_info* nexus_plugin_query(void) {                                     \
    static const auto infos = ::nexus::detail::collect_infos(nexus_entries_);                          \
    static const nexus_plugin_info info = {                                                            \
        sizeof(nexus_plugin_info),     NEXUS_PLUGIN_BUILD_ABI_MAJOR, NEXUS_PLUGIN_BUILD_ABI_MINOR,     \
        NEXUS_PLUGIN_BUILD_TORCH_VERSION, NEXUS_PLUGIN_BUILD_CXX11_ABI, NEXUS_TORCH_CUDA,              \
        nexus_plugin_name_,            nexus_plugin_version_,        uint32_t(infos.size()),           \
        infos.data()};                                                                                 \
    return &info;                                                                                      \
  }                                                                                                    \
  NEXUS_EXPORT int nexus_plugin_create(const char* kind, const char* name, const void* options,       \
                                       void** out, char* error, size_t error_size) {                   \
    return ::nexus::detail::create_component(nexus_entries_, kind, name, options, out, error, error_size); \
  }                                                                                                    \
  NEXUS_EXPORT void nexus_plugin_destroy(const char* kind, void* object) {                             \
    ::nexus::detail::destroy_component(nexus_entries_, kind, object);                                  \
  }
