#include "nexus/data/feature_cache.hpp"

#include <fcntl.h>
#include <sys/file.h>
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
#include <optional>
#include <map>

#include "nexus/base/files.hpp"
#include "nexus/support/mapped_file.hpp"

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

nlohmann::json to_json(const Manifest& m) {
  nlohmann::json shards = nlohmann::json::array();
  for (const auto& s : m.shards)
    shards.push_back({{"file", s.file}, {"first_row", s.first_row}, {"rows", s.rows}, {"bytes", s.bytes}, {"sha256", s.sha256}});
  return {{"format", 1},          {"key", m.key},        {"teacher", m.teacher},       {"fingerprint", m.fingerprint},
          {"dataset_id", m.dataset_id}, {"split", m.split}, {"rows", m.rows},        {"width", m.width},
          {"shard_rows", m.shard_rows}, {"dtype", to_string(m.dtype)}, {"complete", m.complete}, {"shards", shards}};
}

std::string shard_name(size_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05zu.nxf", index);
  return buf;
}

// What a manifest says must be possible before anything trusts it: sizes within bounds (so that
// no product overflows and nothing is allocated from a made-up number) and shard files that are
// plain names inside the entry's folder. Throws std::invalid_argument naming what is wrong.
void check_bounds(const Manifest& m) {
  const auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  need(m.rows >= 0 && m.rows <= kMaxRows, "rows must be between 0 and " + std::to_string(kMaxRows));
  need(m.width > 0 && m.width <= kMaxWidth, "width must be between 1 and " + std::to_string(kMaxWidth));
  need(m.shard_rows > 0 && m.shard_rows <= kMaxRows, "shard_rows must be between 1 and " + std::to_string(kMaxRows));
  need(m.shards.size() <= size_t(m.rows / m.shard_rows + 1), "more shards than rows need");
  const uint64_t element = m.dtype == DType::F16 ? 2 : 4;
  for (const auto& s : m.shards) {
    unsigned index = 0;
    int used = 0;
    need(std::sscanf(s.file.c_str(), "shard-%5u.nxf%n", &index, &used) == 1 && size_t(used) == s.file.size() &&
             s.file == shard_name(index),
         "shard file '" + s.file + "' is not a shard name (shard-NNNNN.nxf in the entry's folder)");
    need(s.first_row >= 0 && s.rows > 0 && s.first_row <= m.rows - s.rows,
         "shard " + s.file + " covers rows outside 0.." + std::to_string(m.rows));
    need(s.bytes == sizeof(ShardHeader) + uint64_t(s.rows) * uint64_t(m.width) * element,
         "shard " + s.file + " records " + std::to_string(s.bytes) + " bytes, its rows need " +
             std::to_string(sizeof(ShardHeader) + uint64_t(s.rows) * uint64_t(m.width) * element));
  }
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
    check_bounds(m);
  } catch (const std::exception& e) {
    throw CacheError("corrupt cache manifest " + file.string() + ": " + e.what());
  }
  m.dir = file.parent_path().string();
  return m;
}

void save(const Manifest& m, const std::string& file = "manifest.json") {
  write_file_atomically(fs::path(m.dir) / file, to_json(m).dump(1));
}

