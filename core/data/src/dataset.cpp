#include "nexus/data/dataset.hpp"

#include "nexus/audio/batch.hpp"

#include <nexus/sha256.hpp>
#include <nexus/support/mapped_file.hpp>
#include <nexus/teacher.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace nexus {
namespace fs = std::filesystem;

namespace {

const char* kRebuild = "; rebuild it with scripts/build_datasets.py --force";

uint32_t be32(const unsigned char* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

// IDX (LeCun's format): magic 0x0000 0x08 <ndims>, big-endian dims, then uint8 data.
at::Tensor read_idx(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw DatasetError("cannot read " + file.string());
  unsigned char head[4];
  in.read(reinterpret_cast<char*>(head), 4);
  if (!in || head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] < 1 || head[3] > 4)
    throw DatasetError(file.string() + " is not a uint8 IDX file" + kRebuild);
  std::vector<int64_t> dims(head[3]);
  int64_t total = 1;
  for (auto& d : dims) {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    d = be32(b);
    total *= d;
  }
  auto t = torch::empty(dims, torch::kUInt8);
  in.read(reinterpret_cast<char*>(t.data_ptr()), total);
  if (in.gcount() != total) throw DatasetError(file.string() + " is truncated" + kRebuild);
  return t;
}

// <split>.tsv of an audio dataset: `start<TAB>length<TAB>label<TAB>id` rows (after a header) that
// place each clip in audio_<split>.wav.
void read_audio_split(DatasetSplit& d, const fs::path& wav, const fs::path& tsv) {
  auto mapped = support::MappedFile::open(wav.string());
  d.audio_bytes = std::string_view(reinterpret_cast<const char*>(mapped->data()), mapped->size());
  d.audio_owner = mapped;
  try {
    d.audio_info = audio::parse_wav(d.audio_bytes, audio::WavLimits{1e9});
  } catch (const audio::WavError& e) {
    throw DatasetError(wav.string() + ": " + e.what() + kRebuild);
  }
  std::ifstream in(tsv);
  std::vector<int64_t> labels;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (n == 1 && line.rfind("start\t", 0) == 0) continue;
    std::istringstream fields(line);
    int64_t start = -1, length = -1, label = -1;
    fields >> start >> length >> label;
    if (!fields || start < 0 || length < 1 || label < 0 || start > d.audio_info.frames || length > d.audio_info.frames - start)
      throw DatasetError(tsv.string() + ":" + std::to_string(n) + ": expected start, length (a clip inside " + wav.filename().string() +
                         "'s " + std::to_string(d.audio_info.frames) + " frames), label, id" + kRebuild);
    d.clip_start.push_back(start);
    d.clip_length.push_back(length);
    labels.push_back(label);
  }
  d.labels = torch::tensor(labels, torch::kLong);
}

}  // namespace

void DatasetSplit::truncate(int64_t n) {
  if (n >= size()) return;
  labels = labels.narrow(0, 0, n).clone();
  if (images.defined()) images = images.narrow(0, 0, n).clone();
  if (!texts.empty()) texts.resize(size_t(n));
  if (!clip_start.empty()) {
    clip_start.resize(size_t(n));
    clip_length.resize(size_t(n));
  }
}

TeacherInput DatasetSplit::batch(int64_t first, int64_t count) const {
  TeacherInput in;
  if (modality == "text") {
    in.texts.assign(texts.begin() + first, texts.begin() + first + count);
  } else if (modality == "audio") {
    std::vector<std::vector<float>> clips;
    for (int64_t i = first; i < first + count; ++i)
      clips.push_back(audio::resample(audio::read_mono(audio_bytes, audio_info, clip_start[size_t(i)], clip_length[size_t(i)]),
                                      audio_info.sample_rate, audio::kModelRate));
    return audio::pad_batch(clips);
  } else {
    in.tensor = images.narrow(0, first, count).to(torch::kFloat).div_(255.0).unsqueeze(1);
  }
  return in;
}

