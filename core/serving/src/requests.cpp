#include "nexus/serving/requests.hpp"

#include <torch/torch.h>

#include "nexus/audio/batch.hpp"

#include "nexus/serving/snapshot.hpp"

namespace nexus::serving {

TeacherInput read_inputs(const Snapshot& s, const std::string& modality, const nlohmann::json& body, const AudioLimits& audio_limits) {
  const auto& inputs = input_array(body);
  TeacherInput in;
  if (modality == "text") {
    in.texts = text_inputs(inputs);
    return in;
  }
  if (modality == "audio") return audio::pad_batch(audio_inputs(inputs, audio_limits));
  const auto& shape = s.sample_shape.at(modality);
  auto values = image_inputs(inputs, shape);
  std::vector<int64_t> full{int64_t(inputs.size())};
  full.insert(full.end(), shape.begin(), shape.end());
  in.tensor = torch::from_blob(values.data(), full, torch::kFloat).clone();
  return in;
}

}  // namespace nexus::serving
