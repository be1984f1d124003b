#include "nexus/audio/wav.hpp"

#include <samplerate.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace nexus::audio {
namespace {

uint32_t le32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t(u[0]) | uint32_t(u[1]) << 8 | uint32_t(u[2]) << 16 | uint32_t(u[3]) << 24;
}
uint16_t le16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return uint16_t(u[0] | u[1] << 8);
}

constexpr uint16_t kFormatPcm = 1, kFormatFloat = 3, kFormatExtensible = 0xFFFE;
// The tail every KSDATAFORMAT_SUBTYPE GUID shares after its two-byte format code.
constexpr unsigned char kSubtypeTail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                            0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

struct Fmt {
  uint16_t tag = 0, channels = 0, block_align = 0, bits = 0;
  uint32_t rate = 0, byte_rate = 0;
};

Fmt read_fmt(std::string_view chunk) {
  if (chunk.size() < 16) throw WavError("WAV fmt chunk is " + std::to_string(chunk.size()) + " bytes, expected at least 16");
  Fmt f;
  f.tag = le16(chunk.data());
  f.channels = le16(chunk.data() + 2);
  f.rate = le32(chunk.data() + 4);
  f.byte_rate = le32(chunk.data() + 8);
  f.block_align = le16(chunk.data() + 12);
  f.bits = le16(chunk.data() + 14);
  if (f.tag == kFormatExtensible) {
    if (chunk.size() < 40) throw WavError("WAV fmt chunk of WAVE_FORMAT_EXTENSIBLE is " + std::to_string(chunk.size()) + " bytes, expected 40");
    const char* guid = chunk.data() + 24;
    if (std::memcmp(guid + 2, kSubtypeTail, sizeof kSubtypeTail) != 0)
      throw WavError("WAV WAVE_FORMAT_EXTENSIBLE with an unknown sub-format GUID");
    f.tag = le16(guid);
  }
  return f;
}

void check_fmt(const Fmt& f) {
  if (f.tag != kFormatPcm && f.tag != kFormatFloat)
    throw WavError("WAV encoding " + std::to_string(f.tag) + " is not supported (PCM or IEEE float only; compressed WAVs need decoding first)");
  if (f.channels < 1 || f.channels > kMaxChannels)
    throw WavError("WAV has " + std::to_string(f.channels) + " channels (1 to " + std::to_string(kMaxChannels) + " supported)");
  if (f.rate < 1000 || f.rate > 384000) throw WavError("WAV sample rate " + std::to_string(f.rate) + " Hz is outside 1000-384000");
  const bool pcm_ok = f.tag == kFormatPcm && (f.bits == 8 || f.bits == 16 || f.bits == 24 || f.bits == 32);
  const bool float_ok = f.tag == kFormatFloat && (f.bits == 32 || f.bits == 64);
  if (!pcm_ok && !float_ok)
    throw WavError(std::string("WAV ") + (f.tag == kFormatPcm ? "PCM" : "float") + " with " + std::to_string(f.bits) +
                   " bits per sample is not supported (PCM 8/16/24/32, float 32/64)");
  const uint32_t block = uint32_t(f.channels) * f.bits / 8;
  if (f.block_align != block)
    throw WavError("WAV block align " + std::to_string(f.block_align) + " disagrees with " + std::to_string(f.channels) +
                   " channels of " + std::to_string(f.bits) + " bits (" + std::to_string(block) + ")");
  if (f.byte_rate != uint64_t(block) * f.rate)
    throw WavError("WAV byte rate " + std::to_string(f.byte_rate) + " disagrees with block align x rate (" +
                   std::to_string(uint64_t(block) * f.rate) + ")");
}

float sample_at(const char* p, SampleFormat format, int bits) {
  if (format == SampleFormat::Float) {
    if (bits == 32) {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    double v;
    std::memcpy(&v, p, 8);
    return float(v);
  }
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  switch (bits) {
    case 8: return (float(u[0]) - 128.0f) / 128.0f;
    case 16: return float(int16_t(le16(p))) / 32768.0f;
    case 24: {
      int32_t v = int32_t(uint32_t(u[0]) << 8 | uint32_t(u[1]) << 16 | uint32_t(u[2]) << 24) >> 8;
      return float(v) / 8388608.0f;
    }
    default: return float(double(int32_t(le32(p))) / 2147483648.0);
  }
}

}  // namespace

