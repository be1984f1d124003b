// decoder_llm: a decoder-only LLM (Llama, Mistral, Qwen2, SmolLM2) as a text teacher, run natively
// in libtorch. `path` is a Hugging Face folder or a GGUF file (weights.hpp); the features are
// pooled hidden states of one or more layers (llama.hpp keeps and runs only the layers needed).
//
// Pooling: `mean` averages the real tokens except the first. In these models the first token is an
// attention sink whose activations are ~100x the others' in the middle layers (SmolLM2), so a mean
// that included it would be that one token. `last` is the last real token (what a causal model has
// read the whole text at); `mean_last` concatenates both. With several layers their pooled states
// are concatenated in the order given.
//
// path=@tiny builds a random 2-layer model over a byte vocabulary from a fixed seed, only so the
// plugin probe can create and self-test the component without a model on disk.
#include <c10/core/InferenceMode.h>
#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>
#include <nexus/text.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include <nexus/support/bpe.hpp>

#include "llama.hpp"
#include "weights.hpp"

namespace {
namespace fs = std::filesystem;
using nexus_llm::LlamaConfig;
using nexus_llm::LlamaModel;

constexpr const char* kVersion = "1.0.0";
constexpr int64_t kMaxBatchRows = 64;

bool is_tiny(const std::string& path) {
  return path == "@tiny" || (fs::path(path).filename() == "@tiny" && !fs::exists(path));
}

LlamaConfig tiny_config() {
  LlamaConfig c;
  c.vocab_size = 256, c.hidden_size = 32, c.intermediate_size = 64, c.num_layers = 2;
  c.num_heads = 4, c.num_kv_heads = 2, c.head_dim = 8, c.max_position_embeddings = 256;
  c.architecture = "qwen2", c.attention_bias = true;  // exercises GQA and the biases
  return c;
}

// GPT-2's byte-to-character map: the 256 single-byte tokens of a byte-level vocabulary.
std::vector<std::string> byte_tokens() {
  std::vector<std::string> out(256);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const char32_t c = printable ? char32_t(b) : char32_t(256 + extra++);
    std::string s;  // UTF-8 of c (< 0x800)
    if (c < 0x80) s += char(c);
    else s += char(0xC0 | (c >> 6)), s += char(0x80 | (c & 0x3F));
    out[std::size_t(b)] = s;
  }
  return out;
}

// Which hidden states, in transformers' numbering (0 = embeddings, n = after the final norm).
std::vector<int64_t> resolve_layers(const std::vector<int64_t>& asked, int64_t layers) {
  if (asked.empty()) throw nexus::OptionError("option 'layer' must name at least one layer");
  std::vector<int64_t> out;
  for (auto l : asked) {
    if (l < -(layers + 1) || l > layers)
      throw nexus::OptionError("option 'layer' must be in [" + std::to_string(-(layers + 1)) + ", " + std::to_string(layers) +
                               "] for this " + std::to_string(layers) + "-layer model, got " + std::to_string(l));
    out.push_back(l < 0 ? layers + 1 + l : l);
  }
  return out;
}

class DecoderLlm : public nexus::Teacher {
 public:
  explicit DecoderLlm(const nexus::Options& o)
      : pooling_(o.get_string("pooling")), template_(o.get_string("template", "")), max_length_(o.get_int("max_length")),
        batch_tokens_(o.get_int("batch_tokens")) {
    if (max_length_ < 2) throw nexus::OptionError("option 'max_length' must be >= 2");
    if (batch_tokens_ < 1) throw nexus::OptionError("option 'batch_tokens' must be >= 1");
    if (!template_.empty() && template_.find("{text}") == std::string::npos)
      throw nexus::OptionError("option 'template' must contain {text}, where the input goes");
    dtype_ = o.get_string("dtype") == "bf16" ? c10::kBFloat16 : c10::kFloat;
    const auto asked = o.get_int_list("layer");
    const auto& path = o.get_string("path");
    if (is_tiny(path)) {
      const auto c = tiny_config();
      layers_ = resolve_layers(asked, c.num_layers);
      model_ = std::make_unique<LlamaModel>(c, *std::max_element(layers_.begin(), layers_.end()));
      model_->init_random(20241202);
      nexus::support::BpeVocab v;
      v.tokens = byte_tokens();
      v.pre = "gpt2";
      tokenizer_ = std::make_unique<nexus::support::BpeTokenizer>(nexus::support::BpeTokenizer::from_vocab(std::move(v)));
      weights_hash_ = nexus::sha256_hex("decoder_llm @tiny seed 20241202");
      tokenizer_hash_ = "bytes";
    } else {
      std::unique_ptr<LlamaModel> model;
      auto loaded = nexus_llm::load_decoder(path, [&](const LlamaConfig& c) {
        layers_ = resolve_layers(asked, c.num_layers);
        model = std::make_unique<LlamaModel>(c, *std::max_element(layers_.begin(), layers_.end()));
        return model->needed_tensors();
      });
      model->load(std::move(loaded.tensors), path);
      model_ = std::move(model);
      tokenizer_ = std::move(loaded.tokenizer);
      weights_hash_ = loaded.weights_hash;
      tokenizer_hash_ = loaded.tokenizer_hash;
    }
    if (int64_t(tokenizer_->vocab_size()) > model_->config().vocab_size)
      throw std::runtime_error("decoder_llm: the tokenizer has " + std::to_string(tokenizer_->vocab_size()) +
                               " tokens but the model's embeddings only " + std::to_string(model_->config().vocab_size));
    max_length_ = std::min(max_length_, model_->config().max_position_embeddings);
    model_->to(device_, dtype_);
    std::string layer_text;
    for (auto l : layers_) layer_text += (layer_text.empty() ? "" : ",") + std::to_string(l);
    preprocessing_ = "layers=" + layer_text + ";pooling=" + pooling_ + ";max_length=" + std::to_string(max_length_) +
                     ";dtype=" + (dtype_ == c10::kFloat ? "f32" : "bf16") + ";template=" + nexus::sha256_hex(template_) +
                     ";tokenizer=" + tokenizer_hash_;
  }

