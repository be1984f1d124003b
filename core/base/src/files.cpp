#include "nexus/base/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "nexus/base/errors.hpp"

namespace nexus {
namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

// Unique within the machine: concurrent writers of one file (data-parallel ranks, threads) never
// share a temporary.
std::string temporary_for(const fs::path& path) {
  static std::atomic<uint64_t> counter{0};
  return path.string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

}  // namespace

void write_file_atomically(const fs::path& path, std::string_view bytes) {
  const auto tmp = temporary_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw RuntimeFailure("cannot write " + tmp + ": " + errno_text());
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const auto why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw RuntimeFailure("cannot write " + tmp + ": " + why);
    }
    p += n;
    left -= size_t(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const auto why = errno_text();
    ::unlink(tmp.c_str());
    throw RuntimeFailure("cannot flush " + tmp + ": " + why);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const auto why = errno_text();
    ::unlink(tmp.c_str());
    throw RuntimeFailure("cannot rename " + tmp + " to " + path.string() + ": " + why);
  }
  sync_path(path.parent_path().empty() ? fs::path(".") : path.parent_path());
}

void sync_path(const fs::path& path) {
  std::error_code ec;
  const bool dir = fs::is_directory(path, ec);
  const int fd = ::open(path.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return;  // flushing is best effort: the data is written either way
  ::fsync(fd);
  ::close(fd);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RuntimeFailure("cannot read " + path.string() + ": " + errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace nexus