WavInfo parse_wav(std::string_view bytes, const WavLimits& limits) {
  if (bytes.size() < 12 || bytes.substr(0, 4) != "RIFF" || bytes.substr(8, 4) != "WAVE")
    throw WavError(bytes.size() >= 4 && bytes.substr(0, 4) == "RF64" ? "RF64 (64-bit) WAV files are not supported"
                                                                      : "not a WAV file (no RIFF/WAVE header)");
  // The RIFF size is often wrong in files from streaming writers; the chunks are checked instead.
  bool have_fmt = false;
  Fmt fmt;
  size_t pos = 12;
  while (true) {
    if (bytes.size() - pos < 8)
      throw WavError(have_fmt ? "WAV has no data chunk (file ends at byte " + std::to_string(bytes.size()) + ")"
                              : "WAV has no fmt chunk before its end");
    const auto id = bytes.substr(pos, 4);
    uint64_t size = le32(bytes.data() + pos + 4);
    const size_t body = pos + 8;
    const uint64_t available = bytes.size() - body;
    if (id == "data") {
      if (!have_fmt) throw WavError("WAV data chunk comes before its fmt chunk");
      // Writers that stream to a pipe cannot seek back to fill in the size: they leave a marker
      // (espeak-ng and sox 0x7FFFF000, others 0xFFFFFFFF or 0) and the samples run to the end.
      const bool streamed = size == 0 || size == 0x7FFFF000u || size == 0xFFFFFFFFu;
      if (streamed) size = available - available % fmt.block_align;
      if (size > available)
        throw WavError("WAV is truncated: its data chunk declares " + std::to_string(size) + " bytes, the file holds " +
                       std::to_string(available));
      if (size % fmt.block_align != 0)
        throw WavError("WAV data chunk of " + std::to_string(size) + " bytes is not whole frames of " +
                       std::to_string(fmt.block_align) + " bytes");
      WavInfo info;
      info.format = fmt.tag == kFormatFloat ? SampleFormat::Float : SampleFormat::Pcm;
      info.channels = fmt.channels;
      info.sample_rate = int(fmt.rate);
      info.bits = fmt.bits;
      info.frames = int64_t(size / fmt.block_align);
      info.data_offset = body;
      if (info.seconds() > limits.max_seconds)
        throw WavError("WAV is " + std::to_string(info.seconds()) + " s long, over the limit of " +
                       std::to_string(limits.max_seconds) + " s");
      return info;
    }
    if (size > available)
      throw WavError("WAV chunk '" + std::string(id) + "' declares " + std::to_string(size) + " bytes, the file holds " +
                     std::to_string(available));
    if (id == "fmt ") {
      if (have_fmt) throw WavError("WAV has two fmt chunks");
      fmt = read_fmt(bytes.substr(body, size_t(size)));
      check_fmt(fmt);
      have_fmt = true;
    }
    pos = body + size_t(size) + (size & 1);  // chunks are padded to an even size
    if (pos > bytes.size()) throw WavError("WAV chunk '" + std::string(id) + "' runs past the end of the file");
  }
}

std::vector<float> read_mono(std::string_view bytes, const WavInfo& info, int64_t first, int64_t count) {
  if (first < 0 || count < 0 || first > info.frames || count > info.frames - first)
    throw WavError("frames [" + std::to_string(first) + ", " + std::to_string(first + count) + ") are outside the WAV's " +
                   std::to_string(info.frames));
  const size_t width = size_t(info.bits / 8), block = width * size_t(info.channels);
  if (info.data_offset + size_t(info.frames) * block > bytes.size()) throw WavError("WAV buffer is shorter than its header says");
  std::vector<float> out(static_cast<size_t>(count));
  const char* p = bytes.data() + info.data_offset + size_t(first) * block;
  const float scale = 1.0f / float(info.channels);
  for (int64_t i = 0; i < count; ++i, p += block) {
    float sum = 0;
    for (int c = 0; c < info.channels; ++c) sum += sample_at(p + size_t(c) * width, info.format, info.bits);
    if (!std::isfinite(sum)) throw WavError("WAV sample " + std::to_string(first + i) + " is not a finite number");
    out[size_t(i)] = sum * scale;
  }
  return out;
}

Clip decode_wav(std::string_view bytes, const WavLimits& limits) {
  const auto info = parse_wav(bytes, limits);
  return {info.sample_rate, read_mono(bytes, info, 0, info.frames)};
}

std::vector<float> resample(const std::vector<float>& samples, int from_rate, int to_rate) {
  for (int r : {from_rate, to_rate})
    if (r < 1000 || r > 384000) throw WavError("sample rate " + std::to_string(r) + " Hz is outside 1000-384000");
  if (from_rate == to_rate || samples.empty()) return samples;
  const double ratio = double(to_rate) / from_rate;
  std::vector<float> out(size_t(std::ceil(double(samples.size()) * ratio)) + 16);
  SRC_DATA d{};
  d.data_in = samples.data();
  d.input_frames = long(samples.size());
  d.data_out = out.data();
  d.output_frames = long(out.size());
  d.end_of_input = 1;
  d.src_ratio = ratio;
  if (const int err = src_simple(&d, SRC_SINC_MEDIUM_QUALITY, 1))
    throw RuntimeFailure(std::string("libsamplerate: ") + src_strerror(err));
  out.resize(size_t(d.output_frames_gen));
  return out;
}

}  // namespace nexus::audio
