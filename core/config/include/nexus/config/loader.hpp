// Reading compositions: YAML files with includes, plus command-line overrides.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "nexus/config/node.hpp"

namespace nexus::config {

// Limits on one composition: the file named on the command line and everything it includes
// (docs/security-fuzzing.md). A YAML alias repeats its anchor's whole value, so a 1 KB file of
// nested aliases (`b: [*a, *a, ...]`) describes a tree of billions of values; a web of files that
// each include the next ones several times multiplies the same way. The limits sit far above any
// real composition (the largest in configs/ and tests/ has a few hundred values and 4 files) and
// far below what would hurt: beyond one, loading stops with a ConfigError naming it.
//   values in the tree, with every alias expanded and every include merged in
constexpr std::size_t kMaxCompositionNodes = 100000;
//   bytes of scalar text in that tree (an alias to a long string copies the string)
constexpr std::size_t kMaxCompositionScalarBytes = std::size_t(16) << 20;
//   files read through `include:`, counting a file each time it is included
constexpr std::size_t kMaxIncludes = 64;
//   bytes read: the composition file and every included file together
constexpr std::size_t kMaxCompositionBytes = std::size_t(4) << 20;

// Parses `path`, resolves `include:` (a path or list of paths, relative to the including file;
// included files are deep-merged first, in order, then the including file on top; maps merge,
// sequences and scalars replace) and returns the merged tree. Throws ConfigError on YAML syntax
// errors, missing include files, include cycles, duplicate keys and a composition beyond the
// limits above, always with file:line:col.
Node load_file(const std::string& path);

// Parses YAML text held in memory (`name` is used as the file name in locations).
Node load_string(const std::string& text, const std::string& name);

// Applies "a.b.c=value" (value parsed as YAML, so `--set trainer.lr=1e-3` or
// `--set teachers.0.width=384` work; numeric path parts index sequences). Creates missing map
// keys. Throws ConfigError (location "<--set>:1:col") on a malformed override or a path through
// a scalar / out-of-range index.
void apply_override(Node& root, const std::string& assignment);

}  // namespace nexus::config
