// Labelled datasets built by scripts/build_datasets.py (see docs/data.md): IDX images, TSV texts
// or audio (one WAV per split holding every clip, and a TSV of where each clip lies), one folder
// per dataset with a manifest that names its identity and checksums.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nexus/audio/wav.hpp"
#include "nexus/base/errors.hpp"
#include "nexus/config/composition.hpp"

namespace nexus {
struct TeacherInput;

// A dataset that is missing, corrupt or not what the composition says: bad input (rebuild it).
class DatasetError : public InputError {
 public:
  using InputError::InputError;
};

struct DatasetSplit {
  std::string name, split;
  std::string dataset_id;            // from the manifest: the cache key's dataset part
  std::string modality;              // "image", "text" or "audio"
  std::vector<std::string> classes;
  at::Tensor labels;                 // [N] int64
  at::Tensor images;                 // image: [N, H, W] uint8
  std::vector<std::string> texts;    // text
  // audio: the split's WAV (mapped; `audio_owner` keeps it so), and each clip's frames in it.
  std::shared_ptr<const void> audio_owner;
  std::string_view audio_bytes;
  audio::WavInfo audio_info;
  std::vector<int64_t> clip_start, clip_length;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  // Raw teacher input for rows [first, first + count): images as float [B,1,H,W] in [0,1]; audio
  // resampled to 16 kHz, padded, with lengths (audio/batch.hpp).
  TeacherInput batch(int64_t first, int64_t count) const;
  // The first n rows only.
  void truncate(int64_t n);
};

// Reads <root>/<dataset>/ for one split, after checking the manifest's checksums of the files
// it reads. Errors name the file and say how to rebuild.
DatasetSplit load_dataset(const std::string& root, const std::string& dataset, const std::string& split);

// Training needs data for every head: InputError naming a head whose task data.tasks does not
// define (validation allows that, for compositions that are only run forward or served).
void require_task_data(const config::Composition& composition);

// Where a composition's data lives: data.root relative to the composition file, else ./data.
std::string data_root(const config::Composition& composition);

// One split of a task's dataset as the task sees it: the first `<split>_rows` rows when the task
// sets that parameter (e.g. `train_rows: 6000`), else all of it. A shortened split is named
// "train[:6000]", which is also its feature-cache key, so it never mixes with the full split.
DatasetSplit load_task_split(const config::Composition& composition, const config::TaskSpec& task,
                             const std::string& split);

}  // namespace nexus
