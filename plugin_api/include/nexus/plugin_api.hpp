// The one header a NEXUS plugin author includes (see docs/plugins.md): libtorch's C++ frontend
// (tensors, torch::nn modules, functional ops), the component base classes, options and their
// schema, and the export macros that declare a plugin's components.
#pragma once

#include <torch/torch.h>

#include "nexus/abi.h"
#include "nexus/export.hpp"
#include "nexus/loss.hpp"
#include "nexus/options.hpp"
#include "nexus/router.hpp"
#include "nexus/teacher.hpp"
#include "nexus/tower.hpp"
