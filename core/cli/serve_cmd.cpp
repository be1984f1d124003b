// nexus serve RUN: the composed system behind an HTTP/JSON API, with hot swaps (serving/).
#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>

#include "cli.hpp"
#include "nexus/base/files.hpp"
#include "nexus/serving/http.hpp"
#include "nexus/serving/service.hpp"
#include "nexus/text.hpp"

namespace po = boost::program_options;

namespace nexus::cli {

namespace {

const char* kUsage =
    "Usage: nexus serve RUN [--port N] [--host ADDR] [--admin-token-file F] [--watch DIR]\n\n"
    "Serves a trained run over HTTP/JSON (loopback by default):\n"
    "  POST /v1/predict  {\"task\": T, \"inputs\": [...], \"routing\": false}  -> per input the label and scores\n"
    "  POST /v1/embed    {\"task\": T, \"inputs\": [...]}                       -> shared-space vectors\n"
    "  GET  /healthz, /readyz, /metrics (Prometheus text), /openapi.json (this API, OpenAPI 3)\n"
    "  POST /admin/swap  {\"run\": DIR}   swap in another run atomically (needs the admin token as\n"
    "                    'Authorization: Bearer TOKEN'; the token comes from --admin-token-file or\n"
    "                    $NEXUS_ADMIN_TOKEN, and without one the admin endpoints are off)\n"
    "                    {\"run\": DIR, \"components\": [\"tower.X\", ...]}  swap in only those components\n"
    "                    of DIR (tower.X, norm.X, router, head.H, or teacher.X with its norm and tower)\n"
    "Text inputs are strings; images are arrays of pixel values 0-255 in the teacher's input shape;\n"
    "audio is a base64 WAV file (PCM or float, any rate and channel count) or {\"samples\": [-1..1],\n"
    "\"sample_rate\": Hz}, resampled to 16 kHz, each clip at most --max-audio-seconds long, and no more\n"
    "than --max-request-audio-seconds per request counted as clips x the longest clip.\n"
    "Every response names the run version that served it. SIGHUP re-reads the --watch folder and\n"
    "swaps it in the same way. Concurrent requests for the same task are micro-batched into one\n"
    "forward (--max-batch, --max-delay-ms); an input that makes a teacher fail fails its own request.\n"
    "Requests are bounded before the server holds them (docs/security.md): body size after\n"
    "decompression, header size, header and body deadlines, a fixed worker pool with a bounded queue.\n\nOptions";

struct ServeArgs {
  std::string run_dir, token_file, routing = "sparse";
  double max_delay_ms = 2;
  serving::HttpOptions http;
  serving::ServiceOptions service;
};

// The admin token: the whole file (trimmed), else $NEXUS_ADMIN_TOKEN, else none (admin
// endpoints off). Whitespace inside the file is part of the token: reading only its first word
// would turn "correct horse battery" into "correct".
std::string admin_token(const std::string& file) {
  if (file.empty()) {
    const char* env = std::getenv("NEXUS_ADMIN_TOKEN");
    return env ? trim(env) : "";
  }
  std::string token;
  try {
    token = trim(read_file(file));
  } catch (const std::exception&) {
    throw UsageError("cannot read the admin token file " + file);
  }
  if (token.empty()) throw UsageError("the admin token file " + file + " is empty");
  return token;
}

}  // namespace

int cmd_serve(const Globals& g, const std::vector<std::string>& args) {
  ServeArgs a;
  auto& batching = a.service.batching;
  auto& limits = a.http.limits;
  po::options_description opts(kUsage);
  opts.add_options()("port", po::value(&a.http.port)->default_value(a.http.port), "TCP port (0 = any free port, printed on start)")
      ("host", po::value(&a.http.host)->default_value(a.http.host), "address to bind (loopback by default)")
      ("admin-token-file", po::value(&a.token_file), "file holding the admin token")
      ("max-body", po::value(&limits.max_body)->default_value(limits.max_body), "largest request body in bytes, counted after decompression (larger: 413)")
      ("max-header-bytes", po::value(&limits.max_header_bytes)->default_value(limits.max_header_bytes), "request line and headers, in bytes (more: connection closed)")
      ("header-timeout", po::value(&limits.header_timeout_s)->default_value(limits.header_timeout_s), "seconds for a request's line and headers to arrive")
      ("body-timeout", po::value(&limits.body_timeout_s)->default_value(limits.body_timeout_s), "seconds for a request's body to arrive (later: 408)")
      ("idle-timeout", po::value(&limits.idle_timeout_s)->default_value(limits.idle_timeout_s), "seconds a kept-alive connection waits for its next request")
      ("threads", po::value(&limits.threads)->default_value(limits.threads), "worker threads (one connection each at a time)")
      ("max-queue", po::value(&limits.max_queue)->default_value(limits.max_queue), "connections waiting for a worker (more: 503 at once)")
      ("max-inflight", po::value(&limits.max_inflight)->default_value(limits.max_inflight), "predict/embed/swap requests at once, 0 = threads - 4 (more: 503)")
      ("max-audio-seconds", po::value(&a.service.audio.clip_seconds)->default_value(a.service.audio.clip_seconds), "longest audio clip a request may carry (longer: 400)")
      ("max-request-audio-seconds", po::value(&a.service.audio.request_seconds)->default_value(a.service.audio.request_seconds),
       "most audio per request, counted as clips x the longest clip (the padded batch they make; more: 400)")
      ("watch", po::value(&a.http.watch_dir), "run folder re-read on SIGHUP (default: RUN)")
      ("max-batch", po::value(&batching.max_rows)->default_value(batching.max_rows), "micro-batching: most inputs per forward")
      ("max-delay-ms", po::value(&a.max_delay_ms)->default_value(a.max_delay_ms), "micro-batching: longest a request waits for company")
      ("device", po::value(&a.service.device), "auto, cpu, cuda or cuda:N (default: the composition's device, auto)")
      ("routing", po::value(&a.routing)->default_value(a.routing),
       "sparse: a teacher encodes only the inputs routed to it (when the router reads a teacher's features);\n"
       "dense: every teacher encodes every input (same outputs; for comparison)");
  if (!parse_command(args, opts, {{"run", &a.run_dir}})) return kOk;
  if (a.run_dir.empty()) throw UsageError("serve needs a RUN folder (written by `nexus train`)");
  if (a.http.watch_dir.empty()) a.http.watch_dir = a.run_dir;
  if (a.routing != "sparse" && a.routing != "dense") throw UsageError("--routing must be sparse or dense, got '" + a.routing + "'");
  if (batching.max_rows < 1) throw UsageError("--max-batch must be at least 1");
  if (!(a.max_delay_ms >= 0 && a.max_delay_ms <= 1000)) throw UsageError("--max-delay-ms must be between 0 and 1000");
  batching.max_delay = std::chrono::microseconds(int64_t(a.max_delay_ms * 1000));
  batching.dense = a.routing == "dense";
  serving::check_limits(limits);
  const auto& audio = a.service.audio;
  if (!(audio.clip_seconds > 0 && audio.clip_seconds <= 3600 && audio.request_seconds >= audio.clip_seconds &&
        audio.request_seconds <= 36000))
    throw UsageError("--max-audio-seconds must be above 0 and at most 3600, and --max-request-audio-seconds between it and 36000");
  a.service.admin_token = admin_token(a.token_file);
  a.service.scan = [&g] { return scanned_registry(g); };

  serving::Service service(a.run_dir, a.service);
  spdlog::info("serving {} on {}", service.snapshot()->version, service.snapshot()->device);
  serving::serve_http(service, a.http, std::cout);
  return kOk;
}

}  // namespace nexus::cli
