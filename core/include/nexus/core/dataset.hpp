// Labelled datasets built by scripts/build_datasets.py (see docs/data.md): IDX images or TSV
// texts, one folder per dataset with a manifest that names its identity and checksums.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace nexus {
struct TeacherInput;

class DatasetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DatasetSplit {
  std::string name, split;
  std::string dataset_id;            // from the manifest: the cache key's dataset part
  std::string modality;              // "image" or "text"
  std::vector<std::string> classes;
  at::Tensor labels;                 // [N] int64
  at::Tensor images;                 // image: [N, H, W] uint8
  std::vector<std::string> texts;    // text

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  // Raw teacher input for rows [first, first + count): images as float [B,1,H,W] in [0,1].
  TeacherInput batch(int64_t first, int64_t count) const;
};

// Reads <root>/<dataset>/ for one split, after checking the manifest's checksums of the files
// it reads. Errors name the file and say how to rebuild.
DatasetSplit load_dataset(const std::string& root, const std::string& dataset, const std::string& split);

}  // namespace nexus
