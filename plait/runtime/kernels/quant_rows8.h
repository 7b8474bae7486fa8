// The int8 kernels' activation side (quant_dot8.cpp: one output row at a time; quant_tiles.cpp:
// 16 interleaved output rows): each row of x quantised once per call to int8 per block (32
// elements for the 32-element-block types, 256 for the K-quants), scale amax / 127, round to
// nearest even, and the per-block sums the weight types' offsets need. Header-only, inline.
#pragma once
#include <torch/extension.h>
#include <immintrin.h>

#include "quant_common.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace plait_quant {

constexpr int64_t kChunkElems = 64;

// ---- activations, quantised once per call ------------------------------------------------------

// One row of x (K bf16) -> int8 quants (C x 64, zero past K) and one fp32 scale per block of n.
inline void quantize_row(const at::BFloat16* x, int64_t K, int64_t C, int64_t n, int8_t* q, float* d) {
  for (int64_t b = 0; b * n < C * kChunkElems; ++b) {
    __m512 v[16];  // n <= 256
    __m512 amax = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 16; ++i) {
      const int64_t at = b * n + 16 * i, left = std::max<int64_t>(0, std::min<int64_t>(16, K - at));
      const __mmask16 m = (__mmask16)((1u << left) - 1);
      const __m256i h = _mm256_maskz_loadu_epi16(m, x + std::min(at, K));
      v[i] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      amax = _mm512_max_ps(amax, _mm512_abs_ps(v[i]));
    }
    const float dd = _mm512_reduce_max_ps(amax) / 127.f;
    const __m512 id = _mm512_set1_ps(dd != 0.f ? 1.f / dd : 0.f);
    d[b] = dd;
    for (int64_t i = 0; i < n / 16; ++i) {
      const __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(v[i], id));  // round to nearest even
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * n + 16 * i), _mm512_cvtsepi32_epi8(r));
    }
  }
}

// What the types of one call need of x; filled lazily per scheme.
struct Quants {
  int64_t R = 0, K = 0, C = 0;
  // 32-element blocks (Q8_0, Q5_0, Q4_1)
  std::vector<int8_t> q32;     // (R, C*64)
  std::vector<float> dv32;     // (R, C, 16) lane scales: [d(2c) x 8, d(2c+1) x 8]
  std::vector<float> xs32;     // (R, 2C) d_b x (sum of block b's quants): the offsets' x
  std::vector<float> d32;      // (R, 2C) the blocks' scales
  std::vector<int32_t> bsum;   // (R, 2C) the sum of each block's quants
  std::vector<int32_t> s4;     // (R, C, 16) the sum of each vpdpbusd lane's 4 quants
  std::vector<int32_t> neg16;  // (R, C, 16) -16 x s4 (Q5_0's bias), filled on demand
  std::vector<int32_t> neg128; // (R, C, 16) -128 x s4 (Q8_0's)
  // 256-element blocks (Q4_K, Q6_K)
  std::vector<int8_t> q256;    // (R, C*64)
  std::vector<float> d256;     // (R, C/4)
  std::vector<int16_t> bs16;   // (R, 4C) sums of each 16 quants (Q6_K's scale groups)
  std::vector<int16_t> bs32;   // (R, 2C) sums of each 32 quants (Q4_K's)

  void need32(const at::BFloat16* x) {
    if (!q32.empty()) return;
    q32.resize(R * C * 64);
    dv32.resize(R * C * 16);
    xs32.resize(R * 2 * C);
    s4.resize(R * C * 16);
    d32.resize(R * 2 * C);
    bsum.resize(R * 2 * C);
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t r = 0; r < R; ++r) {
      int8_t* q = q32.data() + r * C * 64;
      float* d = d32.data() + r * 2 * C;
      quantize_row(x + r * K, K, C, 32, q, d);
      for (int64_t c = 0; c < C; ++c) {
        const __m512i qc = _mm512_loadu_si512(q + c * 64);
        const __m512i l4 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, qc);  // lane sums of 4
        const int64_t at = (r * C + c) * 16;
        _mm512_storeu_si512(s4.data() + at, l4);
        _mm512_storeu_ps(dv32.data() + at, pair_scales(d[2 * c], d[2 * c + 1]));
        const int64_t b = r * 2 * C + 2 * c;
        bsum[b] = _mm512_mask_reduce_add_epi32(0x00ff, l4);
        bsum[b + 1] = _mm512_mask_reduce_add_epi32(0xff00, l4);
        xs32[b] = d[2 * c] * float(bsum[b]);
        xs32[b + 1] = d[2 * c + 1] * float(bsum[b + 1]);
      }
    }
  }

  // neg16 / neg128 (after need32): -bias x s4, the dot products' starting values for a type
  // stored with that bias (16 or 128)
  void need_bias(int bias) {
    std::vector<int32_t>& v = bias == 128 ? neg128 : neg16;
    if (!v.empty()) return;
    v.resize(s4.size());
    const int shift = bias == 128 ? 7 : 4;
    for (size_t i = 0; i < s4.size(); i += 16) {
      const __m512i l4 = _mm512_loadu_si512(s4.data() + i);
      _mm512_storeu_si512(v.data() + i, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(l4, shift)));
    }
  }

  void need256(const at::BFloat16* x) {
    if (!q256.empty()) return;
    q256.resize(R * C * 64);
    d256.resize(R * C / 4);
    bs16.resize(R * 4 * C);
    bs32.resize(R * 2 * C);
    for (int64_t r = 0; r < R; ++r) {
      const int8_t* q = q256.data() + r * C * 64;
      quantize_row(x + r * K, K, C, 256, q256.data() + r * C * 64, d256.data() + r * C / 4);
      for (int64_t g = 0; g < 4 * C; ++g) {
        int32_t s = 0;
        for (int i = 0; i < 16; ++i) s += q[16 * g + i];
        bs16[r * 4 * C + g] = int16_t(s);  // |s| <= 16 x 127
      }
      for (int64_t b = 0; b < 2 * C; ++b) bs32[r * 2 * C + b] = int16_t(bs16[r * 4 * C + 2 * b] + bs16[r * 4 * C + 2 * b + 1]);
    }
  }
};

}  // namespace plait_quant
