// plait CPU kernels: a decoder layer's per-row elementwise work, fused: RMSNorm and SiLU(gate) x up.
//
// Why: at one decode row the torch versions in plait/runtime/model.py cost seven (RMSNorm) and
// three (SwiGLU) small aten calls each, about 1.7 ms of a 23 ms Qwen2.5-0.5B step (49 norms and
// 24 SwiGLUs per step); fused they are one call each. The arithmetic follows the torch code step
// by step (fp32 math, the same roundings to the activation dtype: bf16 round-to-nearest-even),
// except the order of the mean's sum and the exp polynomial: results agree with torch's to a
// rounding, not bit for bit (twin tests: tests/runtime/kernels/test_pointwise.py). Each row is
// computed alone, so both are batch-invariant.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>

namespace {

inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const at::BFloat16* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline void store16(float* p, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
inline void store16(at::BFloat16* p, __m512 v, __mmask16 m) {
  _mm256_mask_storeu_epi16(p, m, (__m256i)_mm512_cvtneps_pbh(v));
}
// v rounded to T's precision (bf16: round to nearest even), back in fp32 lanes
inline __m512 round_to(__m512 v, const float*) { return v; }
inline __m512 round_to(__m512 v, const at::BFloat16*) {
  const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __mmask16 tail(int64_t left) { return (__mmask16)(left >= 16 ? 0xffff : ((1u << left) - 1)); }

// exp(x) for fp32 lanes: x = n ln2 + r, |r| <= ln2 / 2, degree-7 Taylor polynomial in r (error
// below fp32 rounding), scaled by 2^n (overflow to inf, underflow to 0 as expf)
inline __m512 exp16(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// y = w * T(x * rsqrt(mean(x^2) + eps)) per row of x (R, H)
template <class T>
void rms_rows(const T* x, const T* w, T* y, int64_t R, int64_t H, float eps) {
  at::parallel_for(0, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(H, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * H;
      T* yr = y + r * H;
      __m512 ss = _mm512_setzero_ps();
      for (int64_t i = 0; i < H; i += 16) {
        const __m512 v = load16(xr + i, tail(H - i));
        ss = _mm512_fmadd_ps(v, v, ss);
      }
      const float inv = 1.f / std::sqrt(_mm512_reduce_add_ps(ss) / float(H) + eps);
      const __m512 s = _mm512_set1_ps(inv);
      for (int64_t i = 0; i < H; i += 16) {
        const __mmask16 m = tail(H - i);
        const __m512 t = round_to(_mm512_mul_ps(load16(xr + i, m), s), xr);
        store16(yr + i, _mm512_mul_ps(load16(w + i, m), t), m);
      }
    }
  });
}

// y (R, I) = T(T(silu(g)) * u) with g = gu[:, :I], u = gu[:, I:]; silu(g) = g / (1 + exp(-g))
template <class T>
void silu_rows(const T* gu, T* y, int64_t R, int64_t I) {
  at::parallel_for(0, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(I, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* g = gu + r * 2 * I;
      const T* u = g + I;
      T* yr = y + r * I;
      const __m512 one = _mm512_set1_ps(1.f);
      for (int64_t i = 0; i < I; i += 16) {
        const __mmask16 m = tail(I - i);
        const __m512 gv = load16(g + i, m);
        const __m512 s = round_to(_mm512_div_ps(gv, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv)))), g);
        store16(yr + i, _mm512_mul_ps(s, load16(u + i, m)), m);
      }
    }
  });
}

}  // namespace

// x (R, H) and weight (H,) of one dtype (bf16 or fp32), contiguous -> (R, H)
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && weight.dim() == 1 && weight.is_contiguous() &&
                  weight.size(0) == x.size(1) && weight.scalar_type() == x.scalar_type(),
              "rms_norm: x (R, H) and weight (H,) contiguous, one dtype");
  auto y = torch::empty_like(x);
  const int64_t R = x.size(0), H = x.size(1);
  if (x.scalar_type() == at::kBFloat16) {
    rms_rows(x.data_ptr<at::BFloat16>(), weight.data_ptr<at::BFloat16>(), y.data_ptr<at::BFloat16>(), R, H, float(eps));
  } else {
    TORCH_CHECK(x.scalar_type() == at::kFloat, "rms_norm: bf16 or fp32");
    rms_rows(x.data_ptr<float>(), weight.data_ptr<float>(), y.data_ptr<float>(), R, H, float(eps));
  }
  return y;
}

// gu (R, 2I) bf16 or fp32, contiguous -> silu(gu[:, :I]) * gu[:, I:] (R, I)
torch::Tensor silu_mul(const torch::Tensor& gu) {
  TORCH_CHECK(gu.dim() == 2 && gu.is_contiguous() && gu.size(1) % 2 == 0, "silu_mul: gu (R, 2I) contiguous");
  const int64_t R = gu.size(0), I = gu.size(1) / 2;
  auto y = torch::empty({R, I}, gu.options());
  if (gu.scalar_type() == at::kBFloat16) {
    silu_rows(gu.data_ptr<at::BFloat16>(), y.data_ptr<at::BFloat16>(), R, I);
  } else {
    TORCH_CHECK(gu.scalar_type() == at::kFloat, "silu_mul: bf16 or fp32");
    silu_rows(gu.data_ptr<float>(), y.data_ptr<float>(), R, I);
  }
  return y;
}
