// A request's inputs as a teacher batch (request_json.hpp decodes the JSON).
#pragma once

#include <nexus/teacher.hpp>

#include "nexus/serving/request_json.hpp"

namespace nexus::serving {

struct Snapshot;

// The request's "inputs" as a teacher batch of the task's modality: strings for text, arrays of
// pixel values 0-255 in the snapshot's input shape for images (scaled to [0, 1] as the datasets are),
// WAV files or samples for audio (16 kHz, padded, with lengths; within `audio`'s limits).
TeacherInput read_inputs(const Snapshot& snapshot, const std::string& modality, const nlohmann::json& body,
                         const AudioLimits& audio);

}  // namespace nexus::serving
