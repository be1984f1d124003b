// Decoding what a client sends: bodies are data, so anything malformed is a RequestError with
// the HTTP status to answer and a message that says what was expected, never a crash.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include <nexus/teacher.hpp>

#include "nexus/base/errors.hpp"

namespace nexus::serving {

struct Snapshot;

class RequestError : public InputError {
 public:
  RequestError(int status, const std::string& message) : InputError(message), status(status) {}
  int status;
};

// Inputs one request may carry.
constexpr int64_t kMaxInputsPerRequest = 256;

// The body as a JSON object (400 otherwise).
nlohmann::json parse_body(const std::string& body);

// The request's "inputs" as a teacher batch of the task's modality: strings for text, arrays of
// pixel values 0-255 in the snapshot's input shape for images (scaled to [0, 1] as the datasets are).
TeacherInput read_inputs(const Snapshot& snapshot, const std::string& modality, const nlohmann::json& body);

}  // namespace nexus::serving
