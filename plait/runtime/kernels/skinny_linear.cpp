// plait CPU kernel: y (R, O) = x (R, I) @ w (O, I)^T (+ bias) for a few rows R (decode steps).
//
// Why: with 1-8 activation rows a linear layer is a weight stream; torch's CPU GEMM reached
// ~9 GB/s of weight bandwidth on the dev box (2-core AMD EPYC, Zen 4) where a plain sequential
// read gets ~24 GB/s. This kernel streams every weight row once, front to back, for all rows of
// x at a time (bf16: AVX512-BF16 dot products, fp32 accumulation; fp32: FMA), and prefetches
// ahead into L2 so that 4 rows cost about what 1 row costs. Long rows (down projections) are
// cut into k-blocks so the activation block stays in L1. The reference twin is F.linear; see
// tests/runtime/kernels/test_kernels.py. Measurements: docs/log.md (2026-11-26, session 3).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

namespace {

constexpr int kMaxRows = 8;  // activation rows per register block (more rows: several blocks)
constexpr int64_t kXBytes = 20480;  // activation bytes per k-block (fits L1 with the weights;
                                    // 20 KB keeps 2 rows of a 4864-wide down projection whole)
constexpr int64_t kAheadBytes = 8192;  // prefetch distance inside a weight row (unblocked)
constexpr int64_t kAheadRows = 4;      // prefetch distance in rows (k-blocked)

struct BF16 {
  using T = at::BFloat16;
  static constexpr int kLanes = 32;  // elements per 512-bit load
  static inline __m512 dot(__m512 acc, const T* w, const T* x) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(w), (__m512bh)_mm512_loadu_si512(x));
  }
  static inline __m512 dot_tail(__m512 acc, const T* w, const T* x, int64_t n) {
    const __mmask32 m = (__mmask32)((n >= 32) ? 0xffffffffu : ((1u << n) - 1));
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_maskz_loadu_epi16(m, w),
                            (__m512bh)_mm512_maskz_loadu_epi16(m, x));
  }
};

struct F32 {
  using T = float;
  static constexpr int kLanes = 16;
  static inline __m512 dot(__m512 acc, const T* w, const T* x) {
    return _mm512_fmadd_ps(_mm512_loadu_ps(w), _mm512_loadu_ps(x), acc);
  }
  static inline __m512 dot_tail(__m512 acc, const T* w, const T* x, int64_t n) {
    const __mmask16 m = (__mmask16)((n >= 16) ? 0xffffu : ((1u << n) - 1));
    return _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w), _mm512_maskz_loadu_ps(m, x), acc);
  }
};

// out[r] += dot(w[0:n], x[r*ldx + 0:n]) for r < NR; two accumulators per row hide FMA latency.
template <class K, int NR>
inline void piece(const typename K::T* __restrict x, int64_t ldx, const typename K::T* __restrict w,
                  int64_t n, int64_t ahead, float* __restrict out) {
  constexpr int L = K::kLanes;
  __m512 a0[NR], a1[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    a0[r] = _mm512_setzero_ps();
    a1[r] = _mm512_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 2 * L <= n; k += 2 * L) {
    // 2 * L elements are two 64-byte lines for both types
    _mm_prefetch(reinterpret_cast<const char*>(w + k + ahead), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(w + k + ahead) + 64, _MM_HINT_T1);
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      a0[r] = K::dot(a0[r], w + k, x + r * ldx + k);
      a1[r] = K::dot(a1[r], w + k + L, x + r * ldx + k + L);
    }
  }
  for (; k < n; k += L) {
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) a0[r] = K::dot_tail(a0[r], w + k, x + r * ldx + k, n - k);
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) out[r] += _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
}

