// plait CPU kernel: y (R, O) = x (R, I) @ w (O, I)^T (+ bias), for any row count R.
//
// Batch invariance (the contract): every output y[r][o] is summed in ONE fixed order that
// depends on I only, never on R, on the other rows or on the thread count: k-blocks of
// kKBlock elements in order; inside a block, accumulator a0 takes the 2L-element steps' first
// halves, a1 their second halves, the < 2L tail goes to a0, then reduce_add(a0 + a1) (one
// fixed tree) is added to a scalar fp32 sum; y = round(sum + bias). Few rows (decode) take
// the weight-streaming path `span`; many rows (prefill) take register tiles of kTileR rows x
// kTileO outputs (`tile`) that compute exactly the same sums. So a token row gets the same
// bits alone, beside 511 others, or in another prefill chunk.
//
// Why: with 1-8 activation rows a linear layer is a weight stream; torch's CPU GEMM reached
// ~9 GB/s of weight bandwidth on the dev box (2-core AMD EPYC, Zen 4) where a plain sequential
// read gets ~24 GB/s. This kernel streams every weight row once, front to back, for all rows of
// x at a time (bf16: AVX512-BF16 dot products, fp32 accumulation; fp32: FMA), and prefetches
// ahead into L2 so that 4 rows cost about what 1 row costs. Long rows (down projections) are
// cut into k-blocks so the activation block stays in L1. The reference twin is F.linear; see
// tests/runtime/test_kernels.py. Measurements: docs/log.md (2026-11-26, session 3).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

namespace {

constexpr int kMaxRows = 8;  // activation rows per register block (more rows: several blocks)
constexpr int64_t kKBlock = 1024;  // elements per k-block: fixed (part of the summation order)
constexpr int kTileR = 4;           // rows per register tile (many-row path)
constexpr int kTileO = 3;           // outputs per register tile: 2 * 4 * 3 = 24 accumulators
constexpr int64_t kManyRows = 28;   // more rows than this take the tiled path (same sums)
constexpr int64_t kXBytes = 20480;  // activations up to this size stay in L1 whole (few rows)
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

// The one horizontal sum of the kernel (explicit, so no compiler's reduce_add tree can differ):
// lanes j and j + 8, then j and j + 4, then j and j + 2, then 0 and 1.
inline float hsum(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));  // lanes 0, 1: b0 + b2, b1 + b3
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

// hsum of 16 vectors at once, lane i of the result = hsum(v[i]) bit for bit (same pairs, same
// tree; float addition is commutative): 15 vector adds and 31 shuffles instead of 16 hsums.
inline __m512 hsum16(const __m512* v) {
  __m512 p[8], q[4], r[2];
  for (int a = 0; a < 8; ++a)  // lanes 0-7: v[2a] j + (j + 8); lanes 8-15: v[2a + 1]
    p[a] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * a], v[2 * a + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * a], v[2 * a + 1], 0xEE));
  for (int c = 0; c < 4; ++c)  // quarter k: v[4c + k], j + (j + 4)
    q[c] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * c], p[2 * c + 1], 0x88),
                         _mm512_shuffle_f32x4(p[2 * c], p[2 * c + 1], 0xDD));
  for (int d = 0; d < 2; ++d)  // quarter k: lanes 0, 1 = v[8d + k], lanes 2, 3 = v[8d + 4 + k]
    r[d] = _mm512_add_ps(_mm512_shuffle_ps(q[2 * d], q[2 * d + 1], 0x44),
                         _mm512_shuffle_ps(q[2 * d], q[2 * d + 1], 0xEE));
  // lane 4k + m = v[4m + k]; permute to lane i = v[i]
  const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(r[0], r[1], 0x88), _mm512_shuffle_ps(r[0], r[1], 0xDD));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, s);
}

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
  for (int r = 0; r < NR; ++r) out[r] += hsum(_mm512_add_ps(a0[r], a1[r]));
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
  const int64_t kb = std::min<int64_t>(kKBlock, I);
  if (int64_t(sizeof(T)) * R * I <= kXBytes) {
    // the activations fit L1 whole: read the weight front to back (row by row, its k-blocks in
    // order: the same sums as below), prefetching further along the contiguous stream
    const int64_t ahead = kAheadBytes / int64_t(sizeof(T));
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t k0 = 0; k0 < I; k0 += kb)
        for (int64_t r0 = 0; r0 < R; r0 += kMaxRows)
          piece_rows<K>(x + r0 * I + k0, I, w + o * I + k0, std::min<int64_t>(kb, I - k0), ahead,
                        int(std::min<int64_t>(kMaxRows, R - r0)), acc + (o - o0) * R + r0);
    return;
  }
  // blocked: prefetch the same piece of a later row, which is where the stream goes next
  const int64_t ahead = kb < I ? kAheadRows * I : kAheadBytes / int64_t(sizeof(T));
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

