// plait CPU kernel: the int8 (VNNI) linear on "tiles": 16 output rows of a 32-element-block
// type (Q8_0, Q5_0) interleaved so that one vector lane belongs to one output row.
//
// Why: in the row layout (quant_dot8.cpp) the 16 lanes of a dot product hold partial sums of
// one output row's two blocks, so every 64 weights need their own int32 -> fp32 conversion,
// scale product and FMA, per activation row: 4 vector ops per row where a bf16 dot needs 2. In a
// tile, lane o of the weight vector g holds output row o's 4 quants k = 4g..4g+3, so the row's 4
// activation quants at k are one broadcast memory operand of `vpdpbusd`, and 8 dot products
// leave, in lane o, output row o's exact integer dot over a whole 32-element block. The block's
// scales (the 16 rows' fp16 d, the activation row's d) are then applied once per block to 16
// outputs: 8 dot products + 3 ops per 512 multiply-adds and activation row, instead of 32.
//
// Layout per tile and 64-element chunk c (formats.tile writes it, formats.untile is its twin):
//   bytes 0-63: the fp16 scales, block 0's 16 rows then block 1's;
//   Q8_0 (1088 bytes): 16 vectors V[g] (g = 0..15, elements 4g..4g+3 of the chunk), lane o =
//     row o's 4 quants + 128 (unsigned);
//   Q5_0 (704 bytes): 8 vectors N[h]: low nibble = V[h], high nibble = V[h + 8] (the 5-bit quants'
//     low 4 bits), then 2 vectors H[s]: bit b of byte j = the fifth bit of byte j of V[8s + b].
// Both sizes equal the GGUF's bytes. A type stored with a bias (128, 16) starts each block's
// integer sum at -bias x (the sum of the activation block's quants).
//
// Numerics: the same exact integer dot per (row, output, block) as quant_dot8.cpp, then
// y += float(dot) x (dw x dx) per block in order, + bias, rounded to bf16. Batch invariance:
// every (activation row, output row) pair runs the same operations whatever the row count.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include "quant_rows8.h"

#include <algorithm>
#include <cstring>

namespace {

using plait_quant::Quants;

constexpr int64_t kLanes = plait_quant::kTileRows;  // output rows per tile
constexpr int kRows = 8;        // activation rows per register tile

struct TileQ8_0 {
  static constexpr int64_t kChunk = 1088;
  static constexpr int kBias = 128;
  static inline void vectors(const uint8_t* p, int blk, __m512i* v) {  // block blk's 8 vectors
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) v[g] = _mm512_loadu_si512(p + 64 + 64 * (8 * blk + g));
  }
};

struct TileQ5_0 {
  static constexpr int64_t kChunk = 704;
  static constexpr int kBias = 16;
  static inline void vectors(const uint8_t* p, int blk, __m512i* v) {
    const __m512i h = _mm512_loadu_si512(p + 576 + 64 * blk);
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      __m512i n = _mm512_loadu_si512(p + 64 + 64 * g);
      if (blk) n = _mm512_srli_epi16(n, 4);
      // bit g of H's bytes to bit 4 (16-bit shifts: bit 4 of each byte comes from its own byte)
      const __m512i hb = g < 4 ? _mm512_slli_epi16(h, 4 - g) : _mm512_srli_epi16(h, g - 4);
      // (n & 15) | (hb & 16)
      v[g] = _mm512_ternarylogic_epi32(_mm512_and_si512(n, _mm512_set1_epi8(15)), hb, _mm512_set1_epi8(16), 0xF8);
    }
  }
};

inline int32_t load4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The 32-element-block types: NR activation rows (from r0) x one tile's 16 outputs, into acc
template <class T, int NR>
inline void blocks32(const uint8_t* tile, const Quants& xq, int64_t r0, __m512* acc) {
  const int64_t C = xq.C;
  __m512i v[8];
  for (int64_t c = 0; c < C; ++c) {
    const uint8_t* p = tile + c * T::kChunk;
    for (int blk = 0; blk < 2; ++blk) {
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * blk)));
      T::vectors(p, blk, v);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        const int64_t b = (r0 + r) * 2 * C + 2 * c + blk;  // the activation row's block
        const int8_t* xr = xq.q32.data() + (r0 + r) * C * 64 + c * 64 + 32 * blk;
        __m512i s = _mm512_set1_epi32(-T::kBias * xq.bsum[b]);
