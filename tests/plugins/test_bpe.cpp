// Byte-level BPE tokenizer (plugins/support/include/nexus/support/bpe.hpp) against Hugging Face
// `tokenizers` 0.23.3 (tests/fixtures/bpe, written by scripts/make_bpe_reference.py): four small
// trained tokenizers in the GPT-2, Llama 3, Qwen2 and SmolLM2 configurations (plus two
// add_prefix_space variants), read from their tokenizer.json and again as GGUF-style vocabularies,
// and SmolLM2's real 49,152-token vocabulary (the tokenizer.json scripts/gguf_to_hf.py makes from
// its GGUF, in scripts/fetch_models.sh). Then the bounds and refusals.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include <nexus/text.hpp>

#include "nexus/support/bpe.hpp"
#include "test_support.hpp"

using nexus::support::BpeTokenizer;
using nexus::support::BpeVocab;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kDir = fs::path(NEXUS_TEST_DATA_DIR) / "fixtures" / "bpe";

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out += char(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::vector<std::string> sentences() {
  std::vector<std::string> out;
  for (const auto& s : json::parse(nexus::test::read_text(kDir / "sentences.json")))
    out.push_back(s.contains("hex") ? unhex(s["hex"].get<std::string>()) : s["text"].get<std::string>());
  return out;
}

struct Reference {
  std::vector<int32_t> prefix, suffix;
  std::vector<std::vector<int32_t>> ids;
};

Reference reference(const fs::path& file) {
  const auto j = json::parse(nexus::test::read_text(file));
  return {j["prefix"].get<std::vector<int32_t>>(), j["suffix"].get<std::vector<int32_t>>(),
          j["ids"].get<std::vector<std::vector<int32_t>>>()};
}

// How many sentences encode exactly as the reference (with and without special tokens); each
// one that does not is named.
int matches(const BpeTokenizer& tok, const std::vector<std::string>& texts, const Reference& ref) {
  REQUIRE(ref.ids.size() == texts.size());
  int good = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto with = ref.prefix;
    with.insert(with.end(), ref.ids[i].begin(), ref.ids[i].end());
    with.insert(with.end(), ref.suffix.begin(), ref.suffix.end());
    if (tok.encode(texts[i], false) == ref.ids[i] && tok.encode(texts[i], true) == with) ++good;
    else MESSAGE("sentence " << i << " differs: " << json(json::string_t(texts[i])).dump(-1, ' ', false, json::error_handler_t::replace));
  }
  return good;
}

// The trained configurations, and what each is called in GGUF's tokenizer.ggml.pre.
const std::vector<std::pair<std::string, std::string>> kConfigs = {
    {"gpt2", "gpt-2"}, {"llama3", "llama-bpe"}, {"qwen2", "qwen2"}, {"smollm2", "smollm"}};

// A tokenizer.json with one change applied, written under `dir`.
std::string variant(const std::string& base, const std::string& name, const nexus::test::TempDir& dir) {
  auto j = json::parse(nexus::test::read_text(kDir / base / "tokenizer.json"));
  if (name == "gpt2_prefix") j["pre_tokenizer"]["add_prefix_space"] = true;
  if (name == "smollm2_prefix") j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true;
  const auto path = (dir.path / (name + ".json")).string();
  std::ofstream(path) << j.dump();
  return path;
}

// What GGUF metadata would hold for the tokenizer.json at `path`: tokens by id, merges as "a b",
// special added tokens as control tokens and other added tokens as user-defined ones.
BpeVocab gguf_vocab(const fs::path& path, const std::string& pre, const Reference& ref) {
  const auto j = json::parse(nexus::test::read_text(path));
  BpeVocab v;
  std::size_t n = 0;
  for (const auto& [text, id] : j["model"]["vocab"].items()) n = std::max(n, id.get<std::size_t>() + 1);
  for (const auto& t : j["added_tokens"]) n = std::max(n, t["id"].get<std::size_t>() + 1);
  v.tokens.resize(n);
  v.token_types.assign(n, 1);
  for (const auto& [text, id] : j["model"]["vocab"].items()) v.tokens[id.get<std::size_t>()] = text;
  for (const auto& t : j["added_tokens"]) {
    v.tokens[t["id"].get<std::size_t>()] = t["content"].get<std::string>();
    v.token_types[t["id"].get<std::size_t>()] = t["special"].get<bool>() ? 3 : 4;
  }
  for (const auto& m : j["model"]["merges"])
    v.merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  v.pre = pre;
  v.add_bos = !ref.prefix.empty();
  v.bos_id = v.add_bos ? ref.prefix[0] : -1;
  v.origin = path.string();
  return v;
}

