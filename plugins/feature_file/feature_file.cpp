// feature_file: a teacher whose features were computed elsewhere (a model too large to run here,
// on another cluster) and delivered as files. It runs no model: it hashes each input and looks
// its features up. The folder format is documented in docs/plugins.md ("feature_file teacher");
// scripts/export_features.py is a producer.
//
//   features.json   {"format_version": 1, "modality": "text", "width": D, "dtype": "float32",
//                    "key": "sha256-utf8", "shards": [{"file": ..., "rows": N, "sha256": ...}, ...]}
//   shards          .safetensors with tensors `keys` uint8 [N, 32] and `features` f32/f16 [N, D],
//                   or .npy pairs (`file` the features, `keys_file` the keys)
//
// Keys are raw sha256 digests: of a text's UTF-8 bytes ("sha256-utf8"), or of one input's
// contiguous float32 bytes in native (little-endian) order ("sha256-bytes", for images, audio and
// tensors: exactly what the host passes, e.g. Fashion-MNIST pixels / 255 as float32).
//
// path=@example is not a folder: a four-row in-memory text table, so that the plugin probe can
// create and self-test the component without any files. Row i of its features is
// [i, i + 0.1, i + 0.2, i + 0.3] for the i-th sentence of example_input().
#include <c10/core/InferenceMode.h>
#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include <nexus/support/arrays.hpp>

namespace {
namespace fs = std::filesystem;

constexpr const char* kVersion = "1.0.0";
constexpr const char* kExamplePath = "@example";
constexpr int kFormatVersion = 1;

bool is_example(const std::string& path) {
  // `path` options are made absolute relative to the composition file, so accept ".../@example".
  return path == kExamplePath || (fs::path(path).filename() == kExamplePath && !fs::exists(path));
}

const std::vector<std::string>& example_texts() {
  static const std::vector<std::string> texts = {
      "A teacher computed these features on another machine.",
      "Features arrive as files, keyed by the sha256 of their input.",
      "The student never runs the huge model.",
      "Missing inputs are an error, never silently zero.",
  };
  return texts;
}

// The raw 32-byte digest (the key format) from Sha256's hex.
std::string digest(nexus::Sha256& h) {
  const auto hex = h.hex();
  std::string out(32, '\0');
  for (std::size_t i = 0; i < 32; ++i) out[i] = char(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

std::string to_hex(const std::string& raw) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) out += {digits[c >> 4], digits[c & 15]};
  return out;
}

class FeatureFile : public nexus::Teacher {
 public:
  explicit FeatureFile(const nexus::Options& o) : path_(o.get_string("path")) {
    if (is_example(path_)) {
      build_example();
    } else {
      load_folder(o.get_bool("mmap"), o.get_bool("verify"));
    }
  }

  nexus::Modality modality() const override { return modality_; }
  int64_t width() const override { return width_; }
  nexus::Fingerprint fingerprint() const override {
    // The features are the weights: the manifest (canonical JSON) lists every shard's sha256, so
    // any new or changed shard makes a new fingerprint. The folder's location does not matter.
    return {"feature_file", kVersion, manifest_hash_, "key=" + key_ + ";dtype=" + dtype_ + ";modality=" + to_string(modality_)};
  }

  at::Tensor encode(const nexus::TeacherInput& batch) override {
    const auto keys = keys_of(batch);
    const auto n = int64_t(keys.size());
    // Rows to gather from each shard, and where they go in the output.
    std::vector<std::vector<int64_t>> rows(shards_.size()), slots(shards_.size());
    int64_t missing = 0, first_missing = -1;
    for (int64_t i = 0; i < n; ++i) {
      const auto it = index_.find(keys[std::size_t(i)]);
      if (it == index_.end()) {
        if (missing++ == 0) first_missing = i;
        continue;
      }
      rows[it->second.first].push_back(it->second.second);
      slots[it->second.first].push_back(i);
    }
    if (missing) throw std::runtime_error(missing_message(batch, keys, missing, first_missing));
    torch::Tensor out;
    {
      c10::InferenceMode guard;
      out = torch::empty({n, width_}, torch::kFloat);
      for (std::size_t s = 0; s < shards_.size(); ++s) {
        if (rows[s].empty()) continue;
        const auto picked = shards_[s].index_select(0, torch::tensor(rows[s], torch::kLong)).to(torch::kFloat);
        out.index_copy_(0, torch::tensor(slots[s], torch::kLong), picked);
      }
    }
    return out.to(device_).clone();  // a normal tensor: hosts may use it where autograd records inputs
  }

