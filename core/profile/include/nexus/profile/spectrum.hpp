// The linear algebra of profiling a teacher: its features' eigen-spectrum, the principal
// directions a tower can start from, and how much two teachers' features overlap (linear CKA).
//
// Design note. Everything is measured on features standardised the way towers see them
// (FeatureNorm: per-dimension mean 0, variance 1; constant dimensions left at 0), because that is
// the input whose subspace a tower has to keep. The covariance is accumulated exactly, in
// float64, in row blocks, for widths up to kExactWidth (a 4096-wide covariance is 128 MiB);
// wider features use a randomised SVD (Halko, Martinsson & Tropp 2011: a Gaussian sketch, power
// iterations with re-orthonormalisation) for the top kSketchRank directions, and the explained
// fractions stay exact because the total variance is the covariance's trace, which needs only the
// per-dimension variances. Rows beyond a cap are thinned by a fixed stride, so a profile is a
// deterministic function of the cache.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace nexus::profile {

constexpr int64_t kExactWidth = 4096;
constexpr int64_t kSketchRank = 1024;

struct Spectrum {
  int64_t rows = 0, width = 0;
  std::vector<double> explained;  // fraction of the total variance per component, descending
  bool truncated = false;         // explained covers only the top kSketchRank (randomised SVD)
  int64_t rank_90 = 0, rank_95 = 0, rank_99 = 0;  // components needed for that fraction
  double effective_rank = 0;      // exp(entropy of `explained`) (Roy & Vetterli 2007)
  int64_t dead_dims = 0;          // dimensions that never change (standard deviation < 1e-6)
  double norm_mean = 0, norm_std = 0;  // L2 norm of the raw feature rows
};

// The smallest number of leading components whose fractions add up to `fraction` (the whole
// list's length when they never do, e.g. a truncated spectrum).
int64_t rank_for(const std::vector<double>& explained, double fraction);

// Every row `stride` apart so that at most `max_rows` remain (all rows when there are fewer).
at::Tensor thin_rows(const at::Tensor& x, int64_t max_rows);

// Standardised as a FeatureNorm fitted on x would standardise it; non-finite rows dropped.
at::Tensor standardise(const at::Tensor& x);

// `raw`: [rows, width] features as the teacher produced them.
Spectrum spectrum(const at::Tensor& raw);

struct Principal {
  at::Tensor mean;        // [width], of the input given (standardised features: ~0)
  at::Tensor components;  // [k, width], orthonormal rows, largest variance first (float32)
  at::Tensor variances;   // [k]
};
// The top k principal directions of x ([rows, width], already standardised), k <= width.
Principal principal_components(const at::Tensor& x, int64_t k);

// The randomised path on its own (what widths above kExactWidth use), for any width.
Principal sketched_principal_components(const at::Tensor& x, int64_t k);

// Linear CKA (Kornblith et al. 2019) of two feature matrices over the same rows:
// ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) on centred columns; 1 = the same information up to a
// rotation and scale, 0 = nothing linear in common. Computed in float64.
double linear_cka(const at::Tensor& x, const at::Tensor& y);

}  // namespace nexus::profile