std::string load_error(const std::string& text, const nexus::test::TempDir& dir) {
  const auto path = (dir.path / "tokenizer.json").string();
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  try {
    BpeTokenizer::from_tokenizer_json(path);
  } catch (const std::runtime_error& e) {
    CHECK_MESSAGE(std::string(e.what()).find(path) != std::string::npos, e.what() << " does not name the file");
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("BPE tokenizer: every sentence encodes exactly as tokenizers does, in each trained configuration") {
  const auto texts = sentences();
  REQUIRE(texts.size() >= 40);
  nexus::test::TempDir dir;
  std::vector<std::pair<std::string, std::string>> files;  // fixture name, tokenizer.json
  for (const auto& [name, pre] : kConfigs) files.emplace_back(name, (kDir / name / "tokenizer.json").string());
  files.emplace_back("gpt2_prefix", variant("gpt2", "gpt2_prefix", dir));
  files.emplace_back("smollm2_prefix", variant("smollm2", "smollm2_prefix", dir));
  for (const auto& [name, path] : files) {
    CAPTURE(name);
    const auto tok = BpeTokenizer::from_tokenizer_json(path);
    const auto ref = reference(kDir / (name + ".json"));
    const int good = matches(tok, texts, ref);
    MESSAGE(name << ": " << good << " of " << texts.size() << " sentences match exactly (" << tok.describe() << ")");
    CHECK(good == int(texts.size()));
  }
}

TEST_CASE("BPE tokenizer: a GGUF-style vocabulary gives the same ids as the tokenizer.json it came from") {
  const auto texts = sentences();
  for (const auto& [name, pre] : kConfigs) {
    CAPTURE(name);
    const auto ref = reference(kDir / (name + ".json"));
    const auto tok = BpeTokenizer::from_vocab(gguf_vocab(kDir / name / "tokenizer.json", pre, ref));
    CHECK(matches(tok, texts, ref) == int(texts.size()));
    CHECK(tok.bos_id() == (ref.prefix.empty() ? -1 : ref.prefix[0]));
  }
}

TEST_CASE("BPE tokenizer: SmolLM2's real vocabulary encodes exactly as tokenizers does") {
  // The folder scripts/fetch_models.sh converts from SmolLM2's GGUF (scripts/gguf_to_hf.py);
  // NEXUS_SMOLLM2_TOKENIZER_JSON may name another (scripts/make_bpe_reference.py --smollm2 builds one).
  std::string path = std::string(NEXUS_MODELS_DIR) + "/SmolLM2-135M-Instruct-hf/tokenizer.json";
  if (const char* env = std::getenv("NEXUS_SMOLLM2_TOKENIZER_JSON"); env && *env) path = env;
  REQUIRE_MESSAGE(fs::exists(path), path << " is missing: run scripts/fetch_models.sh");
  const auto tok = BpeTokenizer::from_tokenizer_json(path);
  const auto ref = reference(kDir / "smollm2_reference.json");
  const auto texts = sentences();
  CHECK(tok.vocab_size() == 49152);
  CHECK(ref.ids.back().size() > 64);  // the long text
  const int good = matches(tok, texts, ref);
  MESSAGE("SmolLM2: " << good << " of " << texts.size() << " sentences match exactly");
  CHECK(good == int(texts.size()));
}

TEST_CASE("BPE tokenizer: decode gives back the text, token() and vocab_size() describe the vocabulary") {
  const auto texts = sentences();
  for (const auto& [name, pre] : kConfigs) {
    if (name == "qwen2") continue;  // NFC changes the decomposed sentences
    CAPTURE(name);
    const auto tok = BpeTokenizer::from_tokenizer_json((kDir / name / "tokenizer.json").string());
    for (const auto& t : texts) {
      const bool valid = nexus::utf8_to_utf32(t).find(U'\uFFFD') == std::u32string::npos;
      if (valid) CHECK(tok.decode(tok.encode(t, false)) == t);
    }
    CHECK(tok.vocab_size() == 1000);
    REQUIRE(tok.token_id("Ġ") >= 0);  // the byte-level space
    CHECK(tok.token(tok.token_id("Ġ")) == "Ġ");
    CHECK(tok.token_id("not a token") == -1);
    CHECK_THROWS_AS(tok.token(-1), std::out_of_range);
    CHECK_THROWS_AS(tok.token(int32_t(tok.vocab_size())), std::out_of_range);
  }
  const auto llama = BpeTokenizer::from_tokenizer_json((kDir / "llama3" / "tokenizer.json").string());
  CHECK(llama.bos_id() == llama.token_id("<|begin_of_text|>"));
  CHECK(llama.encode("", true) == std::vector<int32_t>{llama.bos_id()});
  CHECK(llama.encode("<|eot_id|>", false) == std::vector<int32_t>{llama.token_id("<|eot_id|>")});
}

TEST_CASE("BPE tokenizer: invalid UTF-8 is repaired as Python's errors='replace' and never crashes") {
  const auto tok = BpeTokenizer::from_tokenizer_json((kDir / "qwen2" / "tokenizer.json").string());
  const std::string fffd = "\xEF\xBF\xBD";
  // One U+FFFD per maximal invalid subsequence: a truncated 3-byte sequence is one, a surrogate three.
  CHECK(tok.encode("a\xE2\x82z", false) == tok.encode("a" + fffd + "z", false));
  CHECK(tok.encode("\xED\xA0\x80", false) == tok.encode(fffd + fffd + fffd, false));
  CHECK(tok.encode("\xF0\x9F\x98", false) == tok.encode(fffd, false));
  std::string bytes;
  for (int i = 0; i < 4096; ++i) bytes += char((i * 7919 + i / 13) & 0xFF);
  const auto ids = tok.encode(bytes, true);
  CHECK(!ids.empty());
  for (const auto id : ids) CHECK((id >= 0 && std::size_t(id) < tok.vocab_size()));
}

TEST_CASE("BPE tokenizer: concurrent encodes give the single-threaded ids") {
  const auto texts = sentences();
  const auto tok = BpeTokenizer::from_tokenizer_json((kDir / "smollm2" / "tokenizer.json").string());
  std::vector<std::vector<int32_t>> want;
  for (const auto& t : texts) want.push_back(tok.encode(t, false));
  const auto fresh = BpeTokenizer::from_tokenizer_json((kDir / "smollm2" / "tokenizer.json").string());
  std::vector<int> wrong(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int round = 0; round < 20; ++round)
        for (std::size_t i = 0; i < texts.size(); ++i) wrong[std::size_t(k)] += fresh.encode(texts[i], false) != want[i];
    });
  for (auto& t : threads) t.join();
  CHECK(wrong == std::vector<int>(4, 0));
}

