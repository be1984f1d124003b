#include "nexus/support/cpu_kernels.hpp"

#include <ATen/ATen.h>

#include <cstdlib>
#include <string>

namespace nexus::support {

namespace {
// Below this many rows per head the conversions to and from oneDNN's layout cost more than the
// generic batched product (measured on BERT-size heads, docs/benchmarks.md).
constexpr int64_t kMkldnnAttentionMinLength = 64;
}  // namespace

bool use_mkldnn(const c10::Device& device, c10::ScalarType dtype) {
  const char* env = std::getenv("NEXUS_HF_MKLDNN");
  return device.is_cpu() && at::hasMKLDNN() && dtype == at::kFloat && !(env && std::string(env) == "0");
}

at::Tensor pack_for_linear(const at::Tensor& t, bool mkldnn) {
  if (!t.defined()) return t;
  auto dense = t.detach().contiguous();
  return mkldnn ? dense.to_mkldnn() : dense;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool mkldnn) {
  if (!mkldnn) return at::linear(x, w, b);
  auto shape = x.sizes().vec();
  shape.back() = w.size(0);
  return at::mkldnn_linear(x.reshape({-1, x.size(-1)}).to_mkldnn(), w, b).to_dense().view(shape);
}

at::Tensor bmm_nt(const at::Tensor& a, const at::Tensor& w, bool mkldnn) {
  if (!mkldnn || a.size(2) < kMkldnnAttentionMinLength) return at::matmul(a, w.transpose(-1, -2));
  auto out = at::empty({a.size(0), a.size(1), a.size(2), w.size(2)}, a.options());
  for (int64_t i = 0; i < a.size(0); ++i)
    for (int64_t h = 0; h < a.size(1); ++h)
      out[i][h].copy_(at::mkldnn_linear(a[i][h].contiguous().to_mkldnn(), w[i][h].contiguous().to_mkldnn()).to_dense());
  return out;
}

}  // namespace nexus::support
