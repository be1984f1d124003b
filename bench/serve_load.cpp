// nexus-serve-load: drives `nexus serve` with concurrent keep-alive clients and checks that
// every answer agrees with the other answers of the same version, so that a hot swap which
// mixes two runs inside one response (or serves a half-loaded run) shows up as a count.

#include <httplib.h>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace po = boost::program_options;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Prediction {
  json label;  // compared as JSON so that any label type the server emits works
  std::vector<double> scores;
};
using Predictions = std::vector<Prediction>;

// Throws on anything that is not an array of {label, scores}: a malformed answer is a failure,
// not a mismatch.
Predictions parse_predictions(const json& j) {
  const json& arr = j.at("predictions");
  if (!arr.is_array()) throw std::runtime_error("predictions is not an array");
  Predictions out;
  for (const auto& p : arr) {
    Prediction pred{p.at("label"), {}};
    for (const auto& s : p.at("scores")) pred.scores.push_back(s.get<double>());
    out.push_back(std::move(pred));
  }
  return out;
}

// Empty when equal, else the first difference (kept as an example error).
std::string compare(const Predictions& got, const Predictions& want, double tol) {
  if (got.size() != want.size())
    return "predictions: " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i].label != want[i].label)
      return "prediction " + std::to_string(i) + ": label " + got[i].label.dump() + " vs " + want[i].label.dump();
    if (got[i].scores.size() != want[i].scores.size())
      return "prediction " + std::to_string(i) + ": " + std::to_string(got[i].scores.size()) + " vs " +
             std::to_string(want[i].scores.size()) + " scores";
    for (std::size_t k = 0; k < got[i].scores.size(); ++k)
      // Written so that a NaN on either side counts as a difference.
      if (!(std::fabs(got[i].scores[k] - want[i].scores[k]) <= tol))
        return "prediction " + std::to_string(i) + " score " + std::to_string(k) + ": " +
               std::to_string(got[i].scores[k]) + " vs " + std::to_string(want[i].scores[k]);
  }
  return {};
}

// Expected predictions per (version, body index): fixed when read from --reference, otherwise
// learnt from the first answer seen, which every thread may be racing to provide.
class Reference {
 public:
  Reference(double tol, bool fixed) : tol_(tol), fixed_(fixed) {}

  void add(const std::string& version, std::size_t body, Predictions p) {
    table_[{version, body}] = std::move(p);
  }

  enum class Verdict { consistent, mismatched, unknown_version };

  Verdict check(const std::string& version, std::size_t body, Predictions got, std::string& why) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = table_.find({version, body});
    if (it == table_.end()) {
      if (fixed_) {
        why = "no reference for version " + version + ", body " + std::to_string(body);
        return Verdict::unknown_version;
      }
      table_.emplace(std::make_pair(version, body), std::move(got));
      return Verdict::consistent;
    }
    why = compare(got, it->second, tol_);
    if (why.empty()) return Verdict::consistent;
    why = "version " + version + ", body " + std::to_string(body) + ": " + why;
    return Verdict::mismatched;
  }

 private:
  double tol_;
  bool fixed_;
  std::mutex mu_;
  std::map<std::pair<std::string, std::size_t>, Predictions> table_;
};

// Per-thread tallies, merged after the join so the request loop shares nothing but the
// request budget and the reference.
struct Stats {
  std::uint64_t requests = 0, ok = 0, failed = 0, mismatched = 0, unknown_version = 0;
  std::vector<double> ok_latency_ms;
  std::map<std::string, std::uint64_t> by_version;
  std::map<int, std::uint64_t> by_status;
  std::vector<std::string> errors;

  void error(std::string e) {
    // Distinct examples say more than five copies of the same one.
    if (errors.size() < kMaxErrors && std::find(errors.begin(), errors.end(), e) == errors.end())
      errors.push_back(std::move(e));
  }
  void merge(Stats& o) {
    requests += o.requests, ok += o.ok, failed += o.failed;
    mismatched += o.mismatched, unknown_version += o.unknown_version;
    ok_latency_ms.insert(ok_latency_ms.end(), o.ok_latency_ms.begin(), o.ok_latency_ms.end());
    for (auto& [v, n] : o.by_version) by_version[v] += n;
    for (auto& [s, n] : o.by_status) by_status[s] += n;
    for (auto& e : o.errors) error(std::move(e));
  }
  static constexpr std::size_t kMaxErrors = 5;
};

struct Options {
  std::string host, bodies_file, path, reference_file;
  int port = 0, threads = 2;
  double duration = 0, tolerance = 1e-3, timeout = 30;
  // Signed so that a negative --requests is rejected rather than wrapped to a huge count.
  std::int64_t requests = 0;
  bool json_out = false;
};