TEST_CASE("BPE tokenizer: malformed or unsupported tokenizer.json files are errors naming the file") {
  nexus::test::TempDir dir;
  const auto good = json::parse(nexus::test::read_text(kDir / "smollm2" / "tokenizer.json"));
  const auto with = [&](const auto& change) {
    auto j = good;
    change(j);
    return load_error(j.dump(), dir);
  };
  const auto has = [](const std::string& error, const std::string& part) {
    CAPTURE(error);
    CHECK(error.find(part) != std::string::npos);
  };
  CHECK(with([](json&) {}) == "");
  has(load_error("{\"model\": ", dir), "not valid JSON");
  has(load_error("[1, 2]", dir), "not a JSON object");
  has(load_error(std::string(100000, '[') + std::string(100000, ']'), dir), "not a JSON object");
  has(with([](json& j) { j["model"]["type"] = "WordPiece"; }), "model type 'WordPiece' is not supported");
  has(with([](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }), "pre-tokenizer 'Metaspace' is not supported");
  has(with([](json& j) { j["pre_tokenizer"] = nullptr; }), "no pre-tokenizer");
  has(with([](json& j) { j["pre_tokenizer"]["pretokenizers"].erase(1); }), "must end with ByteLevel");
  has(with([](json& j) {
        j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Isolated"}};
      }),
      "is not one of the known ones");
  has(with([](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }), "normalizer 'Lowercase' is not supported");
  has(with([](json& j) { j["post_processor"] = {{"type", "RobertaProcessing"}}; }), "'RobertaProcessing' is not supported");
  has(with([](json& j) { j["model"]["merges"].push_back({"Ġ", "zzz"}); }), "'zzz', which is not in the vocabulary");
  has(with([](json& j) { j["model"]["merges"].push_back("Ġt"); }), "not two tokens separated by one space");
  has(with([](json& j) { j["model"]["vocab"]["Ġzz"] = 4194304; }), "kMaxBpeVocabSize");
  has(with([](json& j) { j["model"]["vocab"]["Ġzz"] = 5; }), "belongs to two tokens");
  has(with([](json& j) { j["model"]["vocab"]["Ġzz"] = "5"; }), "must be an id");
  has(with([](json& j) { j["model"]["dropout"] = 0.1; }), "dropout");
  has(with([](json& j) { j["model"]["byte_fallback"] = true; }), "byte_fallback");
  has(with([](json& j) { j["model"]["unk_token"] = "<unk>"; }), "unk_token '<unk>' is not in the vocabulary");
  has(with([](json& j) { j["added_tokens"][0]["lstrip"] = true; }), "lstrip is not supported");
  has(with([](json& j) { j["truncation"] = {{"max_length", 8}}; }), "'truncation' is set");
  has(with([](json& j) { j["model"]["vocab"]["Ġzz"] = 2000; j["model"]["vocab"][std::string(5000, 'a')] = 2001; }),
      "kMaxBpeTokenBytes");
  // Bigger than kMaxTokenizerJsonBytes: refused from its size, before reading (a sparse file).
  const auto huge = (dir.path / "huge.json").string();
  std::ofstream(huge) << "{}";
  fs::resize_file(huge, nexus::support::kMaxTokenizerJsonBytes + 1);
  try {
    BpeTokenizer::from_tokenizer_json(huge);
    FAIL("a file over the limit was read");
  } catch (const std::runtime_error& e) {
    has(e.what(), huge);
    has(e.what(), "kMaxTokenizerJsonBytes");
  }
  CHECK_THROWS_WITH_AS(BpeTokenizer::from_tokenizer_json((dir.path / "missing.json").string()),
                       doctest::Contains("missing.json"), std::runtime_error);
}

