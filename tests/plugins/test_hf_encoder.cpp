// hf_encoder: the native BERT text teacher against reference outputs of Hugging Face
// transformers (tests/fixtures/hf_encoder/*.json, written by scripts/make_hf_reference.py), for
// two pretrained models: all-MiniLM-L6-v2 (6 layers, normalised) and paraphrase-MiniLM-L3-v2
// (3 layers, not normalised; converted from ONNX by scripts/onnx_to_hf.py, and its fixture
// checked against onnxruntime on the original ONNX file).
// The model folders come from scripts/fetch_models.sh (scripts/test.sh runs it first); a missing
// folder fails the test, it is never skipped.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>

#include <algorithm>
#include <cstring>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <nlohmann/json.hpp>

#include <nexus/support/mapped_file.hpp>
#include <nexus/support/wordpiece.hpp>
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

struct Fixture {
  std::string name, model_dir;
  int64_t max_length = 0;
  bool normalize = false;
  std::vector<std::string> texts;
  std::vector<std::vector<int64_t>> ids;
  torch::Tensor embeddings;  // [N, H]
};

std::vector<Fixture> fixtures() {
  std::vector<Fixture> out;
  const fs::path dir = fs::path(NEXUS_TEST_DATA_DIR) / "fixtures" / "hf_encoder";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    const auto j = nlohmann::json::parse(read_text(file));
    Fixture f;
    f.name = j.at("model").get<std::string>();
    f.model_dir = (fs::path(NEXUS_MODELS_DIR) / f.name).string();
    f.max_length = j.at("max_length").get<int64_t>();
    f.normalize = j.at("normalize").get<bool>();
    std::vector<torch::Tensor> rows;
    for (const auto& s : j.at("sentences")) {
      f.texts.push_back(s.at("text").get<std::string>());
      f.ids.push_back(s.at("ids").get<std::vector<int64_t>>());
      rows.push_back(torch::tensor(s.at("embedding").get<std::vector<float>>()));
    }
    f.embeddings = torch::stack(rows);
    out.push_back(std::move(f));
  }
  return out;
}

std::string model_dir(const std::string& name) {
  const auto dir = (fs::path(NEXUS_MODELS_DIR) / name).string();
  REQUIRE_MESSAGE(fs::exists(fs::path(dir) / "model.safetensors"), dir << " is missing: run scripts/fetch_models.sh");
  return dir;
}

std::shared_ptr<Teacher> make(const std::string& path, Options extra = {}) {
  extra.set("path", path);
  return builtin_registry().create_teacher("hf_encoder", extra);
}

