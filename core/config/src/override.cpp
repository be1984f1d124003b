// `--set a.b.c=value`: edits the merged tree before validation.
#include <cctype>

#include "nexus/config/diagnostic.hpp"
#include "nexus/config/loader.hpp"
#include "yaml_reader.hpp"

namespace nexus::config {

namespace {

const char* const kSetFile = "<--set>";

[[noreturn]] void fail(int column, const std::string& assignment, const std::string& what,
                       const std::string& hint = "") {
  throw ConfigError({{Location{kSetFile, 1, column}, "in --set '" + assignment + "': " + what,
                      hint}});
}

// The value was parsed on its own; move its locations to where it sits in the assignment.
void shift_columns(Node& n, int offset) {
  n.loc.file = kSetFile;
  if (n.loc.line == 1) n.loc.column += offset;
  for (auto& item : n.items) shift_columns(item, offset);
  for (auto& [key, value] : n.map) shift_columns(value, offset);
  for (auto& loc : n.key_locs) {
    loc.file = kSetFile;
    if (loc.line == 1) loc.column += offset;
  }
}

bool parse_index(const std::string& part, size_t& index) {
  if (part.empty() || part.size() > 9) return false;
  for (char c : part)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  index = std::stoul(part);
  return true;
}

struct PathPart {
  std::string text;
  int column;  // 1-based, within the assignment
};

}  // namespace

void apply_override(Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  const std::string example = "write it as path=value, e.g. --set trainer.lr=3e-4 or "
                              "--set teachers.0.width=384";
  if (eq == std::string::npos) fail(1, assignment, "expected path=value, found no '='", example);
  if (eq == 0) fail(1, assignment, "the key path before '=' is empty", example);

  std::vector<PathPart> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = assignment.find('.', start);
    const size_t end = (dot == std::string::npos || dot > eq) ? eq : dot;
    parts.push_back({assignment.substr(start, end - start), static_cast<int>(start) + 1});
    if (parts.back().text.empty())
      fail(parts.back().column, assignment, "empty component in the key path",
           "components are separated by single dots: a.b.c");
    if (end == eq) break;
    start = end + 1;
  }

  const int value_column = static_cast<int>(eq) + 2;
  Node value;
  try {
    value = detail::parse_yaml(assignment.substr(eq + 1), kSetFile);
  } catch (const ConfigError& e) {
    Diagnostic d = e.diagnostics().front();
    fail(d.loc.line == 1 ? d.loc.column + value_column - 1 : value_column, assignment,
         d.message, d.hint.empty() ? "quote the value if it is meant as text" : d.hint);
  }
  shift_columns(value, value_column - 1);
  if (value.is_null()) value.loc = Location{kSetFile, 1, value_column};

  Node* cur = &root;
  std::string walked;
  for (const auto& part : parts) {
    const Location part_loc{kSetFile, 1, part.column};
    if (cur->is_null()) {  // `--set data.tasks.x.dataset=...` may create the whole branch
      cur->kind = Node::Kind::Map;
      cur->loc = part_loc;
    }
    if (cur->is_map()) {
      Node* next = cur->find(part.text);
      if (!next) {
        Node created;
        created.loc = part_loc;
        cur->map.emplace_back(part.text, std::move(created));
        cur->key_locs.push_back(part_loc);
        next = &cur->map.back().second;
      }
      cur = next;
    } else if (cur->is_seq()) {
      size_t index = 0;
      if (!parse_index(part.text, index))
        fail(part.column, assignment,
             "'" + walked + "' is a sequence, so the next path component must be an index, "
                            "got '" + part.text + "'",
             "use a 0-based number, e.g. " + walked + ".0");
      if (index >= cur->items.size())
        fail(part.column, assignment,
             "index " + part.text + " is out of range: '" + walked + "' has " +
                 std::to_string(cur->items.size()) + " entries",
             "indices start at 0");
      cur = &cur->items[index];
    } else {
      fail(part.column, assignment,
           "'" + walked + "' is a scalar ('" + cur->scalar + "'), so it has no '" + part.text +
               "' inside",
           "only mappings and sequences can be walked into; set '" + walked + "' itself");
    }
    walked += (walked.empty() ? "" : ".") + part.text;
  }
  *cur = std::move(value);
}

}  // namespace nexus::config
