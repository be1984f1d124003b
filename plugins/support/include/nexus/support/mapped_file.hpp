// The one way NEXUS maps a file into memory: safetensors and .npy arrays, feature files, model
// weights and the host's feature-cache shards all read through it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace nexus::support {

// A read-only view of a whole file, unmapped when the last owner is gone. Share it
// (std::shared_ptr) with tensors that view it, so the mapping outlives the reader that made them.
// The mapping is private and writable: a write into such a tensor stays in this process
// (copy-on-write) instead of faulting or reaching the file.
class MappedFile {
 public:
  // Throws std::runtime_error naming the file and the system's reason.
  explicit MappedFile(const std::string& path);
  static std::shared_ptr<MappedFile> open(const std::string& path) { return std::make_shared<MappedFile>(path); }
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace nexus::support
