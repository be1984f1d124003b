// Reading and writing whole files. Every file NEXUS writes for later runs to trust (run.json,
// checkpoints, cache shards and manifests, proofs, the plugin probe cache) goes through
// write_file_atomically: a reader, or the next run after a crash, sees the old content or all of
// the new, never a torn file.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace nexus {

// Writes `bytes` to a temporary file beside `path`, flushes it to disk, renames it over `path` and
// flushes the folder, so that the rename itself survives a crash. Throws RuntimeFailure naming the
// file and the system's reason.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// Flushes a file or folder to disk (a folder: the names in it, after files were added or renamed).
void sync_path(const std::filesystem::path& path);

// The whole file as bytes; throws RuntimeFailure naming the file when it cannot be read.
std::string read_file(const std::filesystem::path& path);

}  // namespace nexus
