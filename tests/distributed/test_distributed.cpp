// c10d Gloo process groups on loopback: two ranks as two threads of this process.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <thread>

#include "nexus/distributed/process_group.hpp"
#include "synthetic_training.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Runs body(rank, group) on `world` threads joined into one group; rethrows a thread's failure.
void on_ranks(int world, const std::function<void(int, dist::ProcessGroup&)>& body,
              std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const int port = free_port();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(world), std::string());
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        dist::DistOptions o;
        o.rank = r;
        o.world_size = world;
        o.master_port = port;
        o.timeout = timeout;
        dist::ProcessGroup g(o);
        body(r, g);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    INFO("rank " << r << ": " << errors[size_t(r)]);
    CHECK(errors[size_t(r)].empty());
  }
}

}  // namespace

TEST_CASE("c10d Gloo: bucketed all-reduce averages every tensor, broadcast and any agree across 2 ranks") {
  on_ranks(2, [](int rank, dist::ProcessGroup& g) {
    CHECK(g.world_size() == 2);
    CHECK(g.rank() == rank);
    // Three tensors of different shapes; a 64-byte bucket limit forces several buckets.
    std::vector<at::Tensor> t{torch::full({3, 2}, float(rank + 1)), torch::arange(5, torch::kFloat) * (rank + 1),
                              at::Tensor(), torch::full({40}, rank == 0 ? -2.0f : 4.0f)};
    g.allreduce_mean(t, 64);
    CHECK(torch::allclose(t[0], torch::full({3, 2}, 1.5f)));
    CHECK(torch::allclose(t[1], torch::arange(5, torch::kFloat) * 1.5));
    CHECK(torch::allclose(t[3], torch::full({40}, 1.0f)));
    std::vector<at::Tensor> b{torch::full({4}, float(rank * 10 + 7))};
    g.broadcast(b, 0);
    CHECK(torch::equal(b[0], torch::full({4}, 7.0f)));
    CHECK(g.any(rank == 1));
    CHECK_FALSE(g.any(false));
    g.barrier();
  });
}

TEST_CASE("arrive: ranks that finish far apart still meet, and one rank's failure reaches all") {
  on_ranks(2, [](int rank, dist::ProcessGroup& g) {
    if (rank == 1) std::this_thread::sleep_for(std::chrono::seconds(5));  // 2.5x the collective timeout
    CHECK(g.arrive("slow work", true));
    CHECK_FALSE(g.arrive("work that failed on rank 0", rank != 0));
    CHECK(g.arrive("more work", true));
    g.barrier();  // the group is still usable for collectives
  }, std::chrono::seconds(2));
}

TEST_CASE("arrive: a rank that stops answering is named, not waited for forever") {
  const int port = free_port();
  auto options = [&](int rank) {
    dist::DistOptions o;
    o.rank = rank;
    o.world_size = 2;
    o.master_port = port;
    o.timeout = std::chrono::seconds(2);
    return o;
  };
  std::string error;
  std::chrono::steady_clock::duration waited{};
  std::thread rank0([&] {
    dist::ProcessGroup g(options(0));
    const auto start = std::chrono::steady_clock::now();
    try {
      g.arrive("features cached");
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    waited = std::chrono::steady_clock::now() - start;
  });
  { dist::ProcessGroup gone(options(1)); }  // joins, then is gone without arriving: its heartbeat stops
  rank0.join();
  CHECK(error.find("rank 1 stopped answering while rank 0 waited for it at 'features cached'") != std::string::npos);
  CHECK(waited < std::chrono::seconds(15));
}

TEST_CASE("c10d Gloo: a rank that never arrives makes joining fail with a message, not hang") {
  dist::DistOptions o;
  o.rank = 0;
  o.world_size = 2;
  o.master_port = free_port();
  o.timeout = std::chrono::seconds(2);
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_AS(dist::ProcessGroup{o}, doctest::Contains("rank 0 of 2 could not join the group"), std::runtime_error);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
}

TEST_CASE("torchrun's environment variables") {
  ::unsetenv("WORLD_SIZE");
  CHECK_FALSE(dist::options_from_environment().has_value());
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("RANK", "3", 1);
  ::setenv("LOCAL_RANK", "1", 1);
  ::setenv("MASTER_ADDR", "10.0.0.2", 1);
  ::setenv("MASTER_PORT", "29511", 1);
  const auto o = dist::options_from_environment();
  REQUIRE(o.has_value());
  CHECK(o->world_size == 4);
  CHECK(o->rank == 3);
  CHECK(o->local_rank == 1);
  CHECK(o->master_addr == "10.0.0.2");
  CHECK(o->master_port == 29511);
  ::setenv("RANK", "4", 1);
  CHECK_THROWS_WITH_AS(dist::options_from_environment(), "RANK=4 is outside WORLD_SIZE=4", std::invalid_argument);
  ::setenv("RANK", "x", 1);
  CHECK_THROWS_WITH_AS(dist::options_from_environment(), "RANK='x' is not a non-negative integer", std::invalid_argument);
  for (const char* v : {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(v);
}

TEST_CASE("data-parallel training: 2 ranks with global batch B reach 1 rank's weights with batch B") {
  TrainingFixture f({"trainer.steps=120", "trainer.batch_size=32", "trainer.weight_decay=0.01"});
  const auto& single = f.sys;
  const auto one = train(f.comp, *single, {f.data}, f.options("one"));

  std::vector<std::unique_ptr<ComposedSystem>> systems;
  systems.push_back(f.build());
  systems.push_back(f.build());
  std::vector<TrainResult> results(2);
  on_ranks(2, [&](int rank, dist::ProcessGroup& g) {
    auto o = f.options("two");
    o.group = &g;
    results[size_t(rank)] = train(f.comp, *systems[size_t(rank)], {f.data}, o);
  });
  CHECK(results[0].steps == one.steps);
  CHECK(results[0].best_step == one.best_step);
  CHECK(results[0].val_accuracy == one.val_accuracy);
  CHECK(results[1].val_accuracy == one.val_accuracy);
  double worst = 0, worst_ranks = 0;
  const auto ref = single->trainable_modules();
  for (size_t m = 0; m < ref.size(); ++m) {
    const auto p1 = ref[m].second->parameters();
    const auto p2 = systems[0]->trainable_modules()[m].second->parameters();
    const auto p3 = systems[1]->trainable_modules()[m].second->parameters();
    for (size_t i = 0; i < p1.size(); ++i) {
      worst = std::max(worst, (p1[i] - p2[i]).abs().max().item<double>());
      worst_ranks = std::max(worst_ranks, (p2[i] - p3[i]).abs().max().item<double>());
    }
  }
  MESSAGE("largest difference to one process " << worst << ", between the ranks " << worst_ranks);
  CHECK(worst < 1e-4);           // the tolerance: float sums in another order, over 120 steps
  CHECK(worst_ranks == 0.0);     // the ranks themselves hold identical weights
  CHECK(fs::exists(f.dir.path / "two" / "checkpoints" / "best"));
}
