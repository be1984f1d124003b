// nexus distill's units: the student file's checks, and the BERT encoder's training mode (the path
// the text student trains through) against its inference path.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <fstream>

#include <nexus/support/bert.hpp>

#include "nexus/config/diagnostic.hpp"
#include "nexus/distill/student_spec.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

std::string write(const TempDir& dir, const std::string& name, const std::string& text) {
  const auto path = (dir.path / name).string();
  std::ofstream(path) << text;
  return path;
}

nexus_hf::BertModel small_bert(double dropout) {
  nexus_hf::BertConfig c;
  c.vocab_size = 40, c.hidden_size = 32, c.num_layers = 2, c.num_heads = 4, c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  c.hidden_dropout = c.attention_dropout = dropout;
  nexus_hf::BertModel m(c);
  m->init_random(11);
  return m;
}

// Three rows of 7 tokens, the last two rows padded.
std::pair<torch::Tensor, torch::Tensor> batch() {
  auto ids = torch::randint(5, 40, {3, 7}, torch::kLong);
  auto mask = torch::ones({3, 7}, torch::kLong);
  mask[1].narrow(0, 5, 2).zero_();
  mask[2].narrow(0, 3, 4).zero_();
  return {ids, mask};
}

}  // namespace

TEST_CASE("student file: defaults, and every mistake with its place") {
  TempDir dir;
  const auto ok = write(dir, "ok.yaml", "nexus_student: 1\ntext: {from_teacher: paraphrase, layers: 2}\n");
  const auto s = distill::load_student_spec(ok, {"trainer.steps=7"});
  CHECK(s.text.from_teacher == "paraphrase");
  CHECK(s.text.layers == 2);
  CHECK(s.text.max_length == 0);
  CHECK(s.trainer.steps == 7);
  CHECK(s.loss.embedding == "cosine");
  CHECK_FALSE(s.text.train_embeddings);

  const auto bad = write(dir, "bad.yaml",
                         "nexus_student: 1\n"
                         "text: {from_teacher: paraphrase, layer: 2, dropout: 1.5}\n"
                         "loss: {embedding: l1}\n"
                         "trainer: {steps: 0, lr: fast}\n"
                         "extra: 1\n");
  try {
    distill::load_student_spec(bad);
    FAIL("a bad student file was accepted");
  } catch (const config::ConfigError& e) {
    const std::string what = e.what();
    CHECK(e.diagnostics().size() == 6);
    CHECK(what.find(bad + ":2:") != std::string::npos);
    CHECK(what.find("did you mean 'layers'") != std::string::npos);
    CHECK(what.find("text.dropout must be a number in [0") != std::string::npos);
    CHECK(what.find("loss.embedding must be one of cosine, mse, got 'l1'") != std::string::npos);
    CHECK(what.find("trainer.steps must be an integer") != std::string::npos);
    CHECK(what.find("trainer.lr must be a number") != std::string::npos);
    CHECK(what.find(bad + ":5:") != std::string::npos);
  }
  const auto no_text = write(dir, "none.yaml", "nexus_student: 1\n");
  CHECK_THROWS_WITH_AS(distill::load_student_spec(no_text), doctest::Contains("needs a `text:` student"), config::ConfigError);
}

TEST_CASE("BERT training mode: the inference path's outputs, gradients everywhere, re-prepared weights after it") {
  torch::manual_seed(3);
  auto m = small_bert(0.0);
  const auto [ids, mask] = batch();
  torch::Tensor eval_out;
  {
    torch::NoGradGuard no_grad;
    eval_out = m->forward(ids, mask, 2);
  }
  m->train();
  auto train_out = m->forward(ids, mask, 2);
  CHECK(torch::allclose(train_out, eval_out, 1e-4, 1e-5));
  train_out.pow(2).sum().backward();
  for (const auto& [name, p] : m->hf_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().abs().sum().item<double>() > 0);
  }
  // Training changes the parameters; the inference path must see the change.
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : m->hf_parameters())
      if (name.find("encoder.layer.1.") == 0) p.add_(0.05);
    auto changed_train = m->forward(ids, mask, 2);
    m->eval();
    auto changed_eval = m->forward(ids, mask, 2);
    CHECK_FALSE(torch::allclose(changed_eval, eval_out, 1e-3, 1e-3));
    CHECK(torch::allclose(changed_eval, changed_train, 1e-4, 1e-5));
  }
}

TEST_CASE("BERT training mode applies the config's dropout; inference ignores it") {
  torch::manual_seed(4);
  auto m = small_bert(0.3);
  const auto [ids, mask] = batch();
  torch::NoGradGuard no_grad;
  const auto a = m->forward(ids, mask, 2), b = m->forward(ids, mask, 2);
  CHECK(torch::equal(a, b));
  m->train();
  const auto c = m->forward(ids, mask, 2), d = m->forward(ids, mask, 2);
  CHECK_FALSE(torch::allclose(c, a, 1e-3, 1e-3));
  CHECK_FALSE(torch::allclose(c, d, 1e-3, 1e-3));
}
