// The audio modality's edges (core/audio): WAV decoding, good and malformed; libsamplerate
// resampling; base64; padded batches; audio datasets; the audio teacher contract.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>
#include <nexus/teacher.hpp>

#include <cmath>
#include <cstring>

#include "nexus/audio/batch.hpp"
#include "nexus/audio/wav.hpp"
#include "nexus/base/base64.hpp"
#include "nexus/data/dataset.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;
using namespace nexus::audio;

namespace {

void put16(std::string& s, uint32_t v) { s += char(v & 0xFF), s += char(v >> 8 & 0xFF); }
void put32(std::string& s, uint32_t v) { put16(s, v & 0xFFFF), put16(s, v >> 16); }

struct WavSpec {
  uint16_t tag = 1, channels = 1, bits = 16;
  uint32_t rate = 16000;
  bool extensible = false;
  std::string extra_chunks;  // between fmt and data
};

std::string fmt_chunk(const WavSpec& w) {
  std::string f;
  const uint16_t block = uint16_t(w.channels * w.bits / 8);
  put16(f, w.extensible ? 0xFFFE : w.tag), put16(f, w.channels), put32(f, w.rate), put32(f, w.rate * block);
  put16(f, block), put16(f, w.bits);
  if (w.extensible) {
    put16(f, 22), put16(f, w.bits), put32(f, 0), put16(f, w.tag);
    f += std::string("\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x71", 14);
  }
  std::string c = "fmt ";
  put32(c, uint32_t(f.size()));
  return c + f;
}

std::string wav_file(const WavSpec& w, const std::string& data, int64_t declared = -1) {
  std::string body = "WAVE" + fmt_chunk(w) + w.extra_chunks + "data";
  put32(body, declared < 0 ? uint32_t(data.size()) : uint32_t(declared));
  body += data;
  std::string file = "RIFF";
  put32(file, uint32_t(body.size()));
  return file + body;
}

std::string pcm16(const std::vector<int16_t>& v) {
  std::string s;
  for (auto x : v) put16(s, uint16_t(x));
  return s;
}

std::string sine16(int rate, double hz, double seconds, double amplitude = 0.5) {
  std::vector<int16_t> v(size_t(rate * seconds));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int16_t(std::lround(amplitude * 32767 * std::sin(2 * M_PI * hz * double(i) / rate)));
  return wav_file({1, 1, 16, uint32_t(rate)}, pcm16(v));
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

double rms(const std::vector<float>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += double(v[i]) * v[i];
  return std::sqrt(s / double(to - from));
}

}  // namespace

TEST_CASE("wav: PCM 8/16/24/32, float 32/64, extensible, stereo mixdown, extra chunks") {
  const auto mono = decode_wav(wav_file({}, pcm16({0, 16384, -32768, 32767})));
  CHECK(mono.sample_rate == 16000);
  REQUIRE(mono.samples.size() == 4);
  CHECK(mono.samples[1] == doctest::Approx(0.5));
  CHECK(mono.samples[2] == doctest::Approx(-1.0));

  const auto stereo = decode_wav(wav_file({1, 2, 16, 44100}, pcm16({16384, 0, -16384, -16384})));
  REQUIRE(stereo.samples.size() == 2);
  CHECK(stereo.samples[0] == doctest::Approx(0.25));
  CHECK(stereo.samples[1] == doctest::Approx(-0.5));

  CHECK(decode_wav(wav_file({1, 1, 8}, std::string("\x80\xC0\x00", 3))).samples == std::vector<float>{0.0f, 0.5f, -1.0f});
  CHECK(decode_wav(wav_file({1, 1, 24}, std::string("\x00\x00\x40\x00\x00\xC0", 6))).samples == std::vector<float>{0.5f, -0.5f});
  std::string i32;
  put32(i32, 0x40000000u);
  CHECK(decode_wav(wav_file({1, 1, 32}, i32)).samples == std::vector<float>{0.5f});

  std::string f32(8, '\0'), f64(8, '\0');
  const float fv[2] = {0.25f, -0.75f};
  std::memcpy(f32.data(), fv, 8);
  const double dv = 0.125;
  std::memcpy(f64.data(), &dv, 8);
  CHECK(decode_wav(wav_file({3, 1, 32}, f32)).samples == std::vector<float>{0.25f, -0.75f});
  WavSpec ext{3, 1, 64, 48000, true};
  CHECK(decode_wav(wav_file(ext, f64)).samples == std::vector<float>{0.125f});

  WavSpec listed;
  listed.extra_chunks = std::string("LIST\x05\x00\x00\x00INFOx\x00", 14);  // odd size: padded
  CHECK(decode_wav(wav_file(listed, pcm16({100, 200}))).samples.size() == 2);
}

TEST_CASE("wav: malformed files are clear WavErrors, before any allocation they would size") {
  const auto good = wav_file({}, pcm16({1, 2, 3, 4}));
  auto error_of = [](const std::string& bytes, WavLimits limits = {}) -> std::string {
    try {
      decode_wav(bytes, limits);
    } catch (const WavError& e) {
      return e.what();
    }
    return "(no error)";
  };
  CHECK(error_of("") == "not a WAV file (no RIFF/WAVE header)");
  CHECK(error_of("RIFF\x04\x00\x00\x00WAVX") == "not a WAV file (no RIFF/WAVE header)");
  CHECK(error_of("RF64" + good.substr(4)) == "RF64 (64-bit) WAV files are not supported");
  // Truncated anywhere: in the header, in the fmt chunk, in the samples.
  for (size_t cut : {size_t(12), size_t(20), size_t(30), good.size() - 2})
    CHECK(error_of(good.substr(0, cut)) != "(no error)");
  CHECK(error_of(good.substr(0, good.size() - 2)) == "WAV is truncated: its data chunk declares 8 bytes, the file holds 6");
  // Huge declared lengths: a data chunk of 4 GiB in a 52-byte file, a chunk that runs past the end.
  CHECK(error_of(wav_file({}, pcm16({1, 2}), 0xFFFFFFF0)) == "WAV is truncated: its data chunk declares 4294967280 bytes, the file holds 4");
  // ...but the markers of writers that stream to a pipe (no seeking back) mean "to the end".
  for (uint32_t marker : {0u, 0x7FFFF000u, 0xFFFFFFFFu})
    CHECK(decode_wav(wav_file({}, pcm16({1, 2, 3}) + "x", marker)).samples.size() == 3);
  WavSpec junk;
  junk.extra_chunks = std::string("junk\xFF\xFF\xFF\x7F", 8);
  CHECK_MESSAGE(has(error_of(wav_file(junk, pcm16({1}))), "chunk 'junk' declares 2147483647 bytes"), error_of(wav_file(junk, pcm16({1}))));
  // Sizes that disagree.
  CHECK(error_of(wav_file({}, std::string(3, '\0'))) == "WAV data chunk of 3 bytes is not whole frames of 2 bytes");
  auto bad_block = good;
  bad_block[32] = 4;  // block align
  CHECK_MESSAGE(has(error_of(bad_block), "block align 4 disagrees"), error_of(bad_block));
  auto bad_rate = good;
  bad_rate[28] = 1;  // byte rate
  CHECK_MESSAGE(has(error_of(bad_rate), "byte rate"), error_of(bad_rate));
  // Encodings and shapes this reader does not take.
  CHECK_MESSAGE(has(error_of(wav_file({2, 1, 4}, "")), "encoding 2 is not supported"), error_of(wav_file({2, 1, 4}, "")));
  CHECK(error_of(wav_file({1, 0, 16}, "")) == "WAV has 0 channels (1 to 8 supported)");
  CHECK(error_of(wav_file({1, 64, 16}, "")) == "WAV has 64 channels (1 to 8 supported)");
  CHECK_MESSAGE(has(error_of(wav_file({1, 1, 12}, "")), "PCM with 12 bits per sample is not supported"), error_of(wav_file({1, 1, 12}, "")));
  CHECK(error_of(wav_file({1, 1, 16, 100}, "")) == "WAV sample rate 100 Hz is outside 1000-384000");
  // Order and presence of chunks.
  CHECK(error_of(std::string("RIFF\x04\x00\x00\x00WAVE", 12)) == "WAV has no fmt chunk before its end");
  CHECK(error_of(std::string("RIFF\x10\x00\x00\x00WAVEdata\x00\x00\x00\x00", 20)) == "WAV data chunk comes before its fmt chunk");
  CHECK(error_of(good.substr(0, 36)) == "WAV has no data chunk (file ends at byte 36)");
  WavSpec twice;
  twice.extra_chunks = fmt_chunk({});
  CHECK(error_of(wav_file(twice, "")) == "WAV has two fmt chunks");
  // Non-finite float samples, and the duration limit (checked from the header).
  std::string nan(4, '\0');
  const float q = std::nanf("");
  std::memcpy(nan.data(), &q, 4);
  CHECK(error_of(wav_file({3, 1, 32}, nan)) == "WAV sample 0 is not a finite number");
  CHECK_MESSAGE(has(error_of(sine16(8000, 440, 3.0), WavLimits{2.5}), "WAV is 3.000000 s long, over the limit of 2.500000 s"), error_of(sine16(8000, 440, 3.0), WavLimits{2.5}));
  CHECK(parse_wav(sine16(8000, 440, 3.0)).frames == 24000);
}

TEST_CASE("resample: libsamplerate keeps a tone and removes what the new rate cannot hold") {
  // 1 kHz at 8 kHz -> 16 kHz: twice the samples, the same tone.
  const auto up = resample(decode_wav(sine16(8000, 1000, 1.0)).samples, 8000, 16000);
  CHECK(std::abs(int64_t(up.size()) - 16000) <= 2);
  double worst = 0;
  for (size_t i = 400; i + 400 < up.size(); ++i)
    worst = std::max(worst, std::abs(double(up[i]) - 0.5 * std::sin(2 * M_PI * 1000.0 * double(i) / 16000)));
  CHECK(worst < 0.01);
  // 44.1 kHz -> 16 kHz keeps a 1 kHz tone's level...
  const auto down = resample(decode_wav(sine16(44100, 1000, 1.0)).samples, 44100, 16000);
  CHECK(std::abs(int64_t(down.size()) - 16000) <= 2);
  CHECK(rms(down, 1000, 15000) == doctest::Approx(0.5 / std::sqrt(2.0)).epsilon(0.01));
  // ...and removes a 10 kHz tone, above the new 8 kHz Nyquist limit. Dropping samples instead
  // would fold it to 6 kHz at full level.
  const auto aliased = resample(decode_wav(sine16(48000, 10000, 1.0)).samples, 48000, 16000);
  CHECK(rms(aliased, 1000, 15000) < 0.005);
  CHECK(resample({0.1f, 0.2f}, 16000, 16000) == std::vector<float>{0.1f, 0.2f});
  CHECK_THROWS_AS(resample({0.1f}, 0, 16000), WavError);
}

TEST_CASE("base64: round trips and refuses what is not canonical base64") {
  for (const auto& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xFF\x10", 3)}) CHECK(base64_decode(base64_encode(s)) == s);
  CHECK(base64_encode("hello") == "aGVsbG8=");
  CHECK(base64_decode("aGVs\nbG8=") == std::string("hello"));
  for (const char* bad : {"aGVsbG8", "aGVsbG8==", "a===", "aGVs*G8=", "aGVsbG8=x", "aGVsbG9="})
    CHECK_MESSAGE(!base64_decode(bad), bad);
}

TEST_CASE("audio batches: zero padding, lengths, joined batches") {
  const auto b = pad_batch({{0.5f, 0.25f, 0.125f}, {1.0f}});
  CHECK(b.tensor.sizes() == torch::IntArrayRef{2, 3});
  CHECK(torch::equal(b.lengths, torch::tensor({3, 1}, torch::kLong)));
  CHECK(torch::equal(b.tensor[1], torch::tensor({1.0f, 0.0f, 0.0f})));
  const auto c = pad_batch({{0.1f, 0.2f, 0.3f, 0.4f}});
  const auto joined = concat_batches({&b, &c});
  CHECK(joined.tensor.sizes() == torch::IntArrayRef{3, 4});
  CHECK(torch::equal(joined.lengths, torch::tensor({3, 1, 4}, torch::kLong)));
  CHECK(joined.tensor[0][3].item<float>() == 0.0f);
  CHECK_THROWS_AS(pad_batch({{}}), std::invalid_argument);
}

TEST_CASE("audio datasets: one WAV per split, clips placed by the TSV, resampled to 16 kHz") {
  TempDir root;
  const auto dir = root.path / "speech";
  fs::create_directories(dir);
  // Three clips of 22.05 kHz tones back to back: 0.5 s, 0.25 s, 1 s.
  std::vector<int16_t> all;
  for (double seconds : {0.5, 0.25, 1.0})
    for (int i = 0; i < int(22050 * seconds); ++i) all.push_back(int16_t(8000 * std::sin(2 * M_PI * 440 * i / 22050.0)));
  std::ofstream(dir / "audio_val.wav", std::ios::binary) << wav_file({1, 1, 16, 22050}, pcm16(all));
  std::ofstream(dir / "val.tsv") << "start\tlength\tlabel\tid\n0\t11025\t1\ta\n11025\t5512\t0\tb\n16537\t22050\t1\tc\n";
  auto manifest = [&] {
    std::ofstream(dir / "manifest.json") << R"({"dataset_id": "s1", "classes": ["x", "y"], "modality": "audio", "files": {"audio_val.wav": ")"
                                         << sha256_file((dir / "audio_val.wav").string()) << R"(", "val.tsv": ")"
                                         << sha256_file((dir / "val.tsv").string()) << "\"}}";
  };
  manifest();
  auto d = load_dataset(root.str(), "speech", "val");
  CHECK(d.modality == "audio");
  CHECK(d.size() == 3);
  CHECK(torch::equal(d.labels, torch::tensor({1, 0, 1}, torch::kLong)));
  const auto b = d.batch(0, 3);
  CHECK(b.tensor.size(0) == 3);
  const auto lengths = b.lengths.to(torch::kDouble);
  CHECK(torch::allclose(lengths, torch::tensor({8000.0, 4000.0, 16000.0}, torch::kDouble), 0, 2));
  CHECK(b.tensor.size(1) == b.lengths.max().item<int64_t>());
  CHECK(b.tensor[1].narrow(0, 4002, b.tensor.size(1) - 4002).abs().max().item<float>() == 0.0f);
  // Each clip is its own stretch of the file, still a 440 Hz tone at the new rate: 2 x 440 zero
  // crossings a second.
  for (int64_t i = 0; i < 3; ++i) {
    const auto clip = b.tensor[i].narrow(0, 0, b.lengths[i].item<int64_t>());
    const double crossings = (clip.narrow(0, 1, clip.size(0) - 1) * clip.narrow(0, 0, clip.size(0) - 1) < 0).sum().item<double>();
    CHECK(crossings / (double(clip.size(0)) / 16000) == doctest::Approx(880).epsilon(0.04));  // int16 zeros at crossings are not counted
    CHECK(clip.abs().max().item<float>() == doctest::Approx(8000.0 / 32768).epsilon(0.02));
  }
  d.truncate(2);
  CHECK(d.batch(0, 2).tensor.size(0) == 2);

  std::ofstream(dir / "val.tsv") << "start\tlength\tlabel\tid\n0\t11025\t1\ta\n30000\t22050\t1\tc\n";
  manifest();
  CHECK_THROWS_WITH_AS(load_dataset(root.str(), "speech", "val"), doctest::Contains("val.tsv:3: expected start, length (a clip inside audio_val.wav's 38587 frames)"), DatasetError);
}

TEST_CASE("audio teachers: a TorchScript module on (audio, lengths); the probe refuses one that reads padding") {
  const auto& reg = builtin_registry();
  auto make = [&](const std::string& body) {
    Options o;
    o.set("modality", "audio");
    o.set("input_shape", "16000");
    o.set("source", body);
    return reg.create_teacher("torchscript", o);
  };
  // Mean and energy of each row's valid samples.
  auto good = make(
      "def forward(self, x, lengths):\n"
      "    n = lengths.float().unsqueeze(1)\n"
      "    valid = (torch.arange(x.size(1)).unsqueeze(0) < lengths.unsqueeze(1)).float()\n"
      "    return torch.cat([(x * valid).sum(1, keepdim=True) / n, (x * x * valid).sum(1, keepdim=True) / n], 1)\n");
  CHECK(good->modality() == Modality::Audio);
  CHECK(good->width() == 2);
  CHECK_NOTHROW(good->self_test());
  const auto batch = pad_batch({{0.5f, 0.5f}, {0.25f}});
  const auto f = good->encode(batch);
  CHECK(f[1][0].item<float>() == doctest::Approx(0.25));
  TeacherInput no_lengths;
  no_lengths.tensor = batch.tensor;
  CHECK_THROWS_WITH(good->encode(no_lengths), doctest::Contains("lengths"));

  auto padded_mean = make("def forward(self, x, lengths):\n    return x.abs().mean(1, keepdim=True)\n");
  CHECK_THROWS_WITH(padded_mean->self_test(), doctest::Contains("audio features depend on padding"));
}
