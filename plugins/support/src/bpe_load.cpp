// Reading a byte-level BPE tokenizer: Hugging Face tokenizer.json, or a GGUF vocabulary handed
// over as plain vectors. Both are data: every size is bounded before anything is sized from it,
// and every component that would change ids and is not implemented is refused by name (the
// design note is in bpe.cpp).
#include <nexus/text.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bpe_impl.hpp"
#include "nexus/support/json_fields.hpp"

namespace nexus::support {
namespace fs = std::filesystem;
using bpe::Stage;
using nlohmann::json;
using Impl = BpeTokenizer::Impl;

namespace {

constexpr int kMaxComponentDepth = 8;  // Sequence in Sequence; real files nest one level

std::string clip(const std::string& s, std::size_t n = 60) { return s.size() <= n ? s : s.substr(0, n) + "..."; }
std::string clip(const json& j) { return json_shown(j, 60); }

// j[key] without copying it; null when absent.
const json& at(const json& j, const char* key) {
  static const json null;
  if (!j.is_object()) return null;
  const auto it = j.find(key);
  return it == j.end() ? null : *it;
}

bool flag(const Impl& m, const json& j, const char* key, bool fallback, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) m.fail(where + " '" + key + "' must be true or false, got " + clip(*it));
  return it->get<bool>();
}

std::string type_of(const Impl& m, const json& j, const std::string& where) {
  if (!j.is_object()) m.fail(where + " must be an object, got " + clip(j));
  const auto it = j.find("type");
  if (it == j.end() || !it->is_string()) m.fail(where + " has no \"type\"");
  return it->get<std::string>();
}

int64_t id_value(const Impl& m, const json& j, const std::string& where) {
  if (j.is_number_unsigned() && j.get<uint64_t>() < kMaxBpeVocabSize) return int64_t(j.get<uint64_t>());
  m.fail(where + " must be an id in [0, " + std::to_string(kMaxBpeVocabSize) + ") (kMaxBpeVocabSize), got " + clip(j));
}

void parse_normalizer(Impl& m, const json& n, int depth = 0) {
  if (n.is_null()) return;
  const std::string type = type_of(m, n, "normalizer");
  if (type == "NFC") {
    m.nfc = true;
  } else if (type == "Sequence" && depth < kMaxComponentDepth && n.contains("normalizers") &&
             n["normalizers"].is_array()) {
    for (const auto& item : n["normalizers"]) parse_normalizer(m, item, depth + 1);
  } else {
    m.fail("normalizer '" + type + "' is not supported (supported: NFC, a Sequence of NFC, none)");
  }
}

Stage parse_split(const Impl& m, const json& p) {
  const std::string where = "pre-tokenizer Split";
  const auto pattern = p.find("pattern");
  if (pattern == p.end() || !pattern->is_object() || !pattern->contains("Regex") || !(*pattern)["Regex"].is_string())
    m.fail(where + ": only a Regex pattern is supported, got " + (pattern == p.end() ? "none" : clip(*pattern)));
  const std::string regex = (*pattern)["Regex"].get<std::string>();
  Stage s{Stage::kSplit};
  bool known = false;
  std::string names;
  for (const auto r : {bpe::SplitRegex::Gpt2, bpe::SplitRegex::Llama3, bpe::SplitRegex::Qwen2}) {
    if (regex == bpe::regex_pattern(r)) s.regex = r, known = true;
    names += std::string(names.empty() ? "" : ", ") + bpe::regex_name(r);
  }
  if (!known) m.fail(where + ": regex '" + clip(regex) + "' is not one of the known ones (" + names + ")");
  if (at(p, "behavior") != "Isolated")
    m.fail(where + ": behavior " + clip(at(p, "behavior")) + " is not supported (only Isolated)");
  if (flag(m, p, "invert", false, where)) m.fail(where + ": invert is not supported");
  return s;
}

void parse_pre_tokenizer(Impl& m, const json& p, int depth = 0) {
  if (p.is_null()) m.fail("there is no pre-tokenizer: only byte-level BPE (a ByteLevel pre-tokenizer) is supported");
  const std::string type = type_of(m, p, "pre-tokenizer");
  if (type == "Sequence" && depth < kMaxComponentDepth && p.contains("pretokenizers") &&
      p["pretokenizers"].is_array()) {
    for (const auto& item : p["pretokenizers"]) parse_pre_tokenizer(m, item, depth + 1);
  } else if (type == "Split") {
    m.stages.push_back(parse_split(m, p));
  } else if (type == "Digits") {
    Stage s{Stage::kDigits};
    s.flag = flag(m, p, "individual_digits", false, "pre-tokenizer Digits");
    m.stages.push_back(s);
  } else if (type == "ByteLevel") {
    // HF's defaults for a ByteLevel without these fields: both true.
    Stage s{Stage::kByteLevel};
    s.flag = flag(m, p, "add_prefix_space", true, "pre-tokenizer ByteLevel");
    s.use_regex = flag(m, p, "use_regex", true, "pre-tokenizer ByteLevel");
    m.stages.push_back(s);
  } else {
    m.fail("pre-tokenizer '" + type + "' is not supported (supported: ByteLevel, Split, Digits, Sequence)");
  }
}

void parse_template(Impl& m, const json& p) {
  const std::string where = "post-processor TemplateProcessing";
  const auto single = p.find("single");
  const auto specials = p.find("special_tokens");
  if (single == p.end() || !single->is_array() || specials == p.end() || !specials->is_object())
    m.fail(where + " needs 'single' and 'special_tokens'");
  bool seen_a = false;
  for (const auto& item : *single) {
    if (item.is_object() && item.contains("Sequence")) {
      const auto& seq = item["Sequence"];
      if (seen_a || at(seq, "id") != "A")
        m.fail(where + ": 'single' must hold sequence A once, got " + clip(item));
      seen_a = true;
    } else if (item.is_object() && item.contains("SpecialToken") && item["SpecialToken"].is_object() &&
               item["SpecialToken"].contains("id") && item["SpecialToken"]["id"].is_string()) {
      const auto name = item["SpecialToken"]["id"].get<std::string>();
      const auto it = specials->find(name);
      if (it == specials->end() || !it->is_object() || !it->contains("ids") || !(*it)["ids"].is_array())
        m.fail(where + ": special token '" + clip(name) + "' has no ids in 'special_tokens'");
      for (const auto& id : (*it)["ids"]) (seen_a ? m.suffix : m.prefix).push_back(int32_t(id_value(m, id, where)));
    } else {
      m.fail(where + ": unknown item " + clip(item));
    }
  }
  if (!seen_a) m.fail(where + ": 'single' has no sequence A");
  if (m.prefix.size() + m.suffix.size() > 64) m.fail(where + ": more than 64 special tokens around the text");
}

void parse_post_processor(Impl& m, const json& p, int depth = 0) {
  if (p.is_null()) return;
  const std::string type = type_of(m, p, "post-processor");
  if (type == "ByteLevel") return;  // offsets only: no ids
  if (type == "TemplateProcessing" && m.prefix.empty() && m.suffix.empty()) return parse_template(m, p);
  if (type == "Sequence" && depth < kMaxComponentDepth && p.contains("processors") && p["processors"].is_array()) {
    for (const auto& item : p["processors"]) parse_post_processor(m, item, depth + 1);
    return;
  }
  m.fail("post-processor '" + type + "' is not supported (supported: ByteLevel, one TemplateProcessing, Sequence)");
}

void parse_vocab(Impl& m, const json& vocab) {
  if (!vocab.is_object()) m.fail("model 'vocab' must be an object of token: id, got " + clip(vocab));
  if (vocab.size() > kMaxBpeVocabSize)
    m.fail("the vocabulary has " + std::to_string(vocab.size()) + " tokens, more than " +
           std::to_string(kMaxBpeVocabSize) + " (kMaxBpeVocabSize)");
  std::vector<bool> seen;
  m.vocab.reserve(vocab.size());
  for (const auto& [text, value] : vocab.items()) {
    const int64_t id = id_value(m, value, "the id of token '" + clip(text) + "'");
    if (std::size_t(id) < seen.size() && seen[std::size_t(id)])
      m.fail("id " + std::to_string(id) + " belongs to two tokens, the second '" + clip(text) + "'");
    if (std::size_t(id) >= seen.size()) seen.resize(std::size_t(id) + 1);
    seen[std::size_t(id)] = true;
    m.set_token(id, text, false);
    m.vocab[text] = int32_t(id);
  }
}

void parse_merges(Impl& m, const json& merges) {
  if (!merges.is_array()) m.fail("model 'merges' must be an array, got " + clip(merges));
  if (merges.size() > kMaxBpeMerges)
    m.fail("there are " + std::to_string(merges.size()) + " merges, more than " + std::to_string(kMaxBpeMerges) +
           " (kMaxBpeMerges)");
  m.merges.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& item = merges[rank];
    if (item.is_string()) {  // "a b", the format before tokenizers 0.20
      const auto& s = item.get_ref<const std::string&>();
      const auto space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        m.fail("merge " + std::to_string(rank) + " ('" + clip(s) + "') is not two tokens separated by one space");
      m.add_merge(s.substr(0, space), s.substr(space + 1), rank);
    } else if (item.is_array() && item.size() == 2 && item[0].is_string() && item[1].is_string()) {
      m.add_merge(item[0].get<std::string>(), item[1].get<std::string>(), rank);
    } else {
      m.fail("merge " + std::to_string(rank) + " must be \"a b\" or [\"a\", \"b\"], got " + clip(item));
    }
  }
}

