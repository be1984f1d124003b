#include "nexus/serving/metrics.hpp"

#include <nexus/teacher.hpp>
#include <torch/torch.h>

#include <cstdio>

#include "nexus/serving/batcher.hpp"

namespace nexus::serving {

namespace {

std::string number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

// "# HELP name help\n# TYPE name type\n"
std::string header(const std::string& name, const std::string& type, const std::string& help) {
  return "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

// One line per label value of a counter family.
std::string counters(const std::string& name, const std::string& label, const std::map<std::string, int64_t>& values) {
  std::string out;
  for (const auto& [k, n] : values) out += name + "{" + label + "=\"" + escape_label(k) + "\"} " + std::to_string(n) + "\n";
  return out;
}

}  // namespace

std::string escape_label(const std::string& value) {
  // The text exposition format: backslash, double quote and line feed are escaped in label values.
  std::string out;
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

const std::vector<double>& Metrics::bounds() {
  static const std::vector<double> b{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  return b;
}

void Metrics::request(const std::string& endpoint, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{endpoint, status}];
  auto& h = latency_[endpoint];
  if (h.buckets.empty()) h.buckets.assign(bounds().size(), 0);
  for (size_t i = 0; i < bounds().size(); ++i)
    if (seconds <= bounds()[i]) ++h.buckets[i];
  ++h.count;
  h.sum += seconds;
}

void Metrics::batch(const BatchStats& b) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++batches_[b.failed ? "failed" : "ok"];
  batched_requests_[b.failed ? "failed" : "ok"] += b.requests;
  if (b.failed) return;
  const auto& names = b.snapshot->teacher_names;
  const auto counts = b.selected.to(torch::kLong).sum(0);
  int64_t of_modality = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    routed_[names[i]] += counts[int64_t(i)].item<int64_t>();
    if (i < b.teacher_rows.size()) encoded_[names[i]] += b.teacher_rows[i];
  }
  for (const auto& t : b.snapshot->system->teachers()) of_modality += to_string(t.teacher->modality()) == b.modality;
  dense_rows_ += of_modality * b.rows;
}

void Metrics::swap(bool ok) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++(ok ? swaps_ : failed_swaps_);
}

std::string Metrics::text(const std::string& version) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out = header("nexus_requests_total", "counter", "Requests answered, by endpoint and HTTP status.");
  for (const auto& [key, n] : requests_)
    out += "nexus_requests_total{endpoint=\"" + escape_label(key.first) + "\",code=\"" + std::to_string(key.second) + "\"} " +
           std::to_string(n) + "\n";
  out += header("nexus_request_seconds", "histogram", "Request latency.");
  for (const auto& [endpoint, h] : latency_) {
    const std::string labels = "{endpoint=\"" + escape_label(endpoint) + "\"";
    for (size_t i = 0; i < bounds().size(); ++i)
      out += "nexus_request_seconds_bucket" + labels + ",le=\"" + number(bounds()[i]) + "\"} " + std::to_string(h.buckets[i]) + "\n";
    out += "nexus_request_seconds_bucket" + labels + ",le=\"+Inf\"} " + std::to_string(h.count) + "\n";
    out += "nexus_request_seconds_sum" + labels + "} " + number(h.sum) + "\n";
    out += "nexus_request_seconds_count" + labels + "} " + std::to_string(h.count) + "\n";
  }
  out += header("nexus_tower_routed_total", "counter", "Inputs routed to each tower (selected by the router).");
  out += counters("nexus_tower_routed_total", "tower", routed_);
  out += header("nexus_teacher_rows_total", "counter", "Inputs each teacher encoded.");
  out += counters("nexus_teacher_rows_total", "teacher", encoded_);
  int64_t encoded = 0;
  for (const auto& [t, n] : encoded_) encoded += n;
  out += header("nexus_teacher_rows_saved_total", "counter", "Teacher forwards sparse routing avoided (dense minus encoded).");
  out += "nexus_teacher_rows_saved_total " + std::to_string(dense_rows_ - encoded) + "\n";
  out += header("nexus_batches_total", "counter", "Forwards run by the micro-batcher (failed: retried request by request).");
  out += counters("nexus_batches_total", "result", batches_);
  out += header("nexus_batched_requests_total", "counter", "Requests those forwards carried (a failed batch's are retried alone).");
  out += counters("nexus_batched_requests_total", "result", batched_requests_);
  out += header("nexus_swaps_total", "counter", "Runs swapped in.") + "nexus_swaps_total " + std::to_string(swaps_) + "\n";
  out += header("nexus_swaps_rejected_total", "counter", "Swaps refused (load or smoke check failed).") +
         "nexus_swaps_rejected_total " + std::to_string(failed_swaps_) + "\n";
  out += header("nexus_serving_info", "gauge", "The run being served.") + "nexus_serving_info{version=\"" + escape_label(version) + "\"} 1\n";
  return out;
}

}  // namespace nexus::serving
