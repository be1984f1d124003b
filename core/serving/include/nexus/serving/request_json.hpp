// Decoding what a client sends, torch-free (request_json.cpp): bodies are data, so anything
// malformed is a RequestError with the HTTP status to answer and a message that says what was
// expected, never a crash. Every walk over request data is iterative or depth-limited.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "nexus/base/errors.hpp"

namespace nexus::serving {

class RequestError : public InputError {
 public:
  RequestError(int status, const std::string& message) : InputError(message), status(status) {}
  int status;
};

// Inputs one request may carry.
constexpr int64_t kMaxInputsPerRequest = 256;
// Nesting of a request's JSON; an image batch needs 4 levels, and no walk over request data goes
// deeper than this.
constexpr int kMaxJsonDepth = 32;

// The body as a JSON object with only the given top-level `fields` (400 otherwise: malformed,
// nested deeper than kMaxJsonDepth, not an object, or an unknown field).
nlohmann::json parse_body(const std::string& body, const std::vector<std::string>& fields);

// The body's "inputs": a non-empty array of at most kMaxInputsPerRequest items (400 otherwise).
const nlohmann::json& input_array(const nlohmann::json& body);
// Text inputs: every item a string.
std::vector<std::string> text_inputs(const nlohmann::json& inputs);
struct AudioLimits {
  double clip_seconds = 30;      // the longest clip
  double request_seconds = 120;  // clips x the longest clip: the padded batch one request makes
};
// Audio inputs, each a base64 WAV string (any rate, PCM or float, mono or stereo; audio/wav.hpp)
// or {"samples": [floats in -1..1], "sample_rate": Hz}; every clip resampled to 16 kHz. A clip
// shorter than 10 ms or over a limit is a 400, the limits checked before its samples are read.
std::vector<std::vector<float>> audio_inputs(const nlohmann::json& inputs, const AudioLimits& limits);
// Image inputs: each item an array, nested any way, of exactly prod(shape) numbers in 0-255; the
// values scaled to [0, 1] (as the datasets are), concatenated. Walks the arrays iteratively.
std::vector<float> image_inputs(const nlohmann::json& inputs, const std::vector<int64_t>& shape);

}  // namespace nexus::serving
