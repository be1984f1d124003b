#include "nexus/config/node.hpp"

namespace nexus::config {

std::string Location::str() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

const Node* Node::find(const std::string& key) const {
  if (kind != Kind::Map) return nullptr;
  for (const auto& [k, v] : map)
    if (k == key) return &v;
  return nullptr;
}

Node* Node::find(const std::string& key) {
  return const_cast<Node*>(static_cast<const Node&>(*this).find(key));
}

const Location* Node::key_loc(const std::string& key) const {
  if (kind != Kind::Map) return nullptr;
  for (size_t i = 0; i < map.size() && i < key_locs.size(); ++i)
    if (map[i].first == key) return &key_locs[i];
  return nullptr;
}

std::string Node::kind_name() const {
  switch (kind) {
    case Kind::Map: return "mapping";
    case Kind::Sequence: return "sequence";
    case Kind::Scalar: return "scalar";
    case Kind::Null: break;
  }
  return "null";
}

}  // namespace nexus::config
