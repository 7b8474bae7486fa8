// plait CPU kernels: the online-softmax core shared by segment_attention.cpp and
// step_attention.cpp: keys of one head are fed in 64-key blocks, gathered once into a
// transposed tile for all query rows (AVX512-BF16 dot products for bf16, FMA for fp32), with an
// exp2 polynomial and fp32 value sums; the rows' state (o, m, l) lives with the caller, so one
// row can continue its softmax over several segments (that is the exact log-sum-exp merge).
#pragma once
#include <torch/extension.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace plait_kernels {


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

// bf16 value sums use AVX512-BF16 dot products over key pairs: p2 holds a row's probabilities
// as bf16 pairs (rounded to bf16 as in GPU flash kernels; the row sum l stays fp32), vp the
// block's values pair-interleaved (npairs, D).
// bf16, NR rows at once: o[i] = o[i] * corr[i] + sum over pairs j of p2[i * p2s + j] . vp[j];
// each value load serves all NR rows (one row at a time reloads the values per row: the value
// sums then wait on loads as much as on the dot products)
template <int ND, int NR>
inline void accumulate_pairs_rows(float* const* o, const uint32_t* p2, int p2s, const uint32_t* vp, int npairs,
                                  const float* corr) {
  __m512 acc[NR][ND];
  for (int i = 0; i < NR; ++i) {
    const __m512 c = _mm512_set1_ps(corr[i]);
    for (int d = 0; d < ND; ++d) acc[i][d] = _mm512_mul_ps(_mm512_loadu_ps(o[i] + 16 * d), c);
  }
  for (int j = 0; j < npairs; ++j) {
    __m512bh v[ND];
    for (int d = 0; d < ND; ++d) v[d] = (__m512bh)_mm512_loadu_si512(vp + j * 16 * ND + 16 * d);
    for (int i = 0; i < NR; ++i) {
      const __m512bh pj = (__m512bh)_mm512_set1_epi32(int(p2[i * p2s + j]));
      for (int d = 0; d < ND; ++d) acc[i][d] = _mm512_dpbf16_ps(acc[i][d], v[d], pj);
    }
  }
  for (int i = 0; i < NR; ++i)
    for (int d = 0; d < ND; ++d) _mm512_storeu_ps(o[i] + 16 * d, acc[i][d]);
}

