// The server's counters and latency histograms, in Prometheus' text exposition format
// (GET /metrics).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace nexus::serving {

struct BatchStats;

// A label value as the text exposition format writes it (\\, \" and \n escaped).
std::string escape_label(const std::string& value);

class Metrics {
 public:
  // One answered request: its endpoint, HTTP status and latency.
  void request(const std::string& endpoint, int status, double seconds);
  // One forward of the micro-batcher: the requests and inputs it carried, the inputs routed to
  // each tower, and the teacher rows encoded against what dense routing would have encoded.
  void batch(const BatchStats& b);
  void swap(bool ok);
  // The exposition text; `version` is the run being served.
  std::string text(const std::string& version) const;

  // Latency histogram bucket bounds, in seconds.
  static const std::vector<double>& bounds();

 private:
  struct Histogram {
    std::vector<int64_t> buckets;
    int64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, int64_t> routed_, encoded_;
  int64_t dense_rows_ = 0;
  std::map<std::string, int64_t> batches_, batched_requests_;
  int64_t swaps_ = 0, failed_swaps_ = 0;
};

}  // namespace nexus::serving
