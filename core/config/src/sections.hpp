// The per-section validators behind validate(); each fills its part of the Composition and
// reports through the shared Checker.
#pragma once

#include "checker.hpp"
#include "nexus/config/composition.hpp"

namespace nexus::config::detail {

struct Context {
  Checker& check;
  const PluginCatalog& catalog;
  Composition& out;
  bool shared_dim_known = false;  // out.shared_dim holds a valid value
  bool tasks_declared = false;    // data.tasks is a mapping, so head tasks must be in it
};

// Sections are checked in this order because later ones refer to earlier ones.
void check_data(Context& ctx, const Node& data);
void check_teachers(Context& ctx, const Node& teachers);
void check_router(Context& ctx, const Node& router);
void check_heads(Context& ctx, const Node& heads);
void check_losses(Context& ctx, const Node& losses);
void check_trainer(Context& ctx, const Node& trainer);
void check_retention(Context& ctx, const Node& retention);

// auto, cpu, cuda or cuda:N.
bool valid_device(const std::string& device);
// Reports and returns nullptr unless `n` is a non-empty sequence; `what` e.g. "'teachers'".
const Node* nonempty_sequence(Checker& check, const Node& n, const std::string& what,
                              const std::string& item_name);

}  // namespace nexus::config::detail
