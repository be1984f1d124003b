// libFuzzer harness: a request body as POST /v1/predict and /v1/embed decode it, up to the values
// handed to the teachers (serving/request_json.hpp): the body's fields, the inputs array, texts,
// images of two shapes, and audio (base64 WAVs or sample arrays, at most 1 s each). RequestError (a 4xx) is the expected answer to bad input.
#include <cstddef>
#include <cstdint>
#include <string>

#include "nexus/serving/request_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nexus::serving;
  try {
    const auto body = parse_body(std::string(reinterpret_cast<const char*>(data), size), {"task", "inputs", "routing"});
    const auto& inputs = input_array(body);
    try {
      (void)text_inputs(inputs);
    } catch (const RequestError&) {
    }
    try {
      (void)audio_inputs(inputs, AudioLimits{1.0, 4.0});
    } catch (const RequestError&) {
    }
    try {
      (void)image_inputs(inputs, {1, 28, 28});
    } catch (const RequestError&) {
    }
    (void)image_inputs(inputs, {6});
  } catch (const RequestError&) {
  }
  return 0;
}
