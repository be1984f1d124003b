// hf_encoder: a BERT-family text teacher run natively in libtorch. It loads a Hugging Face model
// folder (config.json, model.safetensors, vocab.txt, tokenizer_config.json and, as
// sentence-transformers writes them, 1_Pooling/config.json and modules.json) and returns sentence
// embeddings: WordPiece tokens -> BERT hidden states -> mean or CLS pooling -> optional L2 norm.
//
// path=@tiny is not a folder: it builds a randomly initialised 2-layer BERT with a 40-token
// vocabulary from a fixed seed. It exists only so that the plugin probe can create and self-test
// the component without any model on disk; its embeddings mean nothing.
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>
#include <nexus/text.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include <nexus/support/arrays.hpp>
#include <nexus/support/wordpiece.hpp>

#include "nexus/support/bert.hpp"

namespace {
namespace fs = std::filesystem;
using nexus_hf::BertConfig;
using nexus_hf::BertModel;
using nexus::support::TokenizerConfig;
using nexus::support::WordPieceTokenizer;

constexpr const char* kVersion = "1.0.0";
constexpr const char* kTinyPath = "@tiny";

bool is_tiny(const std::string& path) {
  // `path` options are made absolute relative to the composition file, so accept ".../@tiny" too.
  return path == kTinyPath || (fs::path(path).filename() == kTinyPath && !fs::exists(path));
}

std::vector<std::string> tiny_vocab() {
  std::vector<std::string> v = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?"};
  for (char c = 'a'; c <= 'z'; ++c) v.emplace_back(1, c);
  for (const char* w : {"the", "is", "##s", "##e", "##t"}) v.emplace_back(w);
  return v;  // 40 tokens
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot read '" + p.string() + "'");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("cannot parse '" + p.string() + "': " + e.what());
  }
}

// What sentence-transformers would do with this folder: pooling from 1_Pooling/config.json (mean
// when absent), normalisation when modules.json lists a Normalize module.
std::string folder_pooling(const fs::path& dir) {
  fs::path cfg = dir / "1_Pooling" / "config.json";
  if (fs::exists(dir / "modules.json")) {
    for (const auto& m : read_json(dir / "modules.json"))
      if (m.value("type", std::string()).find("Pooling") != std::string::npos)
        cfg = dir / m.value("path", std::string("1_Pooling")) / "config.json";
  }
  if (!fs::exists(cfg)) return "mean";
  const auto j = read_json(cfg);
  if (j.value("pooling_mode_cls_token", false)) return "cls";
  if (j.value("pooling_mode_mean_tokens", false)) return "mean";
  throw std::runtime_error("'" + cfg.string() +
                           "' asks for a pooling mode hf_encoder does not implement (only mean and cls); "
                           "set pooling=mean or pooling=cls explicitly");
}

bool folder_normalize(const fs::path& dir) {
  if (!fs::exists(dir / "modules.json")) return false;
  for (const auto& m : read_json(dir / "modules.json")) {
    const auto type = m.value("type", std::string());
    if (type.size() >= 9 && type.compare(type.size() - 9, 9, "Normalize") == 0) return true;
  }
  return false;
}

class HfEncoder : public nexus::Teacher {
 public:
  explicit HfEncoder(const nexus::Options& o) : batch_size_(o.get_int("batch_size")) {
    if (batch_size_ < 1) throw nexus::OptionError("option 'batch_size' must be >= 1");
    const auto& path = o.get_string("path");
    std::string vocab_hash;
    if (is_tiny(path)) {
      BertConfig c;
      c.vocab_size = 40, c.hidden_size = 32, c.num_layers = 2, c.num_heads = 4, c.intermediate_size = 64;
      c.max_position_embeddings = 128;
      model_ = BertModel(c);
      model_->init_random(20240601);
      const auto vocab = tiny_vocab();
      tokenizer_ = std::make_unique<WordPieceTokenizer>(vocab, TokenizerConfig{});
      std::string joined;
      for (const auto& t : vocab) joined += t + "\n";
      vocab_hash = nexus::sha256_hex(joined);
      weights_hash_ = nexus::sha256_hex("hf_encoder @tiny seed 20240601");
      pooling_ = o.get_string("pooling") == "cls" ? "cls" : "mean";
      normalize_ = o.get_string("normalize") == "true";
    } else {
      const fs::path dir(path);
      if (!fs::is_directory(dir))
        throw std::runtime_error("hf_encoder: model folder '" + path + "' does not exist (run scripts/fetch_models.sh?)");
      std::vector<std::string> missing;
      for (const char* f : {"config.json", "model.safetensors", "vocab.txt"})
        if (!fs::exists(dir / f)) missing.push_back(f);
      if (!missing.empty())
        throw std::runtime_error("hf_encoder: '" + path + "' is not a Hugging Face BERT model folder (missing " +
                                 nexus::join(missing) + ")");
      const auto config = BertConfig::from_json_file((dir / "config.json").string());
      const auto weights = (dir / "model.safetensors").string();
      const auto file = nexus::support::MappedFile::open(weights);
      // The model allocates what its config asks for: check that against the file first.
      check_weights_fit(config, nexus::support::parse_safetensors_header(file->data(), file->size(), weights), weights);
      model_ = BertModel(config);
      model_->load_hf_state(nexus::support::read_safetensors(file, nexus::support::Storage::Copy), weights);
      weights_hash_ = nexus::sha256_file(weights);
      tokenizer_ = std::make_unique<WordPieceTokenizer>(WordPieceTokenizer::from_folder(path));
      vocab_hash = nexus::sha256_file((dir / "vocab.txt").string());
      const auto pooling = o.get_string("pooling"), normalize = o.get_string("normalize");
      pooling_ = pooling == "auto" ? folder_pooling(dir) : pooling;
      normalize_ = normalize == "auto" ? folder_normalize(dir) : normalize == "true";
    }
    if (tokenizer_->vocab_size() > model_->config().vocab_size)
      throw std::runtime_error("hf_encoder: vocab.txt has " + std::to_string(tokenizer_->vocab_size()) +
                               " tokens but the model only " + std::to_string(model_->config().vocab_size));
    const auto& cfg = model_->config();
    max_length_ = o.get_int("max_length");
    if (max_length_ < 2) throw nexus::OptionError("option 'max_length' must be >= 2");
    max_length_ = std::min(max_length_, cfg.max_position_embeddings);
    const auto layer = o.get_int("layer");
    if (layer < -(cfg.num_layers + 1) || layer > cfg.num_layers)
      throw nexus::OptionError("option 'layer' must be in [" + std::to_string(-(cfg.num_layers + 1)) + ", " +
                               std::to_string(cfg.num_layers) + "] for this " + std::to_string(cfg.num_layers) +
                               "-layer model, got " + std::to_string(layer));
    layers_ = layer < 0 ? cfg.num_layers + 1 + layer : layer;
    const auto& tc = tokenizer_->config();
    preprocessing_ = "pooling=" + pooling_ + ";normalize=" + (normalize_ ? "true" : "false") +
                     ";max_length=" + std::to_string(max_length_) + ";layer=" + std::to_string(layers_) +
                     ";lowercase=" + (tc.lowercase ? "true" : "false") +
                     ";strip_accents=" + (tc.strips_accents() ? "true" : "false") +
                     ";chinese_chars=" + (tc.tokenize_chinese_chars ? "true" : "false") + ";vocab=" + vocab_hash;
    model_->eval();
    model_->prepare();
  }

