#include "yaml_reader.hpp"

#include <cstdio>
#include <map>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "nexus/config/diagnostic.hpp"
#include "nexus/text.hpp"

namespace nexus::config::detail {

namespace {

// Anchors can make yaml-cpp build a node that contains itself (`a: &x [*x]`); no composition
// is anywhere near this deep, so hitting the limit means such a cycle.
constexpr int kMaxDepth = 64;

Location to_location(const YAML::Mark& mark, const std::string& file) {
  // yaml-cpp marks are 0-based, and -1 when unknown (e.g. an empty document).
  Location loc;
  loc.file = file;
  loc.line = mark.line >= 0 ? mark.line + 1 : 1;
  loc.column = mark.column >= 0 ? mark.column + 1 : 1;
  return loc;
}

// yaml-cpp 0.7 accepts a quoted scalar left open at the end of the file (when a newline
// follows it), swallowing everything after the quote; look for the closing quote ourselves.
bool quote_is_closed(const std::string& text, size_t start) {
  const char quote = text[start];
  for (size_t i = start + 1; i < text.size(); ++i) {
    if (quote == '"' && text[i] == '\\') {
      ++i;
    } else if (text[i] == quote) {
      if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;  // '' is an escaped quote inside a single-quoted string
        continue;
      }
      return true;
    }
  }
  return false;
}

class Converter {
 public:
  Converter(std::string file, const std::string& text, YamlBudget& budget)
      : file_(std::move(file)), text_(text), budget_(budget) {}

  Node convert(const YAML::Node& y, int depth) {
    Node n;
    n.loc = to_location(y.Mark(), file_);
    if (depth > kMaxDepth) {
      error(n.loc, "values nested more than " + std::to_string(kMaxDepth) + " levels deep",
            "an alias (*name) probably refers to the anchor (&name) that contains it");
      return n;
    }
    // yaml-cpp shares an anchor's node among its aliases; the tree built here copies it for every
    // alias, so this is where a billion laughs would cost memory and time: stop at once.
    if (budget_.nodes == 0) over_budget("values", kMaxCompositionNodes, "kMaxCompositionNodes");
    --budget_.nodes;
    switch (y.Type()) {
      case YAML::NodeType::Scalar:
        n.kind = Node::Kind::Scalar;
        if (y.Scalar().size() > budget_.scalar_bytes)
          over_budget("bytes of text", kMaxCompositionScalarBytes, "kMaxCompositionScalarBytes");
        budget_.scalar_bytes -= y.Scalar().size();
        n.scalar = y.Scalar();
        // yaml-cpp tags quoted and block scalars "!", plain ones "?"; an explicit !!str counts
        // as quoted too, since both mean "this is text, not a number".
        n.quoted = y.Tag() == "!" || y.Tag() == "tag:yaml.org,2002:str";
        if (const auto pos = static_cast<size_t>(y.Mark().pos);
            y.Mark().pos >= 0 && pos < text_.size() && (text_[pos] == '"' || text_[pos] == '\'') &&
            !quote_is_closed(text_, pos)) {
          error(n.loc, "invalid YAML: a quoted string is never closed",
                std::string("add the closing ") + text_[pos] + " where the string should end");
        }
        break;
      case YAML::NodeType::Sequence:
        n.kind = Node::Kind::Sequence;
        for (const auto& item : y) n.items.push_back(convert(item, depth + 1));
        break;
      case YAML::NodeType::Map:
        n.kind = Node::Kind::Map;
        convert_map(y, n, depth);
        break;
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        break;
    }
    return n;
  }

  std::vector<Diagnostic> take_diagnostics() { return std::move(diags_); }

