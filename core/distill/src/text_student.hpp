// The text student: a BERT encoder (plugins/support's, the one hf_encoder runs) started from a
// teacher's Hugging Face folder, its first `layers` layers kept, trained end to end, and written
// back as a folder that hf_encoder and transformers.AutoModel both load.
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nexus/support/bert.hpp>

namespace nexus::support {
class WordPieceTokenizer;
}

namespace nexus::distill {

struct TextStudentOptions {
  std::string teacher_folder;
  int64_t layers = 0;  // 0 = all
  int64_t max_length = 256;
  double dropout = 0.1;
  bool train_embeddings = false;
};

class TextStudent {
 public:
  explicit TextStudent(const TextStudentOptions& options);
  ~TextStudent();

  nexus_hf::BertModel& encoder() { return encoder_; }
  int64_t width() const { return encoder_->config().hidden_size; }
  int64_t layers() const { return encoder_->config().num_layers; }
  int64_t max_length() const { return options_.max_length; }
  int64_t parameters() const { return encoder_->config().parameter_count(); }

  std::vector<std::vector<int64_t>> tokenize(const std::vector<std::string>& texts) const;
  // The mean-pooled last hidden state of `rows` of `ids`, exactly as hf_encoder pools (padding
  // masked out); with autograd in training mode.
  at::Tensor pooled(const std::vector<std::vector<int64_t>>& ids, const std::vector<int64_t>& rows);

  // Writes a Hugging Face folder: config.json (the teacher's, with this many layers),
  // model.safetensors, the teacher's tokenizer files and sentence-transformers' mean pooling.
  void export_folder(const std::filesystem::path& dir) const;

 private:
  TextStudentOptions options_;
  nexus_hf::BertModel encoder_{nullptr};
  std::unique_ptr<support::WordPieceTokenizer> tokenizer_;
};

}  // namespace nexus::distill
