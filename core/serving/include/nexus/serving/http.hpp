// The service (service.hpp) over HTTP/JSON with cpp-httplib:
//   POST /v1/predict, /v1/embed, /admin/swap; GET /healthz, /readyz, /metrics (Prometheus text),
//   /openapi.json (the API's OpenAPI 3 description, docs/openapi.json).
// SIGINT and SIGTERM stop the server; SIGHUP swaps in the watched run folder (a symlink that a
// deploy re-points works well). The handlers only raise flags; a watcher thread acts on them.
// TCP_NODELAY: small JSON replies would otherwise wait ~40 ms on Nagle and delayed ACK.
//
// Every request is bounded before the server holds it (HttpLimits; http_connection.hpp says how):
// headers and bodies have deadlines and sizes, bodies are counted after decompression, and a
// fixed pool of workers with a bounded queue serves the connections, keeping workers free for
// /healthz, /readyz and /metrics however busy the predict endpoints are.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>

namespace nexus::serving {

class Service;

// The bounds of the HTTP front; each is a `nexus serve` flag (docs/security.md lists them).
struct HttpLimits {
  std::size_t max_body = 8 << 20;          // bytes of one body after decompression; beyond: 413
  std::size_t max_header_bytes = 64 << 10;  // request line and headers together; beyond: connection closed
  double header_timeout_s = 10;             // the whole request line and headers must arrive within this
  double body_timeout_s = 30;               // the whole body must arrive within this (after the headers); beyond: 408
  double idle_timeout_s = 5;                // a kept-alive connection waits this long for its next request
  int threads = 32;                         // worker threads, one connection each at a time
  int max_queue = 64;                       // accepted connections waiting for a worker; beyond: 503 at once
  int max_inflight = 0;                     // predict/embed/swap requests at once (0 = threads - 4); beyond: 503
};

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 = any free port
  HttpLimits limits;
  std::string watch_dir;  // re-read on SIGHUP
};

// Checks the limits (UsageError naming the flag when one is out of range).
void check_limits(const HttpLimits& limits);

// Listens until a stop signal. Prints "nexus serve: VERSION on http://HOST:PORT" to `announce`
// once listening. Throws RuntimeFailure when it cannot listen.
void serve_http(Service& service, const HttpOptions& options, std::ostream& announce);

}  // namespace nexus::serving
