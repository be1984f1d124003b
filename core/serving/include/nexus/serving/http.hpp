// The service (service.hpp) over HTTP/JSON with cpp-httplib:
//   POST /v1/predict, /v1/embed, /admin/swap; GET /healthz, /readyz, /metrics (Prometheus text).
// SIGINT and SIGTERM stop the server; SIGHUP swaps in the watched run folder (a symlink that a
// deploy re-points works well). TCP_NODELAY: small JSON replies would otherwise wait ~40 ms on
// Nagle and delayed ACK.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>

namespace nexus::serving {

class Service;

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                    // 0 = any free port
  std::size_t max_body = 8 << 20;     // larger bodies: 413
  std::string watch_dir;              // re-read on SIGHUP
};

// Listens until a stop signal. Prints "nexus serve: VERSION on http://HOST:PORT" to `announce`
// once listening. Throws RuntimeFailure when it cannot listen.
void serve_http(Service& service, const HttpOptions& options, std::ostream& announce);

}  // namespace nexus::serving
