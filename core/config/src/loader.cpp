// Files and includes: read a composition, pull in what it includes, and merge the layers.
#include "nexus/config/loader.hpp"

#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "nexus/config/diagnostic.hpp"
#include "yaml_reader.hpp"

namespace nexus::config {

namespace fs = std::filesystem;

namespace {

enum class Read { Ok, Missing, TooLarge };

// Reads at most `max_bytes` (and one more, to tell that the file is larger): the size a file
// reports is not trusted, since /proc files report 0 and a file can grow while it is read.
Read read_text(const std::string& path, std::size_t max_bytes, std::string& text) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return Read::Missing;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Read::Missing;  // unreadable: the caller reports it at the include or the command line
  text.clear();
  char chunk[1 << 14];
  while (text.size() <= max_bytes && in.read(chunk, sizeof chunk).gcount() > 0)
    text.append(chunk, std::size_t(in.gcount()));
  if (in.bad()) return Read::Missing;
  return text.size() > max_bytes ? Read::TooLarge : Read::Ok;
}

Diagnostic too_large(const Location& at, const std::string& file) {
  return {at, "'" + file + "' takes the composition past " + std::to_string(kMaxCompositionBytes) +
                  " bytes (limit kMaxCompositionBytes, the file and its includes together)",
          "a composition is a few kilobytes of YAML; check that the path names the intended file"};
}

std::string canonical_key(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(path, ec);
  return ec ? fs::path(path).lexically_normal().string() : p.string();
}

// Maps merge key by key; anything else in `overlay` replaces what `base` had.
void merge_into(Node& base, Node&& overlay) {
  if (!base.is_map() || !overlay.is_map()) {
    base = std::move(overlay);
    return;
  }
  // Indexed, so that two maps of many keys do not merge in quadratic time.
  std::unordered_map<std::string, size_t> index;
  for (size_t j = 0; j < base.map.size(); ++j) index.emplace(base.map[j].first, j);
  for (size_t i = 0; i < overlay.map.size(); ++i) {
    auto& [key, value] = overlay.map[i];
    const Location& key_loc = overlay.key_locs[i];
    if (const auto at = index.find(key); at != index.end()) {
      merge_into(base.map[at->second].second, std::move(value));
      base.key_locs[at->second] = key_loc;  // the layer that decided the value is the one to blame
    } else {
      index.emplace(key, base.map.size());
      base.map.emplace_back(key, std::move(value));
      base.key_locs.push_back(key_loc);
    }
  }
  base.loc = overlay.loc;
}

void remove_key(Node& map, const std::string& key) {
  for (size_t i = 0; i < map.map.size(); ++i) {
    if (map.map[i].first != key) continue;
    map.map.erase(map.map.begin() + static_cast<std::ptrdiff_t>(i));
    map.key_locs.erase(map.key_locs.begin() + static_cast<std::ptrdiff_t>(i));
    return;
  }
}

class IncludeResolver {
 public:
  explicit IncludeResolver(std::size_t bytes_read) : bytes_left_(kMaxCompositionBytes - bytes_read) {}

  // `file` is the name used in locations; `text` its content.
  Node load(const std::string& file, const std::string& text) {
    Node root = detail::parse_yaml(text, file, budget_);
    if (!root.is_map()) {
      Diagnostic d{Location{file, 1, 1}, "", "a composition starts with 'nexus: 1' followed by "
                                             "name, shared_dim, teachers, router, heads and losses"};
      d.message = root.is_null() ? "the file is empty; expected a YAML mapping"
                                 : "expected the file to hold a YAML mapping (key: value lines), "
                                   "found a " + root.kind_name();
      throw ConfigError({d});
    }
    const Node* include = root.find("include");
    if (!include) return root;

    std::vector<Diagnostic> diags;
    std::vector<const Node*> entries;
    if (include->is_scalar()) {
      entries.push_back(include);
    } else if (include->is_seq()) {
      for (const auto& item : include->items) entries.push_back(&item);
    } else {
      diags.push_back({include->loc, "'include' expects a file path or a list of paths, got a " +
                                         include->kind_name(), ""});
    }

    Node merged;
    merged.kind = Node::Kind::Map;
    merged.loc = root.loc;
    stack_.push_back({canonical_key(file), file, {}});
    for (const Node* entry : entries) {
      if (!entry->is_scalar() || entry->scalar.empty()) {
        diags.push_back({entry->loc, "an include entry must be a non-empty file path, got a " +
                                         entry->kind_name(), ""});
        continue;
      }
      stack_.back().include_loc = entry->loc;
      try {
        merge_into(merged, include_one(file, *entry));
      } catch (const ConfigError& e) {
        diags.insert(diags.end(), e.diagnostics().begin(), e.diagnostics().end());
      }
    }
    stack_.pop_back();
    if (!diags.empty()) throw ConfigError(std::move(diags));

    remove_key(root, "include");
    merge_into(merged, std::move(root));
    return merged;
  }

 private:
  struct Frame {
    std::string canonical;
    std::string file;
    Location include_loc;  // the include entry of this file being followed right now
  };

  Node include_one(const std::string& from, const Node& entry) {
    fs::path target(entry.scalar);
    if (target.is_relative()) target = fs::path(from).parent_path() / target;
    const std::string file = target.lexically_normal().string();
    const std::string key = canonical_key(file);
    for (size_t i = 0; i < stack_.size(); ++i) {
      if (stack_[i].canonical != key) continue;
      // Blame the include that starts the loop, in the outermost file of the cycle: that is
      // the file the user asked for, or the first one on the way there.
      std::string chain;
      for (size_t j = i; j < stack_.size(); ++j) chain += stack_[j].file + " -> ";
      chain += file;
      throw ConfigError({{stack_[i].include_loc, "include cycle: " + chain,
                          "the include at " + entry.loc.str() + " leads back to " + file +
                              "; a file cannot include itself, directly or indirectly"}});
    }
    // Not a cycle, yet a few files that each include the next ones several times would be read
    // and merged exponentially often.
    if (++includes_ > kMaxIncludes)
      throw ConfigError({{entry.loc, "more than " + std::to_string(kMaxIncludes) +
                                         " includes (limit kMaxIncludes, counting a file each time it is included)",
                          "include each file once, from the composition that needs it"}});
    std::string text;
    switch (read_text(file, bytes_left_, text)) {
      case Read::Missing:
        throw ConfigError({{entry.loc, "included file '" + entry.scalar + "' not found",
                            "looked for " + file + " (include paths are relative to the including file)"}});
      case Read::TooLarge:
        throw ConfigError({too_large(entry.loc, file)});
      case Read::Ok:
        break;
    }
    bytes_left_ -= text.size();
    return load(file, text);
  }

  std::vector<Frame> stack_;
  detail::YamlBudget budget_;
  std::size_t includes_ = 0;
  std::size_t bytes_left_;
};

}  // namespace

Node load_file(const std::string& path) {
  std::string text;
  switch (read_text(path, kMaxCompositionBytes, text)) {
    case Read::Missing:
      throw ConfigError({{Location{path, 1, 1}, "cannot read composition file '" + path + "'",
                          "check that the path exists and is a readable file"}});
    case Read::TooLarge:
      throw ConfigError({too_large(Location{path, 1, 1}, path)});
    case Read::Ok:
      break;
  }
  return IncludeResolver(text.size()).load(path, text);
}

Node load_string(const std::string& text, const std::string& name) {
  if (text.size() > kMaxCompositionBytes) throw ConfigError({too_large(Location{name, 1, 1}, name)});
  return IncludeResolver(text.size()).load(name, text);
}

}  // namespace nexus::config
