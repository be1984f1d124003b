#include "nexus/serving/requests.hpp"

#include <nexus/text.hpp>
#include <torch/torch.h>

#include <functional>

#include "nexus/serving/snapshot.hpp"

namespace nexus::serving {

nlohmann::json parse_body(const std::string& body) {
  try {
    auto j = nlohmann::json::parse(body);
    if (!j.is_object()) throw RequestError(400, "the body must be a JSON object");
    return j;
  } catch (const nlohmann::json::parse_error& e) {
    throw RequestError(400, std::string("malformed JSON: ") + e.what());
  }
}

namespace {

TeacherInput read_texts(const nlohmann::json& inputs) {
  TeacherInput in;
  for (const auto& x : inputs) {
    if (!x.is_string()) throw RequestError(400, "'inputs' of a text task must be strings");
    in.texts.push_back(x.get<std::string>());
  }
  return in;
}

TeacherInput read_tensors(const nlohmann::json& inputs, const std::vector<int64_t>& shape) {
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  std::vector<float> values;
  values.reserve(size_t(numel) * inputs.size());
  for (const auto& x : inputs) {
    const auto before = values.size();
    std::function<void(const nlohmann::json&)> flatten = [&](const nlohmann::json& v) {
      if (v.is_array()) {
        for (const auto& e : v) flatten(e);
      } else if (v.is_number()) {
        values.push_back(v.get<float>() / 255.0f);  // pixel values 0-255, as in the datasets
      } else {
        throw RequestError(400, "an image must be an array of numbers (0-255)");
      }
    };
    flatten(x);
    if (int64_t(values.size() - before) != numel)
      throw RequestError(400, "an image must have " + std::to_string(numel) + " values (" + join(shape, "x") + "), got " +
                                  std::to_string(values.size() - before));
  }
  std::vector<int64_t> full{int64_t(inputs.size())};
  full.insert(full.end(), shape.begin(), shape.end());
  TeacherInput in;
  in.tensor = torch::from_blob(values.data(), full, torch::kFloat).clone();
  if (!in.tensor.isfinite().all().item<bool>()) throw RequestError(400, "an image holds a non-finite value");
  return in;
}

}  // namespace

TeacherInput read_inputs(const Snapshot& s, const std::string& modality, const nlohmann::json& body) {
  const auto it = body.find("inputs");
  if (it == body.end() || !it->is_array() || it->empty())
    throw RequestError(400, "'inputs' must be a non-empty array (texts, or images as arrays of numbers)");
  if (int64_t(it->size()) > kMaxInputsPerRequest)
    throw RequestError(400, "at most " + std::to_string(kMaxInputsPerRequest) + " inputs per request, got " +
                                std::to_string(it->size()));
  if (modality == "text") return read_texts(*it);
  return read_tensors(*it, s.sample_shape.at(modality));
}

}  // namespace nexus::serving
