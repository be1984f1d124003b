#include "http_connection.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

namespace nexus::serving::detail {

namespace {

thread_local ConnectionStream* t_current = nullptr;
thread_local bool t_rejecting = false;  // set by BoundedPool while it runs a task it has no room for

ConnectionStream::Clock::time_point after(double seconds) {
  return ConnectionStream::Clock::now() +
         std::chrono::duration_cast<ConnectionStream::Clock::duration>(std::chrono::duration<double>(seconds));
}

void address_of(const sockaddr_storage& addr, socklen_t len, std::string& ip, int& port) {
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host;
    port = std::atoi(serv);
  }
}

}  // namespace

ConnectionStream* current_connection() { return t_current; }

bool ConnectionStream::wait(short events, Clock::time_point until) const {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, events, 0};
    const int ready = ::poll(&p, 1, int(std::min<int64_t>(left, INT_MAX)));
    if (ready < 0 && errno == EINTR) continue;
    return ready > 0;  // readiness, or an error/hang-up that the next recv/send reports
  }
}

bool ConnectionStream::wait_for_request(const std::function<bool()>& stopping) {
  phase_ = Phase::Idle;
  if (pos_ < len_) return true;  // a pipelined request is already here
  const auto until = after(limits_.idle_timeout_s);
  while (!stopping()) {
    const auto slice = std::min(until, Clock::now() + std::chrono::milliseconds(100));
    if (wait(POLLIN, slice)) return true;
    if (Clock::now() >= until) return false;
  }
  return false;
}

void ConnectionStream::start_headers() {
  phase_ = Phase::Headers;
  deadline_ = after(limits_.header_timeout_s);
  // The buffer may already hold part of the next request: it counts against the budget too.
  budget_ = limits_.max_header_bytes > len_ - pos_ ? limits_.max_header_bytes - (len_ - pos_) : 0;
}

void ConnectionStream::start_body() {
  phase_ = Phase::Body;
  deadline_ = after(limits_.body_timeout_s);
  budget_ = SIZE_MAX;  // the handler counts the body itself, after decompression
}

void ConnectionStream::start_handling() {
  phase_ = Phase::Handling;
  deadline_ = Clock::time_point::max();
}

bool ConnectionStream::is_readable() const { return pos_ < len_ || wait(POLLIN, std::min(deadline_, after(limits_.idle_timeout_s))); }

bool ConnectionStream::is_writable() const { return !dead_ && wait(POLLOUT, after(limits_.idle_timeout_s)); }

ssize_t ConnectionStream::read(char* ptr, size_t size) {
  if (dead_) return -1;
  if (pos_ == len_) {
    if (budget_ == 0 || !wait(POLLIN, std::min(deadline_, after(std::max(limits_.header_timeout_s, limits_.body_timeout_s))))) {
      // Out of time or bytes for this phase. While headers are read the client gets no answer
      // (httplib would send 400 and wait on a client that does not read): the connection closes.
      timed_out_ = budget_ != 0;
      if (phase_ == Phase::Headers) dead_ = true;
      return -1;
    }
    ssize_t n;
    do n = ::recv(fd_, buf_, std::min(sizeof buf_, budget_), 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return n;
    pos_ = 0;
    len_ = size_t(n);
    if (budget_ != SIZE_MAX) budget_ -= len_;
  }
  const size_t n = std::min(size, len_ - pos_);
  std::memcpy(ptr, buf_ + pos_, n);
  pos_ += n;
  return ssize_t(n);
}

ssize_t ConnectionStream::write(const char* ptr, size_t size) {
  if (dead_ || !wait(POLLOUT, after(limits_.idle_timeout_s))) return -1;
  ssize_t n;
  do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n;
}

void ConnectionStream::get_remote_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) address_of(addr, len, ip, port);
}

void ConnectionStream::get_local_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) address_of(addr, len, ip, port);
}

GuardedServer::GuardedServer(const HttpLimits& limits) : limits_(limits) {
  new_task_queue = [this] { return new BoundedPool(limits_.threads, limits_.max_queue); };
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  if (t_rejecting) {
    reject(sock);
    return false;
  }
  ConnectionStream stream(sock, limits_);
  t_current = &stream;
  bool ok = false;
  // A bounded number of requests per connection, as httplib does, so one client cannot keep a
  // worker for ever by pipelining.
  for (size_t left = keep_alive_max_count_; left > 0; --left) {
    if (!stream.wait_for_request([this] { return svr_sock_ == INVALID_SOCKET; })) break;
    stream.start_headers();
    bool closed = false;
    ok = process_request(stream, left == 1, closed, [&stream](httplib::Request&) { stream.start_body(); });
    if (!ok || closed || stream.closing()) break;
  }
  t_current = nullptr;
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

void GuardedServer::reject(socket_t sock) {
  ++rejected_;
  // On the accepting thread: never wait on the client. Whatever does not fit the socket buffer
  // of a fresh connection (nothing, in practice) is dropped.
  static const std::string body = R"({"error":"the server is busy: every worker is taken and the queue is full; retry shortly"})";
  static const std::string reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                                   "Connection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
  (void)!::send(sock, reply.data(), reply.size(), MSG_NOSIGNAL);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
}

BoundedPool::BoundedPool(int threads, int max_queue) : max_queue_(size_t(max_queue)) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

BoundedPool::~BoundedPool() { shutdown(); }

void BoundedPool::enqueue(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (queue_.size() < max_queue_) {
      queue_.push_back(std::move(fn));
      ready_.notify_one();
      return;
    }
  }
  t_rejecting = true;
  fn();
  t_rejecting = false;
}

void BoundedPool::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& t : threads_) t.join();
}

void BoundedPool::work() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to serve
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace nexus::serving::detail
