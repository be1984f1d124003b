#include "nexus/config/emit.hpp"

#include <yaml-cpp/yaml.h>

namespace nexus::config {

namespace {

void emit(YAML::Emitter& out, const Node& n) {
  switch (n.kind) {
    case Node::Kind::Null:
      out << YAML::Null;
      break;
    case Node::Kind::Scalar:
      if (n.quoted || n.scalar.empty()) out << YAML::DoubleQuoted;
      out << n.scalar;
      break;
    case Node::Kind::Sequence:
      out << YAML::BeginSeq;
      for (const auto& item : n.items) emit(out, item);
      out << YAML::EndSeq;
      break;
    case Node::Kind::Map:
      out << YAML::BeginMap;
      for (const auto& [key, value] : n.map) {
        out << YAML::Key << key << YAML::Value;
        emit(out, value);
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

std::string to_yaml(const Node& root) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit(out, root);
  return std::string(out.c_str()) + "\n";
}

}  // namespace nexus::config
