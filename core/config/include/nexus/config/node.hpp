// A YAML document as a tree in which every value remembers where it came from, so that any later
// check (schema, plugins, widths, runtime) can point at file:line:column.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace nexus::config {

struct Location {
  std::string file;  // path as given, or "<--set>" for a command-line override
  int line = 0;      // 1-based; 0 = unknown
  int column = 0;    // 1-based; 0 = unknown
  std::string str() const;  // "file:line:col"
};

class Node {
 public:
  enum class Kind { Null, Scalar, Sequence, Map };

  Kind kind = Kind::Null;
  Location loc;                                   // where the value starts
  std::string scalar;                             // Kind::Scalar (raw text, unquoted)
  bool quoted = false;                            // scalar was quoted in YAML ('1' is a string)
  std::vector<Node> items;                        // Kind::Sequence
  std::vector<std::pair<std::string, Node>> map;  // Kind::Map, in document order
  std::vector<Location> key_locs;                 // Kind::Map, location of each key

  bool is_map() const { return kind == Kind::Map; }
  bool is_seq() const { return kind == Kind::Sequence; }
  bool is_scalar() const { return kind == Kind::Scalar; }
  bool is_null() const { return kind == Kind::Null; }
  const Node* find(const std::string& key) const;   // nullptr if absent or not a map
  Node* find(const std::string& key);
  const Location* key_loc(const std::string& key) const;
  std::string kind_name() const;                    // "mapping", "sequence", "scalar", "null"
};

}  // namespace nexus::config
