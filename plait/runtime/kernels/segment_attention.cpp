// plait CPU kernel: attention of many query rows over one KV segment, with log-sum-exp.
//
// q (B, Hkv, R, D) (any strides, last dim contiguous) against k, v (B, Hkv, L, D) (strided
// arena views) with an optional last-visible-key index per row, limits (B, R) (-1: no key).
// Returns out (B, Hkv, R, D) in q's dtype and lse (B, Hkv, R) float32 (natural log of the sum
// of exp(scale * q.k) over visible keys; -inf and a zero output for rows that see no key).
//
// Why: decode reads are a few rows (one per worker and query head) over a long segment; torch's
// CPU flash kernel spent ~180 us on 7 rows x 1k keys where the K/V bytes take ~25 us to stream.
// Here the keys of a 64-key block are gathered once into a transposed (D/2, 64) tile shared by
// all rows; scores of 16 keys at a time are dot products down that tile (AVX512-BF16 for bf16,
// FMA for fp32), softmax is online per row (exp2 polynomial), and values are summed in fp32.
// The reference twin is the torch path in plait.runtime.attention (tests/runtime/kernels/test_kernels.py).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <vector>

#include "online_softmax.h"

namespace {

using namespace plait_kernels;

struct Head {
  const void* q; int64_t q_rs;  // row stride (elements)
  const void* k; int64_t k_rs;
  const void* v; int64_t v_rs;
  const int64_t* lim;  // (R) or nullptr
  void* out; int64_t out_rs;  // (R, D), row stride out_rs
  float* lse; int64_t lse_rs;  // (R), stride lse_rs
};

template <class T>
void attend_head(const Head& h, int64_t R, int64_t D, int64_t L, float scale) {
  constexpr bool kBF16 = std::is_same<T, at::BFloat16>::value;
  const T* q = static_cast<const T*>(h.q);
  thread_local std::vector<float> o, m, l, qf;
  thread_local std::vector<uint32_t> q2;
  o.assign(R * D, 0.f);
  m.assign(R, -std::numeric_limits<float>::infinity());
  l.assign(R, 0.f);
  if constexpr (kBF16) {
    q2.resize(R * (D / 2));
    for (int64_t r = 0; r < R; ++r)  // a bf16 row read as 32-bit words is its (2p, 2p+1) pairs
      std::memcpy(q2.data() + r * (D / 2), q + r * h.q_rs, D * sizeof(T));
  } else {
    qf.resize(R * D);
    for (int64_t r = 0; r < R; ++r) std::memcpy(qf.data() + r * D, q + r * h.q_rs, D * sizeof(T));
  }
  const Rows rows{kBF16 ? q2.data() : nullptr, kBF16 ? nullptr : qf.data(), h.lim, o.data(), m.data(), l.data()};
  attend_keys<T>(rows, R, D, static_cast<const T*>(h.k), h.k_rs, static_cast<const T*>(h.v), h.v_rs, L,
                 scale * kLog2e);
  finish_rows<T>(o.data(), m.data(), l.data(), R, D, static_cast<T*>(h.out), h.out_rs, h.lse, h.lse_rs);
}

}  // namespace

std::vector<torch::Tensor> segment_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                             const c10::optional<torch::Tensor>& limits, double scale,
                                             const c10::optional<torch::Tensor>& out_opt,
                                             const c10::optional<torch::Tensor>& lse_opt) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "segment_attention: 4-D q, k, v");
  const int64_t B = q.size(0), H = q.size(1), R = q.size(2), D = q.size(3), L = k.size(2);
  TORCH_CHECK(k.size(0) == B && v.size(0) == B && k.size(1) == H && v.size(1) == H && v.size(2) == L &&
                  k.size(3) == D && v.size(3) == D, "segment_attention: shape mismatch");
  TORCH_CHECK(D % 16 == 0 && D <= 128, "segment_attention: head dim must be a multiple of 16, <= 128");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1, "segment_attention: last dim contiguous");
  TORCH_CHECK(q.scalar_type() == k.scalar_type() && k.scalar_type() == v.scalar_type(), "segment_attention: dtypes");
  TORCH_CHECK(q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kFloat, "segment_attention: bf16 or fp32");
  const bool bf16 = q.scalar_type() == at::kBFloat16;
  TORCH_CHECK(!bf16 || k.stride(2) % 2 == 0, "segment_attention: bf16 key rows must be 4-byte aligned");
  torch::Tensor lim;
  if (limits.has_value()) {
    lim = limits->to(at::kLong).contiguous();
    TORCH_CHECK(lim.dim() == 2 && lim.size(0) == B && lim.size(1) == R, "segment_attention: limits (B, R)");
  }
  // destinations: given views (written in place, any strides, last dim of out contiguous) or new
  torch::Tensor out = out_opt.has_value() ? *out_opt : torch::empty({B, H, R, D}, q.options());
  torch::Tensor lse = lse_opt.has_value() ? *lse_opt : torch::empty({B, H, R}, q.options().dtype(at::kFloat));
  TORCH_CHECK(out.sizes() == q.sizes() && out.scalar_type() == q.scalar_type() && out.stride(3) == 1,
              "segment_attention: out must be (B, Hkv, R, D) in q's dtype, last dim contiguous");
  TORCH_CHECK(lse.dim() == 3 && lse.size(0) == B && lse.size(1) == H && lse.size(2) == R &&
                  lse.scalar_type() == at::kFloat, "segment_attention: lse must be (B, Hkv, R) float32");
  const int64_t es = q.element_size();
  at::parallel_for(0, B * H, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / H, hh = t % H;
      Head h{static_cast<const char*>(q.data_ptr()) + (b * q.stride(0) + hh * q.stride(1)) * es, q.stride(2),
             static_cast<const char*>(k.data_ptr()) + (b * k.stride(0) + hh * k.stride(1)) * es, k.stride(2),
             static_cast<const char*>(v.data_ptr()) + (b * v.stride(0) + hh * v.stride(1)) * es, v.stride(2),
             limits.has_value() ? lim.data_ptr<int64_t>() + b * R : nullptr,
             static_cast<char*>(out.data_ptr()) + (b * out.stride(0) + hh * out.stride(1)) * es, out.stride(2),
             lse.data_ptr<float>() + b * lse.stride(0) + hh * lse.stride(1), lse.stride(2)};
      if (bf16) attend_head<at::BFloat16>(h, R, D, L, float(scale));
      else attend_head<float>(h, R, D, L, float(scale));
    }
  });
  return {out, lse};
}
