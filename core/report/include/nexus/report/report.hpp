// `nexus report RUN --out report.html`: one self-contained HTML file that shows a run instead of
// tabulating it: training curves with rollbacks, retention against the probes and the contract,
// routing per task and per class, the teachers' spectra, their CKA redundancy, add/remove-teacher
// proofs.
//
// Design note. The page is a template (core/report/assets/report.html) compiled into the binary
// together with Chart.js (Debian's libjs-chart.js, MIT), so a report opens anywhere, offline,
// and `nexus` needs no data files at run time. The C++ side only gathers the run's files into one
// JSON document (report_data); the page draws from that document alone. The document is
// embedded in a <script type="application/json"> element with every '<' written as \u003c, so
// nothing in a run's files (task or class names included) can end the element or inject markup.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "nexus/config/composition.hpp"

namespace nexus {
namespace registry {
class Registry;
}

namespace report {

// Training curves from RUN/metrics.jsonl: {"train": [...], "validation": [...], "rollbacks":
// [...], "best_step", "early_stop"}. Lines that are not JSON objects are skipped (a run killed
// mid-write leaves a partial last line).
nlohmann::json read_curves(const std::string& metrics_jsonl);

// Everything the page draws, from a run folder and its composition; `profile` is
// RUN/profile.json's content (or null: the page says the spectra are not available). An
// incremental run's repair stages (proof.json's repair.stages, each trained in its own folder)
// continue its curves, each from the step where the previous stage ended; "curves"."stages" says
// where each began.
nlohmann::json report_data(const std::string& run_dir, const config::Composition& composition, const nlohmann::json& profile);

// The page: template + Chart.js + `data`.
std::string render_html(const nlohmann::json& data);

struct ReportRequest {
  std::string run_dir, out;
  std::string cache_root;  // for profiling a run that has no profile.json yet
  bool progress = true;
};
struct ReportOutcome {
  std::string written;
  size_t bytes = 0;
  bool profiled = false;  // the profile was computed now (and kept in RUN/profile.json)
};
ReportOutcome write_report(const ReportRequest& request, const registry::Registry& registry);

}  // namespace report
}  // namespace nexus