// out[o * ldo + r] += the k-block sum of x row r and w row o (same order as `piece`), for
// NR rows x NO outputs: each weight load serves NR rows and each activation load NO outputs.
template <class K, int NR, int NO>
inline void tile(const typename K::T* __restrict x, int64_t ldx, const typename K::T* __restrict w,
                 int64_t ldw, int64_t n, float* __restrict out, int64_t ldo) {
  constexpr int L = K::kLanes;
  __m512 a0[NR][NO], a1[NR][NO];
  for (int r = 0; r < NR; ++r)
    for (int o = 0; o < NO; ++o) {
      a0[r][o] = _mm512_setzero_ps();
      a1[r][o] = _mm512_setzero_ps();
    }
  int64_t k = 0;
  for (; k + 2 * L <= n; k += 2 * L) {
    for (int r = 0; r < NR; ++r)
      for (int o = 0; o < NO; ++o) {
        a0[r][o] = K::dot(a0[r][o], w + o * ldw + k, x + r * ldx + k);
        a1[r][o] = K::dot(a1[r][o], w + o * ldw + k + L, x + r * ldx + k + L);
      }
  }
  for (; k < n; k += L)
    for (int r = 0; r < NR; ++r)
      for (int o = 0; o < NO; ++o) a0[r][o] = K::dot_tail(a0[r][o], w + o * ldw + k, x + r * ldx + k, n - k);
  static_assert(NR * NO <= 16, "one hsum16 per tile");
  __m512 v[16];
  for (int i = NR * NO; i < 16; ++i) v[i] = _mm512_setzero_ps();
  for (int r = 0; r < NR; ++r)
    for (int o = 0; o < NO; ++o) v[r * NO + o] = _mm512_add_ps(a0[r][o], a1[r][o]);
  alignas(64) float sums[16];
  _mm512_store_ps(sums, hsum16(v));
  for (int r = 0; r < NR; ++r)
    for (int o = 0; o < NO; ++o) out[o * ldo + r] += sums[r * NO + o];
}

template <class K, int NR>
inline void tile_o(int no, const typename K::T* x, int64_t ldx, const typename K::T* w, int64_t ldw, int64_t n,
                   float* out, int64_t ldo) {
  switch (no) {
    case 1: tile<K, NR, 1>(x, ldx, w, ldw, n, out, ldo); break;
    case 2: tile<K, NR, 2>(x, ldx, w, ldw, n, out, ldo); break;
    default: tile<K, NR, kTileO>(x, ldx, w, ldw, n, out, ldo); break;
  }
}

// rows [o0, o1) of w against all R rows of x in register tiles; acc (o1 - o0, R) as in `span`.
// Per k-block, one row tile's activations stay in L1 while the span's weight block (L2) passes.
template <class K>
void span_tiled(const typename K::T* x, int64_t R, int64_t I, const typename K::T* w, int64_t o0,
                int64_t o1, float* acc) {
  const int64_t kb = std::min<int64_t>(kKBlock, I);
  for (int64_t k0 = 0; k0 < I; k0 += kb) {
    const int64_t n = std::min<int64_t>(kb, I - k0);
    for (int64_t r0 = 0; r0 < R; r0 += kTileR) {
      const int nr = int(std::min<int64_t>(kTileR, R - r0));
      for (int64_t o = o0; o < o1; o += kTileO) {
        const int no = int(std::min<int64_t>(kTileO, o1 - o));
        const auto* xr = x + r0 * I + k0;
        const auto* wo = w + o * I + k0;
        float* out = acc + (o - o0) * R + r0;
        switch (nr) {
          case 1: tile_o<K, 1>(no, xr, I, wo, I, n, out, R); break;
          case 2: tile_o<K, 2>(no, xr, I, wo, I, n, out, R); break;
          case 3: tile_o<K, 3>(no, xr, I, wo, I, n, out, R); break;
          default: tile_o<K, kTileR>(no, xr, I, wo, I, n, out, R); break;
        }
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
  constexpr int64_t kChunk = 16;  // output rows per scheduling unit (few rows)
  constexpr int64_t kChunkTiled = 48;  // output rows per scheduling unit (many rows; kTileO | 48)
  const bool many = R > kManyRows;
  const int64_t chunk = many ? kChunkTiled : kChunk;
  // few rows: a thread's whole range in one span (one continuous weight stream, as before);
  // many rows: one 48-output unit at a time (its weight block stays in L2 across row tiles).
  // Either way each output's sum is the same (the order is per output, not per range).
  at::parallel_for(0, (O + chunk - 1) / chunk, many ? 1 : 4, [&](int64_t b0, int64_t b1) {
    const int64_t unit = many ? 1 : b1 - b0;
    std::vector<float> acc(unit * chunk * R);
    for (int64_t b = b0; b < b1; b += unit) {
      const int64_t o0 = b * chunk, o1 = std::min<int64_t>(O, (b + unit) * chunk);
      std::fill(acc.begin(), acc.begin() + (o1 - o0) * R, 0.f);
      if (many) span_tiled<K>(xp, R, I, wp, o0, o1, acc.data());
      else span<K>(xp, R, I, wp, o0, o1, acc.data());
      for (int64_t o = o0; o < o1; ++o) {
        const float bo = bp ? float(bp[o]) : 0.f;
        for (int64_t r = 0; r < R; ++r) yp[r * O + o] = T(acc[(o - o0) * R + r] + bo);
      }
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
