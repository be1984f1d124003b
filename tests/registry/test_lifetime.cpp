// Plugin code stays mapped for as long as anything made by it is alive.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>

#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

TEST_CASE("a plugin-created module outlives the registry that created it") {
  std::shared_ptr<Tower> tower;
  std::shared_ptr<Router> router;
  {
    auto reg = scan_only({NEXUS_BUILTIN_PLUGIN_DIR});
    tower = reg.create_tower("mlp", Options().set("d_in", "6").set("d_out", "3").set("hidden", "5"));
    router = reg.create_router("topk", Options().set("d_in", "3").set("n_experts", "4").set("k", "2"));
  }  // registry gone
  CHECK(is_mapped("nexus_towers.so"));
  auto x = torch::randn({8, 6});
  auto y = tower->forward(x);
  auto r = router->route(y);
  CHECK(r.weights.sizes() == torch::IntArrayRef({8, 4}));
  CHECK(((r.weights > 0).sum(1) <= 2).all().item<bool>());
  (y.sum() + (r.weights * torch::arange(4)).sum()).backward();
  for (const auto& p : tower->parameters()) CHECK(p.grad().defined());

  // torch's own ownership machinery works on plugin modules: a parent module keeps the tower
  // (and so its library) alive after every other handle is dropped.
  auto parent = std::make_shared<torch::nn::Module>("Parent");
  parent->register_module("tower", tower);
  tower.reset();
  CHECK(parent->modules().size() == 5);  // parent, tower, its ModuleList, two Linear layers
  auto child = parent->named_children()["tower"];
  CHECK(child->parameters().size() == 4);
  CHECK(std::dynamic_pointer_cast<Tower>(child) != nullptr);
  CHECK(std::static_pointer_cast<Tower>(child)->forward(torch::randn({2, 6})).size(1) == 3);
  CHECK(is_mapped("nexus_towers.so"));
  router->reset_stats();
  CHECK(router->stats().samples == 0);
}

TEST_CASE("factory errors come back as messages, never as crashes") {
  auto reg = scan_only({NEXUS_BUILTIN_PLUGIN_DIR});
  auto message = [&](const Options& o) {
    try {
      reg.create_tower("linear", o);
    } catch (const registry::PluginError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string lib = reg.find("tower", "linear")->library;
  CHECK(message(Options().set("d_in", "abc").set("d_out", "2")) ==
        "tower 'linear' (" + lib + "): option 'd_in' must be an int, got 'abc'");
  CHECK(message(Options().set("d_out", "2")) == "tower 'linear' (" + lib + "): missing required option 'd_in' (int)");
  CHECK(message(Options().set("d_in", "2").set("d_out", "2").set("bais", "true")) ==
        "tower 'linear' (" + lib + "): unknown option 'bais' (accepted: d_in, d_out, bias)");
  CHECK_THROWS_WITH_AS(reg.create_router("topk", Options().set("d_in", "2").set("n_experts", "2").set("k", "3")),
                       doctest::Contains("option 'k' must be in [1, n_experts=2], got 3"), registry::PluginError);
}
