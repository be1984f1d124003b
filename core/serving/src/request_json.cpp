// Request JSON to plain values, torch-free so that a fuzz harness reaches exactly this code
// (tests/fuzz/request_json_fuzz.cpp); requests.cpp turns the values into tensors.
#include <nexus/text.hpp>

#include <algorithm>
#include <cmath>
#include <utility>

#include "nexus/audio/wav.hpp"
#include "nexus/base/base64.hpp"

#include "nexus/serving/request_json.hpp"

namespace nexus::serving {

nlohmann::json parse_body(const std::string& body, const std::vector<std::string>& fields) {
  // nlohmann's parser keeps its nesting on the heap, so deep input cannot exhaust the stack while
  // parsing; the callback keeps it from building (and later walking) anything deeper than this.
  bool too_deep = false;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body, [&too_deep](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      too_deep = too_deep || depth > kMaxJsonDepth;
      return !too_deep;
    });
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number like 1e400
    throw RequestError(400, std::string("malformed JSON: ") + e.what());
  }
  if (too_deep) throw RequestError(400, "JSON nested more than " + std::to_string(kMaxJsonDepth) + " levels deep");
  if (!j.is_object()) throw RequestError(400, "the body must be a JSON object");
  for (const auto& [key, value] : j.items())
    if (!contains(fields, key)) throw RequestError(400, "unknown field '" + key + "' (expected " + join(fields) + ")");
  return j;
}

std::vector<std::string> text_inputs(const nlohmann::json& inputs) {
  std::vector<std::string> texts;
  for (const auto& x : inputs) {
    if (!x.is_string()) throw RequestError(400, "'inputs' of a text task must be strings");
    texts.push_back(x.get<std::string>());
  }
  return texts;
}

namespace {

// Appends the numbers of one image, however its arrays nest, walking with an explicit stack.
// Stops as soon as the count passes `numel`, so a request cannot make the server copy more than
// one image's worth past the limit.
void flatten_image(const nlohmann::json& image, int64_t numel, std::vector<float>& values) {
  const auto start = values.size();
  if (!image.is_array()) throw RequestError(400, "an image must be an array of numbers (0-255)");
  std::vector<std::pair<const nlohmann::json*, size_t>> stack{{&image, 0}};
  while (!stack.empty()) {
    auto& [array, next] = stack.back();
    if (next == array->size()) {
      stack.pop_back();
      continue;
    }
    const auto& v = (*array)[next++];
    if (v.is_array()) {
      stack.emplace_back(&v, 0);
      continue;
    }
    if (!v.is_number()) throw RequestError(400, "an image must be an array of numbers (0-255), found a " + std::string(v.type_name()));
    const double x = v.get<double>();
    if (!(x >= 0 && x <= 255)) throw RequestError(400, "pixel values must be between 0 and 255, got " + v.dump());
    if (int64_t(values.size() - start) == numel) break;  // too many: reported below
    values.push_back(float(x) / 255.0f);  // as the datasets scale them
  }
  const auto got = values.size() - start;
  if (int64_t(got) != numel || !stack.empty())
    throw RequestError(400, "an image must have " + std::to_string(numel) + " values, got " +
                                (stack.empty() ? std::to_string(got) : "more"));
}

// What a request's audio may cost: each clip's length, and the padded batch the clips make (every
// clip padded to the longest), both counted from headers and array sizes before decoding.
class AudioBudget {
 public:
  explicit AudioBudget(const AudioLimits& limits) : limits_(limits) {}
  void admit(double seconds) {
    if (seconds > limits_.clip_seconds)
      throw RequestError(400, "an audio clip of " + std::to_string(seconds) + " s is over this server's limit of " +
                                  std::to_string(limits_.clip_seconds) + " s");
    longest_ = std::max(longest_, seconds);
    ++clips_;
    if (double(clips_) * longest_ > limits_.request_seconds)
      throw RequestError(400, "the request's " + std::to_string(clips_) + " clips, padded to the longest (" +
                                  std::to_string(longest_) + " s), come to more than this server's limit of " +
                                  std::to_string(limits_.request_seconds) +
                                  " s of audio per request: send fewer clips, or clips of similar length together");
  }

