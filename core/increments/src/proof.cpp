#include "nexus/increments/proof.hpp"

#include <nexus/text.hpp>

#include <cstdio>
#include <ostream>

namespace nexus {

namespace {

nlohmann::json timing_json(const PhaseTimes& t) {
  return {{"cache_seconds", t.cache}, {"train_seconds", t.train}, {"eval_seconds", t.eval},
          {"train_and_eval_seconds", t.train + t.eval}, {"total_seconds", t.total()}, {"steps", t.steps}};
}

nlohmann::json component_json(const ComponentProof& c) {
  nlohmann::json j{{"name", c.name}, {"after", c.after}, {"role", c.role}};
  if (c.before) j["before"] = *c.before;
  if (c.identical) j["identical"] = *c.identical;
  return j;
}

nlohmann::json task_json(const TaskProof& t) {
  nlohmann::json probes = nlohmann::json::object();
  for (const auto& p : t.probes)
    probes[p.teacher] = {{"val_accuracy", p.val_accuracy}, {"test_accuracy", p.test_accuracy}, {"steps", p.steps}};
  nlohmann::json new_probes = nlohmann::json::object();
  for (const auto& [teacher, acc] : t.new_teacher_probes) new_probes[teacher] = acc;
  return {{"task", t.task},           {"after", t.after},         {"before", t.before ? nlohmann::json(*t.before) : nlohmann::json()},
          {"retention", t.retention}, {"contract", t.contract},   {"violated", t.violated},
          {"probes", probes},         {"new_teacher_probes", new_probes}};
}

void print_components(const Proof& p, std::ostream& out) {
  char line[512];
  out << "\n  frozen components (sha256 of parameters and buffers, base run -> new run):\n";
  for (const auto& c : p.components) {
    if (c.role != "frozen") continue;
    std::snprintf(line, sizeof line, "    %-28s %.16s -> %.16s  %s\n", c.name.c_str(), c.before.value_or("").c_str(),
                  c.after.c_str(), c.identical.value_or(false) ? "identical" : "CHANGED");
    out << line;
  }
}

void print_tasks(const Proof& p, std::ostream& out) {
  char line[512];
  out << "\n";
  std::snprintf(line, sizeof line, "  %-20s %9s %9s %9s  %s\n", "task", "before", "after", "change", "probes of the new teachers");
  out << line;
  for (const auto& t : p.tasks) {
    std::string probes;
    for (const auto& [name, acc] : t.new_teacher_probes) {
      char b[96];
      std::snprintf(b, sizeof b, "%s%s %.4f", probes.empty() ? "" : ", ", name.c_str(), acc);
      probes += b;
    }
    char before[32] = "-", change[32] = "new";
    if (t.before) {
      std::snprintf(before, sizeof before, "%.4f", *t.before);
      std::snprintf(change, sizeof change, "%+.4f", t.after - *t.before);
    }
    std::snprintf(line, sizeof line, "  %-20s %9s %9.4f %9s  %s\n", t.task.c_str(), before, t.after, change,
                  probes.empty() ? "-" : probes.c_str());
    out << line;
  }
}

void print_timing(const Proof& p, std::ostream& out) {
  char line[512];
  const auto& tm = p.timing;
  std::snprintf(line, sizeof line,
                "\n  wall time: features %.1f s, training %.1f s (%lld steps on %s), evaluation %.1f s; total %.1f s\n",
                tm.cache, tm.train, (long long)tm.steps, join_or(p.trained_tasks, "-").c_str(), tm.eval, tm.total());
  out << line;
  if (!p.full_retrain) return;
  const auto& f = p.full_retrain->timing;
  std::snprintf(line, sizeof line,
                "  full retrain of the same composition: features %.1f s, training %.1f s (%lld steps), "
                "evaluation %.1f s; total %.1f s\n  incremental / full: %.3f (training + evaluation), %.3f (total)\n",
                f.cache, f.train, (long long)f.steps, f.eval, f.total(), p.ratio_train_and_eval, p.ratio_total);
  out << line;
}

}  // namespace

nlohmann::json to_json(const Proof& p) {
  nlohmann::json lost = nlohmann::json::array(), components = nlohmann::json::array(), tasks = nlohmann::json::array();
  for (const auto& l : p.lost_tasks) lost.push_back({{"task", l.task}, {"head", l.head}, {"why", l.why}});
  for (const auto& c : p.components) components.push_back(component_json(c));
  for (const auto& t : p.tasks) tasks.push_back(task_json(t));
  nlohmann::json j{{"format", 1},
                   {"kind", p.kind},
                   {"base_run", p.base_run},
                   {"run", p.run},
                   {"added_teachers", p.added_teachers},
                   {"removed_teachers", p.removed_teachers},
                   {"added_heads", p.added_heads},
                   {"lost_tasks", lost},
                   {"trained", p.trained},
                   {"trained_tasks", p.trained_tasks},
                   {"anti_forgetting", {{"loss", "kl"}, {"weight", p.kl_weight}, {"temperature", p.kl_temperature}}},
                   {"components", components},
                   {"frozen_identical", p.frozen_identical},
                   {"tasks", tasks},
                   {"violations", p.violations},
                   {"timing", timing_json(p.timing)},
                   {"stopped_early", p.stopped_early},
                   {"notes", p.notes},
                   {"status", p.ok() ? "ok" : "failing"}};
  if (p.full_retrain) {
    nlohmann::json accuracy = nlohmann::json::object();
    for (const auto& [task, acc] : p.full_retrain->accuracy) accuracy[task] = acc;
    j["full_retrain"] = {{"run", p.full_retrain->run}, {"timing", timing_json(p.full_retrain->timing)}, {"accuracy", accuracy}};
    j["ratio_train_and_eval"] = p.ratio_train_and_eval;
    j["ratio_total"] = p.ratio_total;
  }
  return j;
}

void print_proof(const Proof& p, std::ostream& out) {
  out << "\n" << p.kind << ": " << p.base_run << " -> " << p.run << "\n";
  out << "  added teachers: " << join_or(p.added_teachers, "-") << "   removed: " << join_or(p.removed_teachers, "-")
      << "   trained: " << join_or(p.trained, "-") << "\n";
  if (!p.lost_tasks.empty()) {
    out << "  capabilities lost:\n";
    for (const auto& l : p.lost_tasks) out << "    " << l.task << " (head " << l.head << "): " << l.why << "\n";
  }
  print_components(p, out);
  print_tasks(p, out);
  print_timing(p, out);
  out << "  status: " << (p.ok() ? "ok" : "failing") << "\n";
}

}  // namespace nexus
