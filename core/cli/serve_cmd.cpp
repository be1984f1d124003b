// nexus serve RUN: the composed system behind an HTTP/JSON API (cpp-httplib), with an admin
// endpoint that swaps in another run atomically.
#include <httplib.h>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "cli.hpp"
#include "nexus/config/composition.hpp"
#include "nexus/core/evaluation.hpp"
#include "nexus/core/incremental.hpp"
#include "nexus/core/serving.hpp"
#include "nexus/core/system.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace nexus::cli {

namespace {

using Clock = std::chrono::steady_clock;

// Bad request content: answered with this status and message, never a crash.
struct RequestError : std::runtime_error {
  int status;
  RequestError(int s, const std::string& m) : std::runtime_error(m), status(s) {}
};

using serving::Snapshot;

// A run folder as recorded by `nexus train`: its composition with the run's overrides.
serving::RunSource run_source(const std::string& dir, const registry::Registry& reg) {
  const auto info = read_run_info(dir);
  // A symlink names its target: the version says which run really served.
  return {fs::weakly_canonical(fs::absolute(dir)).string(),
          config::load_composition(info.composition, info.overrides, plugin_catalog(reg))};
}

// Per-endpoint counters and latency histograms, in Prometheus text format.
class Metrics {
 public:
  void request(const std::string& endpoint, int status, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++requests_[{endpoint, status}];
    auto& h = latency_[endpoint];
    if (h.buckets.empty()) h.buckets.assign(kBounds.size(), 0);
    for (size_t i = 0; i < kBounds.size(); ++i)
      if (seconds <= kBounds[i]) ++h.buckets[i];
    ++h.count;
    h.sum += seconds;
  }
  // Batch sizes in requests, and inputs each tower was routed; teacher rows encoded vs dense.
  void batch(const serving::BatchStats& b) {
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
  void swap(bool ok) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++(ok ? swaps_ : failed_swaps_);
  }
  std::string text(const std::string& version) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out = "# HELP nexus_requests_total Requests answered, by endpoint and HTTP status.\n"
                      "# TYPE nexus_requests_total counter\n";
    for (const auto& [key, n] : requests_)
      out += "nexus_requests_total{endpoint=\"" + key.first + "\",code=\"" + std::to_string(key.second) + "\"} " +
             std::to_string(n) + "\n";
    out += "# HELP nexus_request_seconds Request latency.\n# TYPE nexus_request_seconds histogram\n";
    for (const auto& [endpoint, h] : latency_) {
      for (size_t i = 0; i < kBounds.size(); ++i)
        out += "nexus_request_seconds_bucket{endpoint=\"" + endpoint + "\",le=\"" + fmt(kBounds[i]) + "\"} " +
               std::to_string(h.buckets[i]) + "\n";
      out += "nexus_request_seconds_bucket{endpoint=\"" + endpoint + "\",le=\"+Inf\"} " + std::to_string(h.count) + "\n";
      out += "nexus_request_seconds_sum{endpoint=\"" + endpoint + "\"} " + fmt(h.sum) + "\n";
      out += "nexus_request_seconds_count{endpoint=\"" + endpoint + "\"} " + std::to_string(h.count) + "\n";
    }
    out += "# HELP nexus_tower_routed_total Inputs routed to each tower (selected by the router).\n"
           "# TYPE nexus_tower_routed_total counter\n";
    for (const auto& [t, n] : routed_) out += "nexus_tower_routed_total{tower=\"" + t + "\"} " + std::to_string(n) + "\n";
    out += "# HELP nexus_teacher_rows_total Inputs each teacher encoded.\n# TYPE nexus_teacher_rows_total counter\n";
    int64_t encoded = 0;
    for (const auto& [t, n] : encoded_) {
      out += "nexus_teacher_rows_total{teacher=\"" + t + "\"} " + std::to_string(n) + "\n";
      encoded += n;
    }
    out += "# HELP nexus_teacher_rows_saved_total Teacher forwards sparse routing avoided (dense minus encoded).\n"
           "# TYPE nexus_teacher_rows_saved_total counter\nnexus_teacher_rows_saved_total " +
           std::to_string(dense_rows_ - encoded) + "\n";
    out += "# HELP nexus_batches_total Forwards run by the micro-batcher (failed: retried request by request).\n"
           "# TYPE nexus_batches_total counter\n";
    for (const auto& [k, n] : batches_) out += "nexus_batches_total{result=\"" + k + "\"} " + std::to_string(n) + "\n";
    out += "# HELP nexus_batched_requests_total Requests those forwards carried (a failed batch's are retried alone).\n"
           "# TYPE nexus_batched_requests_total counter\n";
    for (const auto& [k, n] : batched_requests_)
      out += "nexus_batched_requests_total{result=\"" + k + "\"} " + std::to_string(n) + "\n";
    out += "# HELP nexus_swaps_total Runs swapped in.\n# TYPE nexus_swaps_total counter\nnexus_swaps_total " +
           std::to_string(swaps_) + "\n";
    out += "# HELP nexus_swaps_rejected_total Swaps refused (load or smoke check failed).\n"
           "# TYPE nexus_swaps_rejected_total counter\nnexus_swaps_rejected_total " + std::to_string(failed_swaps_) + "\n";
    out += "# HELP nexus_serving_info The run being served.\n# TYPE nexus_serving_info gauge\nnexus_serving_info{version=\"" +
           version + "\"} 1\n";
    return out;
  }

