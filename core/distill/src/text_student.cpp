#include "text_student.hpp"

#include <nexus/support/arrays.hpp>
#include <nexus/support/wordpiece.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <regex>

#include "nexus/base/errors.hpp"
#include "nexus/base/files.hpp"

namespace nexus::distill {
namespace fs = std::filesystem;

namespace {

// The teacher's tensors without the layers the student drops (encoder.layer.N. with N >= layers).
std::map<std::string, torch::Tensor> kept_layers(std::map<std::string, torch::Tensor> tensors, int64_t layers) {
  static const std::regex layer_name(R"(^(bert\.)?encoder\.layer\.(\d+)\.)");
  for (auto it = tensors.begin(); it != tensors.end();) {
    std::smatch m;
    if (std::regex_search(it->first, m, layer_name) && std::stoll(m[2].str()) >= layers) it = tensors.erase(it);
    else ++it;
  }
  return tensors;
}

}  // namespace

TextStudent::TextStudent(const TextStudentOptions& o) : options_(o) {
  const fs::path dir(o.teacher_folder);
  for (const char* f : {"config.json", "model.safetensors", "vocab.txt"})
    if (!fs::exists(dir / f)) throw InputError("the student's teacher folder '" + dir.string() + "' has no " + f);
  auto config = nexus_hf::BertConfig::from_json_file((dir / "config.json").string());
  if (o.layers > config.num_layers)
    throw InputError("text.layers is " + std::to_string(o.layers) + ", but the teacher has only " +
                     std::to_string(config.num_layers) + " layers");
  if (o.layers > 0) config.num_layers = o.layers;
  config.hidden_dropout = config.attention_dropout = o.dropout;
  const auto weights = (dir / "model.safetensors").string();
  const auto file = support::MappedFile::open(weights);
  nexus_hf::check_weights_fit(config, support::parse_safetensors_header(file->data(), file->size(), weights), weights);
  encoder_ = nexus_hf::BertModel(config);
  encoder_->load_hf_state(kept_layers(support::read_safetensors(file, support::Storage::Copy), config.num_layers), weights);
  for (auto& [name, p] : encoder_->hf_parameters())
    if (name == "embeddings.word_embeddings.weight") p.set_requires_grad(o.train_embeddings);
  tokenizer_ = std::make_unique<support::WordPieceTokenizer>(support::WordPieceTokenizer::from_folder(o.teacher_folder));
  options_.max_length = std::min(o.max_length, config.max_position_embeddings);
}

TextStudent::~TextStudent() = default;

std::vector<std::vector<int64_t>> TextStudent::tokenize(const std::vector<std::string>& texts) const {
  std::vector<std::vector<int64_t>> ids;
  ids.reserve(texts.size());
  for (const auto& t : texts) ids.push_back(tokenizer_->encode(t, options_.max_length));
  return ids;
}

at::Tensor TextStudent::pooled(const std::vector<std::vector<int64_t>>& ids, const std::vector<int64_t>& rows) {
  int64_t len = 1;
  for (const auto r : rows) len = std::max<int64_t>(len, int64_t(ids[std::size_t(r)].size()));
  const auto b = int64_t(rows.size());
  auto tok = torch::full({b, len}, tokenizer_->pad_id(), torch::kLong);
  auto mask = torch::zeros({b, len}, torch::kLong);
  auto tok_a = tok.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b; ++i) {
    const auto& row = ids[std::size_t(rows[std::size_t(i)])];
    for (std::size_t c = 0; c < row.size(); ++c) {
      tok_a[i][int64_t(c)] = row[c];
      mask_a[i][int64_t(c)] = 1;
    }
  }
  auto hidden = encoder_->forward(tok, mask, layers());
  auto m = mask.unsqueeze(-1).to(hidden.scalar_type());
  return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9);
}

void TextStudent::export_folder(const fs::path& dir) const {
  const fs::path from(options_.teacher_folder);
  fs::create_directories(dir / "1_Pooling");
  auto config = nlohmann::json::parse(read_file(from / "config.json"));
  config["num_hidden_layers"] = layers();
  config["_name_or_path"] = dir.filename().string();
  write_file_atomically(dir / "config.json", config.dump(2) + "\n");
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, p] : const_cast<nexus_hf::BertModelImpl&>(*encoder_).hf_parameters()) tensors.emplace(name, p.detach().contiguous());
  write_file_atomically(dir / "model.safetensors", support::safetensors_bytes(tensors, {{"format", "pt"}}));
  for (const char* f : {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"})
    if (fs::exists(from / f)) write_file_atomically(dir / f, read_file(from / f));
  // What sentence-transformers reads (and hf_encoder's pooling=auto): a transformer, mean pooling,
  // no normalisation.
  const nlohmann::json modules = nlohmann::json::array(
      {{{"idx", 0}, {"name", "0"}, {"path", ""}, {"type", "sentence_transformers.models.Transformer"}},
       {{"idx", 1}, {"name", "1"}, {"path", "1_Pooling"}, {"type", "sentence_transformers.models.Pooling"}}});
  write_file_atomically(dir / "modules.json", modules.dump(2) + "\n");
  const nlohmann::json pooling{{"word_embedding_dimension", width()}, {"pooling_mode_cls_token", false},
                               {"pooling_mode_mean_tokens", true}, {"pooling_mode_max_tokens", false},
                               {"pooling_mode_mean_sqrt_len_tokens", false}};
  write_file_atomically(dir / "1_Pooling" / "config.json", pooling.dump(2) + "\n");
  write_file_atomically(dir / "sentence_bert_config.json",
                        nlohmann::json{{"max_seq_length", options_.max_length}, {"do_lower_case", false}}.dump(2) + "\n");
}

}  // namespace nexus::distill
