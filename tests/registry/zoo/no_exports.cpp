// A perfectly good shared library that is not a NEXUS plugin: it exports no query function.
extern "C" __attribute__((visibility("default"))) int some_other_function() { return 42; }