 private:
  static std::string fmt(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return b;
  }
  struct Histogram {
    std::vector<int64_t> buckets;
    int64_t count = 0;
    double sum = 0;
  };
  inline static const std::vector<double> kBounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, int64_t> routed_, encoded_;
  int64_t dense_rows_ = 0;
  std::map<std::string, int64_t> batches_, batched_requests_;
  int64_t swaps_ = 0, failed_swaps_ = 0;
};

nlohmann::json parse_body(const httplib::Request& req) {
  try {
    auto j = nlohmann::json::parse(req.body);
    if (!j.is_object()) throw RequestError(400, "the body must be a JSON object");
    return j;
  } catch (const nlohmann::json::parse_error& e) {
    throw RequestError(400, std::string("malformed JSON: ") + e.what());
  }
}

constexpr int64_t kMaxBatch = 256;

// The request's inputs as a teacher batch for the task's modality.
TeacherInput read_inputs(const Snapshot& s, const std::string& modality, const nlohmann::json& body) {
  const auto it = body.find("inputs");
  if (it == body.end() || !it->is_array() || it->empty())
    throw RequestError(400, "'inputs' must be a non-empty array (texts, or images as arrays of numbers)");
  if (int64_t(it->size()) > kMaxBatch)
    throw RequestError(400, "at most " + std::to_string(kMaxBatch) + " inputs per request, got " + std::to_string(it->size()));
  TeacherInput in;
  if (modality == "text") {
    for (const auto& x : *it) {
      if (!x.is_string()) throw RequestError(400, "'inputs' of a text task must be strings");
      in.texts.push_back(x.get<std::string>());
    }
    return in;
  }
  const auto& shape = s.sample_shape.at(modality);
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  std::vector<float> values;
  values.reserve(size_t(numel) * it->size());
  for (const auto& x : *it) {
    const auto before = values.size();
    std::function<void(const nlohmann::json&)> flatten = [&](const nlohmann::json& v) {
      if (v.is_array()) {
        for (const auto& e : v) flatten(e);
      } else if (v.is_number()) {
        values.push_back(v.get<float>() / 255.0f);  // pixel values 0-255, as in the datasets
      } else {
        throw RequestError(400, "an image must be an array of numbers (0-255)");
      }
    };
    flatten(x);
    if (int64_t(values.size() - before) != numel) {
      std::string want;
      for (auto d : shape) want += (want.empty() ? "" : "x") + std::to_string(d);
      throw RequestError(400, "an image must have " + std::to_string(numel) + " values (" + want + "), got " +
                                  std::to_string(values.size() - before));
    }
  }
  std::vector<int64_t> full{int64_t(it->size())};
  full.insert(full.end(), shape.begin(), shape.end());
  in.tensor = torch::from_blob(values.data(), full, torch::kFloat).clone();
  if (!in.tensor.isfinite().all().item<bool>()) throw RequestError(400, "an image holds a non-finite value");
  return in;
}

}  // namespace