void parse_model(Impl& m, const json& model) {
  const std::string type = type_of(m, model, "model");
  if (type != "BPE") m.fail("model type '" + type + "' is not supported (only BPE)");
  const json& dropout = at(model, "dropout");
  if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0))
    m.fail("BPE dropout " + clip(dropout) + " is not supported (it makes encoding random)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json& v = at(model, key);
    if (!v.is_null() && v != "") m.fail(std::string("BPE ") + key + " " + clip(v) + " is not supported");
  }
  if (flag(m, model, "byte_fallback", false, "model"))
    m.fail("BPE byte_fallback is not supported (byte-level vocabularies do not need it)");
  m.fuse_unk = flag(m, model, "fuse_unk", false, "model");
  m.ignore_merges = flag(m, model, "ignore_merges", false, "model");
  parse_vocab(m, at(model, "vocab"));
  parse_merges(m, at(model, "merges"));
  const json& unk = at(model, "unk_token");
  if (unk.is_string()) {
    const auto it = m.vocab.find(unk.get<std::string>());
    if (it == m.vocab.end()) m.fail("unk_token '" + clip(unk.get<std::string>()) + "' is not in the vocabulary");
    m.unk_id = it->second;
  } else if (!unk.is_null()) {
    m.fail("model 'unk_token' must be a string or null, got " + clip(unk));
  }
}