  nexus::TeacherInput example_input(int64_t batch_size) const override {
    nexus::TeacherInput in;
    if (examples_.texts.empty() && !examples_.tensor.defined())
      throw std::runtime_error("feature_file '" + path_ + "': its features.json has no \"examples\" to make an example batch from");
    const int64_t have = int64_t(examples_.size());
    if (!examples_.texts.empty()) {
      for (int64_t i = 0; i < batch_size; ++i) in.texts.push_back(examples_.texts[std::size_t(i % have)]);
    } else {
      in.tensor = examples_.tensor.index_select(0, torch::arange(batch_size) % have);
    }
    return in;
  }

  void to(const c10::Device& device) override { device_ = device; }

  // The default checks shapes; this also checks the lookup itself: a known input returns its own
  // row, and an input that was never exported is refused, not answered with zeros.
  void self_test() override {
    nexus::Teacher::self_test();
    const auto in = example_input(2);
    const auto keys = keys_of(in);
    const auto it = index_.find(keys[1]);
    if (it == index_.end()) throw std::runtime_error("an example input has no features");
    const auto want = shards_[it->second.first][it->second.second].to(torch::kFloat);
    if (!torch::equal(encode(in)[1], want)) throw std::runtime_error("encode() did not return the example's own row");
    nexus::TeacherInput unknown = in;
    if (!unknown.texts.empty()) unknown.texts[0] += " (never exported)";
    else unknown.tensor = unknown.tensor + 1000.0f;
    bool refused = false;
    try {
      encode(unknown);
    } catch (const std::runtime_error&) {
      refused = true;
    }
    if (!refused) throw std::runtime_error("encode() answered an input that has no precomputed features");
  }

 private:
  void build_example() {
    modality_ = nexus::Modality::Text;
    width_ = 4;
    key_ = "sha256-utf8";
    dtype_ = "float32";
    const auto& texts = example_texts();
    const int64_t n = int64_t(texts.size());
    auto features = torch::arange(n, torch::kFloat).unsqueeze(1) + torch::arange(width_, torch::kFloat).unsqueeze(0) * 0.1f;
    shards_.push_back(features);
    for (int64_t i = 0; i < n; ++i) add_key(text_key(texts[std::size_t(i)]), 0, i, "@example");
    examples_.texts = texts;
    manifest_hash_ = nexus::sha256_hex("feature_file @example 1");
  }

  void load_folder(bool mmap, bool verify) {
    const fs::path dir(path_);
    const auto manifest_path = dir / "features.json";
    if (!fs::is_directory(dir)) throw std::runtime_error("feature_file: folder '" + path_ + "' does not exist");
    if (!fs::exists(manifest_path))
      throw std::runtime_error("feature_file: '" + path_ + "' has no features.json (write it with scripts/export_features.py)");
    nlohmann::json m;
    try {
      std::ifstream in(manifest_path);
      m = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("feature_file: cannot parse '" + manifest_path.string() + "': " + e.what());
    }
    const auto where = "feature_file: " + manifest_path.string() + ": ";
    try {
      const int version = m.at("format_version").get<int>();
      if (version != kFormatVersion)
        throw std::runtime_error(where + "format_version " + std::to_string(version) + " is not supported (this plugin reads " +
                                 std::to_string(kFormatVersion) + ")");
      modality_ = nexus::modality_from_string(m.at("modality").get<std::string>());
      if (modality_ == nexus::Modality::Id) throw std::runtime_error(where + "modality 'id' is not supported (key inputs by content)");
      width_ = m.at("width").get<int64_t>();
      if (width_ < 1) throw std::runtime_error(where + "width must be >= 1");
      dtype_ = m.at("dtype").get<std::string>();
      if (dtype_ != "float32" && dtype_ != "float16") throw std::runtime_error(where + "dtype must be float32 or float16, got " + dtype_);
      key_ = m.at("key").get<std::string>();
      const auto want_key = modality_ == nexus::Modality::Text ? "sha256-utf8" : "sha256-bytes";
      if (key_ != want_key)
        throw std::runtime_error(where + "key '" + key_ + "' does not fit modality " + to_string(modality_) + " (expected " +
                                 want_key + ")");
      const auto feature_dtype = dtype_ == "float32" ? torch::kFloat32 : torch::kFloat16;
      for (const auto& shard : m.at("shards")) load_shard(dir, shard, feature_dtype, mmap, verify);
      if (m.contains("examples")) read_examples(m);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(where + "invalid manifest: " + e.what());
    }
    manifest_hash_ = nexus::sha256_hex(m.dump());
  }