  nexus::Modality modality() const override { return nexus::Modality::Text; }
  int64_t width() const override {
    return int64_t(layers_.size()) * model_->config().hidden_size * (pooling_ == "mean_last" ? 2 : 1);
  }
  nexus::Fingerprint fingerprint() const override { return {"decoder_llm", kVersion, weights_hash_, preprocessing_}; }

  at::Tensor encode(const nexus::TeacherInput& batch) override {
    const auto n = int64_t(batch.texts.size());
    if (n == 0 && batch.tensor.defined()) throw std::invalid_argument("decoder_llm encodes text: fill TeacherInput::texts");
    std::vector<std::vector<int32_t>> ids(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[std::size_t(i)] = tokens_of(batch.texts[std::size_t(i)]);
    // Longest first, and as many rows per chunk as the token budget allows: little padding, and
    // long texts do not make a chunk of short ones pay for their length.
    std::vector<int64_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return ids[std::size_t(a)].size() > ids[std::size_t(b)].size(); });
    auto out = torch::empty({n, width()}, torch::kFloat);
    c10::InferenceMode guard;
    for (int64_t start = 0; start < n;) {
      const auto len = int64_t(ids[std::size_t(order[std::size_t(start)])].size());
      const int64_t rows = std::clamp<int64_t>(batch_tokens_ / std::max<int64_t>(len, 1), 1, kMaxBatchRows);
      const int64_t end = std::min(n, start + rows);
      std::vector<int64_t> lengths;
      auto tok = torch::zeros({end - start, len}, torch::kLong);
      auto tok_a = tok.accessor<int64_t, 2>();
      for (int64_t r = 0; r < end - start; ++r) {
        const auto& row = ids[std::size_t(order[std::size_t(start + r)])];
        for (std::size_t c = 0; c < row.size(); ++c) tok_a[r][int64_t(c)] = row[c];
        lengths.push_back(int64_t(row.size()));
      }
      auto pooled = pool(model_->forward(tok, layers_), lengths);
      auto index = torch::tensor(std::vector<int64_t>(order.begin() + start, order.begin() + end), torch::kLong);
      out.index_copy_(0, index, pooled.cpu());
      start = end;
    }
    return out;
  }

  nexus::TeacherInput example_input(int64_t batch_size) const override {
    static const std::vector<std::string> sentences = {
        "The quick brown fox jumps over the lazy dog.",
        "A decoder turns 42 sentences into hidden states.",
        "Où est la gare ? 駅はどこですか",
        "Short.",
    };
    nexus::TeacherInput in;
    for (int64_t i = 0; i < batch_size; ++i) in.texts.push_back(sentences[std::size_t(i) % sentences.size()]);
    return in;
  }

  void to(const c10::Device& device) override {
    device_ = device;
    model_->to(device, dtype_);
  }

 private:
  std::vector<int32_t> tokens_of(const std::string& text) const {
    std::string filled = text;
    if (!template_.empty()) {
      filled = template_;
      filled.replace(filled.find("{text}"), 6, text);
    }
    auto ids = tokenizer_->encode(filled, true);
    if (int64_t(ids.size()) > max_length_) ids.resize(std::size_t(max_length_));
    if (ids.empty()) ids.push_back(0);  // an empty text still needs one position; it pools to that token
    return ids;
  }

  // [B, width] from each state [B, L, H]: masked mean over positions 1..len-1 (position 0 when
  // that is all there is), and/or the last real position.
  at::Tensor pool(const std::vector<at::Tensor>& states, const std::vector<int64_t>& lengths) const {
    const auto b = int64_t(lengths.size()), l = states.front().size(1);
    auto len = torch::tensor(lengths, torch::kLong).to(states.front().device());
    auto pos = torch::arange(l, len.options()).unsqueeze(0);
    auto from = (len > 1).to(torch::kLong).unsqueeze(1);  // skip the sink when there is anything else
    auto mask = ((pos >= from) & (pos < len.unsqueeze(1))).to(torch::kFloat).unsqueeze(-1);
    auto last = (len - 1).view({b, 1, 1});
    std::vector<at::Tensor> parts;
    for (const auto& s : states) {
      if (pooling_ != "last") parts.push_back((s * mask).sum(1) / mask.sum(1));
      if (pooling_ != "mean") parts.push_back(s.gather(1, last.expand({b, 1, s.size(2)})).squeeze(1));
    }
    return torch::cat(parts, 1);
  }

  std::string pooling_, template_;
  int64_t max_length_, batch_tokens_;
  std::vector<int64_t> layers_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<nexus::support::BpeTokenizer> tokenizer_;
  std::string weights_hash_, tokenizer_hash_, preprocessing_;
  c10::Device device_{c10::kCPU};
  c10::ScalarType dtype_ = c10::kFloat;
};

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_decoder_llm", "1.0.0")
NEXUS_TEACHER(DecoderLlm, "decoder_llm",
              "decoder-only LLM (Llama, Mistral, Qwen2, SmolLM2) from a Hugging Face folder or a GGUF file, run natively in "
              "libtorch; pooled hidden states",
              "path:path!,layer:list=-1,pooling:choice(mean|last|mean_last)=mean,max_length:int=128,template:string,"
              "dtype:choice(f32|bf16)=f32,batch_tokens:int=4096",
              "path=@tiny")
NEXUS_PLUGIN_END()
