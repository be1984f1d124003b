// teachers, router, heads, losses: the parts that become modules.
#include <algorithm>
#include <cctype>
#include <map>

#include "plugin_check.hpp"
#include "scalars.hpp"
#include "sections.hpp"

namespace nexus::config::detail {

namespace {

const std::vector<std::string> kTeacherKeys = {"name",  "plugin",  "version", "modality",
                                               "width", "options", "tower"};
const std::vector<std::string> kTowerKeys = {"plugin", "version", "options"};
const std::vector<std::string> kRouterKeys = {"plugin", "version", "options", "input", "condition"};
const std::vector<std::string> kHeadKeys = {"name",   "task",    "outputs",
                                            "plugin", "version", "options"};
const std::vector<std::string> kLossKeys = {"plugin", "head",     "weight",
                                            "schedule", "version", "options"};
const std::vector<std::string> kModalities = {"text", "image", "audio", "id", "tensor"};

std::string indexed(const std::string& list, size_t i) {
  return list + "[" + std::to_string(i) + "]";
}

bool valid_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

// An explicitly given integer option, if it is one (type errors were already reported).
std::optional<int64_t> int_option(const PluginSpec& spec, const std::string& key) {
  auto it = spec.options.find(key);
  int64_t v = 0;
  if (it == spec.options.end() || !parse_int(it->second, v)) return std::nullopt;
  return v;
}

// Reads a required, unique `name`; returns the label used in later messages.
std::string read_name(Context& ctx, const Node& item, const std::string& where,
                      const std::string& noun, std::map<std::string, Location>& seen,
                      bool restrict_charset, std::string& name) {
  const Node* n = ctx.check.require(item, "name", where, "every " + noun + " needs a unique name");
  if (!n) return where;
  auto s = ctx.check.string(*n, "'name' of " + where);
  if (!s) return where;
  if (restrict_charset && !valid_name(*s)) {
    ctx.check.error(n->loc, noun + " name '" + *s + "' may only contain letters, digits, '_' "
                                                    "and '-'",
                    "the name is used in file names and metric keys");
  }
  auto [first, inserted] = seen.emplace(*s, n->loc);
  if (!inserted)
    ctx.check.error(n->loc, "duplicate " + noun + " name '" + *s + "'",
                    "the first " + noun + " named '" + *s + "' is at " + first->second.str() +
                        "; names must be unique");
  name = *s;
  return noun + " '" + *s + "'";
}

void check_widths(Context& ctx, TeacherSpec& t) {
  const auto& locs = t.tower.option_locs;
  if (auto d_in = int_option(t.tower, "d_in"); d_in && t.width && *d_in != *t.width) {
    ctx.check.error(locs.at("d_in"),
                    "tower of teacher '" + t.name + "' takes d_in=" + std::to_string(*d_in) +
                        " but the teacher's width is " + std::to_string(*t.width),
                    "remove d_in (the host fills it from the teacher's width) or make them equal");
  }
  if (auto d_out = int_option(t.tower, "d_out");
      d_out && ctx.shared_dim_known && *d_out != ctx.out.shared_dim) {
    ctx.check.error(locs.at("d_out"),
                    "tower of teacher '" + t.name + "' gives d_out=" + std::to_string(*d_out) +
                        " but shared_dim is " + std::to_string(ctx.out.shared_dim),
                    "every teacher tower projects into the shared space; remove d_out (the host "
                    "fills in shared_dim) or make them equal");
  }
  if (auto w = int_option(t.teacher, "width"); w && t.width && *w != *t.width) {
    ctx.check.error(t.teacher.option_locs.at("width"),
                    "teacher '" + t.name + "' declares width " + std::to_string(*t.width) +
                        " but its plugin option width is " + std::to_string(*w),
                    "give the width once, or make both equal");
  }
}

std::vector<std::string> names_of(const std::vector<TeacherSpec>& teachers) {
  std::vector<std::string> names;
  for (const auto& t : teachers) names.push_back(t.name);
  return names;
}

}  // namespace

const Node* nonempty_sequence(Checker& check, const Node& n, const std::string& what,
                              const std::string& item_name) {
  if (!n.is_seq()) {
    check.error(n.loc, what + " must be a sequence of " + item_name + " (lines starting with "
                                                                      "'- '), got " +
                           describe_value(n));
    return nullptr;
  }
  if (n.items.empty()) {
    check.error(n.loc, what + " is empty; at least one entry is required");
    return nullptr;
  }
  return &n;
}

void check_teachers(Context& ctx, const Node& teachers) {
  if (!nonempty_sequence(ctx.check, teachers, "'teachers'", "teacher mappings")) return;
  std::map<std::string, Location> seen;
  for (size_t i = 0; i < teachers.items.size(); ++i) {
    const Node& item = teachers.items[i];
    const std::string slot = indexed("teachers", i);
    if (!ctx.check.map(item, slot, "a teacher mapping (name, plugin, tower, ...)")) continue;
    TeacherSpec t;
    t.loc = item.loc;
    const std::string where = read_name(ctx, item, slot, "teacher", seen, true, t.name);
    ctx.check.check_keys(item, kTeacherKeys, where);
    check_plugin(ctx.check, item, ctx.catalog, {"teacher", where, {}}, t.teacher);
    if (const Node* m = item.find("modality"))
      if (auto v = ctx.check.choice(*m, "'modality' of " + where, kModalities)) t.modality = *v;
    if (const Node* w = item.find("width"))
      t.width = ctx.check.integer(*w, "'width' of " + where, positive());
    if (const Node* tower = ctx.check.require(
            item, "tower", where, "every teacher needs a tower, e.g. tower: {plugin: linear}")) {
      const std::string tower_where = "the tower of " + where;
      if (ctx.check.map(*tower, tower_where, "a mapping (plugin, version, options)")) {
        ctx.check.check_keys(*tower, kTowerKeys, tower_where);
        check_plugin(ctx.check, *tower, ctx.catalog, {"tower", tower_where, {"d_in", "d_out"}, PluginRole::DataSizing::Allowed},
                     t.tower);
        check_widths(ctx, t);
      }
    }
    ctx.out.teachers.push_back(std::move(t));
  }
}

void check_router(Context& ctx, const Node& router) {
  if (!ctx.check.map(router, "'router'", "a mapping (plugin, version, options, input)")) return;
  ctx.check.check_keys(router, kRouterKeys, "router");
  RouterSpec& r = ctx.out.router;
  check_plugin(ctx.check, router, ctx.catalog, {"router", "router", {"d_in", "n_experts", "n_context"}},
               r.router);
  if (const Node* c = router.find("condition")) {
    if (auto v = ctx.check.choice(*c, "'router.condition'", {"none", "task", "modality"})) r.condition = *v;
  }

  std::optional<int64_t> input_width;  // what the router reads, when it is known
  if (ctx.shared_dim_known) input_width = ctx.out.shared_dim;
  if (const Node* in = router.find("input")) {
    if (auto s = ctx.check.string(*in, "'router.input'")) {
      const std::string prefix = "teacher:";
      if (*s == "projected_mean") {
        r.input = *s;
      } else if (s->rfind(prefix, 0) == 0) {
        const std::string name = s->substr(prefix.size());
        auto names = names_of(ctx.out.teachers);
        auto it = std::find_if(ctx.out.teachers.begin(), ctx.out.teachers.end(),
                               [&](const TeacherSpec& t) { return t.name == name; });
        if (it == ctx.out.teachers.end()) {
          const std::string guess = did_you_mean(name, names);
          ctx.check.error(in->loc, "router.input names teacher '" + name +
                                       "', but no teacher has that name",
                          (guess.empty() ? "" : "did you mean 'teacher:" + guess + "'? ") +
                              "teachers: " + join(names));
        } else {
          r.input = *s;
          input_width = it->width;
        }
      } else {
        ctx.check.error(in->loc,
                        "router.input must be 'projected_mean' or 'teacher:<name>', got '" +
                            *s + "'",
                        "projected_mean routes on the mean of the projected teacher outputs; "
                        "teacher:<name> routes on one teacher's raw output");
      }
    }
  }
  const auto& locs = r.router.option_locs;
  if (auto n = int_option(r.router, "n_experts");
      n && !ctx.out.teachers.empty() && *n != static_cast<int64_t>(ctx.out.teachers.size())) {
    ctx.check.error(locs.at("n_experts"),
                    "router n_experts=" + std::to_string(*n) + " but the composition has " +
                        std::to_string(ctx.out.teachers.size()) + " teacher(s)",
                    "the router weighs one expert per teacher; remove n_experts and the host "
                    "fills it in");
  }
  if (r.condition != "none") input_width.reset();  // plus the context columns, counted by the host
  if (auto d_in = int_option(r.router, "d_in"); d_in && input_width && *d_in != *input_width) {
    ctx.check.error(locs.at("d_in"),
                    "router takes d_in=" + std::to_string(*d_in) + " but its input (" + r.input +
                        ") has width " + std::to_string(*input_width),
                    "remove d_in and the host fills it in");
  }
}

void check_heads(Context& ctx, const Node& heads) {
  if (!nonempty_sequence(ctx.check, heads, "'heads'", "head mappings")) return;
  std::map<std::string, Location> seen;
  std::vector<std::string> task_names;
  for (const auto& [task, spec] : ctx.out.tasks) task_names.push_back(task);
  for (size_t i = 0; i < heads.items.size(); ++i) {
    const Node& item = heads.items[i];
    const std::string slot = indexed("heads", i);
    if (!ctx.check.map(item, slot, "a head mapping (name, task, outputs, plugin, ...)")) continue;
    HeadSpec h;
    h.loc = item.loc;
    const std::string where = read_name(ctx, item, slot, "head", seen, false, h.name);
    ctx.check.check_keys(item, kHeadKeys, where);
    if (const Node* t = ctx.check.require(item, "task", where, "name the task this head solves")) {
      if (auto s = ctx.check.string(*t, "'task' of " + where)) {
        h.task = *s;
        if (ctx.tasks_declared && !ctx.out.tasks.count(h.task)) {
          const std::string guess = did_you_mean(h.task, task_names);
          ctx.check.error(t->loc, where + " names task '" + h.task +
                                      "', which is not one of data.tasks",
                          (guess.empty() ? "" : "did you mean '" + guess + "'? ") +
                              "declared tasks: " + join(task_names));
        }
      }
    }
    std::optional<int64_t> outputs;
    if (const Node* o = ctx.check.require(item, "outputs", where,
                                          "the number of outputs (e.g. classes) of the head"))
      outputs = ctx.check.integer(*o, "'outputs' of " + where, positive());
    if (outputs) h.outputs = *outputs;
    check_plugin(ctx.check, item, ctx.catalog, {"tower", where, {"d_in", "d_out"}}, h.tower);
    const auto& locs = h.tower.option_locs;
    if (auto d_in = int_option(h.tower, "d_in");
        d_in && ctx.shared_dim_known && *d_in != ctx.out.shared_dim) {
      ctx.check.error(locs.at("d_in"),
                      "tower of " + where + " takes d_in=" + std::to_string(*d_in) +
                          " but shared_dim is " + std::to_string(ctx.out.shared_dim),
                      "heads read the shared space; remove d_in (the host fills in shared_dim) "
                      "or make them equal");
    }
    if (auto d_out = int_option(h.tower, "d_out"); d_out && outputs && *d_out != *outputs) {
      ctx.check.error(locs.at("d_out"),
                      "tower of " + where + " gives d_out=" + std::to_string(*d_out) +
                          " but the head has outputs: " + std::to_string(*outputs),
                      "remove d_out (the host fills in outputs) or make them equal");
    }
    ctx.out.heads.push_back(std::move(h));
  }
}

void check_losses(Context& ctx, const Node& losses) {
  if (!nonempty_sequence(ctx.check, losses, "'losses'", "loss mappings")) return;
  std::vector<std::string> head_names;
  for (const auto& h : ctx.out.heads) head_names.push_back(h.name);
  for (size_t i = 0; i < losses.items.size(); ++i) {
    const Node& item = losses.items[i];
    const std::string where = indexed("losses", i);
    if (!ctx.check.map(item, where, "a loss mapping (plugin, head, weight, ...)")) continue;
    LossSpec l;
    l.loc = item.loc;
    ctx.check.check_keys(item, kLossKeys, where);
    check_plugin(ctx.check, item, ctx.catalog, {"loss", where, {}}, l.loss);
    if (const Node* h = item.find("head")) {
      if (auto s = ctx.check.string(*h, "'head' of " + where)) {
        l.head = *s;
        if (std::find(head_names.begin(), head_names.end(), l.head) == head_names.end()) {
          const std::string guess = did_you_mean(l.head, head_names);
          ctx.check.error(h->loc, where + " refers to head '" + l.head +
                                      "', but no head has that name",
                          (guess.empty() ? "" : "did you mean '" + guess + "'? ") +
                              "heads: " + join(head_names));
        }
      }
    }
    if (const Node* w = item.find("weight"))
      if (auto v = ctx.check.number(*w, "'weight' of " + where, non_negative())) l.weight = *v;
    if (const Node* s = item.find("schedule")) {
      const std::string sw = "the schedule of " + where;
      if (ctx.check.map(*s, sw, "a mapping (warmup_steps, start)")) {
        ctx.check.check_keys(*s, {"warmup_steps", "start"}, sw);
        if (const Node* w = s->find("warmup_steps"))
          if (auto v = ctx.check.integer(*w, "'warmup_steps' of " + sw, non_negative()))
            l.warmup_steps = *v;
        if (const Node* st = s->find("start"))
          if (auto v = ctx.check.number(*st, "'start' of " + sw, unit_closed()))
            l.start_factor = *v;
      }
    }
    ctx.out.losses.push_back(std::move(l));
  }
}

}  // namespace nexus::config::detail
