// A complete third-party teacher plugin: hashed bag-of-n-grams features for text. It has no
// weights, so it is "frozen" trivially, but it shows everything a teacher adapter does: options
// with a schema, a fingerprint that changes whenever its outputs would, encode() and an example
// batch for the probe's self-test.
#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>

#include <torch/torch.h>

#include <cctype>
#include <functional>

namespace {

class CharNgramTeacher : public nexus::Teacher {
 public:
  explicit CharNgramTeacher(const nexus::Options& o)
      : n_(o.get_int("n")), width_(o.get_int("width")), words_(o.get_string("unit") == "word"),
        lowercase_(o.get_bool("lowercase")) {
    if (n_ < 1) throw nexus::OptionError("option 'n' must be >= 1");
    if (width_ < 8) throw nexus::OptionError("option 'width' must be >= 8");
  }

  nexus::Modality modality() const override { return nexus::Modality::Text; }
  int64_t width() const override { return width_; }
  nexus::Fingerprint fingerprint() const override {
    // No weights: the settings are what determine the outputs.
    const auto settings = "n=" + std::to_string(n_) + ";width=" + std::to_string(width_) + ";unit=" +
                          (words_ ? "word" : "char") + ";lowercase=" + (lowercase_ ? "1" : "0");
    return {"char_ngrams", "1.0.0", nexus::sha256_hex(settings), settings};
  }

  at::Tensor encode(const nexus::TeacherInput& batch) override {
    auto out = torch::zeros({int64_t(batch.texts.size()), width_});
    auto acc = out.accessor<float, 2>();
    for (size_t i = 0; i < batch.texts.size(); ++i) {
      for (const auto& gram : grams(batch.texts[i])) acc[int64_t(i)][int64_t(std::hash<std::string>{}(gram) % uint64_t(width_))] += 1;
    }
    return torch::nn::functional::normalize(out, torch::nn::functional::NormalizeFuncOptions().dim(1));
  }

  nexus::TeacherInput example_input(int64_t batch_size) const override {
    static const char* samples[] = {"a delightful, warm film", "tedious and far too long", "the cast is superb",
                                    "I want my two hours back"};
    nexus::TeacherInput in;
    for (int64_t i = 0; i < batch_size; ++i) in.texts.emplace_back(samples[i % 4]);
    return in;
  }

 private:
  std::vector<std::string> grams(std::string text) const {
    if (lowercase_)
      for (auto& c : text) c = char(std::tolower(static_cast<unsigned char>(c)));
    std::vector<std::string> units;
    if (words_) {
      std::string w;
      for (char c : text + " ") {
        if (std::isalnum(static_cast<unsigned char>(c))) w += c;
        else if (!w.empty()) units.push_back(std::exchange(w, ""));
      }
    } else {
      for (char c : " " + text + " ") units.emplace_back(1, c);
    }
    std::vector<std::string> out;
    for (size_t i = 0; i + size_t(n_) <= units.size(); ++i) {
      std::string g;
      for (int64_t k = 0; k < n_; ++k) g += units[i + size_t(k)] + (words_ ? " " : "");
      out.push_back(g);
    }
    return out;
  }

  int64_t n_, width_;
  bool words_, lowercase_;
};

}  // namespace

NEXUS_PLUGIN_BEGIN("example_teacher", "1.0.0")
NEXUS_TEACHER(CharNgramTeacher, "char_ngrams", "Hashed bag of character or word n-grams for text",
              "n:int=3,width:int=256,unit:choice(char|word)=char,lowercase:bool=true", "width=32")
NEXUS_PLUGIN_END()
