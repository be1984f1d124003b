#include "safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

namespace nexus_hf {
namespace {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error("cannot open safetensors file '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      ::close(fd_);
      throw std::runtime_error("cannot stat safetensors file '" + path + "': " + std::strerror(errno));
    }
    size_ = std::size_t(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (p == MAP_FAILED) {
        ::close(fd_);
        throw std::runtime_error("cannot map safetensors file '" + path + "': " + std::strerror(errno));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

bool dtype_of(const std::string& name, torch::Dtype* out, std::size_t* bytes) {
  static const std::vector<std::tuple<const char*, torch::Dtype, std::size_t>> known = {
      {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2}, {"BF16", torch::kBFloat16, 2},
      {"F64", torch::kFloat64, 8}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4}};
  for (const auto& [n, d, b] : known)
    if (name == n) {
      *out = d;
      *bytes = b;
      return true;
    }
  return false;
}

}  // namespace

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  MappedFile file(path);
  const auto fail = [&](const std::string& what) -> std::runtime_error {
    return std::runtime_error("safetensors file '" + path + "': " + what);
  };
  if (file.size() < 8) throw fail("truncated (" + std::to_string(file.size()) + " bytes, no header length)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file.data()[i];
  if (header_len > file.size() - 8)
    throw fail("truncated or corrupt: header claims " + std::to_string(header_len) + " bytes but the file has " +
               std::to_string(file.size() - 8) + " after the length");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(file.data() + 8, file.data() + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("corrupt JSON header: ") + e.what());
  }
  if (!header.is_object()) throw fail("corrupt JSON header: not an object");
  const uint8_t* base = file.data() + 8 + header_len;
  const std::size_t data_size = file.size() - 8 - header_len;

  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const auto bad = [&](const std::string& what) { return fail("tensor '" + name + "': " + what); };
    try {
      const std::string dtype_name = info.at("dtype").get<std::string>();
      torch::Dtype dtype{};
      std::size_t elem = 0;
      if (!dtype_of(dtype_name, &dtype, &elem)) throw bad("unsupported dtype " + dtype_name);
      std::vector<int64_t> shape = info.at("shape").get<std::vector<int64_t>>();
      const auto offsets = info.at("data_offsets").get<std::vector<uint64_t>>();
      if (offsets.size() != 2 || offsets[0] > offsets[1]) throw bad("invalid data_offsets");
      uint64_t numel = 1;
      for (auto d : shape) {
        if (d < 0) throw bad("negative dimension in shape");
        numel *= uint64_t(d);
      }
      const uint64_t nbytes = offsets[1] - offsets[0];
      if (nbytes != numel * elem)
        throw bad("data_offsets cover " + std::to_string(nbytes) + " bytes, shape and dtype need " +
                  std::to_string(numel * elem));
      if (offsets[1] > data_size)
        throw bad("truncated: data ends at byte " + std::to_string(offsets[1]) + " but only " +
                  std::to_string(data_size) + " bytes of data are present");
      auto t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
      if (nbytes) std::memcpy(t.data_ptr(), base + offsets[0], nbytes);
      out.emplace(name, std::move(t));
    } catch (const nlohmann::json::exception& e) {
      throw bad(std::string("corrupt header entry: ") + e.what());
    }
  }
  return out;
}

}  // namespace nexus_hf
