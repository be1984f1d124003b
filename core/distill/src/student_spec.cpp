#include "nexus/distill/student_spec.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>

#include "nexus/config/diagnostic.hpp"
#include "nexus/config/loader.hpp"

namespace nexus::distill {
namespace fs = std::filesystem;

namespace {

using config::Diagnostic;
using config::Node;

// Collects every problem of the file, so that one run of the command names them all.
class Reader {
 public:
  std::vector<Diagnostic> errors;

  void fail(const config::Location& loc, const std::string& message, const std::string& hint = "") {
    errors.push_back({loc, message, hint});
  }

  // Calls fields[key] for every key of the map; unknown keys are errors naming the known ones.
  void map(const Node& n, const std::string& what, const std::map<std::string, std::function<void(const Node&)>>& fields) {
    if (!n.is_map()) return fail(n.loc, what + " must be a mapping, got a " + n.kind_name());
    std::vector<std::string> known;
    for (const auto& [k, _] : fields) known.push_back(k);
    for (std::size_t i = 0; i < n.map.size(); ++i) {
      const auto& [key, value] = n.map[i];
      const auto it = fields.find(key);
      if (it != fields.end()) {
        it->second(value);
        continue;
      }
      const auto close = config::did_you_mean(key, known);
      std::string all;
      for (const auto& k : known) all += (all.empty() ? "" : ", ") + k;
      fail(n.key_locs[i], "unknown key '" + key + "' in " + what, close.empty() ? "known keys: " + all : "did you mean '" + close + "'?");
    }
  }

  std::function<void(const Node&)> integer(int64_t& out, int64_t lo, int64_t hi, const std::string& name) {
    return [this, &out, lo, hi, name](const Node& n) {
      char* end = nullptr;
      errno = 0;
      const long long v = n.is_scalar() ? std::strtoll(n.scalar.c_str(), &end, 10) : 0;
      if (!n.is_scalar() || n.scalar.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        return fail(n.loc, name + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      out = v;
    };
  }

  std::function<void(const Node&)> number(double& out, double lo, double hi, const std::string& name) {
    return [this, &out, lo, hi, name](const Node& n) {
      char* end = nullptr;
      const double v = n.is_scalar() ? std::strtod(n.scalar.c_str(), &end) : NAN;
      if (!n.is_scalar() || n.scalar.empty() || *end != '\0' || !std::isfinite(v) || v < lo || v > hi)
        return fail(n.loc, name + " must be a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      out = v;
    };
  }

  std::function<void(const Node&)> boolean(bool& out, const std::string& name) {
    return [this, &out, name](const Node& n) {
      if (n.is_scalar() && (n.scalar == "true" || n.scalar == "false")) out = n.scalar == "true";
      else fail(n.loc, name + " must be true or false");
    };
  }

  std::function<void(const Node&)> text(std::string& out, const std::string& name, std::vector<std::string> choices = {}) {
    return [this, &out, name, choices](const Node& n) {
      if (!n.is_scalar() || n.scalar.empty()) return fail(n.loc, name + " must be a non-empty string");
      if (!choices.empty() && std::find(choices.begin(), choices.end(), n.scalar) == choices.end()) {
        std::string all;
        for (const auto& c : choices) all += (all.empty() ? "" : ", ") + c;
        return fail(n.loc, name + " must be one of " + all + ", got '" + n.scalar + "'");
      }
      out = n.scalar;
    };
  }
};

}  // namespace

StudentSpec load_student_spec(const std::string& path, const std::vector<std::string>& overrides) {
  auto root = config::load_file(path);
  for (const auto& o : overrides) config::apply_override(root, o);
  StudentSpec s;
  s.source = fs::absolute(path).lexically_normal().string();
  const auto base = fs::path(s.source).parent_path();
  Reader r;
  int64_t version = 0;
  bool has_text = false;
  auto& t = s.text;
  auto& l = s.loss;
  auto& tr = s.trainer;
  r.map(root, "the student file", {
      {"nexus_student", r.integer(version, 1, 1, "nexus_student")},
      {"text", [&](const Node& n) {
         has_text = true;
         r.map(n, "text", {{"from_teacher", r.text(t.from_teacher, "text.from_teacher")},
                           {"layers", r.integer(t.layers, 1, 1024, "text.layers")},
                           {"max_length", r.integer(t.max_length, 2, 1 << 20, "text.max_length")},
                           {"dropout", r.number(t.dropout, 0, 0.9, "text.dropout")},
                           {"train_embeddings", r.boolean(t.train_embeddings, "text.train_embeddings")}});
       }},
      {"loss", [&](const Node& n) {
         r.map(n, "loss", {{"embedding", r.text(l.embedding, "loss.embedding", {"cosine", "mse"})},
                           {"embedding_weight", r.number(l.embedding_weight, 0, 1e6, "loss.embedding_weight")},
                           {"head_weight", r.number(l.head_weight, 0, 1e6, "loss.head_weight")},
                           {"temperature", r.number(l.temperature, 0.05, 100, "loss.temperature")},
                           {"label_weight", r.number(l.label_weight, 0, 1e6, "loss.label_weight")}});
       }},
      {"trainer", [&](const Node& n) {
         r.map(n, "trainer", {{"steps", r.integer(tr.steps, 1, int64_t(1) << 40, "trainer.steps")},
                              {"batch_size", r.integer(tr.batch_size, 1, 1 << 16, "trainer.batch_size")},
                              {"warmup_steps", r.integer(tr.warmup_steps, 0, int64_t(1) << 40, "trainer.warmup_steps")},
                              {"validate_every", r.integer(tr.validate_every, 1, int64_t(1) << 40, "trainer.validate_every")},
                              {"patience", r.integer(tr.patience, 0, 1 << 20, "trainer.patience")},
                              {"lr", r.number(tr.lr, 0, 10, "trainer.lr")},
                              {"head_lr", r.number(tr.head_lr, 0, 10, "trainer.head_lr")},
                              {"weight_decay", r.number(tr.weight_decay, 0, 10, "trainer.weight_decay")},
                              {"grad_clip", r.number(tr.grad_clip, 0, 1e6, "trainer.grad_clip")},
                              {"seed", r.integer(tr.seed, 0, int64_t(1) << 62, "trainer.seed")}});
       }},
      {"unlabelled", [&](const Node& n) {
         if (!n.is_seq()) return r.fail(n.loc, "unlabelled must be a list of text files");
         for (const auto& item : n.items) {
           if (!item.is_scalar() || item.scalar.empty()) {
             r.fail(item.loc, "unlabelled: each entry is a file path");
             continue;
           }
           s.unlabelled.push_back((base / item.scalar).lexically_normal().string());
         }
       }},
  });
  if (root.is_map()) {
    if (!root.find("nexus_student")) r.fail(root.loc, "the student file needs `nexus_student: 1`");
    if (!has_text) r.fail(root.loc, "the student file needs a `text:` student (the only modality distill trains yet)");
    else if (t.from_teacher.empty()) r.fail(root.find("text")->loc, "text.from_teacher is required: the run's text teacher the student starts from");
  }
  if (!r.errors.empty()) throw config::ConfigError(std::move(r.errors));
  return s;
}

}  // namespace nexus::distill