#pragma GCC unroll 8
        for (int g = 0; g < 8; ++g) s = _mm512_dpbusd_epi32(s, v[g], _mm512_set1_epi32(load4(xr + 4 * g)));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(xq.d32[b])), acc[r]);
      }
    }
  }
}

inline __m512 halves16(const uint8_t* p) {  // 16 fp16 -> fp32
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// 8 nibble vectors at p -> the low (h = 0) or high (h = 1) nibbles
inline void nibbles8(const uint8_t* p, int h, __m512i* v) {
#pragma GCC unroll 8
  for (int g = 0; g < 8; ++g) {
    const __m512i n = _mm512_loadu_si512(p + 64 * g);
    v[g] = _mm512_and_si512(h ? _mm512_srli_epi16(n, 4) : n, _mm512_set1_epi8(15));
  }
}

// this row's 4 quants at xr + 4g for g in [g0, g1) against v: an exact int32 per lane
template <int G0, int G1>
inline __m512i dots(const __m512i* v, const int8_t* xr) {
  __m512i d = _mm512_setzero_si512();
#pragma GCC unroll 8
  for (int g = G0; g < G1; ++g) d = _mm512_dpbusd_epi32(d, v[g], _mm512_set1_epi32(load4(xr + 4 * g)));
  return d;
}

// Q4_K tiles, per superblock (2368 bytes): d (16 fp16), dmin, scales [j][o], mins [j/2][o][2],
// then per 64-element chunk q 8 nibble vectors (low: sub-block 2q, high: 2q + 1). Per row:
// y += d dx x sum_j sc_j dot_j - dmin dx x sum_j mn_j bsum_j (exact integer sums).
struct TileQ4_K {
  static constexpr int64_t kSuper = 2368;
  template <int NR>
  static inline void run(const uint8_t* tile, const Quants& xq, int64_t r0, __m512* acc) {
    const int64_t S = xq.C / 4;
    __m512i v[8];
    for (int64_t s = 0; s < S; ++s) {
      const uint8_t* p = tile + s * kSuper;
      __m512i isum[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) isum[r] = _mm512_setzero_si512();
      for (int j = 0; j < 8; ++j) {
        nibbles8(p + 320 + 512 * (j / 2), j % 2, v);
        const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 64 + 16 * j)));
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) {
          const int8_t* xr = xq.q256.data() + (r0 + r) * xq.C * 64 + s * 256 + 32 * j;
          isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(dots<0, 8>(v, xr), sc));
        }
      }
      __m512i mn[4];
#pragma GCC unroll 4
      for (int jp = 0; jp < 4; ++jp) mn[jp] = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 192 + 32 * jp)));
      const __m512 d = halves16(p), dmin = halves16(p + 32);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        const int16_t* bs = xq.bs32.data() + ((r0 + r) * S + s) * 8;
        __m512i m = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int jp = 0; jp < 4; ++jp) m = _mm512_dpwssd_epi32(m, mn[jp], _mm512_set1_epi32(load4(reinterpret_cast<const int8_t*>(bs + 2 * jp))));
        const __m512 dx = _mm512_set1_ps(xq.d256[(r0 + r) * S + s]);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_mul_ps(d, dx), acc[r]);
        acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin, dx), acc[r]);
      }
    }
  }
};

