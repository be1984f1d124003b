#include "nexus/serving/http.hpp"

#include <httplib.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <ostream>
#include <set>
#include <thread>

#include "http_connection.hpp"
#include "nexus/base/errors.hpp"
#include "nexus/serving/service.hpp"

namespace nexus::serving {

extern const char* const kOpenApiJson;  // docs/openapi.json, embedded at build time (openapi.cpp)

namespace {

using detail::current_connection;

// Set by the signal handlers, acted on by the watcher thread: a handler may only touch atomics.
std::atomic<bool> g_stop{false}, g_hangup{false};

void reply(httplib::Response& res, const Reply& r) {
  res.status = r.status;
  if (r.status == 503) res.set_header("Retry-After", "1");
  // Error messages may quote the request's bytes: never let invalid UTF-8 turn a 400 into a 500.
  res.set_content(r.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

Reply error(int status, const std::string& message) { return {status, {{"error", message}}}; }

// Ends the connection after this response: the client's body, or the rest of it, is unread.
void close_after(httplib::Response& res) {
  res.set_header("Connection", "close");
  if (auto* c = current_connection()) c->close_after_response();
}

// The body of a POST, read through a counter: no more than max_body bytes, counted after
// decompression, are ever held. Returns the answer to give instead when the body is refused.
std::optional<Reply> read_body(const httplib::Request& req, const httplib::ContentReader& reader, std::size_t max_body,
                               std::string& body) {
  // Bodies are JSON. Form and multipart bodies would be parsed by cpp-httplib as forms first.
  const auto type = req.get_header_value("Content-Type");
  if (!type.empty() && type.substr(0, type.find(';')) != "application/json")
    return error(415, "unsupported Content-Type '" + type.substr(0, 80) + "' (send the body as application/json)");
  // Two lengths, or a length beside chunked transfer, are how requests are smuggled past proxies
  // that read them differently (RFC 9112, 6.3): refused rather than guessed.
  if (req.get_header_value_count("Content-Length") > 1 ||
      (req.has_header("Content-Length") && req.has_header("Transfer-Encoding")))
    return error(400, "conflicting body lengths: one Content-Length, or chunked transfer, not both or two");
  // Exactly the codings cpp-httplib decodes; anything else would reach the JSON parser encoded.
  const auto coding = req.get_header_value("Content-Encoding");
  if (!coding.empty() && coding != "identity" && coding != "gzip" && coding != "deflate" && coding != "br")
    return error(415, "unsupported Content-Encoding '" + coding + "' (this server takes identity, gzip, deflate or br)");
  const auto transfer = req.get_header_value("Transfer-Encoding");
  const bool chunked = transfer == "chunked";
  if (!transfer.empty() && !chunked)
    return error(415, "unsupported Transfer-Encoding '" + transfer + "' (this server takes chunked)");
  if (!chunked) {
    if (!req.has_header("Content-Length")) return error(411, "a request body needs a Content-Length or chunked transfer");
    const auto declared = req.get_header_value("Content-Length");
    if (declared.empty() || declared.size() > 19 || declared.find_first_not_of("0123456789") != std::string::npos)
      return error(400, "invalid Content-Length '" + declared.substr(0, 40) + "'");
    if (std::stoull(declared) > max_body)
      return error(413, "the body is " + declared + " bytes; this server takes at most " + std::to_string(max_body) +
                            " (--max-body)");
  }
  bool too_big = false;
  const bool whole = reader([&](const char* data, std::size_t n) {
    if (body.size() + n > max_body) return !(too_big = true);
    body.append(data, n);
    return true;
  });
  if (too_big)
    return error(413, "the body is larger than " + std::to_string(max_body) +
                          " bytes once decoded; this server takes at most that (--max-body)");
  auto* connection = current_connection();
  if (!whole) {
    if (connection && connection->timed_out()) return error(408, "the body did not arrive in time");
    return error(400, "the body could not be read (malformed chunked transfer or compressed data, or the client went away)");
  }
  if (connection) connection->start_handling();
  return std::nullopt;
}

// At most `limit` holders at once; the rest are told the server is busy instead of waiting.
class Slot {
 public:
  Slot(std::atomic<int>& inflight, int limit) : inflight_(inflight), held_(++inflight <= limit) {
    if (!held_) --inflight_;
  }
  ~Slot() {
    if (held_) --inflight_;
  }
  explicit operator bool() const { return held_; }

 private:
  std::atomic<int>& inflight_;
  bool held_;
};

struct Routes {
  Service& service;
  HttpLimits limits;
  std::atomic<int> inflight{0};
  const std::set<std::string> get_paths{"/healthz", "/readyz", "/metrics", "/openapi.json"};
  const std::set<std::string> post_paths{"/v1/predict", "/v1/embed", "/admin/swap"};

  // A POST endpoint: a worker slot, the body read within its limits, then the handler.
  void post(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
            const std::string& endpoint, const std::function<Reply(const std::string&)>& handler) {
    const int limit = limits.max_inflight > 0 ? limits.max_inflight : std::max(1, limits.threads - 4);
    Slot slot(inflight, limit);
    std::string body;
    std::optional<Reply> refused;
    if (!slot) refused = error(503, "the server is busy: " + std::to_string(limit) + " requests are being served; retry shortly");
    else refused = read_body(req, reader, limits.max_body, body);
    if (refused) close_after(res);
    reply(res, service.answer(endpoint, [&] { return refused ? *refused : handler(body); }));
  }

  // Unknown paths and methods are answered before anything reads a body (cpp-httplib would read
  // the whole body of a POST to an unknown path first).
  httplib::Server::HandlerResponse screen(const httplib::Request& req, httplib::Response& res) {
    const bool get = get_paths.count(req.path), post = post_paths.count(req.path);
    if ((get && (req.method == "GET" || req.method == "HEAD")) || (post && req.method == "POST"))
      return httplib::Server::HandlerResponse::Unhandled;
    if (get || post) res.set_header("Allow", get ? "GET, HEAD" : "POST");
    close_after(res);
    reply(res, get || post ? error(405, "method " + req.method + " is not allowed on " + req.path)
                           : error(404, "no such endpoint (see GET /openapi.json)"));
    return httplib::Server::HandlerResponse::Handled;
  }

  void install(httplib::Server& srv) {
    srv.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) { return screen(req, res); });
    const auto get = [this](const std::string& name, Reply (Service::*endpoint)() const) {
      return [this, name, endpoint](const httplib::Request&, httplib::Response& res) {
        reply(res, service.answer(name, [&] { return (service.*endpoint)(); }));
      };
    };
    srv.Get("/healthz", get("healthz", &Service::healthz));
    srv.Get("/readyz", get("readyz", &Service::readyz));
    srv.Get("/metrics", [this, &srv](const httplib::Request&, httplib::Response& res) {
      const auto& guarded = static_cast<const detail::GuardedServer&>(srv);
      res.set_content(service.metrics_text() +
                          "# HELP nexus_http_connections_rejected_total Connections answered 503 at once: every worker "
                          "busy and the queue full.\n# TYPE nexus_http_connections_rejected_total counter\n"
                          "nexus_http_connections_rejected_total " + std::to_string(guarded.rejected()) + "\n",
                      "text/plain; version=0.0.4");
    });
    srv.Get("/openapi.json", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kOpenApiJson, "application/json");
    });
    const auto post_route = [this](const std::string& name, std::function<Reply(const httplib::Request&, const std::string&)> handler) {
      return [this, name, handler](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
        post(req, res, reader, name, [&](const std::string& body) { return handler(req, body); });
      };
    };
    srv.Post("/v1/predict", post_route("predict", [this](const httplib::Request&, const std::string& b) { return service.predict(b); }));
    srv.Post("/v1/embed", post_route("embed", [this](const httplib::Request&, const std::string& b) { return service.embed(b); }));
    srv.Post("/admin/swap", post_route("swap", [this](const httplib::Request& req, const std::string& b) {
               return service.swap(b, req.get_header_value("Authorization"));
             }));
    srv.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      reply(res, error(500, "internal error (logged by the server)"));
    });
    // cpp-httplib's own answers (a malformed request line, an unknown method, a URI over 8 KiB) get
    // a JSON body too, and end the connection: the rest of what the client sent is not a request.
    srv.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      close_after(res);
      reply(res, error(res.status, "malformed request (" + std::to_string(res.status) + ")"));
    });
  }
};