TEST_CASE("BPE tokenizer: a GGUF vocabulary with an unknown pre-tokenizer or bad merges is refused") {
  const auto ref = reference(kDir / "smollm2.json");
  const auto vocab = gguf_vocab(kDir / "smollm2" / "tokenizer.json", "smollm", ref);
  const auto error = [](BpeVocab v) {
    try {
      BpeTokenizer::from_vocab(std::move(v));
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto v = vocab;
  v.pre = "falcon";
  const auto unknown = error(v);
  CHECK(unknown.find("'falcon'") != std::string::npos);
  CHECK(unknown.find("smollm") != std::string::npos);  // the known names are listed
  CHECK(unknown.find("llama-bpe") != std::string::npos);
  CHECK(unknown.find(vocab.origin) != std::string::npos);
  v = vocab;
  v.merges.push_back("Ġ nothere");
  CHECK(error(v).find("'nothere', which is not in the vocabulary") != std::string::npos);
  v = vocab;
  v.add_bos = true;
  v.bos_id = int32_t(v.tokens.size());
  CHECK(error(v).find("bos_token_id") != std::string::npos);
  v = vocab;
  v.token_types.pop_back();
  CHECK(error(v).find("token types") != std::string::npos);
  CHECK(BpeTokenizer::known_pre_names().size() >= 4);
}

// Not run by default (`nexus_tests -tc='*speed*' --no-skip`): tokens per second, one thread, on the
// first 5,000 of Debian's fortunes (what `scripts/make_bpe_reference.py --bench` times in Python):
// one tokenizer, best of three passes, SmolLM2's vocabulary when $NEXUS_SMOLLM2_TOKENIZER_JSON is set.
TEST_CASE("BPE tokenizer: encoding speed on fortunes" * doctest::skip()) {
  const char* path = std::getenv("NEXUS_SMOLLM2_TOKENIZER_JSON");
  const auto tok = BpeTokenizer::from_tokenizer_json(path ? path : (kDir / "smollm2" / "tokenizer.json").string());
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator("/usr/share/games/fortunes"))
    if (e.is_regular_file() && !e.path().has_extension()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> texts;
  for (const auto& file : files) {
    const auto all = nexus::test::read_text(file);
    for (std::size_t at = 0; at < all.size();) {
      const auto end = std::min(all.find("\n%\n", at), all.size());
      auto text = all.substr(at, end - at);
      while (!text.empty() && text.back() == '\n') text.pop_back();
      while (!text.empty() && text.front() == '\n') text.erase(0, 1);
      if (text.find_first_not_of(" \t\n\r\v\f") != std::string::npos) texts.push_back(text);
      at = end + 3;
    }
    if (texts.size() >= 5000) break;
  }
  if (texts.size() > 5000) texts.resize(5000);
  REQUIRE(!texts.empty());
  double best = 1e9;
  std::size_t count = 0;
  for (int round = 0; round < 3; ++round) {
    const auto start = std::chrono::steady_clock::now();
    count = 0;
    for (const auto& t : texts) count += tok.encode(t, false).size();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  MESSAGE(texts.size() << " texts, " << count << " tokens, " << best << " s, " << count / best << " tokens/s");
}