// Q6_K tiles, per superblock (3360 bytes): d (16 fp16), scales [j/2][o][2] (int8), then per
// 64-element chunk q 8 nibble vectors and 4 vectors of top bits (bits 2b..2b+1 of vector i: the
// top bits of the chunk's group 4i + b). Quants stored q + 32: per row
// y += d dx x (sum_j sc_j dot_j - 32 sum_j sc_j bsum_j), exact integers.
struct TileQ6_K {
  static constexpr int64_t kSuper = 3360;
  template <int NR>
  static inline void run(const uint8_t* tile, const Quants& xq, int64_t r0, __m512* acc) {
    const int64_t S = xq.C / 4;
    __m512i v[8];
    for (int64_t s = 0; s < S; ++s) {
      const uint8_t* p = tile + s * kSuper;
      __m512i isum[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) isum[r] = _mm512_setzero_si512();
      for (int hh = 0; hh < 8; ++hh) {  // half hh % 2 of chunk hh / 2: sub-blocks 2hh, 2hh + 1
        const uint8_t* c = p + 288 + 768 * (hh / 2);
        nibbles8(c, hh % 2, v);
#pragma GCC unroll 8
        for (int g = 0; g < 8; ++g) {
          const __m512i t = _mm512_loadu_si512(c + 512 + 64 * (2 * (hh % 2) + g / 4));
          const int b = g % 4;  // bits 2b..2b+1 -> bits 4..5
          const __m512i tb = b == 0 ? _mm512_slli_epi16(t, 4) : b == 1 ? _mm512_slli_epi16(t, 2) : b == 2 ? t : _mm512_srli_epi16(t, 2);
          v[g] = _mm512_ternarylogic_epi32(v[g], tb, _mm512_set1_epi8(0x30), 0xF8);  // v | (tb & 0x30)
        }
        const __m512i pr = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 + 32 * hh)));
        const __m512i sc0 = _mm512_srai_epi32(_mm512_slli_epi32(pr, 16), 16), sc1 = _mm512_srai_epi32(pr, 16);
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) {
          const int8_t* xr = xq.q256.data() + (r0 + r) * xq.C * 64 + s * 256 + 32 * hh;
          const __m512i a = _mm512_add_epi32(_mm512_mullo_epi32(dots<0, 4>(v, xr), sc0), _mm512_mullo_epi32(dots<4, 8>(v, xr), sc1));
          isum[r] = _mm512_add_epi32(isum[r], a);
        }
      }
      const __m512 d = halves16(p);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        const int16_t* bs = xq.bs16.data() + ((r0 + r) * S + s) * 16;
        __m512i m = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int jp = 0; jp < 8; ++jp) {
          const __m512i pr = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 + 32 * jp)));
          m = _mm512_dpwssd_epi32(m, pr, _mm512_set1_epi32(load4(reinterpret_cast<const int8_t*>(bs + 2 * jp))));
        }
        const __m512i i = _mm512_sub_epi32(isum[r], _mm512_slli_epi32(m, 5));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(d, _mm512_set1_ps(xq.d256[(r0 + r) * S + s])), acc[r]);
      }
    }
  }
};

template <class T>
struct Blocks32 {
  template <int NR>
  static inline void run(const uint8_t* tile, const Quants& xq, int64_t r0, __m512* acc) {
    blocks32<T, NR>(tile, xq, r0, acc);
  }
};

// NR activation rows (from r0) x one tile -> y rows (bf16, 16 columns from y0)
template <class K, int NR>
inline void tile_rows(const uint8_t* tile, const Quants& xq, int64_t r0, const float* bias, at::BFloat16* y0,
                      int64_t ldy) {
  __m512 acc[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  K::template run<NR>(tile, xq, r0, acc);
  const __m512 bv = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    const __m512 o = bias ? _mm512_add_ps(acc[r], bv) : acc[r];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y0 + (r0 + r) * ldy), (__m256i)_mm512_cvtneps_pbh(o));
  }
}

template <class T>
void tile_segment(const Quants& xq, const uint8_t* wp, int64_t tile_bytes, int64_t tiles, const float* bias,
                  at::BFloat16* y, int64_t ldy, int64_t col0) {
  const int64_t R = xq.R;
  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const uint8_t* tile = wp + t * tile_bytes;
      const float* b = bias ? bias + col0 + t * kLanes : nullptr;
      at::BFloat16* yt = y + col0 + t * kLanes;
      for (int64_t r0 = 0; r0 < R; r0 += kRows) {
        switch (std::min<int64_t>(kRows, R - r0)) {
          case 1: tile_rows<T, 1>(tile, xq, r0, b, yt, ldy); break;
          case 2: tile_rows<T, 2>(tile, xq, r0, b, yt, ldy); break;
          case 3: tile_rows<T, 3>(tile, xq, r0, b, yt, ldy); break;
          case 4: tile_rows<T, 4>(tile, xq, r0, b, yt, ldy); break;
          case 5: tile_rows<T, 5>(tile, xq, r0, b, yt, ldy); break;
          case 6: tile_rows<T, 6>(tile, xq, r0, b, yt, ldy); break;
          case 7: tile_rows<T, 7>(tile, xq, r0, b, yt, ldy); break;
          default: tile_rows<T, 8>(tile, xq, r0, b, yt, ldy); break;
        }
      }
    }
  });
}

}  // namespace

