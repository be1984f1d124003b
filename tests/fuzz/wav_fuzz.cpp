// libFuzzer harness: bytes as a WAV file, the way datasets and POST /v1/predict's audio inputs
// read them (audio/wav.hpp): header and chunk walk, every sample decoded and mixed to mono, then
// resampled to the model rate. WavError (bad input) is the expected answer to a malformed file.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "nexus/audio/wav.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nexus::audio;
  try {
    // 2 s keeps one run's resampling cheap; the limit check itself is what is being fuzzed.
    const auto clip = decode_wav(std::string_view(reinterpret_cast<const char*>(data), size), WavLimits{2.0});
    (void)resample(clip.samples, clip.sample_rate, kModelRate);
  } catch (const WavError&) {
  }
  return 0;
}
