#include "nexus/audio/batch.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

namespace nexus::audio {

TeacherInput pad_batch(const std::vector<std::vector<float>>& clips) {
  size_t longest = 0;
  for (const auto& c : clips) {
    if (c.empty()) throw std::invalid_argument("an audio clip is empty");
    longest = std::max(longest, c.size());
  }
  TeacherInput in;
  in.tensor = torch::zeros({int64_t(clips.size()), int64_t(longest)}, torch::kFloat);
  in.lengths = torch::empty({int64_t(clips.size())}, torch::kLong);
  auto* lengths = in.lengths.data_ptr<int64_t>();
  for (size_t i = 0; i < clips.size(); ++i) {
    std::copy(clips[i].begin(), clips[i].end(), in.tensor.data_ptr<float>() + i * longest);
    lengths[i] = int64_t(clips[i].size());
  }
  return in;
}

TeacherInput concat_batches(const std::vector<const TeacherInput*>& batches) {
  int64_t longest = 0;
  for (const auto* b : batches) longest = std::max(longest, b->tensor.size(1));
  std::vector<at::Tensor> rows, lengths;
  for (const auto* b : batches) {
    rows.push_back(torch::constant_pad_nd(b->tensor, {0, longest - b->tensor.size(1)}));
    lengths.push_back(b->lengths);
  }
  TeacherInput in;
  in.tensor = torch::cat(rows, 0);
  in.lengths = torch::cat(lengths, 0);
  return in;
}

}  // namespace nexus::audio