// Holds a flock on <dir>/<name> for its lifetime: exclusive for whole builds, merges and gc,
// shared for part builders (who also hold their own part's lock exclusively), so that parts fill
// an entry side by side while a merge or a gc waits for all of them.
class DirLock {
 public:
  enum Mode { kExclusive = LOCK_EX, kShared = LOCK_SH };
  explicit DirLock(const fs::path& dir, bool wait = true, Mode mode = kExclusive, const std::string& name = ".lock") {
    const auto file = (dir / name).string();
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw CacheError("cannot open lock " + file + ": " + errno_text());
    if (::flock(fd_, mode | LOCK_NB) == 0) return;
    if (!wait) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    spdlog::info("waiting for another process building {}", dir.string());
    while (::flock(fd_, mode) != 0 && errno == EINTR) {
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

std::string part_stem(const Part& p) { return "part-" + std::to_string(p.index) + "-of-" + std::to_string(p.count); }

bool is_part_manifest(const fs::path& file) {
  const auto name = file.filename().string();
  return name.rfind("part-", 0) == 0 && file.extension() == ".json";
}

Manifest fresh_manifest(const EntryKey& key, int64_t rows, int64_t width, const BuildOptions& options, const fs::path& dir) {
  Manifest m;
  m.key = key.id();
  m.teacher = key.teacher;
  m.fingerprint = key.fingerprint;
  m.dataset_id = key.dataset_id;
  m.split = key.split;
  m.rows = rows;
  m.width = width;
  m.shard_rows = options.shard_rows;
  m.dtype = options.dtype;
  m.dir = dir.string();
  return m;
}

void check_settings(const Manifest& m, const fs::path& file, int64_t rows, int64_t width, const BuildOptions& options) {
  if (m.rows != rows || m.width != width || m.dtype != options.dtype || m.shard_rows != options.shard_rows)
    throw CacheError("cache entry " + file.string() + " holds " + std::to_string(m.rows) + "x" + std::to_string(m.width) +
                     " " + to_string(m.dtype) + " features in shards of " + std::to_string(m.shard_rows) +
                     "; remove it (nexus cache gc) to rebuild with different settings");
}

bool intact(const fs::path& dir, const ShardInfo& s) {
  std::error_code ec;
  return fs::file_size(dir / s.file, ec) == s.bytes && !ec;
}

// Every intact shard that the entry's manifest or any part manifest records, by file name.
std::map<std::string, ShardInfo> recorded_shards(const fs::path& dir, int64_t rows, int64_t width, const BuildOptions& options) {
  std::map<std::string, ShardInfo> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename() != "manifest.json" && !is_part_manifest(e.path())) continue;
    const auto m = manifest_from(e.path());
    check_settings(m, e.path(), rows, width, options);
    for (const auto& s : m.shards)
      if (intact(dir, s)) out.emplace(s.file, s);
  }
  return out;
}

void sort_by_row(std::vector<ShardInfo>& shards) {
  std::sort(shards.begin(), shards.end(), [](const auto& a, const auto& b) { return a.first_row < b.first_row; });
}

void remove_part_manifests(const fs::path& dir) {
  std::error_code ec;
  std::vector<fs::path> parts;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (is_part_manifest(e.path()) || e.path().filename().string().rfind(".lock.part-", 0) == 0) parts.push_back(e.path());
  for (const auto& p : parts) fs::remove(p, ec);
}


}  // namespace

const char* to_string(DType d) { return d == DType::F16 ? "f16" : "f32"; }

std::string Part::str() const { return "part " + std::to_string(index) + " of " + std::to_string(count); }

Part Part::parse(const std::string& text) {
  Part p;
  const auto slash = text.find('/');
  try {
    size_t used = 0;
    p.index = std::stoi(text.substr(0, slash), &used);
    if (slash == std::string::npos || used != slash) throw std::invalid_argument("no slash");
    p.count = std::stoi(text.substr(slash + 1), &used);
    if (used != text.size() - slash - 1) throw std::invalid_argument("trailing text");
  } catch (const std::exception&) {
    throw InputError("--part takes R/N, e.g. --part 0/2, not '" + text + "'");
  }
  if (p.count < 1 || p.index < 0 || p.index >= p.count) throw InputError("--part " + text + ": R must be in [0, N)");
  return p;
}

int Part::owner(size_t shard, const std::string& key_id, int count) {
  if (count <= 1) return 0;
  const uint64_t salt = key_id.size() >= 8 ? std::stoull(key_id.substr(0, 8), nullptr, 16) : 0;
  return int((uint64_t(shard) + salt) % uint64_t(count));
}