  void load_shard(const fs::path& dir, const nlohmann::json& shard, torch::Dtype feature_dtype, bool mmap, bool verify) {
    const auto file = shard.at("file").get<std::string>();
    const auto rows = shard.at("rows").get<int64_t>();
    const auto storage = mmap ? nexus::support::Storage::View : nexus::support::Storage::Copy;
    const auto open = [&](const std::string& name, const std::string& sha256) {
      if (fs::path(name).is_absolute() || name.find("..") != std::string::npos)
        throw std::runtime_error("feature_file: shard file '" + name + "' must be a plain name inside '" + path_ + "'");
      const auto full = (dir / name).string();
      if (!fs::exists(full)) throw std::runtime_error("feature_file: shard '" + full + "' is missing");
      auto mapped = nexus::support::MappedFile::open(full);
      if (verify) {
        nexus::Sha256 h;
        if (mapped->size()) h.update(mapped->data(), mapped->size());
        const auto got = h.hex();
        if (got != sha256)
          throw std::runtime_error("feature_file: shard '" + full + "' is corrupt: its sha256 is " + got + ", features.json says " +
                                   sha256 + " (re-export or re-copy it)");
      }
      return mapped;
    };
    torch::Tensor keys, features;
    if (file.size() > 12 && file.compare(file.size() - 12, 12, ".safetensors") == 0) {
      auto tensors = nexus::support::read_safetensors(open(file, shard.at("sha256").get<std::string>()), storage);
      if (!tensors.count("keys") || !tensors.count("features"))
        throw std::runtime_error("feature_file: shard '" + (dir / file).string() + "' must hold tensors 'keys' and 'features'");
      keys = tensors.at("keys");
      features = tensors.at("features");
    } else if (file.size() > 4 && file.compare(file.size() - 4, 4, ".npy") == 0) {
      features = nexus::support::read_npy(open(file, shard.at("sha256").get<std::string>()), storage);
      keys = nexus::support::read_npy(open(shard.at("keys_file").get<std::string>(), shard.at("keys_sha256").get<std::string>()), storage);
    } else {
      throw std::runtime_error("feature_file: shard '" + file + "' is neither .safetensors nor .npy");
    }
    const auto bad = [&](const std::string& what) {
      return std::runtime_error("feature_file: shard '" + (dir / file).string() + "': " + what);
    };
    if (keys.scalar_type() != torch::kUInt8 || keys.dim() != 2 || keys.size(1) != 32)
      throw bad("keys must be uint8 [rows, 32], got " + shape_str(keys) + " " + std::string(c10::toString(keys.scalar_type())));
    if (features.scalar_type() != feature_dtype)
      throw bad("features are " + std::string(c10::toString(features.scalar_type())) + " but features.json says " + dtype_);
    if (features.dim() != 2 || features.size(1) != width_)
      throw bad("features must be [rows, " + std::to_string(width_) + "], got " + shape_str(features));
    if (keys.size(0) != rows || features.size(0) != rows)
      throw bad("features.json says " + std::to_string(rows) + " rows, the shard has " + std::to_string(keys.size(0)) +
                " keys and " + std::to_string(features.size(0)) + " feature rows");
    const auto s = shards_.size();
    shards_.push_back(features);
    const auto* k = keys.data_ptr<uint8_t>();
    for (int64_t r = 0; r < rows; ++r) add_key(std::string(reinterpret_cast<const char*>(k + 32 * r), 32), s, r, file);
    shard_files_.push_back(file);
  }