std::string create_error(const Options& o) {
  try {
    builtin_registry().create_teacher("hf_encoder", o);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("hf_encoder: tokens and embeddings match the transformers reference") {
  const auto all = fixtures();
  // The issue asks for parity on at least two different pretrained models, on the same sentences.
  std::vector<std::string> names;
  for (const auto& f : all) names.push_back(f.name);
  CAPTURE(names.size());
  REQUIRE(all.size() >= 2);
  for (const char* want : {"all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"})
    CHECK_MESSAGE(std::find(names.begin(), names.end(), want) != names.end(), "no fixture for " << want);
  for (const auto& f : all) CHECK_MESSAGE(f.texts == all.front().texts, f.name << " uses other sentences");
  for (const auto& f : all) {
    CAPTURE(f.name);
    model_dir(f.name);
    // Tokenizer: the plugin's own source, compared id for id.
    const auto tok = nexus::support::WordPieceTokenizer::from_folder(f.model_dir);
    int mismatches = 0;
    for (std::size_t i = 0; i < f.texts.size(); ++i) {
      const auto ids = tok.encode(f.texts[i], f.max_length);
      if (ids != f.ids[i]) {
        ++mismatches;
        MESSAGE("token ids differ for: " << f.texts[i]);
      }
    }
    CHECK(mismatches == 0);

    // Embeddings through the registry, all sentences in one call (sorted, padded chunks).
    auto t = make(f.model_dir, Options().set("max_length", std::to_string(f.max_length)).set("batch_size", "5"));
    CHECK(t->modality() == Modality::Text);
    CHECK(t->width() == f.embeddings.size(1));
    CHECK(t->fingerprint().plugin == "hf_encoder");
    CHECK(t->fingerprint().weights_hash == sha256_file(f.model_dir + "/model.safetensors"));
    const auto got = t->encode(texts(f.texts));
    REQUIRE(got.sizes() == f.embeddings.sizes());
    CHECK(!got.requires_grad());
    const auto cos = torch::cosine_similarity(got.to(torch::kDouble), f.embeddings.to(torch::kDouble), 1);
    const double min_cos = cos.min().item<double>();
    for (int64_t i = 0; i < cos.size(0); ++i)
      if (cos[i].item<double>() < 0.9999) MESSAGE("cosine " << cos[i].item<double>() << " for: " << f.texts[std::size_t(i)]);
    std::ostringstream shown;
    shown << std::setprecision(12) << min_cos << " (1 - " << std::scientific << std::setprecision(2) << (1.0 - min_cos) << ")";
    MESSAGE(f.name << ": minimum cosine over " << f.texts.size() << " sentences = " << shown.str());
    CHECK(min_cos >= 0.9999);
    // One at a time (no padding) gives the same as batched.
    const auto single = t->encode(texts({f.texts[5]}));
    CHECK(torch::cosine_similarity(single, got.slice(0, 5, 6), 1).item<double>() > 0.99999);
    // Magnitudes too, not only directions: relative error of every row.
    const auto rel = (got - f.embeddings).norm(2, 1) / f.embeddings.norm(2, 1);
    MESSAGE(f.name << ": maximum relative L2 error = " << rel.max().item<double>());
    CHECK(rel.max().item<double>() < 1e-3);
    if (f.normalize) {
      // The folder says mean pooling + Normalize: unit rows.
      CHECK(torch::allclose(got.norm(2, 1), torch::ones({got.size(0)}), 1e-4, 1e-4));
    } else {
      // No Normalize module in modules.json: the plugin must not normalise on its own.
      CHECK(got.norm(2, 1).min().item<double>() > 1.5);
    }
  }
}

TEST_CASE("hf_encoder: fingerprint follows every output-changing setting; layer=0 differs") {
  const auto dir = model_dir("all-MiniLM-L6-v2");
  auto a = make(dir), b = make(dir);
  CHECK(a->fingerprint().str() == b->fingerprint().str());
  auto last = make(dir, Options().set("layer", "6"));
  CHECK(last->fingerprint().str() == a->fingerprint().str());  // -1 is the last of 6 layers
  auto l0 = make(dir, Options().set("layer", "0"));
  auto cls = make(dir, Options().set("pooling", "cls"));
  auto raw = make(dir, Options().set("normalize", "false"));
  auto short_len = make(dir, Options().set("max_length", "16"));
  for (const auto& other : {l0, cls, raw, short_len}) CHECK(other->fingerprint().str() != a->fingerprint().str());
  CHECK(l0->fingerprint().str() != cls->fingerprint().str());
  CHECK(a->fingerprint().weights_hash == l0->fingerprint().weights_hash);

  const auto in = a->example_input(4);
  const auto ea = a->encode(in), e0 = l0->encode(in), ec = cls->encode(in);
  CHECK(ea.sizes() == e0.sizes());
  CHECK(torch::cosine_similarity(ea, e0, 1).max().item<double>() < 0.99);
  CHECK(torch::cosine_similarity(ea, ec, 1).max().item<double>() < 0.999);
  CHECK(torch::allclose(b->encode(in), ea));
  CHECK_THROWS_WITH(make(dir, Options().set("layer", "7")), doctest::Contains("option 'layer' must be in [-7, 6]"));
}

TEST_CASE("hf_encoder: bad folders and files give clear errors") {
  const auto dir = model_dir("all-MiniLM-L6-v2");
  CHECK(create_error(Options().set("path", "/nonexistent/model")).find("model folder '/nonexistent/model' does not exist") !=
        std::string::npos);
  TempDir tmp;
  CHECK(create_error(Options().set("path", tmp.str())).find("missing config.json, model.safetensors, vocab.txt") !=
        std::string::npos);
  for (const char* f : {"config.json", "vocab.txt", "tokenizer_config.json"})
    fs::copy_file(fs::path(dir) / f, tmp.path / f);
  // A truncated weights file names the file and the first tensor past the end.
  {
    std::ifstream in(fs::path(dir) / "model.safetensors", std::ios::binary);
    std::vector<char> head(1 << 20);
    in.read(head.data(), std::streamsize(head.size()));
    std::ofstream(tmp.path / "model.safetensors", std::ios::binary).write(head.data(), std::streamsize(head.size()));
  }
  auto err = create_error(Options().set("path", tmp.str()));
  CHECK(err.find("safetensors file '" + (tmp.path / "model.safetensors").string() + "'") != std::string::npos);
  CHECK(err.find("truncated") != std::string::npos);
  // A header that is not JSON.
  std::ofstream(tmp.path / "model.safetensors", std::ios::binary | std::ios::trunc)
      .write("\x05\0\0\0\0\0\0\0{oops", 13);
  CHECK(create_error(Options().set("path", tmp.str())).find("corrupt JSON header") != std::string::npos);
  // Weights of another shape: missing and unexpected tensors are listed.
  {
    nlohmann::json h = {{"embeddings.word_embeddings.weight", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}},
                        {"bert.encoder.layer.0.attention.self.querry.weight", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {16, 20}}}}};
    const auto text = h.dump();
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = char((text.size() >> (8 * i)) & 0xff);
    bytes += text + std::string(20, '\0');
    std::ofstream(tmp.path / "model.safetensors", std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  }
  // Checked against the config before the model is built.
  err = create_error(Options().set("path", tmp.str()));
  CHECK(err.find("do not fit the model config: embeddings.word_embeddings.weight is [2, 2], the config asks for "
                 "[30522, 384]") != std::string::npos);
  // Tensors of the right sizes under wrong names: missing and unexpected tensors are listed.
  {
    const auto real = nexus::support::MappedFile::open((fs::path(dir) / "model.safetensors").string());
    std::string bytes(real->size(), '\0');
    std::memcpy(bytes.data(), real->data(), real->size());
    const auto at = bytes.find("encoder.layer.0.attention.self.query.weight");
    REQUIRE(at != std::string::npos);
    bytes[at + std::strlen("encoder.layer.0.attention.self.que")] = 'e';  // "queey": same length
    std::ofstream(tmp.path / "model.safetensors", std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  }
  err = create_error(Options().set("path", tmp.str()));
  CHECK(err.find("missing 1 tensor(s): encoder.layer.0.attention.self.query.weight") != std::string::npos);
  CHECK(err.find("unexpected 1 tensor(s): encoder.layer.0.attention.self.queey.weight") != std::string::npos);
}

TEST_CASE("hf_encoder: config.json values are bounded, and checked against the weights before allocating") {
  const auto dir = model_dir("all-MiniLM-L6-v2");
  TempDir tmp;
  for (const char* f : {"model.safetensors", "vocab.txt", "tokenizer_config.json"})
    fs::create_symlink(fs::path(dir) / f, tmp.path / f);
  const auto config = nlohmann::json::parse(read_text(fs::path(dir) / "config.json"));
  const auto with = [&](const char* key, const nlohmann::json& value) {
    auto c = config;
    c[key] = value;
    std::ofstream(tmp.path / "config.json", std::ios::trunc) << c.dump();
    return create_error(Options().set("path", tmp.str()));
  };
  // 100 million layers: the old plugin started building them (gigabytes, minutes) before any check.
  auto err = with("num_hidden_layers", 100000000);
  CHECK(err.find("'num_hidden_layers' must be an integer in [0, 1024] (kMaxLayers), got 100000000") != std::string::npos);
  CHECK(err.find((tmp.path / "config.json").string()) != std::string::npos);
  CHECK(with("hidden_size", int64_t(1) << 40).find("(kMaxHiddenSize)") != std::string::npos);
  CHECK(with("vocab_size", -5).find("(kMaxVocabSize)") != std::string::npos);
  CHECK(with("hidden_size", 0).find("'hidden_size' must be an integer in [1, 65536]") != std::string::npos);
  CHECK(with("intermediate_size", 1.5).find("(kMaxIntermediateSize), got 1.5") != std::string::npos);
  CHECK(with("max_position_embeddings", "512").find("(kMaxPositions)") != std::string::npos);
  CHECK(with("layer_norm_eps", -1).find("'layer_norm_eps' must be a number in (0, 1)") != std::string::npos);
  CHECK(with("pad_token_id", 40000).find("'pad_token_id' must be an integer in [0, 30521]") != std::string::npos);
  // Within the limits but more than the weights file holds: refused before the model allocates.
  err = with("num_hidden_layers", 1000);
  CHECK(err.find("do not fit the model config: the config asks for") != std::string::npos);
  CHECK(err.find("1000 layers") != std::string::npos);
  CHECK(with("max_position_embeddings", 4096).find("embeddings.position_embeddings.weight is [512, 384]") != std::string::npos);
  // The tokenizer's files are read whole: their size is checked first (sparse files, no disk used).
  std::ofstream(tmp.path / "config.json", std::ios::trunc) << config.dump();
  fs::remove(tmp.path / "vocab.txt");
  std::ofstream(tmp.path / "vocab.txt").put('a');
  fs::resize_file(tmp.path / "vocab.txt", (std::uintmax_t(64) << 20) + 1);
  CHECK(create_error(Options().set("path", tmp.str())).find("(kMaxVocabFileBytes)") != std::string::npos);
  fs::remove(tmp.path / "vocab.txt");
  fs::create_symlink(fs::path(dir) / "vocab.txt", tmp.path / "vocab.txt");
  // Fewer layers than the file holds is the old error: unexpected tensors are listed.
  CHECK(with("num_hidden_layers", 5).find("unexpected 16 tensor(s): encoder.layer.5.") != std::string::npos);
  CHECK(with("num_hidden_layers", 6).empty());
}

TEST_CASE("hf_encoder: @tiny self-test model and encoding speed") {
  auto tiny = make("@tiny");
  CHECK(tiny->width() == 32);
  CHECK(tiny->fingerprint().str() == make("@tiny")->fingerprint().str());
  const auto e = tiny->encode(tiny->example_input(3));
  CHECK(e.sizes() == torch::IntArrayRef{3, 32});

  std::vector<std::string> batch;
  const std::vector<std::string> words = {"the", "model", "reads", "every", "sentence", "quickly", "and", "writes",
                                          "a", "compact", "vector", "for", "later", "training", "runs", "today"};
  for (int i = 0; i < 64; ++i) {
    std::string s;
    for (int w = 0; w < 20; ++w) s += (w ? " " : "") + words[std::size_t((i * 7 + w * 3) % int(words.size()))];
    batch.push_back(s + ".");
  }
  std::string long_text;
  for (int w = 0; w < 300; ++w) long_text += words[std::size_t(w % int(words.size()))] + " ";
  const std::vector<std::string> long_batch(16, long_text);
  // Reported, not asserted: the speed of both pretrained models (3 vs 6 layers) at max_length 256.
  for (const char* name : {"all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"}) {
    auto t = make(model_dir(name), Options().set("batch_size", "64"));
    t->encode(texts(batch));  // warm-up
    const auto start = std::chrono::steady_clock::now();
    const int rounds = 3;
    for (int r = 0; r < rounds; ++r) t->encode(texts(batch));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    MESSAGE("hf_encoder " << std::string(name) << ": " << (64.0 * rounds / secs) << " sentences/s (batches of 64, ~20 words, "
                          << at::get_num_threads() << " threads)");
    const auto start_long = std::chrono::steady_clock::now();
    const auto long_out = t->encode(texts(long_batch));
    const double secs_long = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_long).count();
    CHECK(long_out.size(0) == 16);
    MESSAGE("hf_encoder " << std::string(name) << ": " << (16.0 / secs_long) << " sentences/s at max_length 256 (truncated)");
  }
}