void parse_added_tokens(Impl& m, const json& added) {
  if (added.is_null()) return;
  if (!added.is_array()) m.fail("'added_tokens' must be an array");
  if (added.size() > kMaxBpeAddedTokens)
    m.fail("there are " + std::to_string(added.size()) + " added tokens, more than " +
           std::to_string(kMaxBpeAddedTokens) + " (kMaxBpeAddedTokens)");
  for (const auto& t : added) {
    if (!t.is_object() || !t.contains("id") || !t.contains("content") || !t["content"].is_string())
      m.fail("an added token needs 'id' and 'content', got " + clip(t));
    const std::string content = t["content"].get<std::string>();
    const std::string where = "added token '" + clip(content) + "'";
    const int64_t id = id_value(m, t["id"], where + " id");
    for (const char* key : {"single_word", "lstrip", "rstrip"})
      if (flag(m, t, key, false, where)) m.fail(where + ": " + key + " is not supported");
    m.set_token(id, content, true);
    // Normalized tokens are matched in normalized text, so their own text is normalized too.
    if (flag(m, t, "normalized", true, where)) m.normalized_added.add(m.nfc ? bpe::nfc_utf8(content) : content, int32_t(id));
    else m.raw_added.add(content, int32_t(id));
  }
}

}  // namespace

