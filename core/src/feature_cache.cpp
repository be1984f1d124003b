#include "nexus/core/feature_cache.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nexus/sha256.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace nexus::cache {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'N', 'X', 'F', 'E', 'A', 'T', '0', '1'};

struct ShardHeader {
  char magic[8];
  uint32_t version;
  uint32_t dtype;  // 0 f32, 1 f16
  int64_t rows;
  int64_t width;
};
static_assert(sizeof(ShardHeader) == 32, "shard header layout is part of the file format");

std::string errno_text() { return std::strerror(errno); }

// Writes `data` to `path` so that `path` either keeps its old contents or has all of the new.
void write_atomically(const fs::path& path, const void* data, size_t size) {
  const auto tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw CacheError("cannot write " + tmp + ": " + errno_text());
  auto p = static_cast<const char*>(data);
  size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const auto why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw CacheError("cannot write " + tmp + ": " + why);
    }
    p += n;
    left -= size_t(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw CacheError("cannot flush " + tmp + ": " + errno_text());
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw CacheError("cannot rename " + tmp + ": " + errno_text());
  // Make the rename itself durable.
  const int dfd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

nlohmann::json to_json(const Manifest& m) {
  nlohmann::json shards = nlohmann::json::array();
  for (const auto& s : m.shards)
    shards.push_back({{"file", s.file}, {"first_row", s.first_row}, {"rows", s.rows}, {"bytes", s.bytes}, {"sha256", s.sha256}});
  return {{"format", 1},          {"key", m.key},        {"teacher", m.teacher},       {"fingerprint", m.fingerprint},
          {"dataset_id", m.dataset_id}, {"split", m.split}, {"rows", m.rows},        {"width", m.width},
          {"shard_rows", m.shard_rows}, {"dtype", to_string(m.dtype)}, {"complete", m.complete}, {"shards", shards}};
}

Manifest manifest_from(const fs::path& file) {
  Manifest m;
  try {
    std::ifstream in(file);
    const auto j = nlohmann::json::parse(in);
    if (j.at("format").get<int>() != 1) throw CacheError("unknown format");
    m.key = j.at("key");
    m.teacher = j.value("teacher", "");
    m.fingerprint = j.at("fingerprint");
    m.dataset_id = j.at("dataset_id");
    m.split = j.at("split");
    m.rows = j.at("rows");
    m.width = j.at("width");
    m.shard_rows = j.at("shard_rows");
    m.dtype = j.at("dtype").get<std::string>() == "f16" ? DType::F16 : DType::F32;
    m.complete = j.at("complete");
    for (const auto& s : j.at("shards"))
      m.shards.push_back({s.at("file"), s.at("first_row"), s.at("rows"), s.at("bytes"), s.at("sha256")});
  } catch (const std::exception& e) {
    throw CacheError("corrupt cache manifest " + file.string() + ": " + e.what());
  }
  m.dir = file.parent_path().string();
  return m;
}

void save(const Manifest& m) {
  const auto text = to_json(m).dump(1);
  write_atomically(fs::path(m.dir) / "manifest.json", text.data(), text.size());
}

// Holds an exclusive flock on <dir>/.lock for its lifetime.
class DirLock {
 public:
  explicit DirLock(const fs::path& dir, bool wait = true) {
    const auto file = (dir / ".lock").string();
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw CacheError("cannot open lock " + file + ": " + errno_text());
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
    if (!wait) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    spdlog::info("waiting for another process building {}", dir.string());
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool held() const { return fd_ >= 0; }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

std::string shard_name(size_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05zu.nxf", index);
  return buf;
}

}  // namespace

const char* to_string(DType d) { return d == DType::F16 ? "f16" : "f32"; }

std::string EntryKey::id() const {
  // Length-prefixed so that no two different triples hash the same text.
  Sha256 h;
  for (const auto* field : {&fingerprint, &dataset_id, &split}) h.update(std::to_string(field->size()) + ":" + *field + ";");
  return h.hex().substr(0, 32);
}

int64_t Manifest::cached_rows() const {
  int64_t n = 0;
  for (const auto& s : shards) n += s.rows;
  return n;
}

FeatureCache::FeatureCache(std::string root) : root_(std::move(root)) {}

std::optional<Manifest> FeatureCache::find(const EntryKey& key) const {
  const auto file = fs::path(root_) / key.id() / "manifest.json";
  if (!fs::exists(file)) return std::nullopt;
  return manifest_from(file);
}

Manifest FeatureCache::build(const EntryKey& key, int64_t rows, int64_t width, const EncodeFn& encode,
                             const BuildOptions& options) {
  if (rows < 0 || width <= 0 || options.shard_rows <= 0) throw CacheError("invalid cache entry shape");
  const fs::path dir = fs::path(root_) / key.id();
  fs::create_directories(dir);
  DirLock lock(dir);

  Manifest m;
  if (fs::exists(dir / "manifest.json")) {
    m = manifest_from(dir / "manifest.json");
    if (m.rows != rows || m.width != width || m.dtype != options.dtype || m.shard_rows != options.shard_rows)
      throw CacheError("cache entry " + dir.string() + " holds " + std::to_string(m.rows) + "x" + std::to_string(m.width) +
                       " " + to_string(m.dtype) + " features in shards of " + std::to_string(m.shard_rows) +
                       "; remove it (nexus cache gc) to rebuild with different settings");
    if (m.complete) return m;
    // Keep only shards whose file is there with the recorded size; the rest is recomputed.
    std::vector<ShardInfo> kept;
    for (const auto& s : m.shards) {
      std::error_code ec;
      if (fs::file_size(dir / s.file, ec) == s.bytes && !ec) kept.push_back(s);
      else spdlog::warn("cache shard {} is missing or incomplete; recomputing it", (dir / s.file).string());
    }
    m.shards = kept;
    spdlog::info("resuming cache entry {} at {}/{} rows", key.id(), m.cached_rows(), rows);
  } else {
    m.key = key.id();
    m.teacher = key.teacher;
    m.fingerprint = key.fingerprint;
    m.dataset_id = key.dataset_id;
    m.split = key.split;
    m.rows = rows;
    m.width = width;
    m.shard_rows = options.shard_rows;
    m.dtype = options.dtype;
  }
  m.dir = dir.string();

  const size_t n_shards = size_t((rows + options.shard_rows - 1) / options.shard_rows);
  int64_t computed = 0;
  for (size_t i = 0; i < n_shards; ++i) {
    const int64_t first = int64_t(i) * options.shard_rows, count = std::min(options.shard_rows, rows - first);
    const auto name = shard_name(i);
    bool have = false;
    for (const auto& s : m.shards) have = have || s.file == name;
    if (have) continue;
    auto features = encode(first, count);
    if (features.dim() != 2 || features.size(0) != count || features.size(1) != width)
      throw CacheError("encoder returned shape [" + std::to_string(features.size(0)) + ", " +
                       std::to_string(features.dim() > 1 ? features.size(1) : 0) + "] for rows " + std::to_string(first) +
                       ".." + std::to_string(first + count) + ", expected [" + std::to_string(count) + ", " +
                       std::to_string(width) + "]");
    if (!features.isfinite().all().item<bool>())
      throw CacheError("teacher '" + key.teacher + "' produced non-finite features for rows " + std::to_string(first) +
                       ".." + std::to_string(first + count) + "; nothing was cached for them");
    features = features.to(torch::kCPU, options.dtype == DType::F16 ? torch::kHalf : torch::kFloat).contiguous();
    ShardHeader header{};
    std::memcpy(header.magic, kMagic, sizeof kMagic);
    header.version = 1;
    header.dtype = options.dtype == DType::F16 ? 1 : 0;
    header.rows = count;
    header.width = width;
    std::string bytes(sizeof header + size_t(features.nbytes()), '\0');
    std::memcpy(bytes.data(), &header, sizeof header);
    std::memcpy(bytes.data() + sizeof header, features.data_ptr(), size_t(features.nbytes()));
    write_atomically(dir / name, bytes.data(), bytes.size());
    m.shards.push_back({name, first, count, uint64_t(bytes.size()), sha256_hex(bytes)});
    std::sort(m.shards.begin(), m.shards.end(), [](const auto& a, const auto& b) { return a.first_row < b.first_row; });
    computed += count;
    save(m);  // a crash from here on loses nothing already written
    if (options.progress) options.progress(m.cached_rows(), rows, computed);
  }
  m.complete = true;
  save(m);
  return m;
}

std::vector<std::string> FeatureCache::verify(const Manifest& m) const {
  std::vector<std::string> problems;
  if (!m.complete) problems.push_back("entry " + m.dir + " is incomplete (" + std::to_string(m.cached_rows()) + "/" +
                                      std::to_string(m.rows) + " rows): rerun the cache build to finish it");
  for (const auto& s : m.shards) {
    const auto path = fs::path(m.dir) / s.file;
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) {
      problems.push_back("missing shard " + path.string());
      continue;
    }
    if (size != s.bytes) {
      problems.push_back("corrupt shard " + path.string() + ": " + std::to_string(size) + " bytes, expected " +
                         std::to_string(s.bytes));
      continue;
    }
    if (sha256_file(path.string()) != s.sha256) problems.push_back("corrupt shard " + path.string() + ": checksum mismatch");
  }
  return problems;
}

at::Tensor FeatureCache::load(const Manifest& m, bool verify_checksums) const {
  if (!m.complete) throw CacheError("cache entry " + m.dir + " is incomplete; rerun the cache build");
  if (verify_checksums) {
    const auto problems = verify(m);
    if (!problems.empty()) throw CacheError(problems.front() + " (the entry will not be used; `nexus cache gc` removes it)");
  }
  auto out = torch::empty({m.rows, m.width}, torch::kFloat);
  for (const auto& s : m.shards) {
    const auto path = (fs::path(m.dir) / s.file).string();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw CacheError("cannot open shard " + path + ": " + errno_text());
    void* map = ::mmap(nullptr, s.bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) throw CacheError("cannot map shard " + path + ": " + errno_text());
    ShardHeader h{};
    std::memcpy(&h, map, sizeof h);
    const bool f16 = h.dtype == 1;
    const size_t expected = sizeof h + size_t(s.rows * m.width) * (f16 ? 2 : 4);
    if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0 || h.rows != s.rows || h.width != m.width || expected != s.bytes) {
      ::munmap(map, s.bytes);
      throw CacheError("corrupt shard " + path + ": header does not match the manifest");
    }
    auto view = torch::from_blob(static_cast<char*>(map) + sizeof h, {s.rows, m.width}, f16 ? torch::kHalf : torch::kFloat);
    out.narrow(0, s.first_row, s.rows).copy_(view);
    ::munmap(map, s.bytes);
  }
  return out;
}

std::vector<Manifest> FeatureCache::list() const {
  std::vector<Manifest> out;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) return out;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    if (!e.is_directory() || !fs::exists(e.path() / "manifest.json")) continue;
    try {
      out.push_back(manifest_from(e.path() / "manifest.json"));
    } catch (const CacheError& err) {
      spdlog::warn("{}", err.what());
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return std::tie(a.teacher, a.split, a.key) < std::tie(b.teacher, b.split, b.key); });
  return out;
}

std::vector<std::string> FeatureCache::gc(const std::vector<std::string>& keep, bool dry_run) const {
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) return removed;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    if (!e.is_directory()) continue;
    const auto key = e.path().filename().string();
    if (std::find(keep.begin(), keep.end(), key) != keep.end()) continue;
    DirLock lock(e.path(), /*wait=*/false);
    if (!lock.held()) continue;  // a builder is working on it
    removed.push_back(e.path().string());
    if (!dry_run) fs::remove_all(e.path(), ec);
  }
  return removed;
}

}  // namespace nexus::cache