// One tiled segment of quant_linear_q8 (quant_dot8.cpp): `pack` (O / 16, tile bytes) of tile type
// code `type` (kTileCode + the GGUF type code); columns col0.. of y (R, ldy). Checked by the caller.
void quant_tiles_q8(Quants& xq, const at::BFloat16* x, const torch::Tensor& pack, int64_t type, const float* bias,
                    at::BFloat16* y, int64_t ldy, int64_t col0) {
  const uint8_t* wp = pack.data_ptr<uint8_t>();
  const int64_t tiles = pack.size(0), tb = pack.size(1);
  switch (type) {
    case plait_quant::kTileCode + 0: xq.need32(x); tile_segment<Blocks32<TileQ8_0>>(xq, wp, tb, tiles, bias, y, ldy, col0); break;
    case plait_quant::kTileCode + 1: xq.need32(x); tile_segment<Blocks32<TileQ5_0>>(xq, wp, tb, tiles, bias, y, ldy, col0); break;
    case plait_quant::kTileCode + 3: xq.need256(x); tile_segment<TileQ4_K>(xq, wp, tb, tiles, bias, y, ldy, col0); break;
    case plait_quant::kTileCode + 4: xq.need256(x); tile_segment<TileQ6_K>(xq, wp, tb, tiles, bias, y, ldy, col0); break;
    default: TORCH_CHECK(false, "quant_linear: no tile kernel for type ", type);
  }
}