 private:
  void convert_map(const YAML::Node& y, Node& n, int depth) {
    std::map<std::string, Location> seen;
    for (auto it = y.begin(); it != y.end(); ++it) {
      const Location key_loc = to_location(it->first.Mark(), file_);
      if (!it->first.IsScalar()) {
        error(key_loc, "mapping keys must be plain names, got a " +
                           std::string(it->first.IsNull() ? "null" : "non-scalar") + " key");
        continue;
      }
      const std::string key = it->first.Scalar();
      // yaml-cpp 0.7 keeps both entries of a repeated key; silently taking either would hide
      // a real mistake, usually a copy-paste.
      auto [prev, inserted] = seen.emplace(key, key_loc);
      if (!inserted) {
        error(key_loc, "duplicate key '" + key + "' in this mapping",
              "'" + key + "' is already set at " + prev->second.str() +
                  "; remove one of the two");
        continue;
      }
      if (depth == 0) top_key_loc_ = key_loc;
      Node value = convert(it->second, depth + 1);
      // An empty value (`key:`) gets the mark of the next token, often on a later line;
      // pointing at the key is clearer.
      if (value.is_null() && value.loc.line != key_loc.line) value.loc = key_loc;
      n.map.emplace_back(key, std::move(value));
      n.key_locs.push_back(key_loc);
    }
  }

  void error(const Location& loc, std::string message, std::string hint = "") {
    diags_.push_back({loc, std::move(message), std::move(hint)});
  }

  // Blames the top-level key being converted: a node inside an alias carries the mark of its
  // anchor, which is not where the expansion happens.
  [[noreturn]] void over_budget(const std::string& what, std::size_t limit, const std::string& name) {
    throw ConfigError({{top_key_loc_, "the composition expands to more than " + std::to_string(limit) + " " + what +
                                          " (limit " + name + "), with its aliases expanded and its includes merged",
                        "each alias (*name) copies the whole value of its anchor (&name); a composition "
                        "this large is almost certainly aliases nested inside aliases"}});
  }

  std::string file_;
  const std::string& text_;
  YamlBudget& budget_;
  Location top_key_loc_{file_, 1, 1};
  std::vector<Diagnostic> diags_;
};

// Where each document starts, and where the second one's root value starts. YAML::LoadAll of
// yaml-cpp 0.7 never returns on some invalid texts (a ',' outside brackets: jbeder/yaml-cpp#1040,
// fixed after 0.8 by #1319): its parser reports an empty document without consuming the token,
// again and again, and LoadAll collects them until memory runs out. So documents are counted here,
// stopping early; one that starts where the one before it did is that bug.
struct Documents : YAML::EventHandler {
  std::vector<YAML::Mark> starts, roots;  // per document: where it starts, where its value starts
  bool root_seen = false;