int cmd_serve(const Globals& g, const std::vector<std::string>& args) {
  std::string run_dir, host = "127.0.0.1", token_file, watch_dir;
  int port = 8080;
  size_t max_body = 8 << 20;
  int64_t max_batch_rows = 64;
  double max_delay_ms = 2;
  std::string routing = "sparse", device;
  po::options_description opts(
      "Usage: nexus serve RUN [--port N] [--host ADDR] [--admin-token-file F] [--watch DIR]\n\n"
      "Serves a trained run over HTTP/JSON (loopback by default):\n"
      "  POST /v1/predict  {\"task\": T, \"inputs\": [...], \"routing\": false}  -> per input the label and scores\n"
      "  POST /v1/embed    {\"task\": T, \"inputs\": [...]}                       -> shared-space vectors\n"
      "  GET  /healthz, /readyz, /metrics (Prometheus text)\n"
      "  POST /admin/swap  {\"run\": DIR}   swap in another run atomically (needs the admin token as\n"
      "                    'Authorization: Bearer TOKEN'; the token comes from --admin-token-file or\n"
      "                    $NEXUS_ADMIN_TOKEN, and without one the admin endpoints are off)\n"
      "                    {\"run\": DIR, \"components\": [\"tower.X\", ...]}  swap in only those components\n"
      "                    of DIR (tower.X, norm.X, router, head.H, or teacher.X with its norm and tower)\n"
      "Text inputs are strings; images are arrays of pixel values 0-255 in the teacher's input shape.\n"
      "Every response names the run version that served it. SIGHUP re-reads the --watch folder and\n"
      "swaps it in the same way. Concurrent requests for the same task are micro-batched into one\n"
      "forward (--max-batch, --max-delay-ms); an input that makes a teacher fail fails its own request.\n\nOptions");
  opts.add_options()("port", po::value(&port)->default_value(port), "TCP port (0 = any free port, printed on start)")
      ("host", po::value(&host)->default_value(host), "address to bind (loopback by default)")
      ("admin-token-file", po::value(&token_file), "file holding the admin token")
      ("max-body", po::value(&max_body)->default_value(max_body), "largest request body in bytes (larger: 413)")
      ("watch", po::value(&watch_dir), "run folder re-read on SIGHUP (default: RUN)")
      ("max-batch", po::value(&max_batch_rows)->default_value(max_batch_rows), "micro-batching: most inputs per forward")
      ("max-delay-ms", po::value(&max_delay_ms)->default_value(max_delay_ms), "micro-batching: longest a request waits for company")
      ("device", po::value(&device), "auto, cpu, cuda or cuda:N (default: the composition's device, auto)")
      ("routing", po::value(&routing)->default_value(routing),
       "sparse: a teacher encodes only the inputs routed to it (when the router reads a teacher's features);\n"
       "dense: every teacher encodes every input (same outputs; for comparison)");
  if (!parse_command(args, opts, {{"run", &run_dir}})) return kOk;
  if (run_dir.empty()) throw UsageError("serve needs a RUN folder (written by `nexus train`)");
  if (watch_dir.empty()) watch_dir = run_dir;
  if (routing != "sparse" && routing != "dense") throw UsageError("--routing must be sparse or dense, got '" + routing + "'");
  if (max_batch_rows < 1) throw UsageError("--max-batch must be at least 1");
  if (!(max_delay_ms >= 0 && max_delay_ms <= 1000)) throw UsageError("--max-delay-ms must be between 0 and 1000");
  std::string token;
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in) throw UsageError("cannot read the admin token file " + token_file);
    in >> token;
    if (token.empty()) throw UsageError("the admin token file " + token_file + " is empty");
  } else if (const char* env = std::getenv("NEXUS_ADMIN_TOKEN")) {
    token = env;
  }

  // Each swap scans the plugin path again, so an adapter dropped in after start is found. Every
  // registry is parked for the server's lifetime: plugin code is never unmapped while anything
  // made by it (modules, exceptions, type_info) may still be in use by a request in flight.
  std::vector<std::shared_ptr<const registry::Registry>> parked{std::make_shared<const registry::Registry>(scanned_registry(g))};
  serving::Recipe first;
  first.base = run_source(run_dir, *parked[0]);
  first.device = device;
  std::shared_ptr<const Snapshot> current = serving::load_snapshot(first, parked[0]);
  spdlog::info("serving {} on {}", current->version, current->device);
  auto snapshot = [&] { return std::atomic_load(&current); };
  std::mutex swap_mutex;
  Metrics metrics;
  serving::MicroBatcher batcher({max_batch_rows, std::chrono::microseconds(int64_t(max_delay_ms * 1000)), routing == "dense"},
                                [&](const serving::BatchStats& b) { metrics.batch(b); });

  // Loads and smoke-checks a run, or components of one over the current snapshot, then swaps it
  // in; on failure the current snapshot keeps serving. Returns the previous and the new version.
  auto swap_to = [&](const std::string& dir, const std::vector<std::string>& components) -> std::pair<std::string, std::string> {
    std::lock_guard<std::mutex> lock(swap_mutex);  // one swap at a time; requests go on meanwhile
    std::shared_ptr<const Snapshot> next;
    try {
      parked.push_back(std::make_shared<const registry::Registry>(scanned_registry(g)));
      const auto& reg = parked.back();
      serving::Recipe recipe;
      if (components.empty()) {
        recipe.base = run_source(dir, *reg);
        recipe.device = device;
      } else {
        recipe = snapshot()->recipe;
        recipe.overlays.push_back({run_source(dir, *reg), components});
      }
      next = serving::load_snapshot(std::move(recipe), reg);
    } catch (const std::exception& e) {
      metrics.swap(false);
      throw RequestError(422, "swap rejected, still serving " + snapshot()->version + ": " + e.what());
    }
    const auto previous = snapshot()->version;
    std::atomic_store(&current, next);
    metrics.swap(true);
    spdlog::info("swapped {} -> {}", previous, next->version);
    return {previous, next->version};
  };

  httplib::Server srv;
  srv.set_payload_max_length(max_body);
  srv.set_tcp_nodelay(true);  // small JSON replies: without it, Nagle + delayed ACK add ~40 ms each
  auto reply = [](httplib::Response& res, int status, const nlohmann::json& j) {
    res.status = status;
    // Error messages may quote the request's bytes: never let invalid UTF-8 turn a 400 into a 500.
    res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
  };
  // Every JSON endpoint: timed, counted, and bad input answered with its status and a message.
  auto endpoint = [&](const std::string& name, auto handler) {
    return [&, name, handler](const httplib::Request& req, httplib::Response& res) {
      const auto start = Clock::now();
      try {
        handler(req, res);
      } catch (const RequestError& e) {
        reply(res, e.status, {{"error", e.what()}});
      } catch (const std::exception& e) {
        spdlog::error("{}: {}", name, e.what());
        reply(res, 500, {{"error", std::string("internal error: ") + e.what()}});
      }
      metrics.request(name, res.status, std::chrono::duration<double>(Clock::now() - start).count());
    };
  };
  auto run_forward = [&](const std::shared_ptr<const Snapshot>& sp, const nlohmann::json& body, std::string& task) {
    const auto& s = *sp;
    const auto t = body.find("task");
    if (t == body.end() || !t->is_string()) throw RequestError(400, "'task' (a string) is required");
    task = t->get<std::string>();
    if (!s.head_of_task.count(task)) {
      std::string known;
      for (const auto& [name, h] : s.head_of_task) known += (known.empty() ? "" : ", ") + name;
      throw RequestError(404, "unknown task '" + task + "' (this run serves " + known + ")");
    }
    const auto modality = s.modality_of_task.at(task);
    auto inputs = read_inputs(s, modality, body);
    try {
      // Batched with other requests for this snapshot and task; routed, so a teacher encodes only
      // the inputs routed to it where the router can decide first.
      return batcher.run(sp, task, std::move(inputs));
    } catch (const std::exception& e) {
      throw RequestError(422, std::string("the system could not process these inputs: ") + e.what());
    }
  };

  srv.Get("/healthz", endpoint("healthz", [&](const httplib::Request&, httplib::Response& res) {
            reply(res, 200, {{"status", "ok"}});
          }));
  srv.Get("/readyz", endpoint("readyz", [&](const httplib::Request&, httplib::Response& res) {
            const auto s = snapshot();
            reply(res, s ? 200 : 503, {{"ready", bool(s)}, {"version", s ? s->version : ""}, {"device", s ? s->device : ""}});
          }));
  srv.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.text(snapshot()->version), "text/plain; version=0.0.4");
  });
  srv.Post("/v1/predict", endpoint("predict", [&](const httplib::Request& req, httplib::Response& res) {
             const auto body = parse_body(req);
             const auto s = snapshot();  // this request is served by this snapshot, whatever swaps meanwhile
             std::string task;
             const auto r = run_forward(s, body, task);
             const auto probs = torch::softmax(r.heads.at(s->head_of_task.at(task)), 1);
             const auto& names = s->teacher_names;
             nlohmann::json preds = nlohmann::json::array();
             for (int64_t i = 0; i < probs.size(0); ++i) {
               const auto row = probs[i].contiguous();
               const std::vector<float> scores(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
               nlohmann::json p{{"label", row.argmax().item<int64_t>()}, {"scores", scores}};
               if (body.value("routing", false)) {
                 nlohmann::json w = nlohmann::json::object();
                 for (size_t k = 0; k < names.size(); ++k) w[names[k]] = r.weights[i][int64_t(k)].item<double>();
                 p["routing"] = w;
               }
               preds.push_back(p);
             }
             reply(res, 200, {{"version", s->version}, {"task", task}, {"predictions", preds}});
           }));
  srv.Post("/v1/embed", endpoint("embed", [&](const httplib::Request& req, httplib::Response& res) {
             const auto body = parse_body(req);
             const auto s = snapshot();
             std::string task;
             const auto r = run_forward(s, body, task);
             nlohmann::json rows = nlohmann::json::array();
             const auto z = r.shared.contiguous();
             for (int64_t i = 0; i < z.size(0); ++i)
               rows.push_back(std::vector<float>(z[i].data_ptr<float>(), z[i].data_ptr<float>() + z.size(1)));
             reply(res, 200, {{"version", s->version}, {"task", task}, {"embeddings", rows}});
           }));
  srv.Post("/admin/swap", endpoint("swap", [&](const httplib::Request& req, httplib::Response& res) {
             if (token.empty()) throw RequestError(403, "admin endpoints are off: start the server with --admin-token-file or NEXUS_ADMIN_TOKEN");
             if (req.get_header_value("Authorization") != "Bearer " + token) throw RequestError(401, "missing or wrong admin token");
             const auto body = parse_body(req);
             const auto run = body.find("run");
             if (run == body.end() || !run->is_string()) throw RequestError(400, "'run' (a run folder) is required");
             std::vector<std::string> components;
             if (const auto c = body.find("components"); c != body.end()) {
               if (!c->is_array() || c->empty() || !std::all_of(c->begin(), c->end(), [](const auto& x) { return x.is_string(); }))
                 throw RequestError(400, "'components' must be a non-empty array of names (tower.X, norm.X, router, head.H, teacher.X)");
               components = c->get<std::vector<std::string>>();
             }
             const auto [previous, next] = swap_to(run->get<std::string>(), components);
             reply(res, 200, {{"version", next}, {"previous", previous}});
           }));
  srv.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(R"({"error":"internal error"})", "application/json");
  });

  const int bound = port == 0 ? srv.bind_to_any_port(host) : (srv.bind_to_port(host, port) ? port : -1);
  if (bound < 0) throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port));
  std::cout << "nexus serve: " << snapshot()->version << " on http://" << host << ":" << bound << "\n" << std::flush;
  static httplib::Server* running = nullptr;
  static std::atomic<bool> hangup{false};
  running = &srv;
  std::signal(SIGINT, [](int) { if (running) running->stop(); });
  std::signal(SIGTERM, [](int) { if (running) running->stop(); });
  // SIGHUP: reload the watched run folder (by default the RUN given; a symlink that a deploy
  // re-points works well). The handler only raises a flag; the swap happens on this thread.
  std::signal(SIGHUP, [](int) { hangup = true; });
  std::atomic<bool> stopping{false};
  std::thread watcher([&] {
    while (!stopping) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (!hangup.exchange(false)) continue;
      try {
        swap_to(watch_dir, {});
      } catch (const std::exception& e) {
        spdlog::error("SIGHUP: {}", e.what());
      }
    }
  });
  srv.listen_after_bind();
  stopping = true;
  watcher.join();
  return kOk;
}

}  // namespace nexus::cli
