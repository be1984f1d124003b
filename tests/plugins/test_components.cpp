// The built-in towers, routers and losses, created through the registry exactly as a composition
// creates them, checked on hand-computed inputs.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>

#include <cmath>
#include <functional>
#include <limits>

#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

const registry::Registry& reg() { return builtin_registry(); }

Options opts(const std::string& text) { return Options::parse(text); }

torch::Tensor param(torch::nn::Module& m, const std::string& name) {
  auto params = m.named_parameters();
  REQUIRE_MESSAGE(params.contains(name), "no parameter " << name);
  return params[name];
}

// Sets a parameter in place without recording it for autograd.
void set(torch::nn::Module& m, const std::string& name, const torch::Tensor& value) {
  torch::NoGradGuard no_grad;
  param(m, name).copy_(value.view(param(m, name).sizes()));
}

std::string create_error(const std::function<void()>& create) {
  try {
    create();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

double value(const std::vector<LossTerm>& terms) {
  REQUIRE(terms.size() == 1);
  return terms[0].value.item<double>();
}

constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_CASE("the new built-in components probe ok") {
  for (const auto& [kind, name] : std::vector<std::pair<std::string, std::string>>{
           {"tower", "lowrank"}, {"router", "sigmoid"}, {"router", "conditioned"}, {"loss", "kl"},
           {"loss", "load_balance"}, {"loss", "z_loss"}, {"loss", "routing_entropy"}, {"teacher", "feature_file"}}) {
    const auto* c = reg().find(kind, name);
    REQUIRE_MESSAGE(c != nullptr, kind << " " << name);
    CHECK_MESSAGE(c->status == registry::Status::Ok, name << ": " << c->reason);
  }
}

// ------------------------------------------------------------------------------------ lowrank

TEST_CASE("lowrank tower: (d_in + d_out) * rank weights, a rank-limited map, gradients to both factors") {
  auto t = reg().create_tower("lowrank", opts("d_in=12;d_out=10;rank=3"));
  CHECK(t->in_features() == 12);
  CHECK(t->out_features() == 10);
  CHECK(param(*t, "down.weight").sizes() == torch::IntArrayRef({3, 12}));
  CHECK(param(*t, "up.weight").sizes() == torch::IntArrayRef({10, 3}));
  int64_t total = 0;
  for (const auto& p : t->parameters()) total += p.numel();
  CHECK(total == (12 + 10) * 3 + 10);  // + the output bias
  auto no_bias = reg().create_tower("lowrank", opts("d_in=12;d_out=10;rank=3;bias=false"));
  total = 0;
  for (const auto& p : no_bias->parameters()) total += p.numel();
  CHECK(total == (12 + 10) * 3);

  // Orthonormal rows of the down projection at initialisation.
  const auto v = param(*t, "down.weight");
  CHECK(torch::allclose(v.matmul(v.t()), torch::eye(3), 1e-5, 1e-5));

  // The composed linear map (the Jacobian) has rank 3, not min(12, 10).
  const auto x = torch::randn({5, 12});
  const auto b = t->forward(torch::zeros({1, 12}));
  const auto map = t->forward(torch::eye(12)) - b;  // row i = image of e_i
  const auto sv = at::linalg_svdvals(map);
  CHECK((sv > 1e-5 * sv.max()).sum().item<int64_t>() == 3);
  CHECK(torch::allclose(t->forward(x), x.matmul(map) + b, 1e-4, 1e-5));  // linear without an activation

  auto y = t->forward(x);
  CHECK(y.sizes() == torch::IntArrayRef({5, 10}));
  y.square().sum().backward();
  CHECK(param(*t, "down.weight").grad().abs().sum().item<double>() > 0);
  CHECK(param(*t, "up.weight").grad().abs().sum().item<double>() > 0);
}

TEST_CASE("lowrank tower: hand-computed outputs, with and without the activation") {
  auto lin = reg().create_tower("lowrank", opts("d_in=3;d_out=2;rank=1"));
  auto relu = reg().create_tower("lowrank", opts("d_in=3;d_out=2;rank=1;activation=relu"));
  for (auto* t : {lin.get(), relu.get()}) {
    set(*t, "down.weight", torch::tensor({1.f, 2.f, 3.f}));
    set(*t, "up.weight", torch::tensor({1.f, -1.f}));
    set(*t, "up.bias", torch::tensor({0.5f, 0.f}));
  }
  const auto pos = torch::ones({1, 3}), neg = -torch::ones({1, 3});
  CHECK(torch::allclose(lin->forward(pos), torch::tensor({{6.5f, -6.f}})));   // h = 6
  CHECK(torch::allclose(lin->forward(neg), torch::tensor({{-5.5f, 6.f}})));   // h = -6
  CHECK(torch::allclose(relu->forward(pos), torch::tensor({{6.5f, -6.f}})));
  CHECK(torch::allclose(relu->forward(neg), torch::tensor({{0.5f, 0.f}})));   // relu(-6) = 0: only the bias
}

TEST_CASE("lowrank tower: a rank that is not low is refused with the reason") {
  const auto err = create_error([] { reg().create_tower("lowrank", opts("d_in=8;d_out=4;rank=5")); });
  CHECK(err.find("option 'rank' must be in [1, min(d_in, d_out) = 4], got 5") != std::string::npos);
  CHECK(err.find("use the linear tower") != std::string::npos);
  CHECK(create_error([] { reg().create_tower("lowrank", opts("d_in=8;d_out=4;rank=0")); }).find("got 0") != std::string::npos);
  CHECK(create_error([] { reg().create_tower("lowrank", opts("d_in=8;d_out=4;rank=4")); }).empty());  // full rank is allowed
}

// ------------------------------------------------------------------------------------ sigmoid

TEST_CASE("sigmoid router: independent gates, unavailable towers at 0, optional normalisation") {
  auto r = reg().create_router("sigmoid", opts("d_in=2;n_experts=3"));
  CHECK(r->top_k() == 3);
  set(*r, "gate.weight", torch::zeros({3, 2}));
  set(*r, "gate.bias", torch::tensor({0.f, std::log(3.f), -std::log(3.f)}));
  const auto x = torch::randn({2, 2});
  auto out = r->route(x);
  // sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4: they do not sum to 1.
  CHECK(torch::allclose(out.weights, torch::tensor({0.5f, 0.75f, 0.25f}).expand({2, 3})));
  CHECK(torch::allclose(out.logits, torch::tensor({0.f, std::log(3.f), -std::log(3.f)}).expand({2, 3})));
  CHECK(out.selected.all().item<bool>());

  auto avail = torch::tensor({1, 0, 1, 1, 1, 0}, torch::kBool).view({2, 3});
  out = r->forward(x, avail);
  CHECK(torch::allclose(out.weights, torch::tensor({{0.5f, 0.f, 0.25f}, {0.5f, 0.75f, 0.f}})));  // the others unchanged
  CHECK(out.weights.masked_select(avail.logical_not()).eq(0).all().item<bool>());
  CHECK(torch::equal(out.selected, avail));
  CHECK(std::isinf(out.logits[0][1].item<float>()));

  auto n = reg().create_router("sigmoid", opts("d_in=2;n_experts=3;normalize=true"));
  set(*n, "gate.weight", torch::zeros({3, 2}));
  set(*n, "gate.bias", torch::tensor({0.f, std::log(3.f), -std::log(3.f)}));
  CHECK(torch::allclose(n->forward(x, {}).weights, torch::tensor({0.5f / 1.5f, 0.75f / 1.5f, 0.25f / 1.5f}).expand({2, 3}), 1e-5));
  CHECK(torch::allclose(n->forward(x, avail).weights[0], torch::tensor({0.5f / 0.75f, 0.f, 0.25f / 0.75f}), 1e-5));
  // Nothing available: all zero, not NaN.
  CHECK(n->forward(x, torch::zeros({2, 3}, torch::kBool)).weights.eq(0).all().item<bool>());

  // Gradients reach the gate.
  auto g = reg().create_router("sigmoid", opts("d_in=4;n_experts=3"));
  g->forward(torch::randn({5, 4}), {}).weights.sum().backward();
  CHECK(param(*g, "gate.weight").grad().abs().sum().item<double>() > 0);
}

TEST_CASE("topk router, k=1: weights exactly one-hot, yet the gate learns (straight-through)") {
  auto r = reg().create_router("topk", opts("d_in=4;n_experts=3;k=1"));
  const auto x = torch::randn({6, 4});
  const auto avail = torch::tensor({1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1}, torch::kBool).view({6, 3});
  const auto out = r->forward(x, avail);
  CHECK(out.weights.sum(1).eq(1).all().item<bool>());  // exactly, not approximately
  CHECK(out.weights.eq(0).logical_or(out.weights.eq(1)).all().item<bool>());
  CHECK(torch::equal(out.selected, out.weights > 0));
  CHECK(out.weights.masked_select(avail.logical_not()).eq(0).all().item<bool>());
  CHECK(torch::equal(out.weights.argmax(1), out.logits.argmax(1)));
  // A loss that prefers tower 2 pushes its logit up through the soft path.
  (out.weights.select(1, 2) * -1.0).sum().backward();
  CHECK(param(*r, "gate.weight").grad().abs().sum().item<double>() > 0);
}

// ------------------------------------------------------------------------------------ conditioned

TEST_CASE("conditioned router: starts as a plain softmax router, then follows its context") {
  // 3 feature columns + 2 context columns.
  auto r = reg().create_router("conditioned", opts("d_in=5;n_experts=3;n_context=2;temperature=2"));
  CHECK(r->in_features() == 5);
  CHECK(r->top_k() == 3);
  const auto feats = torch::randn({4, 3});
  auto ctx0 = torch::zeros({4, 2}), ctx1 = torch::zeros({4, 2});
  ctx0.select(1, 0).fill_(1);
  ctx1.select(1, 1).fill_(1);
  const auto w0 = r->forward(torch::cat({feats, ctx0}, 1), {}).weights;
  const auto w1 = r->forward(torch::cat({feats, ctx1}, 1), {}).weights;
  const auto plain = torch::softmax((feats.matmul(param(*r, "gate.0.weight").t()) + param(*r, "gate.0.bias")) / 2.0, 1);
  CHECK(torch::allclose(w0, plain, 1e-5, 1e-6));  // the table starts at zero: context does nothing yet
  CHECK(torch::allclose(w1, plain, 1e-5, 1e-6));
  CHECK(torch::allclose(w0.sum(1), torch::ones({4})));

  // A per-context bias: with a zero gate, context 1 prefers tower 2 by e^(4/2), context 0 is uniform.
  set(*r, "gate.0.weight", torch::zeros({3, 3}));
  set(*r, "gate.0.bias", torch::zeros({3}));
  set(*r, "context_bias", torch::tensor({{0.f, 0.f, 0.f}, {0.f, 0.f, 4.f}}));
  const double e2 = std::exp(2.0);
  CHECK(torch::allclose(r->forward(torch::cat({feats, ctx0}, 1), {}).weights, torch::full({4, 3}, 1.0 / 3), 1e-5));
  const auto want = torch::tensor({1.0 / (2 + e2), 1.0 / (2 + e2), e2 / (2 + e2)}, torch::kFloat);
  CHECK(torch::allclose(r->forward(torch::cat({feats, ctx1}, 1), {}).weights, want.expand({4, 3}), 1e-5));
  // Tower 2 unavailable: it gets 0 even where its context wants it, the rest renormalises.
  auto avail = torch::ones({4, 3}, torch::kBool);
  avail.select(1, 2).fill_(false);
  const auto masked = r->forward(torch::cat({feats, ctx1}, 1), avail);
  CHECK(masked.weights.select(1, 2).eq(0).all().item<bool>());
  CHECK(torch::allclose(masked.weights.select(1, 0), torch::full({4}, 0.5)));
  // Nothing available: zeros and a finite gradient, not NaN.
  auto none = r->forward(torch::cat({feats, ctx1}, 1), torch::zeros({4, 3}, torch::kBool));
  CHECK(none.weights.eq(0).all().item<bool>());
  (none.weights.sum() + masked.weights.square().sum()).backward();
  CHECK(param(*r, "context_bias").grad().isfinite().all().item<bool>());
}

TEST_CASE("conditioned router: gradients reach the table row of the input's context only; top-k; random context") {
  auto r = reg().create_router("conditioned", opts("d_in=6;n_experts=4;n_context=3;top_k=2;hidden=8"));
  CHECK(r->top_k() == 2);
  auto x = torch::cat({torch::randn({5, 3}), torch::zeros({5, 3})}, 1);
  x.select(1, 3 + 1).fill_(1);  // every input in context 1
  auto out = r->route(x);
  CHECK(((out.weights > 0).sum(1) == 2).all().item<bool>());
  CHECK(torch::equal(out.selected, out.weights > 0));
  CHECK(torch::allclose(out.weights.sum(1), torch::ones({5})));
  (out.weights * torch::arange(4).to(torch::kFloat)).sum().backward();
  const auto g = param(*r, "context_bias").grad();
  CHECK(g[1].abs().sum().item<double>() > 0);
  CHECK(g[0].abs().sum().item<double>() == 0);
  CHECK(g[2].abs().sum().item<double>() == 0);
  CHECK(param(*r, "gate.0.weight").grad().abs().sum().item<double>() > 0);  // and the hidden layer

  // The probe feeds random numbers where the one-hot goes: finite, valid weights.
  const auto rnd = r->forward(torch::randn({7, 6}) * 10, {});
  CHECK(rnd.weights.isfinite().all().item<bool>());
  CHECK(torch::allclose(rnd.weights.sum(1), torch::ones({7}), 1e-5));
  CHECK_THROWS_WITH(r->forward(torch::randn({2, 5}), {}), doctest::Contains("input must be [B, d_in=6]"));

  CHECK(create_error([] { reg().create_router("conditioned", opts("d_in=3;n_experts=2;n_context=3")); })
            .find("must include the n_context=3 context columns and at least one feature column") != std::string::npos);
  CHECK(create_error([] { reg().create_router("conditioned", opts("d_in=5;n_experts=2;n_context=1;top_k=3")); })
            .find("option 'top_k' must be in [0, n_experts=2]") != std::string::npos);
}

// ------------------------------------------------------------------------------------ losses

TEST_CASE("kl loss: hand-computed value, T^2 scaling, gradient only into the student") {
  auto kl1 = reg().create_loss("kl", opts("temperature=1"));
  auto kl2 = reg().create_loss("kl", {});  // default T = 2
  LossInput in;
  in.prediction = torch::zeros({1, 2}).set_requires_grad(true);  // student uniform
  in.teacher_prediction = torch::tensor({{std::log(3.f), 0.f}}).set_requires_grad(true);
  // T = 1: p_t = (3/4, 1/4), KL = 3/4 ln(3/2) + 1/4 ln(1/2).
  CHECK(value(kl1->forward(in)) == doctest::Approx(0.75 * std::log(1.5) + 0.25 * std::log(0.5)).epsilon(1e-5));
  // T = 2: p_t = (sqrt3, 1) / (1 + sqrt3), times T^2 = 4.
  const double s3 = std::sqrt(3.0), a = s3 / (1 + s3), b = 1 / (1 + s3);
  const auto terms = kl2->forward(in);
  CHECK(terms[0].name == "kl");
  CHECK(terms[0].value.item<double>() == doctest::Approx(4 * (a * std::log(2 * a) + b * std::log(2 * b))).epsilon(1e-5));
  terms[0].value.backward();
  CHECK(in.prediction.grad().abs().sum().item<double>() > 0);
  CHECK(!in.teacher_prediction.grad().defined());
  // KL(p || p) = 0, and a missing reference is a clear error.
  in.teacher_prediction = in.prediction.detach();
  CHECK(value(kl2->forward(in)) == doctest::Approx(0.0));
  in.teacher_prediction = torch::Tensor();
  CHECK_THROWS_WITH(kl2->forward(in), doctest::Contains("LossInput::teacher_prediction"));
}

TEST_CASE("load_balance loss: 1 when balanced (top-1 and top-2), more when not, gradient through P") {
  auto lb = reg().create_loss("load_balance", {});
  LossInput in;
  in.router_logits = torch::zeros({4, 4}).set_requires_grad(true);
  in.router_selected = torch::eye(4).to(torch::kBool);  // top-1, each tower once
  CHECK(value(lb->forward(in)) == doctest::Approx(1.0));
  in.router_selected = torch::tensor({1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1}, torch::kBool).view({4, 4});  // top-2
  CHECK(value(lb->forward(in)) == doctest::Approx(1.0));

  // Everyone picks tower 0 (f = [1, 0]) and P = (3/4, 1/4): N * f . P = 2 * 3/4.
  LossInput skew;
  skew.router_logits = torch::tensor({{std::log(3.f), 0.f}, {std::log(3.f), 0.f}}).set_requires_grad(true);
  skew.router_selected = torch::tensor({{true, false}, {true, false}});
  const auto terms = lb->forward(skew);
  CHECK(terms[0].name == "load_balance");
  CHECK(terms[0].value.item<double>() == doctest::Approx(1.5));
  terms[0].value.backward();
  const auto g = skew.router_logits.grad();
  CHECK(g.select(1, 0).gt(0).all().item<bool>());  // minimising lowers the overloaded tower's logit
  CHECK(g.select(1, 1).lt(0).all().item<bool>());

  // Without `selected` (the trainer passes logits and weights), towers with weight > 0 count as selected.
  LossInput topk;
  topk.router_logits = skew.router_logits.detach();
  topk.router_weights = torch::tensor({{1.f, 0.f}, {1.f, 0.f}});
  CHECK(value(lb->forward(topk)) == doctest::Approx(1.5));
  // probabilities=weights reads P from the weights instead: P = (1, 0), so 2 * 1.
  CHECK(value(reg().create_loss("load_balance", opts("probabilities=weights"))->forward(topk)) == doctest::Approx(2.0));
  // Masked logits (-inf) and a row with nothing available stay finite.
  LossInput masked;
  masked.router_logits = torch::tensor({{0.f, -kInf}, {-kInf, -kInf}});
  masked.router_selected = torch::tensor({{true, false}, {false, false}});
  CHECK(value(lb->forward(masked)) == doctest::Approx(2.0));  // one live row, all on tower 0 with P = 1
}

TEST_CASE("z_loss: mean squared logsumexp, masked entries and empty rows ignored") {
  auto z = reg().create_loss("z_loss", {});
  LossInput in;
  in.router_logits = torch::tensor({{0.f, 0.f}, {std::log(3.f), 0.f}}).set_requires_grad(true);
  const double l2 = std::log(2.0), l4 = std::log(4.0);
  const auto terms = z->forward(in);
  CHECK(terms[0].name == "z_loss");
  CHECK(terms[0].value.item<double>() == doctest::Approx((l2 * l2 + l4 * l4) / 2).epsilon(1e-6));
  terms[0].value.backward();
  CHECK(in.router_logits.grad().gt(0).all().item<bool>());  // pushes every logit down

  LossInput masked;
  masked.router_logits = torch::tensor({{0.f, -kInf}, {-kInf, -kInf}}).set_requires_grad(true);
  const auto t = z->forward(masked);
  CHECK(t[0].value.item<double>() == doctest::Approx(0.0));  // lse of the live row = 0
  t[0].value.backward();
  CHECK(masked.router_logits.grad().isfinite().all().item<bool>());
  CHECK_THROWS_WITH(z->forward(LossInput{}), doctest::Contains("router_logits"));
}

TEST_CASE("routing_entropy: -H(batch mean) spreads load, per-sample H sharpens routing") {
  auto batch = reg().create_loss("routing_entropy", {});
  auto sample = reg().create_loss("routing_entropy", opts("per_sample=true"));
  LossInput sure_balanced, unsure, collapsed;
  sure_balanced.router_weights = torch::eye(2).set_requires_grad(true);
  unsure.router_weights = torch::full({2, 2}, 0.5);
  collapsed.router_weights = torch::tensor({{1.f, 0.f}, {1.f, 0.f}});
  const double ln2 = std::log(2.0);
  auto terms = batch->forward(sure_balanced);
  CHECK(terms[0].name == "neg_batch_entropy");
  CHECK(terms[0].value.item<double>() == doctest::Approx(-ln2));
  CHECK(value(batch->forward(unsure)) == doctest::Approx(-ln2));
  CHECK(value(batch->forward(collapsed)) == doctest::Approx(0.0));  // the worst: everything on one tower
  terms = sample->forward(sure_balanced);
  CHECK(terms[0].name == "sample_entropy");
  CHECK(terms[0].value.item<double>() == doctest::Approx(0.0));
  CHECK(value(sample->forward(unsure)) == doctest::Approx(ln2));
  CHECK(value(sample->forward(collapsed)) == doctest::Approx(0.0));
  // One-hot rows (0 log 0) still give a finite gradient.
  batch->forward(sure_balanced)[0].value.backward();
  CHECK(sure_balanced.router_weights.grad().isfinite().all().item<bool>());
  // Sigmoid gates do not sum to 1: rows are renormalised first. Softmax of logits on request.
  LossInput gates;
  gates.router_weights = torch::tensor({{0.5f, 0.5f}});
  CHECK(value(sample->forward(gates)) == doctest::Approx(ln2));
  gates.router_logits = torch::tensor({{10.f, -10.f}});
  CHECK(value(reg().create_loss("routing_entropy", opts("per_sample=true;probabilities=softmax"))->forward(gates)) <
        1e-6);
}

TEST_CASE("router losses: example_input fills the router fields and the self-tests pass") {
  for (const char* name : {"load_balance", "z_loss", "routing_entropy", "kl"}) {
    CAPTURE(name);
    auto loss = reg().create_loss(name, {});
    const auto in = loss->example_input();
    if (std::string(name) != "kl") {
      CHECK(in.router_logits.defined());
      CHECK(in.router_weights.defined());
      CHECK(in.router_selected.defined());
    }
    CHECK_NOTHROW(loss->self_test());
    // Every term back-propagates into the example's leaves.
    auto terms = loss->forward(in);
    terms[0].value.backward();
    const auto& leaf = std::string(name) == "kl" ? in.prediction : in.router_logits;
    CHECK(leaf.grad().defined());
    CHECK(leaf.grad().isfinite().all().item<bool>());
  }
}
