// Strict readings of YAML scalar text as numbers and booleans.
#pragma once

#include <cstdint>
#include <string>

namespace nexus::config::detail {

// Decimal integer with optional sign; false on anything else, including overflow.
bool parse_int(const std::string& text, int64_t& out);
// Finite decimal number (1, -2.5, 3e-4, .5); false on inf/nan/hex.
bool parse_number(const std::string& text, double& out);
// YAML 1.2 core booleans: true/True/TRUE/false/False/FALSE.
bool parse_bool(const std::string& text, bool& out);

// Shortest text that reads back as the same number, for messages ("0.5", not "0.500000").
std::string format_number(double value);

}  // namespace nexus::config::detail