int64_t Part::owned_rows(int64_t rows, int64_t shard_rows, const std::string& key_id) const {
  int64_t n = 0;
  for (int64_t first = 0, i = 0; first < rows; first += shard_rows, ++i)
    if (owns(size_t(i), key_id)) n += std::min(shard_rows, rows - first);
  return n;
}

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
  const Part part = options.part;
  if (part.count < 1 || part.index < 0 || part.index >= part.count)
    throw CacheError("invalid cache part " + std::to_string(part.index) + " of " + std::to_string(part.count));
  const fs::path dir = fs::path(root_) / key.id();
  fs::create_directories(dir);
  DirLock lock(dir, /*wait=*/true, part.whole() ? DirLock::kExclusive : DirLock::kShared);
  std::optional<DirLock> part_lock;
  if (!part.whole()) part_lock.emplace(dir, true, DirLock::kExclusive, ".lock." + part_stem(part));

  Manifest entry = fresh_manifest(key, rows, width, options, dir);
  if (fs::exists(dir / "manifest.json")) {
    entry = manifest_from(dir / "manifest.json");
    check_settings(entry, dir / "manifest.json", rows, width, options);
    const auto gaps = coverage_gaps(entry);
    if (entry.complete && gaps.empty()) return entry;
    if (entry.complete) {
      spdlog::warn("cache entry {} says complete but {}; computing what is missing", dir.string(), gaps.front());
      entry.complete = false;
    }
  }
  // What this builder records: the entry itself, or its own part.
  const std::string file = part.whole() ? "manifest.json" : part_stem(part) + ".json";
  Manifest m = entry;
  if (!part.whole()) {
    m = fresh_manifest(key, rows, width, options, dir);
    if (fs::exists(dir / file)) {
      m = manifest_from(dir / file);
      check_settings(m, dir / file, rows, width, options);
    }
    m.complete = false;
  }
  m.dir = dir.string();
  // Only shards whose file is there with the recorded size count; the rest is recomputed. A whole
  // build also takes over what parts of an earlier sharded build left.
  auto done = recorded_shards(dir, rows, width, options);
  std::vector<ShardInfo> kept;
  for (const auto& s : m.shards) {
    if (done.count(s.file)) kept.push_back(s);
    else spdlog::warn("cache shard {} is missing or incomplete; recomputing it", (dir / s.file).string());
  }
  m.shards = kept;
  if (part.whole())
    for (const auto& [name, s] : done)
      if (std::none_of(m.shards.begin(), m.shards.end(), [&](const auto& k) { return k.file == name; })) m.shards.push_back(s);
  sort_by_row(m.shards);
  if (!done.empty())
    spdlog::info("cache entry {}{}: {}/{} rows already on disk", key.id(), part.whole() ? "" : " (" + part.str() + ")",
                 [&] { int64_t n = 0; for (const auto& [_, s] : done) n += s.rows; return n; }(), rows);

  const size_t n_shards = size_t((rows + options.shard_rows - 1) / options.shard_rows);
  const int64_t mine = part.owned_rows(rows, options.shard_rows, m.key);
  int64_t computed = 0, mine_done = 0;
  for (const auto& [_, s] : done)
    if (part.owns(size_t(s.first_row / options.shard_rows), m.key)) mine_done += s.rows;
  for (size_t i = 0; i < n_shards; ++i) {
    if (!part.owns(i, m.key)) continue;
    const int64_t first = int64_t(i) * options.shard_rows, count = std::min(options.shard_rows, rows - first);
    const auto name = shard_name(i);
    if (done.count(name)) continue;
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
    write_file_atomically(dir / name, bytes);
    m.shards.push_back({name, first, count, uint64_t(bytes.size()), sha256_hex(bytes)});
    sort_by_row(m.shards);
    computed += count;
    save(m, file);  // a crash from here on loses nothing already written
    if (options.progress) options.progress(mine_done + computed, mine, computed);
  }
  m.complete = true;
  save(m, file);
  if (part.whole()) remove_part_manifests(dir);  // the entry holds their shards now
  return m;
}

Manifest FeatureCache::merge(const EntryKey& key, int64_t rows, int64_t width, const BuildOptions& options) {
  const fs::path dir = fs::path(root_) / key.id();
  if (!fs::is_directory(dir)) throw CacheError("cache entry " + dir.string() + " (teacher '" + key.teacher + "', " + key.split +
                                               ") does not exist: no part of it was built here");
  DirLock lock(dir);
  Manifest m = fresh_manifest(key, rows, width, options, dir);
  if (fs::exists(dir / "manifest.json")) {
    m = manifest_from(dir / "manifest.json");
    check_settings(m, dir / "manifest.json", rows, width, options);
    if (m.complete) return m;
    m.dir = dir.string();
  }
  const auto done = recorded_shards(dir, rows, width, options);
  const size_t n_shards = size_t((rows + options.shard_rows - 1) / options.shard_rows);
  // Who was to compute a missing shard: options.part.count when the caller knows it (the ranks of
  // a job), else the number of parts the part manifests here were written for.
  int parts = options.part.count;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    int r = 0, n = 0;
    if (parts <= 1 && std::sscanf(e.path().filename().c_str(), "part-%d-of-%d.json", &r, &n) == 2) parts = std::max(parts, n);
  }
  std::vector<std::string> missing;
  for (size_t i = 0; i < n_shards; ++i) {
    const auto name = shard_name(i);
    if (done.count(name)) continue;
    const int64_t first = int64_t(i) * options.shard_rows, count = std::min(options.shard_rows, rows - first);
    const Part owner{Part::owner(i, m.key, parts), std::max(parts, 1)};
    missing.push_back(name + " (rows " + std::to_string(first) + ".." + std::to_string(first + count - 1) +
                      (owner.whole() ? "" : ", " + owner.str()) + ")");
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 4; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 4) list += " and " + std::to_string(missing.size() - 4) + " more";
    throw CacheError("cache entry " + dir.string() + " (teacher '" + key.teacher + "', " + key.split + ") is missing " +
                     std::to_string(missing.size()) + " of " + std::to_string(n_shards) + " shards: " + list +
                     ". The builder of that part did not finish, or wrote to another cache folder; rerun the cache "
                     "build (any number of processes) and only the missing shards are computed");
  }
  m.shards.clear();
  for (const auto& [_, s] : done) m.shards.push_back(s);
  sort_by_row(m.shards);
  m.complete = true;
  save(m);
  remove_part_manifests(dir);
  return m;
}

