// Audio clips as the audio modality's batch (see wav.hpp's design note): a zero-padded [B, T]
// float tensor and the valid lengths [B] (int64), in TeacherInput::tensor and ::lengths.
#pragma once

#include <nexus/teacher.hpp>

#include <vector>

namespace nexus::audio {

// Clips of kModelRate samples, each at least one sample long.
TeacherInput pad_batch(const std::vector<std::vector<float>>& clips);

// Audio batches (tensor + lengths) joined into one, padded to the longest.
TeacherInput concat_batches(const std::vector<const TeacherInput*>& batches);

}  // namespace nexus::audio