BpeTokenizer BpeTokenizer::from_tokenizer_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read tokenizer '" + path + "'");
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (!ec && size > kMaxTokenizerJsonBytes)
    throw std::runtime_error("tokenizer '" + path + "' has " + std::to_string(size) + " bytes, more than " +
                             std::to_string(kMaxTokenizerJsonBytes) + " (kMaxTokenizerJsonBytes)");
  std::string text(std::size_t(kMaxTokenizerJsonBytes) + 1, '\0');  // a file that grows is cut here
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(std::size_t(in.gcount()));
  return from_tokenizer_json_text(text, path);
}

BpeTokenizer BpeTokenizer::from_tokenizer_json_text(const std::string& text, const std::string& origin) {
  auto m = std::make_shared<Impl>();
  m->origin = origin;
  if (text.size() > kMaxTokenizerJsonBytes)
    m->fail("more than " + std::to_string(kMaxTokenizerJsonBytes) + " bytes (kMaxTokenizerJsonBytes)");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    m->fail(std::string("not valid JSON: ") + e.what());
  }
  try {
    if (!j.is_object()) m->fail("not a tokenizer.json (not a JSON object)");
    for (const char* key : {"truncation", "padding"})
      if (!at(j, key).is_null()) m->fail(std::string("'") + key + "' is set; NEXUS encodes whole texts, so it must be null");
    if (at(j, "model").is_null()) m->fail("there is no 'model'");
    parse_normalizer(*m, at(j, "normalizer"));
    parse_pre_tokenizer(*m, at(j, "pre_tokenizer"));
    parse_model(*m, at(j, "model"));
    parse_added_tokens(*m, at(j, "added_tokens"));
    parse_post_processor(*m, at(j, "post_processor"));
  } catch (const json::exception& e) {  // a value of an unexpected JSON type that slipped past the checks
    m->fail(e.what());
  }
  m->finish();
  return BpeTokenizer(std::move(m));
}

namespace {

struct PreConfig {
  const char* name;
  bpe::SplitRegex regex;
  bool digits, nfc, ignore_merges;
};

// llama.cpp's names (llama-vocab.cpp) for the pre-tokenizers of the tokenizer.json files above,
// with what transformers' tokenizer.json for those models does: Llama 3 sets ignore_merges,
// Qwen2 normalizes to NFC (llama.cpp does not; the HF tokenizer is the reference here).
constexpr PreConfig kPreConfigs[] = {
    {"gpt-2", bpe::SplitRegex::Gpt2, false, false, false},
    {"gpt2", bpe::SplitRegex::Gpt2, false, false, false},  // tokenizer.ggml.model's spelling
    {"llama3", bpe::SplitRegex::Llama3, false, false, true},
    {"llama-v3", bpe::SplitRegex::Llama3, false, false, true},
    {"llama-bpe", bpe::SplitRegex::Llama3, false, false, true},
    {"qwen2", bpe::SplitRegex::Qwen2, false, true, false},
    {"deepseek-r1-qwen", bpe::SplitRegex::Qwen2, false, true, false},
    {"smollm", bpe::SplitRegex::Gpt2, true, false, false},
};

void apply_pre(Impl& m, const std::string& pre) {
  for (const auto& c : kPreConfigs) {
    if (pre != c.name) continue;
    m.nfc = c.nfc;
    m.ignore_merges = c.ignore_merges;
    if (c.digits) m.stages.push_back({Stage::kDigits, bpe::SplitRegex::Gpt2, true, false});
    if (c.regex != bpe::SplitRegex::Gpt2 || c.digits) {
      if (c.regex != bpe::SplitRegex::Gpt2) m.stages.push_back({Stage::kSplit, c.regex, false, false});
      m.stages.push_back({Stage::kByteLevel, bpe::SplitRegex::Gpt2, false, c.regex == bpe::SplitRegex::Gpt2});
    } else {
      m.stages.push_back({Stage::kByteLevel, bpe::SplitRegex::Gpt2, false, true});
    }
    return;
  }
  m.fail("pre-tokenizer '" + clip(pre) + "' (tokenizer.ggml.pre) is not supported; known: " +
         join(BpeTokenizer::known_pre_names()));
}

}  // namespace

