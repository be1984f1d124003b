// A student file: what `nexus distill` makes of a trained composition. One student per modality
// (text for now): which teacher of the run it starts from, how much of it it keeps, and how it is
// trained to reproduce the composition (docs/consolidation.md).
//
//   nexus_student: 1
//   text:
//     from_teacher: paraphrase   # an hf_encoder teacher of the run: its weights, its norm and tower
//     layers: 3                  # keep the first N encoder layers (default: all)
//     max_length: 64             # default: the teacher's
//     dropout: 0.1               # hidden and attention dropout while training
//     train_embeddings: false    # the word embeddings stay as they are (most of the parameters)
//   loss: {embedding: cosine, embedding_weight: 1, head_weight: 1, temperature: 2, label_weight: 0}
//   trainer: {steps: 1500, batch_size: 32, lr: 1.0e-4, head_lr: 1.0e-3, warmup_steps: 100,
//             validate_every: 250, patience: 0, weight_decay: 0.01, grad_clip: 1.0, seed: 0}
//   unlabelled: [more.txt]      # optional: one text per line, distilled on the composition's outputs
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nexus::distill {

struct TextStudentSpec {
  std::string from_teacher;
  int64_t layers = 0;       // 0 = all of the teacher's
  int64_t max_length = 0;   // 0 = the teacher's max_length option
  double dropout = 0.1;
  bool train_embeddings = false;
};

struct StudentLossSpec {
  std::string embedding = "cosine";  // cosine or mse, on the shared-space embedding
  double embedding_weight = 1, head_weight = 1, temperature = 2, label_weight = 0;
};

struct StudentTrainerSpec {
  int64_t steps = 1500, batch_size = 32, warmup_steps = 100, validate_every = 250, patience = 0;
  double lr = 1e-4, head_lr = 1e-3, weight_decay = 0.01, grad_clip = 1.0;
  int64_t seed = 0;
};

struct StudentSpec {
  std::string source;  // the file, absolute
  TextStudentSpec text;
  StudentLossSpec loss;
  StudentTrainerSpec trainer;
  std::vector<std::string> unlabelled;  // absolute paths
};

// Reads and checks a student file; config::ConfigError (exit 2) with file:line:col for unknown
// keys, wrong types and values out of range. `overrides` are "a.b=value" as for compositions.
StudentSpec load_student_spec(const std::string& path, const std::vector<std::string>& overrides = {});

}  // namespace nexus::distill
