// Connections of the HTTP front, bounded the way nginx and Envoy bound them.
//
// cpp-httplib 0.11 (Debian's) serves one connection per pool thread, reads headers with a
// per-recv timeout only (a client that sends a header line every few seconds holds its thread
// for ever), queues accepted connections without bound, and limits only bodies that declare a
// Content-Length (chunked and compressed bodies grow without limit). This file replaces the two
// places where that policy lives, and leaves HTTP parsing to cpp-httplib:
//  - GuardedServer runs each connection over a ConnectionStream whose reads stop at an absolute
//    deadline and byte budget: the request line and headers must arrive within header_timeout
//    and max_header_bytes (else the connection is closed, as nginx does), the body within
//    body_timeout (the POST handlers answer 408); once a handler holds the body the deadline is
//    lifted, since a forward may take its time. Keep-alive waits end after idle_timeout.
//  - BoundedPool: a fixed set of worker threads and a bounded queue. A connection that finds the
//    queue full is answered 503 at once on the accepting thread, without waiting on the client.
// The POST handlers (http.cpp) read bodies through a counting receiver, so max_body applies to
// the bytes the server holds, after decompression.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nexus/serving/http.hpp"

namespace nexus::serving::detail {

class ConnectionStream final : public httplib::Stream {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Phase { Idle, Headers, Body, Handling };

  ConnectionStream(int fd, const HttpLimits& limits) : fd_(fd), limits_(limits) {}

  // Waits up to idle_timeout for the next request's first byte; false on timeout, on the
  // client's close, or once `stopping` says so (checked every 100 ms).
  bool wait_for_request(const std::function<bool()>& stopping);
  // Phases of one request: each sets the deadline (and, for headers, the byte budget) of reads.
  void start_headers();
  void start_body();
  void start_handling();  // the handler holds the body: no read deadline from here on

  Phase phase() const { return phase_; }
  bool timed_out() const { return timed_out_; }
  // The connection must close after this response (the handler left a body unread).
  void close_after_response() { close_ = true; }
  bool closing() const { return close_; }

  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override { return fd_; }

 private:
  bool wait(short events, Clock::time_point until) const;

  int fd_;
  const HttpLimits& limits_;
  Phase phase_ = Phase::Idle;
  Clock::time_point deadline_ = Clock::time_point::max();
  size_t budget_ = SIZE_MAX;
  bool timed_out_ = false, dead_ = false, close_ = false;
  char buf_[4096];
  size_t pos_ = 0, len_ = 0;
};

// The connection this thread is serving (nullptr on other threads): handlers reach their
// connection's stream through it to lift the deadline or ask for the connection to close.
ConnectionStream* current_connection();

class GuardedServer final : public httplib::Server {
 public:
  explicit GuardedServer(const HttpLimits& limits);
  // Connections answered 503 because every worker was busy and the queue full.
  int64_t rejected() const { return rejected_; }

 private:
  bool process_and_close_socket(socket_t sock) override;
  void reject(socket_t sock);

  HttpLimits limits_;
  std::atomic<int64_t> rejected_{0};
};

// Fixed worker threads over a bounded queue (httplib::TaskQueue). When the queue is full the
// task runs at once on the caller's thread in "reject" mode: GuardedServer answers 503 and closes.
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(int threads, int max_queue);
  ~BoundedPool() override;
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

 private:
  void work();

  size_t max_queue_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace nexus::serving::detail
