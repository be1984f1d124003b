// The dense products of the native text teachers (hf_encoder's BERT, decoder_llm's Llama) on the
// CPU. Debian's libtorch sends float GEMMs to a generic BLAS; oneDNN (mkldnn) with weights packed
// once is several times faster at these shapes, so linear layers and long attention products go
// through it when it is available and the tensors are float32 on the CPU. NEXUS_HF_MKLDNN=0 turns
// it off (to compare, or to rule it out).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace nexus::support {

// Whether weights on `device` in `dtype` go through oneDNN.
bool use_mkldnn(const c10::Device& device, c10::ScalarType dtype);
// A linear layer's weight (and bias) as linear() wants it: contiguous, and packed for oneDNN
// when `mkldnn`. Detached: the teachers are frozen.
at::Tensor pack_for_linear(const at::Tensor& t, bool mkldnn);
// x [..., in] times w [out, in] transposed, plus b [out] when defined; w and b from pack_for_linear.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool mkldnn);
// a [B, H, L, d] times w [B, H, M, d] transposed -> [B, H, L, M]: per (sequence, head) oneDNN
// products when `mkldnn` and L is long enough to pay for the conversions, else at::matmul.
at::Tensor bmm_nt(const at::Tensor& a, const at::Tensor& w, bool mkldnn);

}  // namespace nexus::support
