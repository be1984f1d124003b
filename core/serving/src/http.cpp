#include "nexus/serving/http.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ostream>
#include <thread>

#include "nexus/base/errors.hpp"
#include "nexus/serving/service.hpp"

namespace nexus::serving {

namespace {

httplib::Server* running = nullptr;
std::atomic<bool> hangup{false};

void reply(httplib::Response& res, const Reply& r) {
  res.status = r.status;
  // Error messages may quote the request's bytes: never let invalid UTF-8 turn a 400 into a 500.
  res.set_content(r.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

void routes(httplib::Server& srv, Service& service) {
  auto json = [&service](const std::string& name, auto handler) {
    return [&service, name, handler](const httplib::Request& req, httplib::Response& res) {
      reply(res, service.answer(name, [&] { return handler(req); }));
    };
  };
  srv.Get("/healthz", json("healthz", [&](const httplib::Request&) { return service.healthz(); }));
  srv.Get("/readyz", json("readyz", [&](const httplib::Request&) { return service.readyz(); }));
  srv.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(service.metrics_text(), "text/plain; version=0.0.4");
  });
  srv.Post("/v1/predict", json("predict", [&](const httplib::Request& req) { return service.predict(req.body); }));
  srv.Post("/v1/embed", json("embed", [&](const httplib::Request& req) { return service.embed(req.body); }));
  srv.Post("/admin/swap", json("swap", [&](const httplib::Request& req) {
             return service.swap(req.body, req.get_header_value("Authorization"));
           }));
  srv.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(R"({"error":"internal error"})", "application/json");
  });
}

}  // namespace

void serve_http(Service& service, const HttpOptions& options, std::ostream& announce) {
  httplib::Server srv;
  srv.set_payload_max_length(options.max_body);
  srv.set_tcp_nodelay(true);
  routes(srv, service);
  const int bound = options.port == 0 ? srv.bind_to_any_port(options.host)
                                      : (srv.bind_to_port(options.host, options.port) ? options.port : -1);
  if (bound < 0) throw RuntimeFailure("cannot listen on " + options.host + ":" + std::to_string(options.port));
  announce << "nexus serve: " << service.snapshot()->version << " on http://" << options.host << ":" << bound << "\n"
           << std::flush;
  running = &srv;
  std::signal(SIGINT, [](int) { if (running) running->stop(); });
  std::signal(SIGTERM, [](int) { if (running) running->stop(); });
  // The handler only raises a flag; the swap happens on the watcher thread.
  std::signal(SIGHUP, [](int) { hangup = true; });
  std::atomic<bool> stopping{false};
  std::thread watcher([&] {
    while (!stopping) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (!hangup.exchange(false)) continue;
      try {
        service.swap_to(options.watch_dir, {});
      } catch (const std::exception& e) {
        spdlog::error("SIGHUP: {}", e.what());
      }
    }
  });
  srv.listen_after_bind();
  stopping = true;
  watcher.join();
  running = nullptr;
}

}  // namespace nexus::serving
