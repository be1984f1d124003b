/* The NEXUS plugin boundary, in plain C: what a host reads from a plugin library before it runs
 * any of the plugin's real code. Plugins do not write this by hand; NEXUS_PLUGIN_BEGIN/END
 * (nexus/export.hpp) generate it.
 *
 * Versioning: the host accepts a plugin only if abi_major is equal and the plugin's abi_minor is
 * not newer than the host's. Minor versions only ever append fields to these structs; the
 * struct_size field tells the host which fields a plugin filled. Because the C++ side of the
 * boundary passes libtorch types, the libtorch version, the C++11 string ABI and the CUDA flavour
 * must also match exactly. */
#ifndef NEXUS_ABI_H
#define NEXUS_ABI_H

#include <stddef.h>
#include <stdint.h>

/* 2: TeacherInput gained `lengths` (audio), which changes the layout a plugin returns by value. */
#define NEXUS_ABI_MAJOR 2
#define NEXUS_ABI_MINOR 0

/* Exported symbol names. */
#define NEXUS_QUERY_SYMBOL "nexus_plugin_query"
#define NEXUS_CREATE_SYMBOL "nexus_plugin_create"
#define NEXUS_DESTROY_SYMBOL "nexus_plugin_destroy"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nexus_component_info {
  const char* kind;             /* "teacher", "tower", "router" or "loss" */
  const char* name;             /* unique per kind, e.g. "linear" */
  const char* description;      /* one line for `nexus plugins list` */
  const char* options_schema;   /* "d_in:int!,d_out:int!,bias:bool=true" (see docs/plugins.md) */
  const char* selftest_options; /* "d_in=8;d_out=4": options the probe creates it with */
} nexus_component_info;

typedef struct nexus_plugin_info {
  uint32_t struct_size; /* sizeof(nexus_plugin_info) as the plugin was compiled */
  uint32_t abi_major;
  uint32_t abi_minor;
  const char* torch_version; /* TORCH_VERSION the plugin was compiled against */
  int32_t cxx11_abi;         /* _GLIBCXX_USE_CXX11_ABI */
  int32_t cuda;              /* 1 if compiled against a CUDA libtorch */
  const char* plugin_name;
  const char* plugin_version;
  uint32_t component_count;
  const nexus_component_info* components;
} nexus_plugin_info;

/* Returns static data; must not allocate, throw or touch libtorch. */
typedef const nexus_plugin_info* (*nexus_query_fn)(void);

/* Creates component (kind, name) from `options` (a const nexus::Options*). On success stores the
 * object (a pointer to the kind's base class: nexus::Teacher*, nexus::Tower*, nexus::Router*,
 * nexus::Loss*) in *out and returns 0. On failure returns non-zero and writes a message into
 * error[0..error_size). Never lets an exception escape. */
typedef int (*nexus_create_fn)(const char* kind, const char* name, const void* options, void** out,
                               char* error, size_t error_size);

/* Destroys an object made by nexus_create_fn, with the plugin's own allocator and destructor. */
typedef void (*nexus_destroy_fn)(const char* kind, void* object);

#ifdef __cplusplus
}
#endif

#endif /* NEXUS_ABI_H */
