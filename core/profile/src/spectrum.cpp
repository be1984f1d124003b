#include "nexus/profile/spectrum.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "nexus/model/system.hpp"

namespace nexus::profile {

namespace {

constexpr int64_t kBlockRows = 4096;
constexpr int kPowerIterations = 4;

// Column sums and X'X of x in float64, a block of rows at a time (a float64 copy of a whole
// 60000 x 784 split would be 376 MB).
std::pair<at::Tensor, at::Tensor> moments(const at::Tensor& x) {
  const int64_t d = x.size(1);
  auto sum = torch::zeros({d}, torch::kDouble), gram = torch::zeros({d, d}, torch::kDouble);
  for (int64_t b = 0; b < x.size(0); b += kBlockRows) {
    const auto block = x.narrow(0, b, std::min(kBlockRows, x.size(0) - b)).to(torch::kDouble);
    sum += block.sum(0);
    gram.addmm_(block.t(), block);
  }
  return {sum, gram};
}

at::Tensor covariance(const at::Tensor& x) {
  const auto [sum, gram] = moments(x);
  const double n = double(x.size(0));
  const auto mean = sum / n;
  return (gram - n * torch::outer(mean, mean)) / std::max(1.0, n - 1);
}

// Top-k eigenpairs of the covariance of x without forming it: a randomised range finder on the
// centred rows, then an exact SVD of the small projected matrix. In float32: only wide features
// come here, where a float64 copy would be gigabytes, and the sketch's error dominates anyway.
Principal sketched_components(const at::Tensor& x, int64_t k) {
  const auto mean = x.to(torch::kDouble).mean(0).to(torch::kFloat);
  const auto xc = x.to(torch::kFloat) - mean;
  const int64_t sketch = std::min<int64_t>(x.size(1), k + 16);
  auto gen = at::detail::createCPUGenerator(0x5eed);
  auto q = std::get<0>(torch::linalg_qr(xc.matmul(torch::randn({x.size(1), sketch}, gen, torch::kFloat))));
  for (int i = 0; i < kPowerIterations; ++i) {
    q = std::get<0>(torch::linalg_qr(xc.t().matmul(q)));
    q = std::get<0>(torch::linalg_qr(xc.matmul(q)));
  }
  const auto svd = torch::linalg_svd(q.t().matmul(xc), false);
  const auto s = std::get<1>(svd).narrow(0, 0, k), vt = std::get<2>(svd).narrow(0, 0, k);
  return {mean, vt.contiguous(), s.square() / float(std::max<int64_t>(1, x.size(0) - 1))};
}

std::vector<double> to_vector(const at::Tensor& t) {
  const auto c = t.to(torch::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

void fill_ranks(Spectrum& s) {
  s.rank_90 = rank_for(s.explained, 0.90);
  s.rank_95 = rank_for(s.explained, 0.95);
  s.rank_99 = rank_for(s.explained, 0.99);
  double entropy = 0, kept = 0;
  for (double p : s.explained) kept += p;
  for (double p : s.explained)
    if (p > 0) entropy -= (p / kept) * std::log(p / kept);
  s.effective_rank = std::exp(entropy);
}

}  // namespace

int64_t rank_for(const std::vector<double>& explained, double fraction) {
  double total = 0;
  for (size_t i = 0; i < explained.size(); ++i) {
    total += explained[i];
    if (total >= fraction - 1e-12) return int64_t(i) + 1;
  }
  return int64_t(explained.size());
}

at::Tensor thin_rows(const at::Tensor& x, int64_t max_rows) {
  if (max_rows <= 0 || x.size(0) <= max_rows) return x;
  const int64_t stride = (x.size(0) + max_rows - 1) / max_rows;
  return x.slice(0, 0, x.size(0), stride);
}

at::Tensor standardise(const at::Tensor& x) {
  torch::NoGradGuard no_grad;
  const auto f = x.to(torch::kFloat);
  const auto finite = f.index_select(0, f.isfinite().all(1).nonzero().squeeze(1));
  FeatureNorm norm(f.size(1));
  norm->fit(finite);
  return norm->forward(finite);
}

Spectrum spectrum(const at::Tensor& raw) {
  torch::NoGradGuard no_grad;
  Spectrum s;
  const auto x = standardise(raw);
  s.rows = x.size(0);
  s.width = x.size(1);
  const auto finite = raw.to(torch::kFloat).index_select(0, raw.isfinite().all(1).nonzero().squeeze(1));
  s.dead_dims = s.rows > 1 ? (finite.std(0, true) < 1e-6).sum().item<int64_t>() : s.width;
  const auto norms = finite.norm(2, {1}).to(torch::kDouble);
  s.norm_mean = s.rows ? norms.mean().item<double>() : 0;
  s.norm_std = s.rows > 1 ? norms.std().item<double>() : 0;
  if (s.rows < 2) return s;
  const double total = x.to(torch::kDouble).var(0, true).sum().item<double>();
  if (total <= 0) return s;
  at::Tensor variances;
  if (s.width <= kExactWidth) {
    variances = std::get<0>(torch::linalg_eigh(covariance(x))).flip(0).clamp_min(0);
  } else {
    variances = sketched_components(x, std::min({kSketchRank, s.width, s.rows})).variances.to(torch::kDouble);
    s.truncated = true;
  }
  s.explained = to_vector(variances / total);
  fill_ranks(s);
  return s;
}

Principal sketched_principal_components(const at::Tensor& x, int64_t k) {
  torch::NoGradGuard no_grad;
  return sketched_components(x, std::max<int64_t>(1, std::min({k, x.size(0), x.size(1)})));
}

Principal principal_components(const at::Tensor& x, int64_t k) {
  torch::NoGradGuard no_grad;
  k = std::max<int64_t>(1, std::min(k, x.size(1)));
  if (x.size(1) > kExactWidth) return sketched_components(x, std::min(k, x.size(0)));
  const auto [values, vectors] = torch::linalg_eigh(covariance(x));
  // eigh sorts ascending; the principal directions are the last k columns, reversed.
  const auto top = vectors.narrow(1, x.size(1) - k, k).flip(1);
  return {x.to(torch::kDouble).mean(0).to(torch::kFloat), top.t().contiguous().to(torch::kFloat),
          values.narrow(0, x.size(1) - k, k).flip(0).clamp_min(0).to(torch::kFloat)};
}

double linear_cka(const at::Tensor& x, const at::Tensor& y) {
  torch::NoGradGuard no_grad;
  const auto xc = x.to(torch::kDouble) - x.to(torch::kDouble).mean(0), yc = y.to(torch::kDouble) - y.to(torch::kDouble).mean(0);
  const double cross = xc.t().matmul(yc).square().sum().item<double>();
  const double xx = xc.t().matmul(xc).norm().item<double>(), yy = yc.t().matmul(yc).norm().item<double>();
  return xx > 0 && yy > 0 ? cross / (xx * yy) : 0.0;
}

}  // namespace nexus::profile
