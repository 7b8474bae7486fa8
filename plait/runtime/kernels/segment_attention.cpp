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
// The reference twin is the torch path in plait.runtime.attention (tests/runtime/test_kernels.py).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr int kBlock = 64;             // keys per block (4 vectors of 16 scores)
constexpr int kVec = kBlock / 16;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// 2^x for x <= 0 (x = -inf gives 0): round-to-nearest split and a degree-7 Taylor polynomial
// on [-0.5, 0.5] (relative error < 1e-8), then scalef for the exponent.
inline __m512 exp2_neg(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-200.f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.5252733804059840e-5f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530393381609e-4f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

inline __m512 load16(const at::BFloat16* p) {  // 16 bf16 -> fp32
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline float to_float(at::BFloat16 v) { return float(v); }
inline float to_float(float v) { return v; }

// Scores of one block for NR rows: s[r][c] (16 keys per vector) = sum_d q[r][d] * k[c*16+i][d].
// bf16: kt holds (D/2, kBlock) 32-bit pairs (k[j][2p], k[j][2p+1]), q2 the rows' pairs.
template <int NR, int NC>
inline void scores_bf16(const uint32_t* q2, int64_t D2, const uint32_t* kt, __m512 s[][kVec]) {
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c) s[r][c] = _mm512_setzero_ps();
  for (int64_t p = 0; p < D2; ++p) {
    __m512bh kv[NC];
    for (int c = 0; c < NC; ++c) kv[c] = (__m512bh)_mm512_loadu_si512(kt + p * kBlock + c * 16);
    for (int r = 0; r < NR; ++r) {
      const __m512bh qb = (__m512bh)_mm512_set1_epi32(int(q2[r * D2 + p]));
      for (int c = 0; c < NC; ++c) s[r][c] = _mm512_dpbf16_ps(s[r][c], kv[c], qb);
    }
  }
}

// fp32: kt holds (D, kBlock) floats, qf the rows in fp32.
template <int NR, int NC>
inline void scores_f32(const float* qf, int64_t D, const float* kt, __m512 s[][kVec]) {
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c) s[r][c] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    __m512 kv[NC];
    for (int c = 0; c < NC; ++c) kv[c] = _mm512_loadu_ps(kt + d * kBlock + c * 16);
    for (int r = 0; r < NR; ++r) {
      const __m512 qb = _mm512_set1_ps(qf[r * D + d]);
      for (int c = 0; c < NC; ++c) s[r][c] = _mm512_fmadd_ps(kv[c], qb, s[r][c]);
    }
  }
}

// (rows in this tile, 16-key vectors in this block) -> the instantiation
template <class T, int NR>
void scores_nc(int nc, const uint32_t* q2, const float* qf, int64_t D, const uint32_t* kt2,
               const float* ktf, __m512 s[][kVec]) {
  if constexpr (std::is_same<T, at::BFloat16>::value) {
    switch (nc) {
      case 1: scores_bf16<NR, 1>(q2, D / 2, kt2, s); break;
      case 2: scores_bf16<NR, 2>(q2, D / 2, kt2, s); break;
      case 3: scores_bf16<NR, 3>(q2, D / 2, kt2, s); break;
      default: scores_bf16<NR, 4>(q2, D / 2, kt2, s); break;
    }
  } else {
    switch (nc) {
      case 1: scores_f32<NR, 1>(qf, D, ktf, s); break;
      case 2: scores_f32<NR, 2>(qf, D, ktf, s); break;
      case 3: scores_f32<NR, 3>(qf, D, ktf, s); break;
      default: scores_f32<NR, 4>(qf, D, ktf, s); break;
    }
  }
}

// out row += sum_j p[j] * v[j], v block in fp32 (nk, D), D = 16 * ND
template <int ND>
inline void accumulate(float* o, const float* p, const float* vf, int nk, float corr) {
  __m512 acc[ND];
  const __m512 c = _mm512_set1_ps(corr);
  for (int i = 0; i < ND; ++i) acc[i] = _mm512_mul_ps(_mm512_loadu_ps(o + 16 * i), c);
  for (int j = 0; j < nk; ++j) {
    const __m512 pj = _mm512_set1_ps(p[j]);
    for (int i = 0; i < ND; ++i) acc[i] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vf + j * 16 * ND + 16 * i), acc[i]);
  }
  for (int i = 0; i < ND; ++i) _mm512_storeu_ps(o + 16 * i, acc[i]);
}