std::vector<std::string> read_bodies(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file);
  std::vector<std::string> bodies;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) bodies.push_back(line);
  }
  if (bodies.empty()) throw std::runtime_error(file + " has no request bodies");
  return bodies;
}

void read_reference(const std::string& file, Reference& ref) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file);
  try {
    const json j = json::parse(in);
    if (!j.is_object()) throw std::runtime_error("not an object");
    for (const auto& [version, per_body] : j.items()) {
      if (!per_body.is_array()) throw std::runtime_error(version + ": not an array");
      for (std::size_t i = 0; i < per_body.size(); ++i)
        ref.add(version, i, parse_predictions(json{{"predictions", per_body[i]}}));
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(file + ": " + e.what());
  }
}

void client_loop(const Options& opt, const std::vector<std::string>& bodies, std::size_t first,
                 Clock::time_point deadline, std::atomic<std::int64_t>& issued, Reference& ref,
                 Stats& st) {
  httplib::Client cli(opt.host, opt.port);
  cli.set_keep_alive(true);
  // httplib writes the headers and the body separately; with Nagle on, the body waits for the
  // server's delayed ACK and every request gains ~40 ms that is not the server's doing.
  cli.set_tcp_nodelay(true);
  const auto timeout = std::chrono::microseconds(static_cast<std::int64_t>(opt.timeout * 1e6));
  cli.set_connection_timeout(timeout);
  cli.set_read_timeout(timeout);
  cli.set_write_timeout(timeout);

  for (std::size_t k = first;; ++k) {
    if (opt.duration > 0 && Clock::now() >= deadline) break;
    // Claim a slot before sending so that the total can never exceed --requests.
    if (opt.requests > 0 && issued.fetch_add(1) >= opt.requests) break;
    const std::size_t body = k % bodies.size();

    const auto t0 = Clock::now();
    auto res = cli.Post(opt.path, bodies[body], "application/json");
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

    ++st.requests;
    const int status = res ? res->status : 0;
    ++st.by_status[status];
    const auto fail = [&](const std::string& why) {
      ++st.failed;
      st.error("body " + std::to_string(body) + ": " + why);
    };
    if (!res) {
      fail("no response (" + httplib::to_string(res.error()) + ")");
      continue;
    }

    if (status != 200) {
      // The server's {"error": ...} says why; a proxy in between may answer with anything.
      const json j = json::parse(res->body, nullptr, false);
      const bool has_error = j.is_object() && j.contains("error") && j["error"].is_string();
      fail("HTTP " + std::to_string(status) + ": " + (has_error ? j["error"].get<std::string>() : res->body.substr(0, 200)));
      continue;
    }
    std::string version;
    Predictions preds;
    try {
      const json j = json::parse(res->body);
      version = j.at("version").get<std::string>();
      preds = parse_predictions(j);
    } catch (const std::exception& e) {
      fail(std::string("bad response: ") + e.what());
      continue;
    }

    ++st.ok;
    ++st.by_version[version];
    st.ok_latency_ms.push_back(ms);
    std::string why;
    switch (ref.check(version, body, std::move(preds), why)) {
      case Reference::Verdict::consistent: break;
      case Reference::Verdict::mismatched: ++st.mismatched, st.error(why); break;
      case Reference::Verdict::unknown_version: ++st.unknown_version, st.error(why); break;
    }
  }
}

// Nearest rank on sorted samples; nullopt when there is nothing to rank.
std::optional<double> percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return std::nullopt;
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

