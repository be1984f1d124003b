// The one header a NEXUS plugin author includes. See docs/plugins.md.
#pragma once

#include "nexus/abi.h"
#include "nexus/export.hpp"
#include "nexus/loss.hpp"
#include "nexus/options.hpp"
#include "nexus/router.hpp"
#include "nexus/teacher.hpp"
#include "nexus/tower.hpp"