// bf16: out row += sum over key pairs of (p[2i], p[2i+1]) . (v[2i][d], v[2i+1][d]) with
// AVX512-BF16 dot products; p2 holds the row's probabilities as bf16 pairs, vp the block's
// values pair-interleaved (npairs, D) (the probabilities are rounded to bf16 as in GPU flash
// kernels; the row sum l stays fp32)
template <int ND>
inline void accumulate_pairs(float* o, const uint32_t* p2, const uint32_t* vp, int npairs, float corr) {
  __m512 acc[ND];
  const __m512 c = _mm512_set1_ps(corr);
  for (int i = 0; i < ND; ++i) acc[i] = _mm512_mul_ps(_mm512_loadu_ps(o + 16 * i), c);
  for (int j = 0; j < npairs; ++j) {
    const __m512bh pj = (__m512bh)_mm512_set1_epi32(int(p2[j]));
    for (int i = 0; i < ND; ++i)
      acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)_mm512_loadu_si512(vp + j * 16 * ND + 16 * i), pj);
  }
  for (int i = 0; i < ND; ++i) _mm512_storeu_ps(o + 16 * i, acc[i]);
}

using AccFn = void (*)(float*, const float*, const float*, int, float);
using PairFn = void (*)(float*, const uint32_t*, const uint32_t*, int, float);
struct Accumulators {
  AccFn f32;    // fp32 values
  PairFn bf16;  // bf16 value pairs
};
template <int ND>
Accumulators accumulators() { return {accumulate<ND>, accumulate_pairs<ND>}; }
Accumulators accumulators_for(int64_t D) {  // D = 16 * ND, ND in 1..8
  switch (D / 16) {
    case 1: return accumulators<1>();
    case 2: return accumulators<2>();
    case 3: return accumulators<3>();
    case 4: return accumulators<4>();
    case 5: return accumulators<5>();
    case 6: return accumulators<6>();
    case 7: return accumulators<7>();
    default: return accumulators<8>();
  }
}

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
  const T* q = static_cast<const T*>(h.q);
  const T* k = static_cast<const T*>(h.k);
  const T* v = static_cast<const T*>(h.v);
  T* out = static_cast<T*>(h.out);
  constexpr bool kBF16 = std::is_same<T, at::BFloat16>::value;
  const float qscale = scale * kLog2e;  // scores in log2 units
  int64_t Lmax = L;
  if (h.lim) {
    int64_t mx = -1;
    for (int64_t r = 0; r < R; ++r) mx = std::max(mx, h.lim[r]);
    Lmax = std::min(L, mx + 1);
  }
  // per-thread scratch, reused across calls
  thread_local std::vector<float> o, m, l, vf, pbuf, ktf, qf;
  thread_local std::vector<uint32_t> kt2, q2, vp, p2;
  o.assign(R * D, 0.f);
  m.assign(R, -std::numeric_limits<float>::infinity());
  l.assign(R, 0.f);
  vf.resize(kBlock * D);
  pbuf.resize(kBlock);
  // keys tile: bf16 pairs (D/2, kBlock) or fp32 (D, kBlock); rows: bf16 pairs or fp32
  if constexpr (kBF16) {
    kt2.resize((D / 2) * kBlock);
    vp.resize((kBlock / 2) * D);
    p2.resize(kBlock / 2);
    q2.resize(R * (D / 2));
    for (int64_t r = 0; r < R; ++r)  // a bf16 row read as 32-bit words is its (2p, 2p+1) pairs
      std::memcpy(q2.data() + r * (D / 2), q + r * h.q_rs, D * sizeof(T));
  } else {
    ktf.resize(D * kBlock);
    qf.resize(R * D);
    for (int64_t r = 0; r < R; ++r) std::memcpy(qf.data() + r * D, q + r * h.q_rs, D * sizeof(T));
  }
  const Accumulators accs = accumulators_for(D);
  // interleave 16 bf16 of key a (low half) with 16 of key b (high half): a0 b0 a1 b1 ...
  const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t j0 = 0; j0 < Lmax; j0 += kBlock) {
    const int nk = int(std::min<int64_t>(kBlock, Lmax - j0));
    const int nc = (nk + 15) / 16;  // 16-key vectors that hold keys
    // gather the block's keys transposed; values converted to fp32 rows
    for (int c = 0; c < nc; ++c) {
      const __mmask16 valid = _mm512_cmplt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(c * 16)), _mm512_set1_epi32(nk));
      const __m512i idx = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(c * 16)),
                                             _mm512_set1_epi32(int(kBF16 ? h.k_rs / 2 : h.k_rs)));
      if constexpr (kBF16) {
        const int* base = reinterpret_cast<const int*>(k + j0 * h.k_rs);
        for (int64_t p = 0; p < D / 2; ++p)
          _mm512_storeu_si512(kt2.data() + p * kBlock + c * 16,
                              _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, idx, base + p, 4));
      } else {
        const float* base = reinterpret_cast<const float*>(k + j0 * h.k_rs);
        for (int64_t d = 0; d < D; ++d)
          _mm512_storeu_ps(ktf.data() + d * kBlock + c * 16,
                           _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, idx, base + d, 4));
      }
    }
    if constexpr (kBF16) {
      for (int j = 0; j < nk; j += 2) {
        const uint16_t* a = reinterpret_cast<const uint16_t*>(v + (j0 + j) * h.v_rs);
        const uint16_t* b = reinterpret_cast<const uint16_t*>(v + (j0 + j + 1) * h.v_rs);
        for (int64_t d = 0; d < D; d += 16) {
          const __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + d));
          const __m256i vb = (j + 1 < nk) ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + d))
                                          : _mm256_setzero_si256();
          const __m512i ab = _mm512_inserti64x4(_mm512_castsi256_si512(va), vb, 1);
          _mm512_storeu_si512(vp.data() + (j / 2) * D + d, _mm512_permutexvar_epi16(inter, ab));
        }
      }
    } else {
      for (int j = 0; j < nk; ++j)
        for (int64_t d = 0; d < D; d += 16) _mm512_storeu_ps(vf.data() + j * D + d, load16(v + (j0 + j) * h.v_rs + d));
    }
    for (int64_t r0 = 0; r0 < R; r0 += 4) {
      const int nr = int(std::min<int64_t>(4, R - r0));
      __m512 s[4][kVec];
      const uint32_t* qr2 = kBF16 ? q2.data() + r0 * (D / 2) : nullptr;
      const float* qrf = kBF16 ? nullptr : qf.data() + r0 * D;
      switch (nr) {
        case 1: scores_nc<T, 1>(nc, qr2, qrf, D, kt2.data(), ktf.data(), s); break;
        case 2: scores_nc<T, 2>(nc, qr2, qrf, D, kt2.data(), ktf.data(), s); break;
        case 3: scores_nc<T, 3>(nc, qr2, qrf, D, kt2.data(), ktf.data(), s); break;
        default: scores_nc<T, 4>(nc, qr2, qrf, D, kt2.data(), ktf.data(), s); break;
      }
      for (int i = 0; i < nr; ++i) {
        const int64_t r = r0 + i;
        const int64_t last = h.lim ? std::min<int64_t>(h.lim[r] - j0, nk - 1) : nk - 1;  // block-local
        if (last < 0) continue;  // no visible key in this block
        const __m512i lastv = _mm512_set1_epi32(int(last));
        float mx = -std::numeric_limits<float>::infinity();
        for (int c = 0; c < nc; ++c) {
          const __mmask16 vis = _mm512_cmple_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(c * 16)), lastv);
          s[i][c] = _mm512_mask_blend_ps(vis, _mm512_set1_ps(-std::numeric_limits<float>::infinity()),
                                         _mm512_mul_ps(s[i][c], _mm512_set1_ps(qscale)));
          mx = std::max(mx, _mm512_mask_reduce_max_ps(vis, s[i][c]));
        }
        const float mnew = std::max(m[r], mx);
        const float corr = std::exp2(m[r] - mnew);  // 0 on the first visible block
        const __m512 mv = _mm512_set1_ps(mnew);
        __m512 sum = _mm512_setzero_ps();
        for (int c = 0; c < nc; ++c) {
          const __m512 p = exp2_neg(_mm512_sub_ps(s[i][c], mv));
          sum = _mm512_add_ps(sum, p);
          if constexpr (kBF16) {  // 16 probabilities -> 8 bf16 pairs
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p2.data() + c * 8), (__m256i)_mm512_cvtneps_pbh(p));
          } else {
            _mm512_storeu_ps(pbuf.data() + c * 16, p);
          }
        }
        l[r] = l[r] * corr + _mm512_reduce_add_ps(sum);
        m[r] = mnew;
        if constexpr (kBF16) {
          accs.bf16(o.data() + r * D, p2.data(), vp.data(), int(last + 2) / 2, corr);
        } else {
          accs.f32(o.data() + r * D, pbuf.data(), vf.data(), int(last + 1), corr);
        }
      }
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    const bool empty = l[r] == 0.f;
    const __m512 inv = _mm512_set1_ps(empty ? 0.f : 1.f / l[r]);
    for (int64_t d = 0; d < D; d += 16) {
      const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(o.data() + r * D + d), inv);
      if constexpr (kBF16) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * h.out_rs + d), (__m256i)_mm512_cvtneps_pbh(x));
      } else {
        _mm512_storeu_ps(out + r * h.out_rs + d, x);
      }
    }
    h.lse[r * h.lse_rs] = empty ? -std::numeric_limits<float>::infinity() : (m[r] + std::log2(l[r])) * kLn2;
  }
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
