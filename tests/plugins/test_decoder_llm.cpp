// decoder_llm: the native Llama-family teacher against transformers' reference on a real model,
// SmolLM2-135M-Instruct (tests/fixtures/decoder_llm/, written by scripts/make_llm_reference.py),
// read two ways: the Q4_1 GGUF file directly, and the Hugging Face folder scripts/gguf_to_hf.py
// makes from it (scripts/fetch_models.sh fetches and converts; a missing model fails, never skips).
// Also a tiny random Qwen2-style HF folder (biases, grouped-query attention, a BPE tokenizer.json)
// written here, checked against the same model built from the same weights by the GGUF path's
// naming, and bad files and options.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>

#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>

#include <nexus/support/arrays.hpp>
#include <nexus/support/bpe.hpp>
#include <nexus/support/gguf.hpp>
#include <nexus/support/gguf_vocab.hpp>
#include <nexus/support/mapped_file.hpp>
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

// A named namespace: the unit tests compile as one unity unit, where anonymous helpers collide.
namespace decoder_llm_test {

const fs::path kModels = fs::path(NEXUS_MODELS_DIR);
const std::string kGguf = (kModels / "SmolLM2-135M-Instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf").string();
const std::string kFolder = (kModels / "SmolLM2-135M-Instruct-hf").string();

struct Reference {
  int64_t max_length = 0;
  std::vector<int64_t> layers;
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> ids;
  torch::Tensor states;  // [sentences, 2 * layers, hidden]: mean, last per layer
};

const Reference& reference() {
  static const Reference r = [] {
    const fs::path dir = fs::path(NEXUS_TEST_DATA_DIR) / "fixtures" / "decoder_llm";
    const auto j = nlohmann::json::parse(read_text(dir / "smollm2.json"));
    Reference r;
    r.max_length = j.at("max_length").get<int64_t>();
    r.layers = j.at("layers").get<std::vector<int64_t>>();
    for (const auto& s : j.at("sentences")) {
      r.texts.push_back(s.at("text").get<std::string>());
      r.ids.push_back(s.at("ids").get<std::vector<int32_t>>());
    }
    r.states = support::read_npy(support::MappedFile::open((dir / "smollm2.npy").string()), support::Storage::Copy).to(torch::kFloat);
    return r;
  }();
  return r;
}

std::shared_ptr<Teacher> make_llm(const std::string& path, Options extra = {}) {
  extra.set("path", path);
  return builtin_registry().create_teacher("decoder_llm", extra);
}

std::string llm_create_error(const std::string& path, Options extra = {}) {
  try {
    make_llm(path, std::move(extra));
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Every sentence's pooled states (mean and last at both reference layers) against the fixture.
void check_states(const std::shared_ptr<Teacher>& t, const std::string& what) {
  const auto& r = reference();
  const auto got = t->encode(texts(r.texts));
  const auto hidden = r.states.size(2);
  REQUIRE(got.sizes() == torch::IntArrayRef({int64_t(r.texts.size()), r.states.size(1) * hidden}));
  const auto want = r.states.reshape({r.states.size(0), -1});
  double worst = 1;
  for (int64_t part = 0; part < r.states.size(1); ++part) {
    const auto g = got.slice(1, part * hidden, (part + 1) * hidden).to(torch::kDouble);
    const auto w = want.slice(1, part * hidden, (part + 1) * hidden).to(torch::kDouble);
    const auto cos = torch::cosine_similarity(g, w, 1);
    for (int64_t i = 0; i < cos.size(0); ++i)
      if (cos[i].item<double>() < 0.9999)
        MESSAGE(what << ": cosine " << cos[i].item<double>() << " (layer " << r.layers[std::size_t(part / 2)]
                     << (part % 2 ? " last" : " mean") << ") for: " << r.texts[std::size_t(i)]);
    worst = std::min(worst, cos.min().item<double>());
  }
  std::ostringstream shown;
  shown << std::setprecision(10) << worst;
  MESSAGE(what << ": minimum cosine over " << r.texts.size() << " sentences x " << r.states.size(1) << " pooled states = " << shown.str());
  CHECK(worst >= 0.9999);
}

Options reference_options() {
  const auto& r = reference();
  return Options()
      .set("layer", std::to_string(r.layers[0]) + "," + std::to_string(r.layers[1]))
      .set("pooling", "mean_last")
      .set("max_length", std::to_string(r.max_length));
}

}  // namespace decoder_llm_test

using namespace decoder_llm_test;

TEST_CASE("decoder_llm: SmolLM2's GGUF gives transformers' token ids and hidden states") {
  REQUIRE_MESSAGE(fs::exists(kGguf), kGguf << " is missing: run scripts/fetch_models.sh");
  const auto& r = reference();
  // The vocabulary the file carries, tokenized id for id (the fixture's ids are cut to max_length).
  const auto file = support::MappedFile::open(kGguf);
  const auto g = support::parse_gguf(file->data(), file->size(), kGguf);
  const auto tok = support::BpeTokenizer::from_vocab(support::gguf_bpe_vocab(g));
  int mismatches = 0;
  for (std::size_t i = 0; i < r.texts.size(); ++i) {
    auto ids = tok.encode(r.texts[i], true);
    if (int64_t(ids.size()) > r.max_length) ids.resize(std::size_t(r.max_length));
    if (ids != r.ids[i]) {
      ++mismatches;
      MESSAGE("token ids differ for: " << r.texts[i]);
    }
  }
  CHECK(mismatches == 0);
  const auto t = make_llm(kGguf, reference_options());
  CHECK(t->modality() == Modality::Text);
  CHECK(t->width() == 4 * 576);
  CHECK(t->fingerprint().weights_hash == sha256_file(kGguf));
  check_states(t, "GGUF");
}

TEST_CASE("decoder_llm: the Hugging Face folder converted from the GGUF gives the same") {
  REQUIRE_MESSAGE(fs::exists(fs::path(kFolder) / "model.safetensors"), kFolder << " is missing: run scripts/fetch_models.sh");
  const auto& r = reference();
  const auto tok = support::BpeTokenizer::from_tokenizer_json(kFolder + "/tokenizer.json");
  int mismatches = 0;
  for (std::size_t i = 0; i < r.texts.size(); ++i) {
    auto ids = tok.encode(r.texts[i], true);
    if (int64_t(ids.size()) > r.max_length) ids.resize(std::size_t(r.max_length));
    mismatches += ids != r.ids[i];
  }
  CHECK(mismatches == 0);
  check_states(make_llm(kFolder, reference_options()), "HF folder");
}

TEST_CASE("decoder_llm: only the layers asked for are kept; pooling, templates and the fingerprint") {
  const auto tiny = [](Options o) { return make_llm("@tiny", std::move(o)); };
  const auto in = texts(std::vector<std::string>{"one two three", "a much longer sentence with more words in it", "x"});
  const auto both = tiny(Options().set("layer", "1,-1").set("pooling", "mean_last"));
  CHECK(both->width() == 2 * 2 * 32);
  const auto f = both->encode(in);
  // mean_last is mean then last, per layer in the order asked; each matches its own teacher.
  const auto mean1 = tiny(Options().set("layer", "1").set("pooling", "mean"))->encode(in);
  const auto last2 = tiny(Options().set("layer", "2").set("pooling", "last"))->encode(in);
  CHECK(torch::allclose(f.slice(1, 0, 32), mean1, 1e-5, 1e-6));
  CHECK(torch::allclose(f.slice(1, 96, 128), last2, 1e-5, 1e-6));
  // Batched (sorted, padded) equals one at a time.
  const auto alone = tiny(Options().set("layer", "1,-1").set("pooling", "mean_last"))->encode(texts(std::vector<std::string>{"x"}));
  CHECK(torch::allclose(alone, f.slice(0, 2, 3), 1e-5, 1e-6));
  // A template changes the input, and so the features and the fingerprint.
  const auto templated = tiny(Options().set("template", "Query: {text}"));
  const auto plain = tiny(Options());
  CHECK(templated->fingerprint().str() != plain->fingerprint().str());
  CHECK(!torch::allclose(templated->encode(in), plain->encode(in)));
  CHECK(tiny(Options().set("max_length", "3"))->fingerprint().str() != plain->fingerprint().str());
  CHECK(tiny(Options().set("layer", "1"))->fingerprint().str() != plain->fingerprint().str());
  CHECK(llm_create_error("@tiny", Options().set("template", "no placeholder")).find("{text}") != std::string::npos);
  CHECK(llm_create_error("@tiny", Options().set("layer", "3")).find("must be in [-3, 2]") != std::string::npos);
  CHECK(llm_create_error("@tiny", Options().set("max_length", "1")).find("max_length") != std::string::npos);
}

TEST_CASE("decoder_llm: bad folders and files are refused with the reason, before allocating") {
  TempDir dir;
  CHECK(llm_create_error((dir.path / "nothing").string()).find("neither a model folder nor a GGUF file") != std::string::npos);
  CHECK(llm_create_error(dir.path.string()).find("no config.json") != std::string::npos);
  std::ofstream(dir.path / "tokenizer.json") << "{}";
  std::ofstream(dir.path / "config.json") << R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 100000000, "num_attention_heads": 2})";
  CHECK(llm_create_error(dir.path.string()).find("'num_hidden_layers' must be an integer in [1, 1024]") != std::string::npos);
  // A value nested 300,000 arrays deep (600 kB, under kMaxModelConfigBytes) is an error naming the
  // field: printing it whole recursed once per level, and overflowed the stack.
  std::ofstream(dir.path / "config.json") << R"({"model_type": "llama", "vocab_size": )" << std::string(300000, '[')
                                          << std::string(300000, ']') << "}";
  CHECK(llm_create_error(dir.path.string()).find("'vocab_size' must be an integer in [1, 4194304] (kMaxVocabSize), got an array") !=
        std::string::npos);
  std::ofstream(dir.path / "config.json") << R"({"model_type": "gpt_neox"})";
  CHECK(llm_create_error(dir.path.string()).find("model_type 'gpt_neox'") != std::string::npos);
  const auto junk = (dir.path / "model.gguf").string();
  std::ofstream(junk) << "GGUF but not really";
  CHECK(llm_create_error(junk).find(junk) != std::string::npos);
}