  void OnDocumentStart(const YAML::Mark& mark) override {
    starts.push_back(mark);
    roots.push_back(mark);
    root_seen = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { root(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { root(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override { root(mark); }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    root(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    root(mark);
  }
  void OnMapEnd() override {}

 private:
  void root(const YAML::Mark& mark) {
    if (!root_seen && !roots.empty()) roots.back() = mark;
    root_seen = true;
  }
};

// yaml-cpp's messages are terse; say what usually causes each one.
Diagnostic syntax_diagnostic(const YAML::Exception& e, const std::string& file) {
  Diagnostic d;
  d.loc = to_location(e.mark, file);
  const std::string& msg = e.msg;
  d.message = "invalid YAML: " + msg;
  if (msg == YAML::ErrorMsg::TAB_IN_INDENTATION) {
    d.message = "invalid YAML: tab character in indentation";
    d.hint = "YAML indents with spaces only; replace the tab with spaces";
  } else if (msg == YAML::ErrorMsg::END_OF_SEQ_FLOW) {
    d.message = "invalid YAML: a '[' list is not closed before this point";
    d.hint = "add the missing ']' (or a missing ',' between items)";
  } else if (msg == YAML::ErrorMsg::END_OF_MAP_FLOW) {
    d.message = "invalid YAML: a '{' mapping is not closed";
    d.hint = "add the missing '}' (or a missing ',' between entries)";
  } else if (msg == YAML::ErrorMsg::END_OF_MAP || msg == YAML::ErrorMsg::END_OF_SEQ) {
    d.message = "invalid YAML: bad indentation (" + msg + ")";
    d.hint = "this line is indented differently from the entries around it; siblings must "
             "start in the same column";
  } else if (msg == YAML::ErrorMsg::MAP_VALUE || msg == YAML::ErrorMsg::MAP_KEY) {
    d.message = "invalid YAML: unexpected 'key: value' here (" + msg + ")";
    d.hint = "check the indentation of this line against the line above, and that a value "
             "containing ': ' is quoted";
  } else if (msg == YAML::ErrorMsg::FLOW_END) {
    d.message = "invalid YAML: unexpected closing bracket";
    d.hint = "this ']' or '}' does not match the bracket it closes ('[' closes with ']', '{' "
             "with '}'), or there is no bracket to close";
  } else if (msg == YAML::ErrorMsg::EOF_IN_SCALAR) {
    d.message = "invalid YAML: a quoted string is never closed";
    d.hint = "add the closing quote";
  } else if (msg == YAML::ErrorMsg::UNKNOWN_TOKEN) {
    d.hint = "a plain value cannot start with @, ` or %; put the value in quotes";
  } else if (msg == YAML::ErrorMsg::UNKNOWN_ANCHOR) {
    d.hint = "an alias (*name) must refer to an anchor (&name) defined earlier in the same file";
  }
  return d;
}

// yaml-cpp reads invalid UTF-8 as garbage instead of failing (a stray Latin-1 byte in a comment
// can make it lose the whole document, reported as "missing key 'nexus'"): check first, and point
// at the first bad byte. Texts with a UTF-16 or UTF-32 byte order mark are left to yaml-cpp.
void check_utf8(const std::string& text, const std::string& file) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  if ((n >= 2 && ((p[0] == 0xFE && p[1] == 0xFF) || (p[0] == 0xFF && p[1] == 0xFE))) ||
      (n >= 4 && p[0] == 0 && p[1] == 0 && p[2] == 0xFE && p[3] == 0xFF))
    return;
  int line = 1, column = 1;
  for (size_t i = 0; i < n;) {
    const auto ch = decode_utf8(text, i);
    if (ch.length == 0) {
      char byte[8];
      std::snprintf(byte, sizeof byte, "0x%02X", p[i]);
      throw ConfigError({{Location{file, line, column}, std::string("invalid UTF-8: byte ") + byte + " is not part of a UTF-8 character",
                          "save the file as UTF-8 (compositions are UTF-8 text)"}});
    }
    if (ch.code_point == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += ch.length;
  }
}

}  // namespace

Node parse_yaml(const std::string& text, const std::string& file) {
  YamlBudget budget;
  return parse_yaml(text, file, budget);
}

Node parse_yaml(const std::string& text, const std::string& file, YamlBudget& budget) {
  check_utf8(text, file);
  Documents documents;
  YAML::Node doc;
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    // Three, so that a stuck parser shows even after one good document ("x",).
    while (documents.starts.size() < 3 && parser.HandleNextDocument(documents)) {
    }
    for (std::size_t i = 1; i < documents.starts.size(); ++i)
      if (documents.starts[i].pos == documents.starts[i - 1].pos)
        throw ConfigError({{to_location(documents.starts[i], file), "invalid YAML: unexpected character here",
                            "a ',' separates entries only inside [ ] or { }; quote a value that starts with one"}});
    if (!documents.starts.empty()) doc = YAML::Load(text);  // the first document only
  } catch (const YAML::Exception& e) {
    throw ConfigError({syntax_diagnostic(e, file)});
  }
  if (documents.starts.empty()) {
    Node empty;
    empty.loc = Location{file, 1, 1};
    return empty;
  }
  Converter converter(file, text, budget);
  Node root = converter.convert(doc, 0);
  auto diags = converter.take_diagnostics();
  if (documents.starts.size() > 1) {
    diags.push_back({to_location(documents.roots[1], file),
                     "a composition file holds one YAML document, found a second one",
                     "remove the '---' separator, or split the documents into separate files"});
  }
  if (!diags.empty()) throw ConfigError(std::move(diags));
  if (root.is_null()) root.loc = Location{file, 1, 1};
  return root;
}

}  // namespace nexus::config::detail