// ---- the tile layout from the row layout (tiles.py's `tile`, its twin) --------------------------
namespace {

// one row's quants (unsigned: Q8_0 q + 128, Q5_0 0..31, Q4_K 0..15, Q6_K 0..63) of the chunk
// (32-element types, 64 values) or superblock (K-quants, 256 values) at src
void row_values(int64_t type, const uint8_t* src, uint8_t* q) {
  switch (type) {
    case 0:
      for (int e = 0; e < 64; ++e) q[e] = src[4 + e] ^ 0x80;
      break;
    case 1:
      for (int e = 0; e < 64; ++e) {
        const uint8_t n = src[12 + e % 32];
        q[e] = uint8_t((e < 32 ? n & 15 : n >> 4) | (((src[4 + e / 8] >> (e % 8)) & 1) << 4));
      }
      break;
    case 3:
      for (int e = 0; e < 256; ++e) {
        const uint8_t n = src[20 + 32 * (e / 64) + e % 32];
        q[e] = (e % 64) < 32 ? n & 15 : n >> 4;
      }
      break;
    default:  // Q6_K
      for (int e = 0; e < 256; ++e) {
        const uint8_t* c = src + 18 + 48 * (e / 64);
        const int k = e % 64;
        const uint8_t n = c[16 + k % 32];
        q[e] = uint8_t((k < 32 ? n & 15 : n >> 4) | (((c[k % 16] >> (2 * (k / 16))) & 3) << 4));
      }
  }
}

// vector G's byte of lane o, element i: row o's value 4G + i (vals: 16 rows x n)
inline uint8_t lane(const uint8_t* vals, int n, int G, int o, int i) { return vals[o * n + 4 * G + i]; }

// one tile's unit (chunk or superblock) from its 16 rows' units (rows[o])
void tile_unit(int64_t type, const uint8_t* const* rows, uint8_t* dst) {
  const bool super = type >= 3;
  const int n = super ? 256 : 64;
  uint8_t vals[16 * 256];
  for (int o = 0; o < 16; ++o) row_values(type, rows[o], vals + o * n);
  if (!super) {
    for (int o = 0; o < 16; ++o)
      for (int b = 0; b < 2; ++b) std::memcpy(dst + 32 * b + 2 * o, rows[o] + 2 * b, 2);
    for (int g = 0; g < (type == 0 ? 16 : 8); ++g)
      for (int o = 0; o < 16; ++o)
        for (int i = 0; i < 4; ++i) {
          uint8_t* d = dst + 64 + 64 * g + 4 * o + i;
          *d = type == 0 ? lane(vals, n, g, o, i) : uint8_t((lane(vals, n, g, o, i) & 15) | ((lane(vals, n, g + 8, o, i) & 15) << 4));
        }
    if (type == 1)
      for (int s = 0; s < 2; ++s)
        for (int o = 0; o < 16; ++o)
          for (int i = 0; i < 4; ++i) {
            uint8_t h = 0;
            for (int b = 0; b < 8; ++b) h |= uint8_t(((lane(vals, n, 8 * s + b, o, i) >> 4) & 1) << b);
            dst[576 + 64 * s + 4 * o + i] = h;
          }
    return;
  }
  const int body = type == 3 ? 320 : 288, stride = type == 3 ? 512 : 768;
  for (int o = 0; o < 16; ++o) {
    const uint8_t* r = rows[o];
    std::memcpy(dst + 2 * o, r, 2);  // d
    if (type == 3) {
      std::memcpy(dst + 32 + 2 * o, r + 2, 2);  // dmin
      for (int j = 0; j < 8; ++j) dst[64 + 16 * j + o] = r[4 + j];
      for (int j = 0; j < 8; ++j) dst[192 + 32 * (j / 2) + 2 * o + j % 2] = r[12 + j];
    } else {
      for (int j = 0; j < 16; ++j) dst[32 + 32 * (j / 2) + 2 * o + j % 2] = r[2 + j];
    }
  }
  for (int p = 0; p < 4; ++p)
    for (int o = 0; o < 16; ++o)
      for (int i = 0; i < 4; ++i) {
        for (int g = 0; g < 8; ++g)
          dst[body + stride * p + 64 * g + 4 * o + i] =
              uint8_t((lane(vals, n, 16 * p + g, o, i) & 15) | ((lane(vals, n, 16 * p + 8 + g, o, i) & 15) << 4));
        if (type == 4)
          for (int t = 0; t < 4; ++t) {
            uint8_t h = 0;
            for (int b = 0; b < 4; ++b) h |= uint8_t(((lane(vals, n, 16 * p + 4 * t + b, o, i) >> 4) & 3) << (2 * b));
            dst[body + stride * p + 512 + 64 * t + 4 * o + i] = h;
          }
      }
}

}  // namespace

// A packed matrix (O, row bytes) of GGUF type code `type` (Q8_0, Q5_0, Q4_K, Q6_K) -> its tile
// layout (O / 16, 16 x row bytes); the caller (tiles.py) checks the type and shapes.
torch::Tensor tile_pack(const torch::Tensor& pack, int64_t type, int64_t K) {
  TORCH_CHECK(pack.dim() == 2 && pack.scalar_type() == at::kByte && pack.is_contiguous(), "tile_pack: bad pack");
  TORCH_CHECK(plait_quant::has_tiles(type), "tile_pack: no tile layout for type ", type);
  const int64_t O = pack.size(0), rb = pack.size(1), C = (K + 63) / 64;
  TORCH_CHECK(O % kLanes == 0, "tile_pack: rows must come in whole tiles of 16");
  const int64_t units = type >= 3 ? C / 4 : C, ub = rb / units;
  TORCH_CHECK(units > 0 && ub * units == rb, "tile_pack: row bytes do not match K");
  auto out = torch::empty({O / kLanes, kLanes * rb}, pack.options());
  const uint8_t* src = pack.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  at::parallel_for(0, O / kLanes, 1, [&](int64_t t0, int64_t t1) {
    const uint8_t* rows[kLanes];
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t u = 0; u < units; ++u) {
        for (int o = 0; o < kLanes; ++o) rows[o] = src + (kLanes * t + o) * rb + u * ub;
        tile_unit(type, rows, dst + t * kLanes * rb + u * kLanes * ub);
      }
  });
  return out;
}
