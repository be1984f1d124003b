// Base64 (RFC 4648, standard alphabet, '=' padding) for binary data carried in JSON: audio files
// in serving requests.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nexus {

// The decoded bytes, or nullopt when `text` is not canonical base64 (a character outside the
// alphabet, a length that is not a multiple of 4, misplaced padding). ASCII whitespace is skipped.
std::optional<std::string> base64_decode(std::string_view text);
std::string base64_encode(std::string_view bytes);

}  // namespace nexus