 private:
  AudioLimits limits_;
  double longest_ = 0;
  int64_t clips_ = 0;
};

std::vector<float> samples_input(const nlohmann::json& x, AudioBudget& budget) {
  for (const auto& [key, value] : x.items())
    if (key != "samples" && key != "sample_rate")
      throw RequestError(400, "unknown audio field '" + key + "' (expected samples, sample_rate)");
  const auto rate = x.find("sample_rate"), samples = x.find("samples");
  if (rate == x.end() || !rate->is_number_integer() || rate->get<int64_t>() < 1000 || rate->get<int64_t>() > 384000)
    throw RequestError(400, "an audio object needs 'sample_rate', an integer number of Hz in 1000-384000");
  if (samples == x.end() || !samples->is_array())
    throw RequestError(400, "an audio object needs 'samples', an array of numbers in -1..1");
  const int r = int(rate->get<int64_t>());
  budget.admit(double(samples->size()) / r);
  std::vector<float> values;
  values.reserve(samples->size());
  for (const auto& v : *samples) {
    if (!v.is_number()) throw RequestError(400, "audio samples must be numbers, found a " + std::string(v.type_name()));
    const double a = v.get<double>();
    if (!(std::abs(a) <= 1.0)) throw RequestError(400, "audio samples must lie in -1..1, got " + v.dump());
    values.push_back(float(a));
  }
  return audio::resample(values, r, audio::kModelRate);
}

std::vector<float> one_audio_input(const nlohmann::json& x, AudioBudget& budget) {
  if (x.is_object()) return samples_input(x, budget);
  if (!x.is_string())
    throw RequestError(400, "an audio input must be a base64 WAV string or {\"samples\": [...], \"sample_rate\": Hz}");
  const auto bytes = base64_decode(x.get_ref<const std::string&>());
  if (!bytes) throw RequestError(400, "an audio input string must be a WAV file in base64 (RFC 4648, padded)");
  try {
    const auto info = audio::parse_wav(*bytes);
    budget.admit(info.seconds());
    return audio::resample(audio::read_mono(*bytes, info, 0, info.frames), info.sample_rate, audio::kModelRate);
  } catch (const audio::WavError& e) {
    throw RequestError(400, e.what());
  }
}

}  // namespace

std::vector<std::vector<float>> audio_inputs(const nlohmann::json& inputs, const AudioLimits& limits) {
  AudioBudget budget(limits);
  std::vector<std::vector<float>> clips;
  for (size_t i = 0; i < inputs.size(); ++i) {
    try {
      clips.push_back(one_audio_input(inputs[i], budget));
    } catch (const RequestError& e) {
      throw RequestError(e.status, "input " + std::to_string(i) + ": " + e.what());
    }
    if (clips.back().size() < size_t(audio::kModelRate / 100))
      throw RequestError(400, "input " + std::to_string(i) + ": an audio clip must last at least 10 ms");
  }
  return clips;
}

std::vector<float> image_inputs(const nlohmann::json& inputs, const std::vector<int64_t>& shape) {
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  std::vector<float> values;
  for (const auto& x : inputs) {
    try {
      flatten_image(x, numel, values);
    } catch (const RequestError& e) {
      throw RequestError(e.status, std::string(e.what()) + " (shape " + join(shape, "x") + ")");
    }
  }
  return values;
}

const nlohmann::json& input_array(const nlohmann::json& body) {
  const auto it = body.find("inputs");
  if (it == body.end() || !it->is_array() || it->empty())
    throw RequestError(400, "'inputs' must be a non-empty array (texts, or images as arrays of numbers)");
  if (int64_t(it->size()) > kMaxInputsPerRequest)
    throw RequestError(400, "at most " + std::to_string(kMaxInputsPerRequest) + " inputs per request, got " +
                                std::to_string(it->size()));
  return *it;
}

}  // namespace nexus::serving
