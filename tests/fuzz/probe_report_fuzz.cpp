// libFuzzer harness: the lines a plugin's probe child writes, as the parent reads them
// (registry/src/probe_report.hpp). A broken or hostile child must not be able to make the parent
// throw or crash: consume() never throws.
#include <cstddef>
#include <cstdint>
#include <string>

#include "../../registry/src/probe_report.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  nexus::registry::ProbeReport report;
  // Most inputs would never get past the hello: let every input start with a valid one.
  report.consume("@nexus {\"event\":\"hello\",\"protocol\":2}");
  std::size_t start = 0;
  while (start <= input.size()) {
    auto nl = input.find('\n', start);
    if (nl == std::string::npos) nl = input.size();
    report.consume(input.substr(start, nl - start));
    start = nl + 1;
  }
  return 0;
}