DatasetSplit load_dataset(const std::string& root, const std::string& dataset, const std::string& split) {
  const fs::path dir = fs::path(root) / dataset;
  const auto manifest_file = dir / "manifest.json";
  if (!fs::exists(manifest_file))
    throw DatasetError("dataset '" + dataset + "' not found: no " + manifest_file.string() +
                       " (build it with scripts/build_datasets.py --out " + root + ")");
  nlohmann::json m;
  try {
    std::ifstream in(manifest_file);
    m = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw DatasetError("corrupt dataset manifest " + manifest_file.string() + ": " + e.what() + kRebuild);
  }
  DatasetSplit d;
  d.name = dataset;
  d.split = split;
  d.dataset_id = m.value("dataset_id", "");
  if (d.dataset_id.empty()) throw DatasetError(manifest_file.string() + " has no dataset_id" + kRebuild);
  d.classes = m.value("classes", std::vector<std::string>{});
  const auto files = m.value("files", nlohmann::json::object());
  auto checked = [&](const std::string& name) {
    const auto path = dir / name;
    if (!files.contains(name)) throw DatasetError("dataset '" + dataset + "' has no split '" + split + "' (" + name + ")");
    if (!fs::exists(path)) throw DatasetError("missing dataset file " + path.string() + kRebuild);
    if (sha256_file(path.string()) != files[name].get<std::string>())
      throw DatasetError("corrupt dataset file " + path.string() + ": checksum mismatch" + kRebuild);
    return path;
  };
  if (files.contains("audio_" + split + ".wav")) {
    d.modality = "audio";
    read_audio_split(d, checked("audio_" + split + ".wav"), checked(split + ".tsv"));
  } else if (files.contains("images_" + split + ".idx")) {
    d.modality = "image";
    d.images = read_idx(checked("images_" + split + ".idx"));
    d.labels = read_idx(checked("labels_" + split + ".idx")).to(torch::kLong);
    if (d.images.dim() != 3 || d.images.size(0) != d.labels.size(0))
      throw DatasetError("dataset '" + dataset + "' split '" + split + "': images and labels disagree" + kRebuild);
  } else {
    d.modality = "text";
    std::ifstream in(checked(split + ".tsv"));
    std::vector<int64_t> labels;
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (n == 1 && line.rfind("text\tlabel", 0) == 0) continue;  // header row
      const auto a = line.find('\t');
      const auto b = a == std::string::npos ? a : line.find('\t', a + 1);
      const auto where = (dir / (split + ".tsv")).string() + ":" + std::to_string(n);
      if (a == std::string::npos || b == std::string::npos)
        throw DatasetError(where + ": expected text<TAB>label<TAB>id" + kRebuild);
      const auto label = line.substr(a + 1, b - a - 1);
      char* end = nullptr;
      const long long value = std::strtoll(label.c_str(), &end, 10);
      if (label.empty() || *end != '\0') throw DatasetError(where + ": label '" + label + "' is not a class index" + kRebuild);
      d.texts.push_back(line.substr(0, a));
      labels.push_back(value);
    }
    d.labels = torch::tensor(labels, torch::kLong);
  }
  if (!d.classes.empty() && d.size() > 0 &&
      (d.labels.min().item<int64_t>() < 0 || d.labels.max().item<int64_t>() >= int64_t(d.classes.size())))
    throw DatasetError("dataset '" + dataset + "' split '" + split + "' has labels outside its " +
                       std::to_string(d.classes.size()) + " classes" + kRebuild);
  return d;
}

void require_task_data(const config::Composition& comp) {
  for (const auto& h : comp.heads)
    if (!comp.tasks.count(h.task))
      throw InputError("head '" + h.name + "' trains on task '" + h.task + "', which data.tasks does not define");
}

std::string data_root(const config::Composition& comp) {
  if (comp.data_root.empty()) return "data";
  if (fs::path(comp.data_root).is_absolute()) return comp.data_root;
  return (fs::path(comp.source).parent_path() / comp.data_root).lexically_normal().string();
}

DatasetSplit load_task_split(const config::Composition& comp, const config::TaskSpec& task, const std::string& split) {
  auto d = load_dataset(data_root(comp), task.dataset, split);
  const auto it = task.params.find(split + "_rows");
  if (it == task.params.end()) return d;
  const int64_t n = std::stoll(it->second);  // validated as a positive integer by the config checker
  if (n >= d.size()) return d;
  d.truncate(n);
  d.split = split + "[:" + std::to_string(n) + "]";
  return d;
}

}  // namespace nexus