  void add_key(std::string key, std::size_t shard, int64_t row, const std::string& file) {
    const auto [it, fresh] = index_.emplace(std::move(key), std::make_pair(shard, row));
    // A key twice is ambiguous (which features are right?); producers write each input once.
    if (!fresh)
      throw std::runtime_error("feature_file: key " + to_hex(it->first) + " appears twice: row " + std::to_string(row) +
                               " of shard '" + file + "' and row " + std::to_string(it->second.second) + " of shard '" +
                               shard_files_or(it->second.first, file) + "'");
  }
  std::string shard_files_or(std::size_t s, const std::string& current) const {
    return s < shard_files_.size() ? shard_files_[s] : current;
  }

  void read_examples(const nlohmann::json& m) {
    const auto& ex = m.at("examples");
    if (modality_ == nexus::Modality::Text) {
      examples_.texts = ex.get<std::vector<std::string>>();
      return;
    }
    std::vector<int64_t> shape = {int64_t(ex.size())};
    for (auto d : m.at("example_shape").get<std::vector<int64_t>>()) shape.push_back(d);
    std::vector<float> values;
    for (const auto& row : ex)
      for (const auto& v : row) values.push_back(v.get<float>());
    examples_.tensor = torch::tensor(values, torch::kFloat).view(shape);
  }

  static std::string text_key(const std::string& text) {
    nexus::Sha256 h;
    h.update(text);
    return digest(h);
  }

  std::vector<std::string> keys_of(const nexus::TeacherInput& batch) const {
    std::vector<std::string> keys;
    if (modality_ == nexus::Modality::Text) {
      if (batch.texts.empty() && batch.tensor.defined())
        throw std::invalid_argument("feature_file '" + path_ + "' holds text features: fill TeacherInput::texts");
      for (const auto& t : batch.texts) keys.push_back(text_key(t));
      return keys;
    }
    if (!batch.tensor.defined()) {
      if (batch.texts.empty()) return keys;
      throw std::invalid_argument("feature_file '" + path_ + "' holds " + to_string(modality_) +
                                  " features: fill TeacherInput::tensor");
    }
    // Exactly the bytes the producer hashed: each input's values as contiguous float32.
    const auto t = batch.tensor.detach().to(torch::kCPU).to(torch::kFloat).contiguous().reshape({batch.tensor.size(0), -1});
    const auto row_bytes = std::size_t(t.size(1)) * sizeof(float);
    const auto* p = reinterpret_cast<const uint8_t*>(t.data_ptr<float>());
    for (int64_t i = 0; i < t.size(0); ++i) {
      nexus::Sha256 h;
      h.update(p + std::size_t(i) * row_bytes, row_bytes);
      keys.push_back(digest(h));
    }
    return keys;
  }

  std::string missing_message(const nexus::TeacherInput& batch, const std::vector<std::string>& keys, int64_t missing,
                              int64_t first) const {
    std::string what;
    if (!batch.texts.empty()) {
      auto text = batch.texts[std::size_t(first)];
      if (text.size() > 60) text = text.substr(0, 57) + "...";
      what = ", text \"" + text + "\"";
    }
    return "feature_file '" + path_ + "': " + std::to_string(missing) + " of " + std::to_string(keys.size()) +
           " inputs have no precomputed features (first missing: input " + std::to_string(first) + ", key " + key_ + " " +
           to_hex(keys[std::size_t(first)]) + what + "); export features for this data (scripts/export_features.py)";
  }

  std::string path_, key_, dtype_, manifest_hash_;
  nexus::Modality modality_ = nexus::Modality::Text;
  int64_t width_ = 0;
  std::vector<torch::Tensor> shards_;      // features [rows, width] per shard, in the stored dtype
  std::vector<std::string> shard_files_;
  std::unordered_map<std::string, std::pair<std::size_t, int64_t>> index_;  // key -> (shard, row)
  nexus::TeacherInput examples_;
  c10::Device device_{c10::kCPU};
};

}  // namespace

NEXUS_PLUGIN_BEGIN("nexus_feature_file", "1.0.0")
NEXUS_TEACHER(FeatureFile, "feature_file",
              "Precomputed features delivered as files (safetensors or .npy shards), looked up by sha256 of the input",
              "path:path!,mmap:bool=true,verify:bool=true", "path=@example")
NEXUS_PLUGIN_END()
