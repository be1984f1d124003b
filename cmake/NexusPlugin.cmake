# nexus_add_plugin(<target> SOURCES <src>... [OUTPUT_DIRECTORY <dir>])
#
# Builds a NEXUS plugin library the same way for in-tree and third-party plugins: a MODULE
# library linked only against the header-only plugin API and libtorch, with hidden visibility
# (only the three boundary functions are exported) and -fno-gnu-unique, because glibc never
# unloads a library that carries STB_GNU_UNIQUE symbols.
function(nexus_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE nexus::plugin_api)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_compile_options(${target} PRIVATE -fno-gnu-unique)
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
endfunction()
