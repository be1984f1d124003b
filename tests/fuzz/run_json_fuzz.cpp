// libFuzzer harness: a run folder's run.json as every command that takes RUN reads it
// (run::read_run_info). InputError or RuntimeFailure is the expected answer to bad input.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "nexus/base/errors.hpp"
#include "nexus/run/run_folder.hpp"

namespace {

// One folder per process, reused for every input and removed at exit; run.json names files
// relative to the working folder, which scripts/fuzz.sh sets to the corpus copy.
struct RunDir {
  std::string path;
  RunDir() {
    const auto d = std::filesystem::temp_directory_path() / ("nexus-run-json-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    path = d.string();
  }
  ~RunDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

const std::string& run_dir() {
  static const RunDir dir;
  return dir.path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::ofstream(run_dir() + "/run.json", std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), std::streamsize(size));
  try {
    (void)nexus::run::read_run_info(run_dir());
  } catch (const nexus::InputError&) {
  } catch (const nexus::RuntimeFailure&) {
  }
  return 0;
}
