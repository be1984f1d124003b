// `nexus distill`'s engine: a trained composition consolidated into one teacher-free student.
//
// The text student is a BERT encoder started from one of the run's hf_encoder teachers (its first
// `layers` layers), followed by that teacher's feature norm and tower and by the composition's
// text heads, all copied from the run: at step 0 the student is the composition with only that
// teacher's branch. It is then trained end to end, on the text tasks' training inputs (plus any
// unlabelled texts), to reproduce the composition's shared-space embedding (cosine or MSE) and its
// head outputs (KL at a temperature), optionally with the labels' cross-entropy.
//
// The output folder is a run like any other, so `nexus serve OUT` and `nexus eval OUT` work:
//
//   OUT/model/             the encoder as a Hugging Face folder (config.json, model.safetensors,
//                          tokenizer files, sentence-transformers pooling) that
//                          transformers.AutoModel loads; nexus_heads.safetensors and
//                          nexus_heads.json hold the norm, projection and heads for Python users
//   OUT/composition.resolved.yaml, run.json
//                          one teacher (hf_encoder on OUT/model), its tower, a router, the heads
//   OUT/checkpoints/       step folders as `nexus train` writes them, plus encoder.student
//   OUT/metrics.jsonl, OUT/distill.json (the evaluation table)
//
// Checkpointing, `--resume` (bit for bit), rollbacks and early stopping are the trainer's own
// (training/keeper.hpp).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "nexus/distill/student_spec.hpp"

namespace nexus {
namespace registry {
class Registry;
}

namespace distill {

struct DistillRequest {
  std::string run_dir, student_file, out_dir;
  std::vector<std::string> overrides;  // on the student file
  std::string cache_root;              // "" = feature_cache_root()
  bool resume = false;
  bool progress = true;
};

// One row of the table `nexus eval` prints, with the student beside the composition.
struct StudentTaskResult {
  std::string task, split, best_teacher;
  int64_t rows = 0;
  double student = 0, composition = 0, best_probe = 0, retention = 0, contract = 0;
  bool violated = false;
};

struct DistillOutcome {
  std::string out_dir, model_dir;
  int64_t steps = 0, best_step = 0;
  int rollbacks = 0;
  bool resumed = false, stopped_early = false;
  double train_seconds = 0, samples_per_second = 0;
  int64_t unlabelled_texts = 0;
  int64_t student_parameters = 0, composition_parameters = 0;  // encoders, towers and heads of the text side
  std::vector<StudentTaskResult> tasks;
  std::vector<std::string> violations;
  std::string weights_sha256;  // of the student's every module, as weights_digest
};

// InputError for a run or student file that cannot make a student (no text teacher of that name,
// not an hf_encoder, no text task, checkpoints in OUT without --resume); RuntimeFailure when
// training fails.
DistillOutcome distill(const DistillRequest& request, const registry::Registry& registry);

// The table, as `nexus eval` prints its own.
void print_table(const DistillOutcome& outcome, std::ostream& out);
std::string to_json_text(const DistillOutcome& outcome);

}  // namespace distill
}  // namespace nexus