  nexus::Modality modality() const override { return nexus::Modality::Text; }
  int64_t width() const override { return model_->config().hidden_size; }
  nexus::Fingerprint fingerprint() const override { return {"hf_encoder", kVersion, weights_hash_, preprocessing_}; }

  at::Tensor encode(const nexus::TeacherInput& batch) override {
    const auto n = int64_t(batch.texts.size());
    if (n == 0 && batch.tensor.defined()) throw std::invalid_argument("hf_encoder encodes text: fill TeacherInput::texts");
    std::vector<std::vector<int64_t>> ids(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[std::size_t(i)] = tokenizer_->encode(batch.texts[std::size_t(i)], max_length_);
    // Longest first, so each chunk pads to similar lengths.
    std::vector<int64_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return ids[std::size_t(a)].size() > ids[std::size_t(b)].size(); });
    torch::Tensor out;
    {
      c10::InferenceMode guard;
      out = torch::empty({n, width()}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
      for (int64_t start = 0; start < n; start += batch_size_) {
        const int64_t end = std::min(n, start + batch_size_), b = end - start;
        const auto len = int64_t(ids[std::size_t(order[std::size_t(start)])].size());
        auto tok = torch::full({b, len}, tokenizer_->pad_id(), torch::kLong);
        auto mask = torch::zeros({b, len}, torch::kLong);
        auto tok_a = tok.accessor<int64_t, 2>();
        auto mask_a = mask.accessor<int64_t, 2>();
        for (int64_t r = 0; r < b; ++r) {
          const auto& row = ids[std::size_t(order[std::size_t(start + r)])];
          for (std::size_t c = 0; c < row.size(); ++c) {
            tok_a[r][int64_t(c)] = row[c];
            mask_a[r][int64_t(c)] = 1;
          }
        }
        tok = tok.to(device_);
        mask = mask.to(device_);
        auto hidden = model_->forward(tok, mask, layers_);
        torch::Tensor pooled;
        if (pooling_ == "cls") {
          pooled = hidden.select(1, 0);
        } else {
          auto m = mask.unsqueeze(-1).to(hidden.scalar_type());
          pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9);
        }
        if (normalize_) pooled = pooled / pooled.norm(2, 1, true).clamp_min(1e-12);
        auto index = torch::tensor(std::vector<int64_t>(order.begin() + start, order.begin() + end), torch::kLong).to(device_);
        out.index_copy_(0, index, pooled.to(torch::kFloat));
      }
    }
    return out.clone();  // a normal tensor: hosts may use it where autograd records inputs
  }

  nexus::TeacherInput example_input(int64_t batch_size) const override {
    static const std::vector<std::string> sentences = {
        "The quick brown fox jumps over the lazy dog.",
        "A teacher model turns sentences into embeddings.",
        "Is this the right way to the station?",
        "Students learn faster when the examples are clear!",
    };
    nexus::TeacherInput in;
    for (int64_t i = 0; i < batch_size; ++i) in.texts.push_back(sentences[std::size_t(i) % sentences.size()]);
    return in;
  }

  void to(const c10::Device& device) override {
    model_->to(device);
    model_->prepare();
    device_ = device;
  }

 private:
  int64_t batch_size_;
  BertModel model_{nullptr};
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  std::string weights_hash_, preprocessing_, pooling_;
  bool normalize_ = false;
  int64_t max_length_ = 256, layers_ = 0;
  c10::Device device_{c10::kCPU};
};

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_hf_encoder", "1.0.0")
NEXUS_TEACHER(HfEncoder, "hf_encoder",
              "BERT-family Hugging Face text encoder (safetensors + WordPiece) run natively in libtorch",
              "path:path!,pooling:choice(auto|mean|cls)=auto,normalize:choice(auto|true|false)=auto,"
              "max_length:int=256,layer:int=-1,batch_size:int=32",
              "path=@tiny")
NEXUS_PLUGIN_END()
