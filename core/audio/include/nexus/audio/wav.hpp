// Audio at NEXUS's edges: WAV files and request bodies in, the audio modality's one form out.
//
// Design note. Every audio teacher receives the same thing: mono float32 samples in [-1, 1] at
// kModelRate (16 kHz), a batch as a zero-padded [B, T] tensor with the valid lengths [B] beside it
// (TeacherInput::tensor and ::lengths). Conversion happens once, here, where audio enters: datasets
// and served requests alike go through decode_wav (RIFF/WAVE: PCM 8/16/24/32-bit, IEEE float 32/64,
// WAVE_FORMAT_EXTENSIBLE; any channel count up to kMaxChannels mixed down to mono; any rate) and
// resample (libsamplerate's band-limited sinc converter; never decimation). A WAV file is data:
// every size it declares is checked against the bytes that are really there and against the
// caller's limits before anything is allocated, so a hostile header cannot make the reader read
// past the buffer or allocate more than the limits allow. The one leniency: a data chunk whose size
// is a streaming writer's placeholder (0, 0x7FFFF000, 0xFFFFFFFF) runs to the end of the buffer. This file is torch-free so that a fuzz
// harness (tests/fuzz/wav_fuzz.cpp) reaches exactly this code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nexus/base/errors.hpp"

namespace nexus::audio {

// The rate every audio teacher receives.
constexpr int kModelRate = 16000;
constexpr int kMaxChannels = 8;

// A WAV that is malformed, unsupported or over a limit: bad input.
class WavError : public InputError {
 public:
  using InputError::InputError;
};

enum class SampleFormat { Pcm, Float };

// What a WAV header says, checked against the buffer it came from.
struct WavInfo {
  SampleFormat format = SampleFormat::Pcm;
  int channels = 0;
  int sample_rate = 0;
  int bits = 0;              // per sample: 8, 16, 24, 32 (PCM) or 32, 64 (float)
  int64_t frames = 0;        // samples per channel
  size_t data_offset = 0;    // where the samples start in the buffer
  double seconds() const { return sample_rate > 0 ? double(frames) / sample_rate : 0; }
};

struct WavLimits {
  double max_seconds = 600;  // longer audio is refused before its samples are read
};

// Parses the RIFF chunks up to the data chunk. Throws WavError on anything malformed: not RIFF/WAVE,
// chunks that run past the buffer, no fmt or data chunk, unsupported encodings, sizes that disagree
// (block align, byte rate, a data chunk that is not whole frames), or a duration over the limit.
WavInfo parse_wav(std::string_view bytes, const WavLimits& limits = {});

// Frames [first, first + count) of a parsed buffer, mixed down to mono floats in [-1, 1]
// (float WAVs as stored; a non-finite sample is a WavError).
std::vector<float> read_mono(std::string_view bytes, const WavInfo& info, int64_t first, int64_t count);

// A whole WAV as mono samples at its own rate.
struct Clip {
  int sample_rate = 0;
  std::vector<float> samples;
};
Clip decode_wav(std::string_view bytes, const WavLimits& limits = {});

// `samples` at `from_rate` converted to `to_rate` with libsamplerate (SRC_SINC_MEDIUM_QUALITY);
// returned unchanged when the rates are equal. Rates must be in [1000, 384000].
std::vector<float> resample(const std::vector<float>& samples, int from_rate, int to_rate);

}  // namespace nexus::audio