std::vector<std::string> coverage_gaps(const Manifest& m) {
  auto shards = m.shards;
  sort_by_row(shards);
  std::vector<std::string> gaps;
  const auto rows = [](int64_t a, int64_t b) { return "rows " + std::to_string(a) + ".." + std::to_string(b - 1); };
  int64_t next = 0;
  for (const auto& s : shards) {
    if (s.first_row > next) gaps.push_back(rows(next, s.first_row) + " are in no shard");
    if (s.first_row < next) gaps.push_back(rows(s.first_row, std::min(next, s.first_row + s.rows)) + " are in two shards");
    next = std::max(next, s.first_row + s.rows);
  }
  if (next < m.rows) gaps.push_back(rows(next, m.rows) + " are in no shard");
  return gaps;
}

std::vector<std::string> FeatureCache::verify(const Manifest& m) const {
  std::vector<std::string> problems;
  if (!m.complete) problems.push_back("entry " + m.dir + " is incomplete (" + std::to_string(m.cached_rows()) + "/" +
                                      std::to_string(m.rows) + " rows): rerun the cache build to finish it (after " +
                                      "`cache build --part`, `cache merge`)");
  else
    for (const auto& gap : coverage_gaps(m))
      problems.push_back("entry " + m.dir + ": " + gap + " (the manifest lists " + std::to_string(m.shards.size()) +
                         " shards): rerun the cache build to fill them");
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
  // Rows no shard covers would be read as whatever memory held: never trusted.
  if (const auto gaps = coverage_gaps(m); !gaps.empty())
    throw CacheError("cache entry " + m.dir + ": " + gaps.front() + "; rerun the cache build to fill them");
  if (verify_checksums) {
    const auto problems = verify(m);
    if (!problems.empty()) throw CacheError(problems.front() + " (the entry will not be used; `nexus cache gc` removes it)");
  }
  auto out = torch::empty({m.rows, m.width}, torch::kFloat);
  for (const auto& s : m.shards) {
    const auto path = (fs::path(m.dir) / s.file).string();
    std::unique_ptr<support::MappedFile> file;
    try {
      file = std::make_unique<support::MappedFile>(path);
    } catch (const std::exception& e) {
      throw CacheError(std::string("cannot read shard: ") + e.what());
    }
    ShardHeader h{};
    const bool f16 = file->size() >= sizeof h && (std::memcpy(&h, file->data(), sizeof h), h.dtype == 1);
    const size_t expected = sizeof h + size_t(s.rows * m.width) * (f16 ? 2 : 4);
    if (file->size() != s.bytes || std::memcmp(h.magic, kMagic, sizeof kMagic) != 0 || h.rows != s.rows ||
        h.width != m.width || expected != s.bytes)
      throw CacheError("corrupt shard " + path + ": header does not match the manifest");
    auto view = torch::from_blob(const_cast<uint8_t*>(file->data()) + sizeof h, {s.rows, m.width},
                                 f16 ? torch::kHalf : torch::kFloat);
    out.narrow(0, s.first_row, s.rows).copy_(view);
  }
  return out;
}

std::vector<Manifest> FeatureCache::list() const {
  std::vector<Manifest> out;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) return out;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    if (!e.is_directory()) continue;
    try {
      if (fs::exists(e.path() / "manifest.json")) {
        out.push_back(manifest_from(e.path() / "manifest.json"));
        continue;
      }
      // Only parts of a sharded build so far: shown as one incomplete entry holding their shards.
      std::optional<Manifest> parts;
      std::error_code part_ec;
      for (const auto& f : fs::directory_iterator(e.path(), part_ec)) {
        if (!is_part_manifest(f.path())) continue;
        auto m = manifest_from(f.path());
        if (!parts) {
          parts = m;
          parts->shards.clear();
        }
        for (const auto& s : m.shards)
          if (std::none_of(parts->shards.begin(), parts->shards.end(), [&](const auto& k) { return k.file == s.file; }))
            parts->shards.push_back(s);
      }
      if (!parts) continue;
      parts->complete = false;
      sort_by_row(parts->shards);
      out.push_back(*parts);
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
