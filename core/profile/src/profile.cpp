#include "nexus/profile/profile.hpp"

#include <nexus/plugin_api.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <ostream>

#include "nexus/base/errors.hpp"
#include "nexus/data/caching.hpp"
#include "nexus/data/feature_cache.hpp"
#include "nexus/model/system.hpp"
#include "nexus/run/run_folder.hpp"

namespace nexus::profile {

namespace {

// Every training row a teacher's tower learns from: its tasks' train splits together, thinned.
at::Tensor training_rows(const std::vector<TaskData>& data, size_t teacher, int64_t max_rows) {
  std::vector<at::Tensor> parts;
  for (const auto& task : data)
    if (teacher < task.train.size() && task.train[teacher].defined() && task.train[teacher].size(0) > 0)
      parts.push_back(task.train[teacher]);
  if (parts.empty()) return {};
  return thin_rows(parts.size() == 1 ? parts[0] : torch::cat(parts), max_rows);
}

Redundancy redundancy(const std::string& task, const std::string& dataset, const SplitFeatures& split,
                      const ComposedSystem& sys, const std::vector<size_t>& readers, int64_t max_rows) {
  Redundancy r;
  r.task = task;
  r.dataset = dataset;
  std::vector<at::Tensor> standard;
  for (size_t i : readers) {
    r.teachers.push_back(sys.teachers()[i].name);
    standard.push_back(standardise(thin_rows(split.features[i], max_rows)));
  }
  r.cka.assign(readers.size(), std::vector<double>(readers.size(), 1.0));
  for (size_t a = 0; a < readers.size(); ++a)
    for (size_t b = a + 1; b < readers.size(); ++b)
      r.cka[a][b] = r.cka[b][a] = linear_cka(standard[a], standard[b]);
  return r;
}

TowerSize tower_size(const ComposedSystem& sys, const config::Composition& comp, size_t i, const Spectrum& s) {
  const auto& slot = sys.teachers()[i];
  TowerSize t;
  t.teacher = slot.name;
  t.tower = comp.teachers[i].tower.plugin;
  t.rows = s.rows;
  t.width = slot.tower->in_features();
  t.rank_99 = s.rank_99;
  t.suggested_rank = suggested_rank(s, slot.tower->in_features(), slot.tower->out_features());
  t.tower_parameters = parameter_count(*slot.tower);
  t.lowrank_parameters = (slot.tower->in_features() + slot.tower->out_features()) * t.suggested_rank + slot.tower->out_features();
  t.linear_parameters = (slot.tower->in_features() + 1) * slot.tower->out_features();
  return t;
}

nlohmann::json spectrum_json(const Spectrum& s) {
  // The first 512 fractions draw the curve; the ranks summarise the rest.
  const std::vector<double> head(s.explained.begin(), s.explained.begin() + std::min<size_t>(512, s.explained.size()));
  return {{"rows", s.rows},           {"width", s.width},         {"explained", head},
          {"truncated", s.truncated}, {"rank_90", s.rank_90},     {"rank_95", s.rank_95},
          {"rank_99", s.rank_99},     {"effective_rank", s.effective_rank}, {"dead_dims", s.dead_dims},
          {"norm_mean", s.norm_mean}, {"norm_std", s.norm_std}};
}

}  // namespace

int64_t suggested_rank(const Spectrum& s, int64_t d_in, int64_t d_out) {
  const int64_t rounded = (std::max<int64_t>(1, s.rank_99) + 7) / 8 * 8;
  return std::max<int64_t>(1, std::min({rounded, d_in, d_out}));
}

CompositionProfile profile_composition(const config::Composition& comp, ComposedSystem& sys, cache::FeatureCache& store,
                                       const ProfileOptions& options) {
  torch::NoGradGuard no_grad;
  CompositionProfile out;
  std::vector<TaskData> data;
  std::vector<std::string> seen;
  for (const auto& head : comp.heads) {
    if (std::find(seen.begin(), seen.end(), head.task) != seen.end()) continue;
    seen.push_back(head.task);
    const auto started = std::chrono::steady_clock::now();
    const auto split = load_split_features(comp, sys, store, head.task, "train");
    const auto& dataset = comp.tasks.at(head.task).dataset;
    std::vector<size_t> readers;
    for (size_t i = 0; i < split.features.size(); ++i) {
      if (!split.features[i].defined()) continue;
      readers.push_back(i);
      TeacherProfile p{sys.teachers()[i].name, head.task, dataset, split.split,
                       spectrum(thin_rows(split.features[i], options.max_rows)), 0};
      p.suggested_rank = suggested_rank(p.spectrum, sys.teachers()[i].tower->in_features(), sys.teachers()[i].tower->out_features());
      out.teachers.push_back(std::move(p));
    }
    if (readers.size() > 1) out.redundancy.push_back(redundancy(head.task, dataset, split, sys, readers, options.max_rows));
    TaskData task;
    task.task = head.task;
    task.train = split.features;
    data.push_back(std::move(task));
    spdlog::info("profiled {} ({} teachers) in {:.1f} s", head.task, readers.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  for (size_t i = 0; i < sys.teachers().size(); ++i) {
    // A teacher read by one task only has that task's spectrum already, on the very same rows.
    std::vector<const TeacherProfile*> own;
    for (const auto& p : out.teachers)
      if (p.teacher == sys.teachers()[i].name) own.push_back(&p);
    if (own.size() == 1) out.towers.push_back(tower_size(sys, comp, i, own[0]->spectrum));
    else if (const auto rows = training_rows(data, i, options.max_rows); rows.defined())
      out.towers.push_back(tower_size(sys, comp, i, spectrum(rows)));
  }
  return out;
}

nlohmann::json to_json(const CompositionProfile& p) {
  nlohmann::json teachers = nlohmann::json::array(), cka = nlohmann::json::array(), towers = nlohmann::json::array();
  for (const auto& t : p.teachers) {
    auto j = spectrum_json(t.spectrum);
    j.update({{"teacher", t.teacher}, {"task", t.task}, {"dataset", t.dataset}, {"split", t.split}, {"suggested_rank", t.suggested_rank}});
    teachers.push_back(j);
  }
  for (const auto& r : p.redundancy)
    cka.push_back({{"task", r.task}, {"dataset", r.dataset}, {"teachers", r.teachers}, {"matrix", r.cka}});
  for (const auto& t : p.towers)
    towers.push_back({{"teacher", t.teacher},   {"tower", t.tower},         {"rows", t.rows},
                      {"width", t.width},       {"rank_99", t.rank_99},     {"suggested_rank", t.suggested_rank},
                      {"tower_parameters", t.tower_parameters}, {"lowrank_parameters", t.lowrank_parameters},
                      {"linear_parameters", t.linear_parameters}});
  return {{"format", 1}, {"variance_for_auto", kAutoVariance}, {"teachers", teachers}, {"cka", cka}, {"towers", towers}};
}

void print_profile(const CompositionProfile& p, std::ostream& out) {
  char line[512];
  std::snprintf(line, sizeof line, "%-14s %-16s %6s %6s %6s %6s %6s %8s %5s %13s\n", "teacher", "task", "rows", "width",
                "r90", "r95", "r99", "eff.rank", "dead", "norm");
  out << line;
  for (const auto& t : p.teachers) {
    const auto& s = t.spectrum;
    std::snprintf(line, sizeof line, "%-14s %-16s %6lld %6lld %6lld %6lld %5lld%s %8.1f %5lld %6.3f±%-6.3f\n", t.teacher.c_str(),
                  t.task.c_str(), (long long)s.rows, (long long)s.width, (long long)s.rank_90, (long long)s.rank_95,
                  (long long)s.rank_99, s.truncated ? "+" : " ", s.effective_rank, (long long)s.dead_dims, s.norm_mean, s.norm_std);
    out << line;
  }
  for (const auto& r : p.redundancy) {
    out << "\nlinear CKA on " << r.task << " (" << r.dataset << "):\n";
    for (size_t a = 0; a < r.teachers.size(); ++a) {
      std::snprintf(line, sizeof line, "  %-14s", r.teachers[a].c_str());
      out << line;
      for (double v : r.cka[a]) {
        std::snprintf(line, sizeof line, " %6.3f", v);
        out << line;
      }
      out << "\n";
    }
  }
  out << "\ntower sizes (rank for " << int(kAutoVariance * 100) << " % of the variance; what `rank: auto` takes):\n";
  for (const auto& t : p.towers) {
    std::snprintf(line, sizeof line, "  %-14s rank %4lld (r99 %lld of %lld) -> lowrank %lld parameters; the %s tower has %lld%s\n",
                  t.teacher.c_str(), (long long)t.suggested_rank, (long long)t.rank_99, (long long)t.width,
                  (long long)t.lowrank_parameters, t.tower.c_str(), (long long)t.tower_parameters,
                  t.lowrank_parameters > t.linear_parameters ? "; a linear tower is smaller here" : "");
    out << line;
  }
}

ProfileOutcome profile_target(const ProfileRequest& r, const registry::Registry& reg) {
  namespace fs = std::filesystem;
  const bool is_run = fs::is_directory(r.target);
  if (!is_run && !fs::is_regular_file(r.target))
    throw InputError("nothing to profile at " + r.target + ": give a composition file or a run folder");
  config::Composition comp;
  if (is_run) {
    const auto info = run::read_run_info(r.target);
    if (const auto note = run::composition_note(info, r.target); !note.empty()) spdlog::warn("{}", note);
    comp = run::load_run_composition(info, plugin_catalog(reg));
  } else {
    comp = config::load_composition(r.target, {}, plugin_catalog(reg));
  }
  auto sys = ComposedSystem::build(comp, reg);
  cache::FeatureCache store(feature_cache_root(r.cache_root));
  CachingOptions co;
  co.splits = {"train"};
  co.progress = r.progress;
  cache_features(comp, sys, store, co);
  ProfileOutcome out;
  out.profile = profile_composition(comp, sys, store, r.options);
  out.json = to_json(out.profile);
  out.json["composition"] = comp.name;
  if (is_run) {
    out.written = (fs::path(r.target) / kProfileFile).string();
    run::write_json_file(out.written, out.json.dump(1));
  }
  return out;
}

std::string DataSizedOption::assignment() const {
  return "teachers." + std::to_string(teacher) + ".tower.options." + option + "=" + std::to_string(value);
}

std::vector<DataSizedOption> size_towers(config::Composition& comp, ComposedSystem& sys, const std::vector<TaskData>& data,
                                         const registry::Registry& reg) {
  torch::NoGradGuard no_grad;
  std::vector<DataSizedOption> sizes;
  std::vector<size_t> rebuild;
  for (size_t i = 0; i < comp.teachers.size() && i < sys.teachers().size(); ++i) {
    for (auto& [key, value] : comp.teachers[i].tower.options) {
      if (value != kDataSized) continue;
      const auto rows = training_rows(data, i, kDefaultMaxRows);
      if (!rows.defined())
        throw InputError("the tower of teacher '" + comp.teachers[i].name + "' takes " + key +
                         ": auto, but no task gives that teacher training rows to measure");
      const auto& tower = *sys.teachers()[i].tower;
      const auto s = spectrum(rows);
      sizes.push_back({i, key, suggested_rank(s, tower.in_features(), tower.out_features())});
      value = std::to_string(sizes.back().value);
      spdlog::info("tower of {}: {} = {} ({} of {} components hold {:.0f} % of the variance of {} training rows)",
                   comp.teachers[i].name, key, sizes.back().value, s.rank_99, s.width, kAutoVariance * 100, s.rows);
    }
    if (!sizes.empty() && sizes.back().teacher == i) rebuild.push_back(i);
  }
  if (!rebuild.empty()) sys.rebuild_towers(comp, reg, rebuild);
  return sizes;
}

std::vector<std::string> initialise_towers(ComposedSystem& sys, const std::vector<TaskData>& data,
                                           const std::set<std::string>& frozen) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> done;
  for (size_t i = 0; i < sys.teachers().size(); ++i) {
    const auto& slot = sys.teachers()[i];
    auto* fits = dynamic_cast<InitialisedFromData*>(slot.tower.get());
    if (!fits || frozen.count("tower." + slot.name)) continue;
    auto rows = training_rows(data, i, kDefaultMaxRows);
    if (!rows.defined()) continue;
    rows = rows.index_select(0, rows.isfinite().all(1).nonzero().squeeze(1));
    if (rows.size(0) < 2) continue;
    // What the tower will see: the system's own fitted FeatureNorm, on the tower's device.
    const auto x = slot.norm->forward(rows.to(torch::kFloat).to(slot.norm->mean.device())).cpu();
    const auto pc = principal_components(x, fits->components_wanted());
    const auto device = slot.norm->mean.device();
    fits->initialise_from({pc.mean.to(device), pc.components.to(device), pc.variances.to(device), x.size(0)});
    done.push_back("tower." + slot.name);
  }
  return done;
}

}  // namespace nexus::profile
