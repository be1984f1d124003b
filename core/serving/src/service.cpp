#include "nexus/serving/service.hpp"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include <nexus/text.hpp>

#include "nexus/serving/requests.hpp"

namespace nexus::serving {

namespace {

// Compares in time that depends only on the lengths, so that response times do not reveal how
// much of a guessed token was right.
bool same_secret(const std::string& given, const std::string& secret) {
  unsigned char diff = given.size() != secret.size();
  for (size_t i = 0; i < given.size(); ++i) diff |= uint8_t(given[i]) ^ uint8_t(secret[i % std::max<size_t>(secret.size(), 1)]);
  return diff == 0;
}

}  // namespace

Service::Service(const std::string& run_dir, ServiceOptions options)
    : options_(std::move(options)),
      batcher_(options_.batching, [this](const BatchStats& b) { metrics_.batch(b); }) {
  parked_.push_back(std::make_shared<const registry::Registry>(options_.scan()));
  Recipe first;
  first.base = run_source(run_dir, *parked_[0]);
  first.device = options_.device;
  current_ = load_snapshot(first, parked_[0]);
  held_ = parked_.size();
}

std::string Service::metrics_text() const {
  return metrics_.text(snapshot()->version) +
         "# HELP nexus_plugin_registries_held Plugin registries kept mapped: the first load's and one per successful swap.\n"
         "# TYPE nexus_plugin_registries_held gauge\nnexus_plugin_registries_held " + std::to_string(held_) + "\n";
}

std::pair<std::string, std::string> Service::swap_to(const std::string& dir, const std::vector<std::string>& components) {
  std::lock_guard<std::mutex> lock(swap_mutex_);  // requests go on meanwhile
  std::shared_ptr<const Snapshot> next;
  // Parked only once the swap succeeds: a rejected swap's registry (and the plugin code it
  // mapped) goes away with it, so failed swaps cost no memory.
  std::shared_ptr<const registry::Registry> reg;
  try {
    reg = std::make_shared<const registry::Registry>(options_.scan());
    Recipe recipe;
    if (components.empty()) {
      recipe.base = run_source(dir, *reg);
      recipe.device = options_.device;
    } else {
      recipe = snapshot()->recipe;
      recipe.overlays.push_back({run_source(dir, *reg), components});
    }
    next = load_snapshot(std::move(recipe), reg);
  } catch (const std::exception& e) {
    metrics_.swap(false);
    throw RequestError(422, "swap rejected, still serving " + snapshot()->version + ": " + e.what());
  }
  const auto previous = snapshot()->version;
  parked_.push_back(reg);
  held_ = parked_.size();
  std::atomic_store(&current_, next);
  metrics_.swap(true);
  spdlog::info("swapped {} -> {}", previous, next->version);
  return {previous, next->version};
}

Reply Service::answer(const std::string& endpoint, const std::function<Reply()>& handler) {
  const auto start = std::chrono::steady_clock::now();
  Reply r;
  try {
    r = handler();
  } catch (const RequestError& e) {
    r = {e.status, {{"error", e.what()}}};
  } catch (const std::exception& e) {
    // What a failure says may name server paths or quote files: it goes to the log, not the client.
    const auto incident = ++incidents_;
    spdlog::error("{}: incident {}: {}", endpoint, incident, e.what());
    r = {500, {{"error", "internal error (incident " + std::to_string(incident) + " in the server log)"}}};
  }
  metrics_.request(endpoint, r.status, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return r;
}

Reply Service::healthz() const { return {200, {{"status", "ok"}}}; }

Reply Service::readyz() const {
  const auto s = snapshot();
  return {s ? 200 : 503, {{"ready", bool(s)}, {"version", s ? s->version : ""}, {"device", s ? s->device : ""}}};
}

ForwardResult Service::forward(const std::shared_ptr<const Snapshot>& sp, const nlohmann::json& body, std::string& task) {
  const auto& s = *sp;
  const auto t = body.find("task");
  if (t == body.end() || !t->is_string()) throw RequestError(400, "'task' (a string) is required");
  task = t->get<std::string>();
  if (!s.head_of_task.count(task)) {
    std::vector<std::string> known;
    for (const auto& [name, h] : s.head_of_task) known.push_back(name);
    throw RequestError(404, "unknown task '" + task + "' (this run serves " + join(known) + ")");
  }
  auto inputs = read_inputs(s, s.modality_of_task.at(task), body, options_.audio);
  try {
    // Routed, so a teacher encodes only the inputs routed to it where the router can decide first.
    return batcher_.run(sp, task, std::move(inputs));
  } catch (const std::exception& e) {
    // A teacher's message may name its files: the client learns which request failed, the log why.
    const auto incident = ++incidents_;
    spdlog::warn("{}: incident {}: a forward failed: {}", task, incident, e.what());
    throw RequestError(422, "the system could not process these inputs (incident " + std::to_string(incident) +
                                " in the server log)");
  }
}

Reply Service::predict(const std::string& text) {
  const auto body = parse_body(text, {"task", "inputs", "routing"});
  const auto routing_field = body.find("routing");
  if (routing_field != body.end() && !routing_field->is_boolean()) throw RequestError(400, "'routing' must be true or false");
  const bool routing = routing_field != body.end() && routing_field->get<bool>();
  const auto s = snapshot();  // this request is served by this snapshot, whatever swaps meanwhile
  std::string task;
  const auto r = forward(s, body, task);
  const auto probs = torch::softmax(r.heads.at(s->head_of_task.at(task)), 1);
  nlohmann::json preds = nlohmann::json::array();
  for (int64_t i = 0; i < probs.size(0); ++i) {
    const auto row = probs[i].contiguous();
    const std::vector<float> scores(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
    nlohmann::json p{{"label", row.argmax().item<int64_t>()}, {"scores", scores}};
    if (routing) {
      nlohmann::json w = nlohmann::json::object();
      for (size_t k = 0; k < s->teacher_names.size(); ++k) w[s->teacher_names[k]] = r.weights[i][int64_t(k)].item<double>();
      p["routing"] = w;
    }
    preds.push_back(p);
  }
  return {200, {{"version", s->version}, {"task", task}, {"predictions", preds}}};
}

Reply Service::embed(const std::string& text) {
  const auto body = parse_body(text, {"task", "inputs"});
  const auto s = snapshot();
  std::string task;
  const auto r = forward(s, body, task);
  nlohmann::json rows = nlohmann::json::array();
  const auto z = r.shared.contiguous();
  for (int64_t i = 0; i < z.size(0); ++i)
    rows.push_back(std::vector<float>(z[i].data_ptr<float>(), z[i].data_ptr<float>() + z.size(1)));
  return {200, {{"version", s->version}, {"task", task}, {"embeddings", rows}}};
}

Reply Service::swap(const std::string& text, const std::string& authorization) {
  if (options_.admin_token.empty())
    throw RequestError(403, "admin endpoints are off: start the server with --admin-token-file or NEXUS_ADMIN_TOKEN");
  if (!same_secret(authorization, "Bearer " + options_.admin_token)) throw RequestError(401, "missing or wrong admin token");
  const auto body = parse_body(text, {"run", "components"});
  const auto run = body.find("run");
  if (run == body.end() || !run->is_string()) throw RequestError(400, "'run' (a run folder) is required");
  std::vector<std::string> components;
  if (const auto c = body.find("components"); c != body.end()) {
    if (!c->is_array() || c->empty() || !std::all_of(c->begin(), c->end(), [](const auto& x) { return x.is_string(); }))
      throw RequestError(400, "'components' must be a non-empty array of names (tower.X, norm.X, router, head.H, teacher.X)");
    components = c->get<std::vector<std::string>>();
  }
  const auto [previous, next] = swap_to(run->get<std::string>(), components);
  return {200, {{"version", next}, {"previous", previous}}};
}

}  // namespace nexus::serving
