// The feature cache: teacher outputs computed once and kept on disk, so training never loads a
// teacher. An entry is keyed by everything that determines its contents (teacher fingerprint,
// dataset identity, split); a changed teacher therefore misses exactly its own entries.
//
// Layout: <root>/<key>/manifest.json + shard-00000.nxf ... Each shard is a small header and
// row-major fp32 or fp16 rows, written atomically (temporary file, fsync, rename) and recorded
// with its sha256 in the manifest, itself rewritten atomically after every shard. A build that
// is interrupted resumes at the first missing shard; concurrent builders of one entry serialise
// on a lock file; readers only ever see complete shards.
//
// Sharded builds (one part per data-parallel rank): part r of N computes every Nth shard (Part)
// and records them in its own part-<r>-of-<N>.json, so N processes fill one entry side by side
// without waiting for each other. merge() then joins the parts into manifest.json; a shard that no
// part holds (a rank that died, a machine that does not share the cache folder) is named, never
// papered over. Parts of an earlier run with another N count too: only what is missing is computed.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nexus/base/errors.hpp"

namespace nexus::cache {

// A cache entry that is missing, corrupt or cannot be written.
class CacheError : public RuntimeFailure {
 public:
  using RuntimeFailure::RuntimeFailure;
};

enum class DType { F32, F16 };
const char* to_string(DType d);

struct EntryKey {
  std::string teacher;      // display name (the composition's teacher name); not part of the key
  std::string fingerprint;  // Teacher::fingerprint().str()
  std::string dataset_id;   // identity of the dataset build (see docs/data.md)
  std::string split;        // train, val, test
  std::string id() const;   // sha256 of the three fields that define the contents
};

struct ShardInfo {
  std::string file;
  int64_t first_row = 0, rows = 0;
  uint64_t bytes = 0;
  std::string sha256;
};

struct Manifest {
  std::string key, teacher, fingerprint, dataset_id, split;
  int64_t rows = 0, width = 0, shard_rows = 0;
  DType dtype = DType::F32;
  std::vector<ShardInfo> shards;  // in row order; complete ones only
  bool complete = false;
  std::string dir;                // where it lives (not stored)
  int64_t cached_rows() const;
};

// Bounds on what a manifest may say (checked when it is read): far beyond any real dataset or
// teacher, small enough that rows x width x 4 bytes cannot overflow.
constexpr int64_t kMaxRows = int64_t(1) << 36;
constexpr int64_t kMaxWidth = int64_t(1) << 20;

// Rows of the entry that no shard, or more than one, covers ("rows 100..199 are in no shard");
// empty when the shards cover exactly rows 0..rows-1. A complete entry with gaps is not used: a
// build computes what is missing, `cache verify` names it.
std::vector<std::string> coverage_gaps(const Manifest& m);

// Which share of an entry's shards a builder computes. Shard i of the entry with key id K belongs
// to part (i + s(K)) % count, s(K) a number taken from K: entries start at different parts, so
// that the many entries smaller than one shard spread over the parts instead of all going to 0.
struct Part {
  int index = 0;
  int count = 1;
  bool whole() const { return count <= 1; }
  std::string str() const;  // "part 1 of 2"
  // "R/N" with 0 <= R < N, as `nexus cache build --part` takes it; InputError saying what is wrong.
  static Part parse(const std::string& text);
  bool owns(size_t shard, const std::string& key_id) const { return owner(shard, key_id, count) == index; }
  static int owner(size_t shard, const std::string& key_id, int count);
  // Rows in this part's shards of an entry of `rows` rows in shards of `shard_rows`.
  int64_t owned_rows(int64_t rows, int64_t shard_rows, const std::string& key_id) const;
};

struct BuildOptions {
  DType dtype = DType::F32;
  int64_t shard_rows = 4096;
  Part part;
  // Called after each shard with (rows done, total rows, rows computed in this run).
  std::function<void(int64_t, int64_t, int64_t)> progress;
};

// Computes features for rows [first, first + count): a [count, width] float tensor.
using EncodeFn = std::function<at::Tensor(int64_t first, int64_t count)>;

class FeatureCache {
 public:
  explicit FeatureCache(std::string root);
  const std::string& root() const { return root_; }

  // The entry's manifest if it exists (complete or not); throws CacheError if it is unreadable.
  std::optional<Manifest> find(const EntryKey& key) const;

  // Builds the entry, or finishes an interrupted build: only missing shards are computed. With
  // options.part set, computes only that part's missing shards and returns the part's manifest
  // (complete when the part is), unless the whole entry is already complete.
  Manifest build(const EntryKey& key, int64_t rows, int64_t width, const EncodeFn& encode,
                 const BuildOptions& options = {});

  // Joins the parts of a sharded build into the entry's manifest and returns it, complete. Waits
  // for part builders still at work. Throws CacheError naming every missing shard, with its rows
  // and the part of options.part.count that was to compute it; the parts stay, and a later build
  // (any number of parts) computes only what is missing.
  Manifest merge(const EntryKey& key, int64_t rows, int64_t width, const BuildOptions& options = {});

  // [rows, width] float32 features of a complete entry. Every shard's checksum is verified
  // first unless `verify` is false; a mismatch is a CacheError naming the shard.
  at::Tensor load(const Manifest& manifest, bool verify = true) const;

  // Problems found (missing or corrupt shards, by file name); empty when the entry is sound.
  std::vector<std::string> verify(const Manifest& manifest) const;

  // Every entry under the root.
  std::vector<Manifest> list() const;

  // Removes entries whose key is not in `keep` (all incomplete or unreadable entries too, unless
  // a builder holds their lock). Returns the removed directories.
  std::vector<std::string> gc(const std::vector<std::string>& keep, bool dry_run) const;

 private:
  std::string root_;
};

}  // namespace nexus::cache