void on_signal(int sig) { (sig == SIGHUP ? g_hangup : g_stop) = true; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

}  // namespace

void check_limits(const HttpLimits& l) {
  const auto need = [](bool ok, const std::string& what) {
    if (!ok) throw InputError(what);
  };
  need(l.max_body >= 1, "--max-body must be at least 1 byte");
  need(l.max_header_bytes >= 1024, "--max-header-bytes must be at least 1024");
  need(l.header_timeout_s > 0 && l.header_timeout_s <= 3600, "--header-timeout must be between 0 and 3600 seconds");
  need(l.body_timeout_s > 0 && l.body_timeout_s <= 3600, "--body-timeout must be between 0 and 3600 seconds");
  need(l.idle_timeout_s > 0 && l.idle_timeout_s <= 3600, "--idle-timeout must be between 0 and 3600 seconds");
  need(l.threads >= 2 && l.threads <= 1024, "--threads must be between 2 and 1024");
  need(l.max_queue >= 1 && l.max_queue <= 65536, "--max-queue must be between 1 and 65536");
  need(l.max_inflight >= 0 && l.max_inflight <= l.threads, "--max-inflight must be between 0 (threads - 4) and --threads");
}

void serve_http(Service& service, const HttpOptions& options, std::ostream& announce) {
  check_limits(options.limits);
  detail::GuardedServer srv(options.limits);
  srv.set_tcp_nodelay(true);
  Routes routes{service, options.limits};
  routes.install(srv);
  const int bound = options.port == 0 ? srv.bind_to_any_port(options.host)
                                      : (srv.bind_to_port(options.host, options.port) ? options.port : -1);
  if (bound < 0) throw RuntimeFailure("cannot listen on " + options.host + ":" + std::to_string(options.port));
  announce << "nexus serve: " << service.snapshot()->version << " on http://" << options.host << ":" << bound << "\n"
           << std::flush;
  install_signal_handlers();
  std::atomic<bool> listening_done{false};
  std::thread watcher([&] {
    while (!listening_done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (g_stop) srv.stop();  // again on every tick: a stop that came before listen began is not lost
      if (!g_hangup.exchange(false)) continue;
      try {
        service.swap_to(options.watch_dir, {});
      } catch (const std::exception& e) {
        spdlog::error("SIGHUP: {}", e.what());
      }
    }
  });
  srv.listen_after_bind();
  listening_done = true;
  watcher.join();
}

}  // namespace nexus::serving
