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
  if (!c.why.empty()) j["why"] = c.why;
  return j;
}

std::string check_text(const ContractCheck& c) {
  char b[256];
  std::snprintf(b, sizeof b, "%s %.4f / %.4f (%s) = %.4f %s %.2f", c.task.c_str(), c.composite, c.best_probe,
                c.best_teacher.c_str(), c.retention, c.holds() ? ">=" : "<", c.contract);
  return b;
}

void print_stages(const Proof& p, std::ostream& out) {
  if (p.stages.empty()) return;
  out << "\n  training stages (--repair " << p.repair_policy
      << "; after each, the contracts as the gate judges them: composite / best probe = retention on the test split):\n";
  int n = 0;
  for (const auto& st : p.stages) {
    char line[128];
    std::snprintf(line, sizeof line, "    %d. %-7s ", ++n, to_string(st.scope).c_str());
    out << line << (n == 1 ? "trains " : "also trains ") << join_or(st.widened, "-") << " on "
        << join_or(st.trained_tasks, "-") << ", " << st.steps << " steps"
        << (n > 1 && st.best_step == 0 ? " (kept the weights it started from: validation loss did not improve)" : "") << "\n";
    for (const auto& c : st.checks) out << "                " << check_text(c) << (c.holds() ? "" : "  would fail") << "\n";
  }
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
  bool header = false;
  for (const auto& c : p.components) {
    if (c.role != "widened") continue;
    if (!header) out << "  widened by the repair (trained on from the base run's weights; why: the tasks that missed their contracts):\n";
    header = true;
    std::snprintf(line, sizeof line, "    %-28s %.16s -> %.16s  %s\n", c.name.c_str(), c.before.value_or("").c_str(),
                  c.after.c_str(), c.why.c_str());
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

std::string to_string(RepairScope scope) {
  switch (scope) {
    case RepairScope::None: return "none";
    case RepairScope::Router: return "router";
    case RepairScope::Towers: return "towers";
    case RepairScope::Heads: return "heads";
  }
  return "?";
}

nlohmann::json to_json(const RepairStage& st) {
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : st.checks)
    checks.push_back({{"task", c.task}, {"composite", c.composite}, {"best_probe", c.best_probe}, {"best_teacher", c.best_teacher},
                      {"retention", c.retention}, {"contract", c.contract}, {"holds", c.holds()}});
  return {{"scope", to_string(st.scope)}, {"widened", st.widened}, {"why", st.why}, {"trained_tasks", st.trained_tasks},
          {"steps", st.steps},            {"best_step", st.best_step}, {"folder", st.folder}, {"checks", checks}};
}

RepairStage repair_stage_from_json(const nlohmann::json& j) {
  RepairStage st;
  const auto scope = j.at("scope").get<std::string>();
  for (const auto s : {RepairScope::None, RepairScope::Router, RepairScope::Towers, RepairScope::Heads})
    if (to_string(s) == scope) st.scope = s;
  st.widened = j.at("widened").get<std::vector<std::string>>();
  st.why = j.at("why").get<std::map<std::string, std::string>>();
  st.trained_tasks = j.at("trained_tasks").get<std::vector<std::string>>();
  st.steps = j.at("steps");
  st.best_step = j.value("best_step", int64_t(0));
  st.folder = j.at("folder");
  for (const auto& c : j.at("checks"))
    st.checks.push_back({c.at("task"), c.at("best_teacher"), c.at("composite"), c.at("best_probe"), c.at("retention"),
                         c.at("contract")});
  return st;
}

nlohmann::json to_json(const Proof& p) {
  nlohmann::json lost = nlohmann::json::array(), components = nlohmann::json::array(), tasks = nlohmann::json::array();
  for (const auto& l : p.lost_tasks) lost.push_back({{"task", l.task}, {"head", l.head}, {"why", l.why}});
  for (const auto& c : p.components) components.push_back(component_json(c));
  for (const auto& t : p.tasks) tasks.push_back(task_json(t));
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& st : p.stages) stages.push_back(to_json(st));
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
                   {"repair", {{"policy", p.repair_policy}, {"stages", stages}}},
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
  print_stages(p, out);
  print_tasks(p, out);
  print_timing(p, out);
  out << "  status: " << (p.ok() ? "ok" : "failing") << "\n";
}

nlohmann::json preview_json(const Proof& p) {
  const auto& v = *p.preview;
  nlohmann::json lost = nlohmann::json::array(), stages = nlohmann::json::array(), now = nlohmann::json::array();
  for (const auto& l : p.lost_tasks) lost.push_back({{"task", l.task}, {"head", l.head}, {"why", l.why}});
  for (const auto& st : v.stages)
    stages.push_back({{"scope", to_string(st.scope)}, {"components", st.widened}, {"why", st.why}, {"steps", st.steps}});
  for (const auto& c : v.now)
    now.push_back({{"task", c.task}, {"composite", c.composite}, {"best_probe", c.best_probe}, {"best_teacher", c.best_teacher},
                   {"retention", c.retention}, {"contract", c.contract}, {"holds", c.holds()}});
  nlohmann::json j{{"dry_run", true},          {"kind", p.kind},
                   {"base_run", p.base_run},   {"run", p.run},
                   {"added_teachers", p.added_teachers}, {"removed_teachers", p.removed_teachers},
                   {"added_heads", p.added_heads}, {"lost_tasks", lost},
                   {"frozen", v.frozen},       {"trained", v.trained},
                   {"changed_tasks", v.changed_tasks}, {"never_change", v.never_change},
                   {"repair", {{"policy", p.repair_policy}, {"stages", stages}}},
                   {"now", now},               {"notes", p.notes}};
  if (!v.no_prediction.empty()) j["no_prediction"] = v.no_prediction;
  return j;
}

void print_preview(const Proof& p, std::ostream& out) {
  const auto& v = *p.preview;
  out << "\n" << p.kind << " (dry run: nothing is written): " << p.base_run << " -> " << p.run << "\n";
  out << "  added teachers: " << join_or(p.added_teachers, "-") << "   removed: " << join_or(p.removed_teachers, "-") << "\n";
  for (const auto& l : p.lost_tasks) out << "  capability lost: " << l.task << " (head " << l.head << "): " << l.why << "\n";
  out << "  tasks the change can affect: " << join_or(v.changed_tasks, "-") << "\n";
  out << "  never trained (stay bit-identical): " << join_or(v.never_change, "-") << "\n";
  if (v.stages.empty()) out << "  stages: none (nothing is trained)\n";
  else
    out << "  stages (--repair " << p.repair_policy
        << (p.repair_policy == "auto" ? "; a stage runs only while a task misses its contract, as the gate judges it)"
                                      : "; every stage up to it runs)")
        << ":\n";
  int n = 0;
  for (const auto& st : v.stages) {
    char line[96];
    std::snprintf(line, sizeof line, "    %d. %-7s ", ++n, to_string(st.scope).c_str());
    out << line;
    if (n == 1) out << "trains " << join_or(st.widened, "-") << " on " << join_or(st.trained_tasks, "-") << ", " << st.steps << " steps\n";
    else out << (st.widened.empty() ? "nothing left to widen" : "also trains at most " + join(st.widened)) << "\n";
  }
  if (!v.no_prediction.empty()) {
    out << "  contracts not judged now: " << v.no_prediction << "\n";
    return;
  }
  out << "  now, with nothing trained (the router renormalised over the remaining teachers):\n";
  for (const auto& c : v.now) out << "    " << check_text(c) << (c.holds() ? "" : "  would fail") << "\n";
}

}  // namespace nexus
