// Helpers the two quantized linear kernels share (quant_linear.cpp: exact bf16 activations;
// quant_dot8.cpp: int8 activations). Header-only, inline.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace plait_quant {

// Type codes from kTileCode on name a GGUF type (code - kTileCode) in the tile layout
// (quant_tiles.cpp): a pack of (O / 16, 16 x row bytes), one tile of 16 output rows per row.
constexpr int64_t kTileCode = 16;
constexpr int64_t kTileRows = 16;

inline int64_t output_rows(int64_t type, int64_t pack_rows) { return type >= kTileCode ? pack_rows * kTileRows : pack_rows; }

// Whether GGUF type code `base` has a tile layout and kernel (Q8_0, Q5_0, Q4_K, Q6_K; tiles.py's
// TILE_TYPES)
inline bool has_tiles(int64_t base) { return base == 0 || base == 1 || base == 3 || base == 4; }

inline void halves(const uint8_t* p, float& a, float& b) {  // two fp16 at p
  const __m128 v = _mm_cvtph_ps(_mm_cvtsi32_si128(*reinterpret_cast<const int32_t*>(p)));
  a = _mm_cvtss_f32(v);
  b = _mm_cvtss_f32(_mm_movehdup_ps(v));
}

inline __m512 pair_scales(float a, float b) {  // lanes 0-7 = a, 8-15 = b
  return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

// sum_b m[b] * xs[b] over nb blocks, 16 lanes at a time in order, then the lanes (a fixed order)
inline float offset_dot(const float* m, const float* xs, int64_t nb) {
  __m512 a = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b += 16) {
    const __mmask16 k = (__mmask16)(nb - b >= 16 ? 0xffff : ((1u << (nb - b)) - 1));
    a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, m + b), _mm512_maskz_loadu_ps(k, xs + b), a);
  }
  return _mm512_reduce_add_ps(a);
}

}  // namespace plait_quant
