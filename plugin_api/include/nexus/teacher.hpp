// Teacher: a frozen pretrained model behind an adapter. It turns a batch of raw inputs into
// features of its own width; it is never back-propagated through.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace nexus {

enum class Modality { Text, Image, Audio, Id, Tensor };

inline const char* to_string(Modality m) {
  switch (m) {
    case Modality::Text: return "text";
    case Modality::Image: return "image";
    case Modality::Audio: return "audio";
    case Modality::Id: return "id";
    case Modality::Tensor: return "tensor";
  }
  return "?";
}

inline Modality modality_from_string(const std::string& s) {
  for (auto m : {Modality::Text, Modality::Image, Modality::Audio, Modality::Id, Modality::Tensor})
    if (s == to_string(m)) return m;
  throw std::invalid_argument("unknown modality '" + s + "' (expected text, image, audio, id or tensor)");
}

// One batch of raw inputs. Text teachers read `texts`; every other modality reads `tensor`
// (images [B,C,H,W] float, ids [B] int64 into a feature file, tensor [B,...]). Audio is mono
// 16 kHz float32 in [-1, 1] (core/audio converts whatever arrives): `tensor` [B,T] zero-padded at
// the end, `lengths` [B] int64 the valid samples of each row; a teacher's row b must depend only on
// tensor[b, :lengths[b]], so that a clip's features do not depend on what it was batched with.
struct TeacherInput {
  std::vector<std::string> texts;
  at::Tensor tensor;
  at::Tensor lengths;  // audio only (ABI 2)
  int64_t size() const { return texts.empty() ? (tensor.defined() ? tensor.size(0) : 0) : int64_t(texts.size()); }
};

// Identifies exactly what produced a feature: cached features are trusted only while every field
// is unchanged.
struct Fingerprint {
  std::string plugin;         // plugin name
  std::string version;        // plugin version
  std::string weights_hash;   // e.g. sha256 of the weight files
  std::string preprocessing;  // every setting that changes outputs (pooling, max length, layer...)
  std::string str() const { return plugin + "@" + version + "|" + weights_hash + "|" + preprocessing; }
};

class Teacher {
 public:
  virtual ~Teacher() = default;

  virtual Modality modality() const = 0;
  // Width d_i of the pooled features encode() returns.
  virtual int64_t width() const = 0;
  virtual Fingerprint fingerprint() const = 0;
  // [B, width()] features for a batch. Implementations run without autograd.
  virtual at::Tensor encode(const TeacherInput& batch) = 0;
  // A small valid batch: used by the plugin probe, smoke checks and `nexus forward`.
  virtual TeacherInput example_input(int64_t batch_size) const = 0;
  // Moves the frozen weights; teachers that only run on the CPU may ignore it.
  virtual void to(const c10::Device& device) { (void)device; }

  // Run by the registry's probe in a child process. Override to check more.
  virtual void self_test() {
    const auto in = example_input(2);
    const auto f = encode(in);
    if (f.dim() != 2 || f.size(0) != in.size() || f.size(1) != width())
      throw std::runtime_error("encode() returned shape " + shape_str(f) + ", expected [" +
                               std::to_string(in.size()) + ", " + std::to_string(width()) + "]");
    if (!f.isfinite().all().item<bool>()) throw std::runtime_error("encode() returned non-finite features");
    if (modality() == Modality::Audio) check_padding_independence(in, f);
  }

 protected:
  // The audio contract: each row's features come from its own valid samples only. Re-encodes the
  // batch's last row alone, cut to its length, and compares.
  void check_padding_independence(const TeacherInput& in, const at::Tensor& batched) {
    if (!in.lengths.defined() || in.lengths.size(0) != in.size())
      throw std::runtime_error("an audio example_input() must carry lengths [B] beside the samples");
    const int64_t last = in.size() - 1, n = in.lengths[last].item<int64_t>();
    TeacherInput alone;
    alone.tensor = in.tensor.narrow(0, last, 1).narrow(1, 0, n).contiguous();
    alone.lengths = in.lengths.narrow(0, last, 1).clone();
    const auto single = encode(alone);
    const double diff = (single[0] - batched[last]).abs().max().item<double>();
    const double scale = 1e-4 * (1.0 + single.abs().max().item<double>());
    if (!(diff <= scale))
      throw std::runtime_error("audio features depend on padding or on the rest of the batch: a clip alone and in a "
                               "padded batch differ by " + std::to_string(diff) + " (use `lengths`)");
  }

  static std::string shape_str(const at::Tensor& t) {
    std::string s = "[";
    for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
    return s + "]";
  }
};

}  // namespace nexus