json to_json(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

std::string fmt(const std::optional<double>& v) {
  if (!v) return "-";
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(3);
  os << *v;
  return os.str();
}

void report(const Options& opt, Stats& st, double elapsed_s) {
  auto& lat = st.ok_latency_ms;
  std::sort(lat.begin(), lat.end());
  std::optional<double> mean;
  if (!lat.empty()) {
    double sum = 0;
    for (double v : lat) sum += v;
    mean = sum / static_cast<double>(lat.size());
  }
  const auto p50 = percentile(lat, 50), p90 = percentile(lat, 90), p99 = percentile(lat, 99);
  const auto max = percentile(lat, 100);
  const double rps = elapsed_s > 0 ? static_cast<double>(st.requests) / elapsed_s : 0.0;

  if (opt.json_out) {
    json by_status = json::object();
    for (const auto& [s, n] : st.by_status) by_status[std::to_string(s)] = n;
    const json out{
        {"requests", st.requests},
        {"ok", st.ok},
        {"failed", st.failed},
        {"mismatched", st.mismatched},
        {"unknown_version", st.unknown_version},
        {"duration_s", elapsed_s},
        {"threads", opt.threads},
        {"throughput_rps", rps},
        {"latency_ms",
         {{"p50", to_json(p50)}, {"p90", to_json(p90)}, {"p99", to_json(p99)}, {"max", to_json(max)}, {"mean", to_json(mean)}}},
        {"by_version", st.by_version},
        {"by_status", by_status},
        {"errors", st.errors},
    };
    std::cout << out.dump() << '\n';
    return;
  }

  std::cout << "requests         " << st.requests << '\n'
            << "ok               " << st.ok << '\n'
            << "failed           " << st.failed << '\n'
            << "mismatched       " << st.mismatched << '\n'
            << "unknown_version  " << st.unknown_version << '\n'
            << "duration         " << fmt(elapsed_s) << " s, " << opt.threads << " threads\n"
            << "throughput       " << fmt(rps) << " req/s\n"
            << "latency ms       p50 " << fmt(p50) << "  p90 " << fmt(p90) << "  p99 " << fmt(p99)
            << "  max " << fmt(max) << "  mean " << fmt(mean) << '\n';
  for (const auto& [v, n] : st.by_version) std::cout << "version          " << v << ": " << n << '\n';
  for (const auto& [s, n] : st.by_status) std::cout << "status           " << s << ": " << n << '\n';
  for (const auto& e : st.errors) std::cout << "error            " << e << '\n';
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  po::options_description desc(
      "Usage: nexus-serve-load --port P --bodies FILE (--duration S | --requests N) [options]\n\n"
      "Sends the request bodies (one JSON body per non-empty line, numbered from 0) to a\n"
      "`nexus serve` endpoint and checks that all answers of the same version agree.\n"
      "Exit status: 0 when nothing failed, mismatched or had an unknown version and at least\n"
      "one request succeeded; 1 otherwise; 2 on bad usage.\n\nOptions");
  desc.add_options()
      ("help,h", "print this help")
      ("host", po::value(&opt.host)->default_value("127.0.0.1"), "server host")
      ("port", po::value(&opt.port)->required(), "server port")
      ("path", po::value(&opt.path)->default_value("/v1/predict"), "request path")
      ("bodies", po::value(&opt.bodies_file)->required(), "file with one JSON request body per line")
      ("threads", po::value(&opt.threads)->default_value(2), "client threads, each with its own keep-alive connection")
      ("duration", po::value(&opt.duration), "stop after this many seconds")
      ("requests", po::value(&opt.requests), "stop after this many requests in total")
      ("reference", po::value(&opt.reference_file),
       "JSON object: version -> array (by body line) of expected predictions; "
       "without it the first answer per (version, body) is the reference")
      ("tolerance", po::value(&opt.tolerance)->default_value(1e-3), "absolute tolerance on scores")
      ("timeout", po::value(&opt.timeout)->default_value(30.0), "connect/read/write timeout in seconds")
      ("json", po::bool_switch(&opt.json_out), "print one JSON object instead of the summary");

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << '\n';
      return 0;
    }
    po::notify(vm);
    if (!vm.count("duration") && !vm.count("requests"))
      throw po::error("give --duration or --requests (or both)");
    if (opt.port < 1 || opt.port > 65535) throw po::error("--port must be 1..65535");
    if (opt.threads < 1) throw po::error("--threads must be at least 1");
    if (vm.count("duration") && !(opt.duration > 0)) throw po::error("--duration must be positive");
    if (vm.count("requests") && opt.requests < 1) throw po::error("--requests must be positive");
    if (!(opt.timeout > 0)) throw po::error("--timeout must be positive");
    if (!(opt.tolerance >= 0)) throw po::error("--tolerance must not be negative");
  } catch (const po::error& e) {
    std::cerr << "nexus-serve-load: " << e.what() << "\n(see --help)\n";
    return 2;
  }

  std::vector<std::string> bodies;
  Reference ref(opt.tolerance, !opt.reference_file.empty());
  try {
    bodies = read_bodies(opt.bodies_file);
    if (!opt.reference_file.empty()) read_reference(opt.reference_file, ref);
  } catch (const std::exception& e) {
    std::cerr << "nexus-serve-load: " << e.what() << '\n';
    return 2;
  }

  std::atomic<std::int64_t> issued{0};
  std::vector<Stats> per_thread(static_cast<std::size_t>(opt.threads));
  std::vector<std::thread> workers;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.duration));
  for (std::size_t i = 0; i < per_thread.size(); ++i)
    workers.emplace_back(client_loop, std::cref(opt), std::cref(bodies), i, deadline, std::ref(issued),
                         std::ref(ref), std::ref(per_thread[i]));
  for (auto& w : workers) w.join();
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();

  Stats total;
  for (auto& s : per_thread) total.merge(s);
  report(opt, total, elapsed_s);
  const bool clean = total.failed == 0 && total.mismatched == 0 && total.unknown_version == 0 && total.ok > 0;
  return clean ? 0 : 1;
}
