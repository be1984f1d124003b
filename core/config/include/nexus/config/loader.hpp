// Reading compositions: YAML files with includes, plus command-line overrides.
#pragma once

#include <string>
#include <vector>

#include "nexus/config/node.hpp"

namespace nexus::config {

// Parses `path`, resolves `include:` (a path or list of paths, relative to the including file;
// included files are deep-merged first, in order, then the including file on top; maps merge,
// sequences and scalars replace) and returns the merged tree. Throws ConfigError on YAML syntax
// errors, missing include files, include cycles and duplicate keys, always with file:line:col.
Node load_file(const std::string& path);

// Parses YAML text held in memory (`name` is used as the file name in locations).
Node load_string(const std::string& text, const std::string& name);

// Applies "a.b.c=value" (value parsed as YAML, so `--set trainer.lr=1e-3` or
// `--set teachers.0.width=384` work; numeric path parts index sequences). Creates missing map
// keys. Throws ConfigError (location "<--set>:1:col") on a malformed override or a path through
// a scalar / out-of-range index.
void apply_override(Node& root, const std::string& assignment);

}  // namespace nexus::config