using AccFn = void (*)(float*, const float*, const float*, int, float);
using PairRowsFn = void (*)(float* const*, const uint32_t*, int, const uint32_t*, int, const float*);
struct Accumulators {
  AccFn f32;             // fp32 values, one row
  PairRowsFn bf16[4];    // bf16 value pairs, 1..max_rows rows at once (registers: NR * ND <= 16)
  int max_rows;
};
template <int ND>
Accumulators accumulators() {
  if constexpr (ND <= 4) {
    return {accumulate<ND>,
            {accumulate_pairs_rows<ND, 1>, accumulate_pairs_rows<ND, 2>, accumulate_pairs_rows<ND, 3>,
             accumulate_pairs_rows<ND, 4>},
            4};
  } else {
    return {accumulate<ND>, {accumulate_pairs_rows<ND, 1>, accumulate_pairs_rows<ND, 2>, nullptr, nullptr}, 2};
  }
}
inline Accumulators accumulators_for(int64_t D) {  // D = 16 * ND, ND in 1..8
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

// R query rows in the middle of an online softmax: the rows in working format (bf16 pairs or
// fp32), their last visible keys, and their state: o (R, D) unnormalised fp32 value sums, m (R)
// running max score in log2 units (-inf before any key), l (R) running sum of 2^(s - m).
struct Rows {
  const uint32_t* q2;  // bf16: (R, D/2) pairs
  const float* qf;     // fp32: (R, D)
  const int64_t* lim;  // (R) last visible key (-1: none), or nullptr (all L keys)
  float* o;
  float* m;
  float* l;
};

// Feed keys 0..L-1 of one head (k, v rows at strides k_rs, v_rs) to R rows' online softmax.
template <class T>
void attend_keys(const Rows& rows, int64_t R, int64_t D, const T* k, int64_t k_rs, const T* v,
                 int64_t v_rs, int64_t L, float qscale) {
  constexpr bool kBF16 = std::is_same<T, at::BFloat16>::value;
  float* o = rows.o;
  float* m = rows.m;
  float* l = rows.l;
  const int64_t* lim = rows.lim;
  int64_t Lmax = L;
  if (lim) {
    int64_t mx = -1;
    for (int64_t r = 0; r < R; ++r) mx = std::max(mx, lim[r]);
    Lmax = std::min(L, mx + 1);
  }
  // per-thread scratch for one key block, reused across calls: keys transposed (bf16 pairs
  // (D/2, kBlock) or fp32 (D, kBlock)), values (pair-interleaved or fp32), probabilities
  thread_local std::vector<float> vf, pbuf, ktf;
  thread_local std::vector<uint32_t> kt2, vp, p2;
  if constexpr (kBF16) {
    kt2.resize((D / 2) * kBlock);
    vp.resize((kBlock / 2) * D);
    p2.resize(4 * (kBlock / 2));  // one row of pairs per row of a 4-row group
  } else {
    ktf.resize(D * kBlock);
    vf.resize(kBlock * D);
    pbuf.resize(kBlock);
  }
  const Accumulators accs = accumulators_for(D);
  // interleave 16 bf16 of key a (low half) with 16 of key b (high half): a0 b0 a1 b1 ...
  const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t j0 = 0; j0 < Lmax; j0 += kBlock) {
    const int nk = int(std::min<int64_t>(kBlock, Lmax - j0));
    const int nc = (nk + 15) / 16;  // 16-key vectors that hold keys
    // the next block's key and value rows towards L1 while this one is worked on (the arena
    // of one layer is cold: the weight stream of the other layers went through the caches)
    for (int64_t j = j0 + kBlock; j < std::min<int64_t>(Lmax, j0 + 2 * kBlock); ++j) {
      for (int64_t b = 0; b < D * int64_t(sizeof(T)); b += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(k + j * k_rs) + b, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(v + j * v_rs) + b, _MM_HINT_T0);
      }
    }
    // gather the block's keys transposed; values converted to fp32 rows
    for (int c = 0; c < nc; ++c) {
      const __mmask16 valid = _mm512_cmplt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(c * 16)), _mm512_set1_epi32(nk));
      const __m512i idx = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(c * 16)),
                                             _mm512_set1_epi32(int(kBF16 ? k_rs / 2 : k_rs)));
      if constexpr (kBF16) {
        const int* base = reinterpret_cast<const int*>(k + j0 * k_rs);
        for (int64_t p = 0; p < D / 2; ++p)
          _mm512_storeu_si512(kt2.data() + p * kBlock + c * 16,
                              _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, idx, base + p, 4));
      } else {
        const float* base = reinterpret_cast<const float*>(k + j0 * k_rs);
        for (int64_t d = 0; d < D; ++d)
          _mm512_storeu_ps(ktf.data() + d * kBlock + c * 16,
                           _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, idx, base + d, 4));
      }
    }
    if constexpr (kBF16) {
      for (int j = 0; j < nk; j += 2) {
        const uint16_t* a = reinterpret_cast<const uint16_t*>(v + (j0 + j) * v_rs);
        const uint16_t* b = reinterpret_cast<const uint16_t*>(v + (j0 + j + 1) * v_rs);
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
        for (int64_t d = 0; d < D; d += 16) _mm512_storeu_ps(vf.data() + j * D + d, load16(v + (j0 + j) * v_rs + d));
    }
    for (int64_t r0 = 0; r0 < R; r0 += 4) {
      const int nr = int(std::min<int64_t>(4, R - r0));
      __m512 s[4][kVec];
      const uint32_t* qr2 = kBF16 ? rows.q2 + r0 * (D / 2) : nullptr;
      const float* qrf = kBF16 ? nullptr : rows.qf + r0 * D;
      switch (nr) {
        case 1: scores_nc<T, 1>(nc, qr2, qrf, D, kt2.data(), ktf.data(), s); break;
        case 2: scores_nc<T, 2>(nc, qr2, qrf, D, kt2.data(), ktf.data(), s); break;
        case 3: scores_nc<T, 3>(nc, qr2, qrf, D, kt2.data(), ktf.data(), s); break;
        default: scores_nc<T, 4>(nc, qr2, qrf, D, kt2.data(), ktf.data(), s); break;
      }
      float* orows[4];  // bf16: the group's rows that see keys here, summed together below
      float corrs[4];
      int active = 0, npairs = 0;
      for (int i = 0; i < nr; ++i) {
        const int64_t r = r0 + i;
        const int64_t last = lim ? std::min<int64_t>(lim[r] - j0, nk - 1) : nk - 1;  // block-local
        if (last < 0) continue;  // no visible key in this block
        // scores to log2 units; lanes past the row's last visible key (or past the block) -> -inf
        const __m512 qs = _mm512_set1_ps(qscale);
        __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
        if (last == nc * 16 - 1) {  // every lane of every vector is a visible key
          for (int c = 0; c < nc; ++c) {
            s[i][c] = _mm512_mul_ps(s[i][c], qs);
            vmax = _mm512_max_ps(vmax, s[i][c]);
          }
        } else {
          const __m512i lastv = _mm512_set1_epi32(int(last));
          for (int c = 0; c < nc; ++c) {
            const __mmask16 vis = _mm512_cmple_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(c * 16)), lastv);
            s[i][c] = _mm512_mask_blend_ps(vis, _mm512_set1_ps(-std::numeric_limits<float>::infinity()),
                                           _mm512_mul_ps(s[i][c], qs));
            vmax = _mm512_max_ps(vmax, s[i][c]);
          }
        }
        const float mx = _mm512_reduce_max_ps(vmax);  // finite: last >= 0
        const float mnew = std::max(m[r], mx);
        const float corr = std::exp2(m[r] - mnew);  // 0 on the first visible block
        const __m512 mv = _mm512_set1_ps(mnew);
        __m512 sum = _mm512_setzero_ps();
        for (int c = 0; c < nc; ++c) {
          const __m512 p = exp2_neg(_mm512_sub_ps(s[i][c], mv));
          sum = _mm512_add_ps(sum, p);
          if constexpr (kBF16) {  // 16 probabilities -> 8 bf16 pairs
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p2.data() + active * (kBlock / 2) + c * 8),
                                (__m256i)_mm512_cvtneps_pbh(p));
          } else {
            _mm512_storeu_ps(pbuf.data() + c * 16, p);
          }
        }
        l[r] = l[r] * corr + _mm512_reduce_add_ps(sum);
        m[r] = mnew;
        if constexpr (kBF16) {
          orows[active] = o + r * D;
          corrs[active] = corr;
          npairs = std::max(npairs, int(last + 2) / 2);  // pairs past a row's last key hold p = 0
          ++active;
        } else {
          accs.f32(o + r * D, pbuf.data(), vf.data(), int(last + 1), corr);
        }
      }
      if constexpr (kBF16) {
        for (int a = 0; a < active; a += accs.max_rows) {
          const int n = std::min(accs.max_rows, active - a);
          accs.bf16[n - 1](orows + a, p2.data() + a * (kBlock / 2), kBlock / 2, vp.data(), npairs, corrs + a);
        }
      }
    }
  }
}

// Normalise R rows' state into out rows (stride out_rs, q's dtype) and, if lse is given, their
// log-sum-exp (natural log; -inf and a zero row for rows that saw no key).
template <class T>
void finish_rows(const float* o, const float* m, const float* l, int64_t R, int64_t D, T* out,
                 int64_t out_rs, float* lse, int64_t lse_rs) {
  constexpr bool kBF16 = std::is_same<T, at::BFloat16>::value;
  for (int64_t r = 0; r < R; ++r) {
    const bool empty = l[r] == 0.f;
    const __m512 inv = _mm512_set1_ps(empty ? 0.f : 1.f / l[r]);
    for (int64_t d = 0; d < D; d += 16) {
      const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(o + r * D + d), inv);
      if constexpr (kBF16) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * out_rs + d), (__m256i)_mm512_cvtneps_pbh(x));
      } else {
        _mm512_storeu_ps(out + r * out_rs + d, x);
      }
    }
    if (lse) lse[r * lse_rs] = empty ? -std::numeric_limits<float>::infinity() : (m[r] + std::log2(l[r])) * kLn2;
  }
}

}  // namespace plait_kernels