std::vector<std::string> BpeTokenizer::known_pre_names() {
  std::vector<std::string> out;
  for (const auto& c : kPreConfigs) out.emplace_back(c.name);
  return out;
}

BpeTokenizer BpeTokenizer::from_vocab(BpeVocab v) {
  auto m = std::make_shared<Impl>();
  m->origin = v.origin.empty() ? "GGUF vocabulary" : v.origin;
  apply_pre(*m, v.pre);
  if (v.tokens.size() > kMaxBpeVocabSize || v.merges.size() > kMaxBpeMerges)
    m->fail(std::to_string(v.tokens.size()) + " tokens and " + std::to_string(v.merges.size()) +
            " merges, more than " + std::to_string(kMaxBpeVocabSize) + " (kMaxBpeVocabSize) or " +
            std::to_string(kMaxBpeMerges) + " (kMaxBpeMerges)");
  if (!v.token_types.empty() && v.token_types.size() != v.tokens.size())
    m->fail(std::to_string(v.token_types.size()) + " token types for " + std::to_string(v.tokens.size()) + " tokens");
  m->vocab.reserve(v.tokens.size());
  for (std::size_t id = 0; id < v.tokens.size(); ++id) {
    const int32_t type = v.token_types.empty() ? int32_t(BpeTokenType::Normal) : v.token_types[id];
    // Control and user-defined tokens are matched in the raw text, as HF's added tokens are.
    const bool added = type == int32_t(BpeTokenType::Control) || type == int32_t(BpeTokenType::UserDefined);
    m->set_token(int64_t(id), v.tokens[id], added);
    m->vocab[v.tokens[id]] = int32_t(id);  // a later duplicate wins, as in a Python dict
    if (added) m->raw_added.add(v.tokens[id], int32_t(id));
  }
  m->merges.reserve(v.merges.size());
  for (std::size_t rank = 0; rank < v.merges.size(); ++rank) {
    const auto& s = v.merges[rank];
    const auto space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
      m->fail("merge " + std::to_string(rank) + " ('" + clip(s) + "') is not two tokens separated by one space");
    m->add_merge(s.substr(0, space), s.substr(space + 1), rank);
  }
  const auto check = [&](int32_t id, const char* what) {
    if (id < 0 || std::size_t(id) >= v.tokens.size())
      m->fail(std::string(what) + " " + std::to_string(id) + " is not a token id");
    return id;
  };
  if (v.add_bos) m->prefix.push_back(check(v.bos_id, "bos_token_id"));
  if (v.add_eos) m->suffix.push_back(check(v.eos_id, "eos_token_id"));
  m->bos = v.bos_id >= 0 && std::size_t(v.bos_id) < v.tokens.size() ? v.bos_id : -1;
  m->eos = v.eos_id >= 0 && std::size_t(v.eos_id) < v.tokens.size() ? v.eos_id : -1;
  m->finish();
  return BpeTokenizer(std::move(m));
}

}  // namespace nexus::support