template <class K>
inline void piece_rows(const typename K::T* x, int64_t ldx, const typename K::T* w, int64_t n,
                       int64_t ahead, int nr, float* out) {
  switch (nr) {
    case 1: piece<K, 1>(x, ldx, w, n, ahead, out); break;
    case 2: piece<K, 2>(x, ldx, w, n, ahead, out); break;
    case 3: piece<K, 3>(x, ldx, w, n, ahead, out); break;
    case 4: piece<K, 4>(x, ldx, w, n, ahead, out); break;
    case 5: piece<K, 5>(x, ldx, w, n, ahead, out); break;
    case 6: piece<K, 6>(x, ldx, w, n, ahead, out); break;
    case 7: piece<K, 7>(x, ldx, w, n, ahead, out); break;
    default: piece<K, 8>(x, ldx, w, n, ahead, out); break;
  }
}

// rows [o0, o1) of w against all R rows of x; acc is (o1 - o0, R) fp32, zeroed by the caller.
// The weight stream is read once: every k-block piece of a weight row meets all row groups of
// x while it is in L1; the k-block keeps the R x kb activation block in L1 too.
template <class K>
void span(const typename K::T* x, int64_t R, int64_t I, const typename K::T* w, int64_t o0,
          int64_t o1, float* acc) {
  using T = typename K::T;
  int64_t kb = std::max<int64_t>(256, kXBytes / (int64_t(sizeof(T)) * R) / 64 * 64);
  if (kb >= I) kb = I;
  // unblocked: prefetch further along the same (contiguous) rows; blocked: the same piece of
  // a later row, which is where the stream goes next
  const int64_t ahead = (kb < I) ? kAheadRows * I : kAheadBytes / int64_t(sizeof(T));
  for (int64_t k0 = 0; k0 < I; k0 += kb) {
    const int64_t n = std::min<int64_t>(kb, I - k0);
    for (int64_t o = o0; o < o1; ++o) {
      for (int64_t r0 = 0; r0 < R; r0 += kMaxRows) {
        const int nr = int(std::min<int64_t>(kMaxRows, R - r0));
        piece_rows<K>(x + r0 * I + k0, I, w + o * I + k0, n, ahead, nr, acc + (o - o0) * R + r0);
      }
    }
  }
}

template <class K>
void linear_impl(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& bias,
                 torch::Tensor& y) {
  using T = typename K::T;
  const int64_t R = x.size(0), I = x.size(1), O = w.size(0);
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const T* bp = bias.has_value() ? bias->data_ptr<T>() : nullptr;
  T* yp = y.data_ptr<T>();
  constexpr int64_t kChunk = 16;  // output rows per scheduling unit
  at::parallel_for(0, (O + kChunk - 1) / kChunk, 4, [&](int64_t b0, int64_t b1) {
    const int64_t o0 = b0 * kChunk, o1 = std::min<int64_t>(O, b1 * kChunk);
    std::vector<float> acc((o1 - o0) * R, 0.f);
    span<K>(xp, R, I, wp, o0, o1, acc.data());
    for (int64_t o = o0; o < o1; ++o) {
      const float b = bp ? float(bp[o]) : 0.f;
      for (int64_t r = 0; r < R; ++r) yp[r * O + o] = T(acc[(o - o0) * R + r] + b);
    }
  });
}

}  // namespace

torch::Tensor skinny_linear(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), "skinny_linear: x (R, I), w (O, I)");
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous(), "skinny_linear: contiguous inputs");
  TORCH_CHECK(x.scalar_type() == w.scalar_type(), "skinny_linear: x and w dtypes differ");
  if (bias.has_value()) TORCH_CHECK(bias->is_contiguous() && bias->numel() == w.size(0) && bias->scalar_type() == w.scalar_type(), "skinny_linear: bad bias");
  auto y = torch::empty({x.size(0), w.size(0)}, x.options());
  if (x.scalar_type() == at::kBFloat16) {
    linear_impl<BF16>(x, w, bias, y);
  } else {
    TORCH_CHECK(x.scalar_type() == at::kFloat, "skinny_linear: bf16 or fp32 only");
    linear_impl<F32>(x, w, bias, y);
  }
  return y;
}
