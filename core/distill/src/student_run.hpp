// The student's run folder (distill.hpp): its composition, made by editing the base run's (one
// hf_encoder teacher on OUT/model in place of every teacher, a plain softmax router, the text heads
// and tasks only), its system, and what is written once training is done.
#pragma once

#include <memory>
#include <string>

#include "nexus/config/composition.hpp"
#include "nexus/distill/distill.hpp"
#include "nexus/model/system.hpp"
#include "nexus/run/checkpoints.hpp"
#include "nexus/run/run_folder.hpp"

namespace nexus::distill {

class TextStudent;

// The run's teacher the text student starts from: InputError unless it is an hf_encoder text
// teacher of the run.
config::TeacherSpec student_teacher(const config::Composition& composition, const StudentSpec& spec);
int64_t teacher_max_length(const config::TeacherSpec& teacher);

// The name of the student's teacher in its composition.
constexpr const char* kStudentName = "student";

class StudentRun {
 public:
  // Writes OUT/model (the student as it starts), OUT/composition.yaml and run.json, builds the
  // student's system and copies into it the base run's norm and tower of `teacher` and its heads.
  static StudentRun create(const DistillRequest& request, const run::RunInfo& base_info, const config::Composition& base,
                           ComposedSystem& base_system, const StudentSpec& spec, const config::TeacherSpec& teacher,
                           TextStudent& student, const registry::Registry& registry);

  ComposedSystem& system() { return *system_; }
  const config::Composition& composition() const { return composition_; }
  // What a checkpoint holds: the encoder ("encoder.student") and the system's modules.
  run::NamedModules modules() const;
  int64_t composition_parameters() const { return composition_parameters_; }

 private:
  StudentRun() = default;
  config::Composition composition_;
  std::unique_ptr<ComposedSystem> system_;
  std::shared_ptr<torch::nn::Module> encoder_;
  int64_t composition_parameters_ = 0;
};

// Writes the trained student (the best checkpoint, loaded) as OUT/model with its heads, records
// run.json with the final fingerprint, and evaluates the served student against the base run's
// eval.json into `outcome` and OUT/distill.json.
void finish_student_run(const DistillRequest& request, const config::Composition& base, TextStudent& student,
                        StudentRun& run, const registry::Registry& registry, DistillOutcome& outcome);

}  // namespace nexus::distill
