// data, trainer, retention: the parts that steer a training run.
#include <algorithm>
#include <cctype>

#include "sections.hpp"

namespace nexus::config::detail {

namespace {

const std::vector<std::string> kModalities = {"text", "image", "audio", "id", "tensor"};

std::vector<std::string> head_tasks(const Composition& c) {
  std::vector<std::string> tasks;
  for (const auto& h : c.heads)
    if (!h.task.empty() && std::find(tasks.begin(), tasks.end(), h.task) == tasks.end())
      tasks.push_back(h.task);
  return tasks;
}

}  // namespace

bool valid_device(const std::string& device) {
  if (device == "auto" || device == "cpu" || device == "cuda") return true;
  if (device.rfind("cuda:", 0) != 0 || device.size() == 5) return false;
  return std::all_of(device.begin() + 5, device.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

void check_data(Context& ctx, const Node& data) {
  if (!ctx.check.map(data, "'data'", "a mapping (root, tasks)")) return;
  ctx.check.check_keys(data, {"root", "tasks"}, "data");
  if (const Node* root = data.find("root"))
    if (auto s = ctx.check.string(*root, "'data.root'")) ctx.out.data_root = *s;
  const Node* tasks = data.find("tasks");
  if (!tasks || !ctx.check.map(*tasks, "'data.tasks'", "a mapping of task name -> task"))
    return;
  ctx.tasks_declared = true;
  for (size_t i = 0; i < tasks->map.size(); ++i) {
    const auto& [name, node] = tasks->map[i];
    const std::string where = "data.tasks." + name;
    TaskSpec t;
    t.name = name;
    t.loc = node.loc;
    if (ctx.check.map(node, "'" + where + "'", "a mapping (dataset, modality, ...)")) {
      if (const Node* d = ctx.check.require(node, "dataset", where,
                                            "name the dataset this task reads"))
        if (auto s = ctx.check.string(*d, "'" + where + ".dataset'")) t.dataset = *s;
      for (const auto& [key, value] : node.map) {
        if (key == "dataset") continue;
        if (key == "modality") {
          if (auto m = ctx.check.choice(value, "'" + where + ".modality'", kModalities))
            t.modality = *m;
        } else if (key == "train_rows" || key == "val_rows" || key == "test_rows") {
          // A prefix of the split (stored in hash order, so a uniform sample): quick runs.
          if (auto v = ctx.check.integer(value, "'" + where + "." + key + "'", positive()))
            t.params[key] = std::to_string(*v);
        } else if (key == "report_splits") {
          // Further test splits (e.g. real recordings beside synthetic ones): scored and reported
          // beside the test split, never trained on, not under the retention contract.
          if (auto s = ctx.check.string(value, "'" + where + "." + key + "'")) {
            for (const auto& split : split_names(*s))
              if (split.empty() || split == "train" || split == "val" || split == "test" ||
                  split.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") != std::string::npos)
                ctx.check.error(value.loc, "'" + where + ".report_splits' names split '" + split + "'",
                                "list further test splits by name, comma-separated (not train, val or test)");
            t.params[key] = *s;
          }
        } else if (value.is_scalar()) {
          t.params[key] = value.scalar;
        } else {
          ctx.check.error(value.loc, "task parameter '" + where + "." + key +
                                         "' must be a scalar, got " + describe_value(value),
                          "task parameters are passed to the data loader as text");
        }
      }
    }
    ctx.out.tasks[name] = std::move(t);
  }
}

void check_trainer(Context& ctx, const Node& trainer) {
  if (!ctx.check.map(trainer, "'trainer'", "a mapping of training settings")) return;
  ctx.check.check_keys(trainer,
                       {"steps", "batch_size", "lr", "weight_decay", "warmup_steps", "grad_clip",
                        "validate_every", "patience", "seed", "device"},
                       "trainer");
  TrainerSpec& t = ctx.out.trainer;
  auto int_key = [&](const char* key, int64_t& field, Range range) {
    if (const Node* n = trainer.find(key))
      if (auto v = ctx.check.integer(*n, std::string("'trainer.") + key + "'", range)) field = *v;
  };
  auto num_key = [&](const char* key, double& field, Range range) {
    if (const Node* n = trainer.find(key))
      if (auto v = ctx.check.number(*n, std::string("'trainer.") + key + "'", range)) field = *v;
  };
  int_key("steps", t.steps, positive());
  int_key("batch_size", t.batch_size, positive());
  num_key("lr", t.lr, positive());
  num_key("weight_decay", t.weight_decay, non_negative());
  int_key("warmup_steps", t.warmup_steps, non_negative());
  num_key("grad_clip", t.grad_clip, non_negative());
  int_key("validate_every", t.validate_every, positive());
  int_key("patience", t.patience, non_negative());
  int_key("seed", t.seed, Range{});
  if (const Node* d = trainer.find("device")) {
    if (auto s = ctx.check.string(*d, "'trainer.device'")) {
      if (valid_device(*s)) t.device = *s;
      else ctx.check.error(d->loc, "'trainer.device' must be auto, cpu, cuda or cuda:N, got '" +
                                       *s + "'");
    }
  }
}

void check_retention(Context& ctx, const Node& retention) {
  if (!ctx.check.map(retention, "'retention'", "a mapping (default, tasks)")) return;
  ctx.check.check_keys(retention, {"default", "tasks"}, "retention");
  RetentionSpec& r = ctx.out.retention;
  if (const Node* d = retention.find("default"))
    if (auto v = ctx.check.number(*d, "'retention.default'", unit_open_closed()))
      r.default_min = *v;
  const Node* tasks = retention.find("tasks");
  if (!tasks || !ctx.check.map(*tasks, "'retention.tasks'", "a mapping of task -> fraction"))
    return;
  const auto known = head_tasks(ctx.out);
  for (size_t i = 0; i < tasks->map.size(); ++i) {
    const auto& [task, value] = tasks->map[i];
    if (std::find(known.begin(), known.end(), task) == known.end()) {
      const std::string guess = did_you_mean(task, known);
      ctx.check.error(tasks->key_locs[i],
                      "retention is set for task '" + task + "', but no head has that task",
                      (guess.empty() ? "" : "did you mean '" + guess + "'? ") +
                          "tasks of the heads: " + join(known));
      continue;
    }
    if (auto v = ctx.check.number(value, "'retention.tasks." + task + "'", unit_open_closed()))
      r.per_task[task] = *v;
  }
}

}  // namespace nexus::config::detail
