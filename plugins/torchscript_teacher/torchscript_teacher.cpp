// A teacher backed by any TorchScript module: a `.pt` file (`path`) or inline TorchScript source
// (`source`, the body of a module with a `forward(self, x)` method). Takes tensor inputs. An audio
// module's forward takes (audio [B,T] 16 kHz float, lengths [B] int64), see nexus/teacher.hpp;
// `input_shape: [N]` is then the example clip's length in samples.
#include <nexus/plugin_api.hpp>
#include <nexus/text.hpp>
#include <nexus/sha256.hpp>

#include <torch/script.h>

#include <algorithm>
#include <cmath>

namespace {

class TorchScriptTeacher : public nexus::Teacher {
 public:
  explicit TorchScriptTeacher(const nexus::Options& o)
      : modality_(nexus::modality_from_string(o.get_string("modality"))), input_shape_(o.get_int_list("input_shape")) {
    if (modality_ == nexus::Modality::Text)
      throw nexus::OptionError("a TorchScript teacher takes tensors, not text (use a text encoder plugin for text)");
    if (input_shape_.empty()) throw nexus::OptionError("option 'input_shape' must list the per-sample shape, e.g. 1,28,28");
    if (modality_ == nexus::Modality::Audio && (input_shape_.size() != 1 || input_shape_[0] < 1600))
      throw nexus::OptionError("an audio teacher's input_shape is one length in samples at 16 kHz, at least 1600 (0.1 s)");
    const bool has_path = o.has("path"), has_source = o.has("source");
    if (has_path == has_source) throw nexus::OptionError("give exactly one of 'path' (a .pt file) or 'source' (TorchScript code)");
    if (has_path) {
      const auto& path = o.get_string("path");
      try {
        module_ = torch::jit::load(path);
      } catch (const c10::Error& e) {
        throw std::runtime_error("cannot load TorchScript file '" + path + "': " + e.what_without_backtrace());
      }
      weights_hash_ = nexus::sha256_file(path);
    } else {
      auto source = o.get_string("source");
      if (source.empty() || source.back() != '\n') source += '\n';  // the TorchScript parser wants a final newline
      module_ = torch::jit::Module("InlineTeacher");
      try {
        module_.define(source);
      } catch (const c10::Error& e) {
        throw std::runtime_error("invalid TorchScript source: " + e.msg());
      } catch (const std::exception& e) {  // the script compiler's ErrorReport
        throw std::runtime_error(std::string("invalid TorchScript source: ") + e.what());
      }
      weights_hash_ = nexus::sha256_hex(o.get_string("source"));
    }
    module_.eval();
    preprocessing_ = "modality=" + std::string(nexus::to_string(modality_)) + ";input_shape=" + nexus::join(input_shape_, "x");
    width_ = o.has("width") ? o.get_int("width") : encode(example_input(1)).size(1);
  }

  nexus::Modality modality() const override { return modality_; }
  int64_t width() const override { return width_; }
  // The fingerprint's version moves only when outputs for the same module and input change: 1.1.0
  // added audio without changing what image, id and tensor inputs give, so their caches stay valid.
  nexus::Fingerprint fingerprint() const override { return {"torchscript", "1.0.0", weights_hash_, preprocessing_}; }

  at::Tensor encode(const nexus::TeacherInput& batch) override {
    torch::NoGradGuard no_grad;
    if (modality_ == nexus::Modality::Audio && !batch.lengths.defined())
      throw std::invalid_argument("an audio batch needs lengths beside its samples");
    auto out = modality_ == nexus::Modality::Audio ? module_.forward({batch.tensor, batch.lengths}) : module_.forward({batch.tensor});
    auto t = out.isTuple() ? out.toTuple()->elements().at(0).toTensor() : out.toTensor();
    return t.dim() > 2 ? t.flatten(1) : t;
  }

  nexus::TeacherInput example_input(int64_t batch_size) const override {
    std::vector<int64_t> shape{batch_size};
    shape.insert(shape.end(), input_shape_.begin(), input_shape_.end());
    nexus::TeacherInput in;
    in.tensor = modality_ == nexus::Modality::Id ? torch::arange(batch_size, torch::kLong) : torch::rand(shape);
    if (modality_ == nexus::Modality::Audio) {
      // A tone with some noise, in [-0.5, 0.5]; rows shorten towards the end so padding is exercised.
      const auto t = torch::arange(shape[1], torch::kFloat).div(16000.0);
      in.tensor = (0.3 * torch::sin(t.mul(2 * M_PI * 220.0)) + 0.2 * (in.tensor - 0.5)).expand({batch_size, shape[1]}).contiguous();
      in.lengths = torch::full({batch_size}, shape[1], torch::kLong);
      for (int64_t b = 1; b < batch_size; ++b) {
        const int64_t n = std::max<int64_t>(1, shape[1] - b * shape[1] / (2 * batch_size));
        in.lengths[b] = n;
        in.tensor[b].narrow(0, n, shape[1] - n).zero_();
      }
    }
    return in;
  }

  void to(const c10::Device& device) override { module_.to(device); }

 private:
  nexus::Modality modality_;
  std::vector<int64_t> input_shape_;
  torch::jit::Module module_{"empty"};
  std::string weights_hash_, preprocessing_;
  int64_t width_ = 0;
};

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_torchscript_teacher", "1.1.0")
NEXUS_TEACHER(TorchScriptTeacher, "torchscript", "Frozen TorchScript module (.pt file or inline source) on tensor inputs",
              "path:path,source:string,modality:choice(image|audio|id|tensor)=tensor,input_shape:list!,width:int",
              "source=def forward(self, x):\n  return x.flatten(1) * 2.0;input_shape=2,3")
NEXUS_PLUGIN_END()
