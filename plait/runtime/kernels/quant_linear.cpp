// plait CPU kernel: y (R, O) = x (R, K) @ W^T for weights kept in (repacked) GGUF blocks.
//
// Why: decoding reads every weight once per step, so the bytes per weight set the speed. The
// bundled GGUFs hold 4.5-8.5 bits per weight; dequantised to bf16 they cost 16. This kernel
// streams the blocks themselves and computes with the GGUF's exact weights: a weight is
// scale x integer (+ offset); the integers (at most 8 bits) are exact in bf16, so each 32-element
// block meets an activation row in one AVX512-BF16 dot product (fp32 lanes) and its fp32 scale
// is applied to the lanes afterwards (one FMA per block and row). Unpacking is a table lookup per
// 32 weights, about a third of the work of building scaled bf16 weights, which was the first
// version (docs/log.md 2026-12-07). This is the exact path (`--dtype gguf-exact`); the default
// is quant_dot8.cpp's int8 activations (llama.cpp's numerics: 1.1-1.4x faster at one row, about
// one point lower top-1 agreement with bf16).
//
// Batch invariance: a row's result is the same sequence of operations whatever the row count:
// each (row, output) sums the chunks in order 0..C-1 into two 16-lane fp32 accumulators (first
// and second 32 elements of each chunk), reduced in a fixed order, plus the offsets' dot product
// with the row's block sums (fixed order). Rows are processed in register tiles of up to kRows;
// the tile only decides which rows share a weight unpack, never a row's arithmetic.
//
// Layout (one byte row per output row, K padded with zero weights to the chunk size):
//   Q8_0 chunk (68 B): d0 d1 (fp16), 64 int8 q
//   Q5_0 chunk (44 B): d0 d1, 8 bytes bit 4 of element j at bit j, 32 bytes nibbles
//   Q4_1 chunk (40 B): d0 d1 m0 m1 (fp16), 32 bytes nibbles
//   Q4_K superblock (148 B): d dmin (fp16), sc[8], mn[8] (u8, one per 32 elements), 4 x 32 bytes nibbles
//   Q6_K superblock (210 B): d (fp16), 16 x int8 scale, 4 x [16 bytes 2-bit highs, 32 nibbles]
// "nibbles": byte j holds element j (low 4 bits) and element 32 + j (high 4 bits); Q6_K's high
// byte j holds the top 2 bits of element 16 k + j at bits 2k..2k+1. The packing is written by
// plait/runtime/quant/formats.py (its numpy decoder is the reference twin).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include "quant_common.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

using plait_quant::halves;
using plait_quant::offset_dot;
using plait_quant::pair_scales;

// Each type: values(row, c, f) -> the 64 weights of chunk c as fp32, f[g] = elements 16g..16g+15,
// computed exactly as the GGUF defines them (scale x integer (+ offset), one rounding at most).
inline __m512i bytes16(const uint8_t* p) {  // 16 bytes -> 16 int32 lanes
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// 32 nibble bytes -> int32 groups: g0 = low nibbles of bytes 0-15 (elements 0-15), g1 = of
// bytes 16-31 (16-31), g2 = high nibbles of bytes 0-15 (32-47), g3 = of bytes 16-31 (48-63)
inline void nibble_groups(const uint8_t* p, __m512i* v) {
  const __m512i a = bytes16(p), b = bytes16(p + 16), m = _mm512_set1_epi32(15);
  v[0] = _mm512_and_si512(a, m);
  v[1] = _mm512_and_si512(b, m);
  v[2] = _mm512_srli_epi32(a, 4);
  v[3] = _mm512_srli_epi32(b, 4);
}

struct Q8_0 {
  static constexpr int64_t kChunk = 68, kSuper = 1;
  static inline void values(const uint8_t* row, int64_t c, __m512* f) {
    const uint8_t* p = row + c * kChunk;
    float d0, d1;
    halves(p, d0, d1);
    const __m512 s0 = _mm512_set1_ps(d0), s1 = _mm512_set1_ps(d1);
    for (int g = 0; g < 4; ++g) {
      const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4 + 16 * g)));
      f[g] = _mm512_mul_ps(_mm512_cvtepi32_ps(v), g < 2 ? s0 : s1);
    }
  }
};

struct Q5_0 {
  static constexpr int64_t kChunk = 44, kSuper = 1;
  static inline void values(const uint8_t* row, int64_t c, __m512* f) {
    const uint8_t* p = row + c * kChunk;
    float d0, d1;
    halves(p, d0, d1);
    const __m512 s0 = _mm512_set1_ps(d0), s1 = _mm512_set1_ps(d1);
    uint64_t bits;
    std::memcpy(&bits, p + 4, 8);
    __m512i v[4];
    nibble_groups(p + 12, v);
    const __m512i k16 = _mm512_set1_epi32(16);
    // value - 16 = nibble + 16 * bit - 16: subtract 16 where the fifth bit is clear
    for (int g = 0; g < 4; ++g) {
      const __mmask16 clear = (__mmask16)~(bits >> (16 * g));
      v[g] = _mm512_mask_sub_epi32(v[g], clear, v[g], k16);
      f[g] = _mm512_mul_ps(_mm512_cvtepi32_ps(v[g]), g < 2 ? s0 : s1);
    }
  }
};

struct Q4_1 {
  static constexpr int64_t kChunk = 40, kSuper = 1;
  static inline void values(const uint8_t* row, int64_t c, __m512* f) {
    const uint8_t* p = row + c * kChunk;
    float d0, d1, m0, m1;
    halves(p, d0, d1);
    halves(p + 4, m0, m1);
    const __m512 s[2] = {_mm512_set1_ps(d0), _mm512_set1_ps(d1)};
    const __m512 m[2] = {_mm512_set1_ps(m0), _mm512_set1_ps(m1)};
    __m512i v[4];
    nibble_groups(p + 8, v);
    for (int g = 0; g < 4; ++g) f[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v[g]), s[g >> 1], m[g >> 1]);
  }
};

struct Q4_K {
  static constexpr int64_t kSuper = 4, kSuperBytes = 148;
  // chunk c's superblock, its nibbles and its two scale and min bytes (of its 32-element blocks)
  static inline const uint8_t* super(const uint8_t* row, int64_t c) { return row + (c >> 2) * kSuperBytes; }
  static inline const uint8_t* nib(const uint8_t* sb, int64_t c) { return sb + 20 + 32 * (c & 3); }
  static inline const uint8_t* sc(const uint8_t* sb, int64_t c) { return sb + 4 + 2 * (c & 3); }
  static inline const uint8_t* mn(const uint8_t* sb, int64_t c) { return sb + 12 + 2 * (c & 3); }
  static inline void values(const uint8_t* row, int64_t c, __m512* f) {
    const uint8_t* sb = super(row, c);
    const uint8_t *s8 = sc(sb, c), *m8 = mn(sb, c);
    float d, dmin;
    halves(sb, d, dmin);
    const __m512 s[2] = {_mm512_set1_ps(d * float(s8[0])), _mm512_set1_ps(d * float(s8[1]))};
    const __m512 m[2] = {_mm512_set1_ps(-dmin * float(m8[0])), _mm512_set1_ps(-dmin * float(m8[1]))};
    __m512i v[4];
    nibble_groups(nib(sb, c), v);
    for (int g = 0; g < 4; ++g) f[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v[g]), s[g >> 1], m[g >> 1]);
  }
};

struct Q6_K {
  static constexpr int64_t kChunk = 48, kSuper = 4, kSuperBytes = 210;
  static inline void values(const uint8_t* row, int64_t c, __m512* f) {
    const uint8_t* sb = row + (c >> 2) * kSuperBytes;
    const uint8_t* p = sb + 18 + (c & 3) * kChunk;
    const float d = _cvtsh_ss(*reinterpret_cast<const uint16_t*>(sb));
    const int8_t* sc = reinterpret_cast<const int8_t*>(sb + 2) + (c & 3) * 4;
    __m512i v[4];
    nibble_groups(p + 16, v);
    const __m512i t = bytes16(p), k30 = _mm512_set1_epi32(0x30), k32 = _mm512_set1_epi32(32);
    // top 2 bits of group g sit at bits 2g..2g+1 of t: move them to bits 4-5, or into the nibble
    const __m512i top[4] = {_mm512_slli_epi32(t, 4), _mm512_slli_epi32(t, 2), t, _mm512_srli_epi32(t, 2)};
    for (int g = 0; g < 4; ++g) {
      const __m512i q = _mm512_ternarylogic_epi32(top[g], k30, v[g], 0xEA);  // (top & 0x30) | nibble
      f[g] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, k32)), _mm512_set1_ps(d * float(sc[g])));
    }
  }
};

template <class W>
constexpr int64_t row_bytes(int64_t chunks) {
  if constexpr (W::kSuper == 1) {
    return chunks * W::kChunk;
  } else {
    return chunks / W::kSuper * W::kSuperBytes;
  }
}

// ---- the linear kernel: integers in bf16, scales in fp32 after the dot products ----------------
//
// Every type's weight is (scale x integer (+ offset)) per block of 16 or 32 elements. The small
// integers are exact in bf16, so a chunk becomes two bf16 vectors of its integers (a table
// lookup per 32 elements for 4-6 bit types), each meets an activation row in one AVX512-BF16 dot
// product (16 fp32 lanes, lane i = elements 2i and 2i+1 of the 32), and the lanes are scaled by
// their block's fp32 scale with one FMA into the row's accumulator. Offsets (Q4_1's min, Q4_K's
// -dmin x min) multiply the row's sum of x over the block, summed once per call (`block_sums`).

struct Tables {
  __m512i t4, t5, t6lo, t6hi;  // bf16 of i (0..15), i - 16 (0..31), i - 32 (0..63)
  Tables() {
    alignas(64) uint16_t a[32], b[32], c[32], d[32];
    for (int i = 0; i < 32; ++i) {
      a[i] = at::BFloat16(float(i & 15)).x;
      b[i] = at::BFloat16(float(i - 16)).x;
      c[i] = at::BFloat16(float(i - 32)).x;
      d[i] = at::BFloat16(float(i)).x;
    }
    t4 = _mm512_load_si512(a);
    t5 = _mm512_load_si512(b);
    t6lo = _mm512_load_si512(c);
    t6hi = _mm512_load_si512(d);
  }
};
const Tables kT;

// 32 nibble bytes -> 16-bit lanes: lo = elements 0-31 (low nibbles), hi = elements 32-63
inline void nibble_words(const uint8_t* p, __m512i& lo, __m512i& hi) {
  const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  lo = _mm512_and_si512(b, _mm512_set1_epi16(15));
  hi = _mm512_srli_epi16(b, 4);
}

// Per type: prepare(row, c, st) at each superblock's first chunk (state S);
// ints(row, c, w0, w1): the chunk's integers as bf16 (elements 0-31, 32-63);
// scales(row, c, st, s0, s1): the fp32 scale of each lane of w0's and w1's dot products;
// kOffset types also mins(row, c, st, m): the offset of elements 0-31 and 32-63.

// types without per-superblock state
struct Stateless {
  struct S {};
  static inline void prepare(const uint8_t*, int64_t, S&) {}
};

// 32-element-block types: the chunk starts with the fp16 scales d0, d1 of its two blocks
template <class B>
struct Block32 : B, Stateless {
  static inline void scales(const uint8_t* row, int64_t c, const S&, __m512& s0, __m512& s1) {
    float d0, d1;
    halves(row + c * B::kChunk, d0, d1);
    s0 = _mm512_set1_ps(d0);
    s1 = _mm512_set1_ps(d1);
  }
  static inline void mins(const uint8_t*, int64_t, const S&, float*) {}
};

struct Q8_0i : Block32<Q8_0> {
  static constexpr bool kOffset = false;
  static inline void ints(const uint8_t* row, int64_t c, __m512i& w0, __m512i& w1) {
    const uint8_t* p = row + c * kChunk + 4;
    __m512 f[4];
    for (int g = 0; g < 4; ++g)
      f[g] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * g))));
    w0 = (__m512i)_mm512_cvtne2ps_pbh(f[1], f[0]);  // exact: |q| <= 128
    w1 = (__m512i)_mm512_cvtne2ps_pbh(f[3], f[2]);
  }
};

struct Q5_0i : Block32<Q5_0> {
  static constexpr bool kOffset = false;
  static inline void ints(const uint8_t* row, int64_t c, __m512i& w0, __m512i& w1) {
    const uint8_t* p = row + c * kChunk;
    uint64_t bits;
    std::memcpy(&bits, p + 4, 8);
    __m512i lo, hi;
    nibble_words(p + 12, lo, hi);
    const __m512i k16 = _mm512_set1_epi16(16);
    lo = _mm512_mask_add_epi16(lo, (__mmask32)bits, lo, k16);
    hi = _mm512_mask_add_epi16(hi, (__mmask32)(bits >> 32), hi, k16);
    w0 = _mm512_permutexvar_epi16(lo, kT.t5);
    w1 = _mm512_permutexvar_epi16(hi, kT.t5);
  }
};

struct Q4_1i : Block32<Q4_1> {
  static constexpr bool kOffset = true;
  static inline void ints(const uint8_t* row, int64_t c, __m512i& w0, __m512i& w1) {
    __m512i lo, hi;
    nibble_words(row + c * kChunk + 8, lo, hi);
    w0 = _mm512_permutexvar_epi16(lo, kT.t4);
    w1 = _mm512_permutexvar_epi16(hi, kT.t4);
  }
  static inline void mins(const uint8_t* row, int64_t c, const S&, float* m) { halves(row + c * kChunk + 4, m[0], m[1]); }
};

struct Q4_Ki : Q4_K, Stateless {
  static constexpr bool kOffset = true;
  static inline void ints(const uint8_t* row, int64_t c, __m512i& w0, __m512i& w1) {
    __m512i lo, hi;
    nibble_words(nib(super(row, c), c), lo, hi);
    w0 = _mm512_permutexvar_epi16(lo, kT.t4);
    w1 = _mm512_permutexvar_epi16(hi, kT.t4);
  }
  static inline void scales(const uint8_t* row, int64_t c, const S&, __m512& s0, __m512& s1) {
    const uint8_t* sb = super(row, c);
    float d, dmin;
    halves(sb, d, dmin);
    s0 = _mm512_set1_ps(d * float(sc(sb, c)[0]));
    s1 = _mm512_set1_ps(d * float(sc(sb, c)[1]));
  }
  static inline void mins(const uint8_t* row, int64_t c, const S&, float* m) {
    const uint8_t* sb = super(row, c);
    float d, dmin;
    halves(sb, d, dmin);
    m[0] = -(dmin * float(mn(sb, c)[0]));
    m[1] = -(dmin * float(mn(sb, c)[1]));
  }
};

struct Q6_Ki : Q6_K {
  static constexpr bool kOffset = false;
  static inline void ints(const uint8_t* row, int64_t c, __m512i& w0, __m512i& w1) {
    const uint8_t* p = row + (c >> 2) * kSuperBytes + 18 + (c & 3) * kChunk;
    __m512i lo, hi;
    nibble_words(p + 16, lo, hi);
    // the top 2 bits of element 16 k + j are bits 2k..2k+1 of byte j: move them to bits 4-5
    const __m512i t = _mm512_broadcast_i64x4(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    const __m512i up = _mm512_sllv_epi16(t, _mm512_set_epi64(0x0002000200020002, 0x0002000200020002, 0x0002000200020002,
                                                             0x0002000200020002, 0x0004000400040004, 0x0004000400040004,
                                                             0x0004000400040004, 0x0004000400040004));
    const __m512i dn = _mm512_srlv_epi16(t, _mm512_set_epi64(0x0002000200020002, 0x0002000200020002, 0x0002000200020002,
                                                             0x0002000200020002, 0, 0, 0, 0));
    const __m512i k30 = _mm512_set1_epi16(0x30);
    lo = _mm512_ternarylogic_epi32(up, k30, lo, 0xEA);  // (top & 0x30) | nibble
    hi = _mm512_ternarylogic_epi32(dn, k30, hi, 0xEA);
    w0 = _mm512_permutex2var_epi16(kT.t6lo, lo, kT.t6hi);
    w1 = _mm512_permutex2var_epi16(kT.t6lo, hi, kT.t6hi);
  }
  // per superblock: the 16 scales d x sc (16 elements each)
  struct S {
    alignas(64) float s[16];
  };
  static inline void prepare(const uint8_t* row, int64_t c, S& st) {
    const uint8_t* sb = row + (c >> 2) * kSuperBytes;
    const float d = _cvtsh_ss(*reinterpret_cast<const uint16_t*>(sb));
    const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sb + 2))));
    _mm512_store_ps(st.s, _mm512_mul_ps(_mm512_set1_ps(d), sc));
  }
  static inline void scales(const uint8_t*, int64_t c, const S& st, __m512& s0, __m512& s1) {
    const float* g = st.s + 4 * (c & 3);
    s0 = pair_scales(g[0], g[1]);
    s1 = pair_scales(g[2], g[3]);
  }
  static inline void mins(const uint8_t*, int64_t, const S&, float*) {}
};

// The per-(row, output) arithmetic: the same sequence for a row whatever rows share the call.
template <int NR>
struct Acc {
  __m512 a0[NR], a1[NR];
  inline void zero() {
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
  }
  // x: row 0 of the group at chunk c (bf16), ldx elements between rows; n valid elements (<= 64)
  inline void step(__m512i w0, __m512i w1, __m512 s0, __m512 s1, const at::BFloat16* x, int64_t ldx, int64_t n) {
    const __m512 z = _mm512_setzero_ps();
    if (n >= 64) {
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        const __m512 p0 = _mm512_dpbf16_ps(z, (__m512bh)w0, (__m512bh)_mm512_loadu_si512(x + r * ldx));
        const __m512 p1 = _mm512_dpbf16_ps(z, (__m512bh)w1, (__m512bh)_mm512_loadu_si512(x + r * ldx + 32));
        a0[r] = _mm512_fmadd_ps(p0, s0, a0[r]);
        a1[r] = _mm512_fmadd_ps(p1, s1, a1[r]);
      }
    } else {
      const __mmask32 m0 = (__mmask32)(n >= 32 ? 0xffffffffu : ((1u << n) - 1));
      const __mmask32 m1 = (__mmask32)(n <= 32 ? 0u : ((1u << (n - 32)) - 1));
      for (int r = 0; r < NR; ++r) {
        const __m512 p0 = _mm512_dpbf16_ps(z, (__m512bh)w0, (__m512bh)_mm512_maskz_loadu_epi16(m0, x + r * ldx));
        const __m512 p1 = _mm512_dpbf16_ps(z, (__m512bh)w1, (__m512bh)_mm512_maskz_loadu_epi16(m1, x + r * ldx + 32));
        a0[r] = _mm512_fmadd_ps(p0, s0, a0[r]);
        a1[r] = _mm512_fmadd_ps(p1, s1, a1[r]);
      }
    }
  }
};

// NR rows x one output: out[r] = sum over chunks (+ the offsets' sum); xs (R, 2C) block sums
template <class W, int NR>
inline void direct(const uint8_t* w, const at::BFloat16* x, int64_t K, int64_t C, const float* xs, float* mins,
                   float* out) {
  Acc<NR> acc;
  acc.zero();
  typename W::S st;
  for (int64_t c = 0; c < C; ++c) {
    __m512i w0, w1;
    __m512 s0, s1;
    if (W::kSuper == 1 || (c & (W::kSuper - 1)) == 0) W::prepare(w, c, st);
    W::ints(w, c, w0, w1);
    W::scales(w, c, st, s0, s1);
    if constexpr (W::kOffset) W::mins(w, c, st, mins + 2 * c);
    acc.step(w0, w1, s0, s1, x + c * 64, K, K - c * 64);
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc.a0[r], acc.a1[r]));
    if constexpr (W::kOffset) out[r] += offset_dot(mins, xs + r * 2 * C, 2 * C);
  }
}

template <class W>
inline void direct_rows(int nr, const uint8_t* w, const at::BFloat16* x, int64_t K, int64_t C, const float* xs,
                        float* mins, float* out) {
  switch (nr) {
    case 1: direct<W, 1>(w, x, K, C, xs, mins, out); break;
    case 2: direct<W, 2>(w, x, K, C, xs, mins, out); break;
    case 3: direct<W, 3>(w, x, K, C, xs, mins, out); break;
    case 4: direct<W, 4>(w, x, K, C, xs, mins, out); break;
    case 5: direct<W, 5>(w, x, K, C, xs, mins, out); break;
    case 6: direct<W, 6>(w, x, K, C, xs, mins, out); break;
    case 7: direct<W, 7>(w, x, K, C, xs, mins, out); break;
    default: direct<W, 8>(w, x, K, C, xs, mins, out); break;
  }
}

constexpr int kRows = 8;     // activation rows per register tile
constexpr int64_t kOut = 16; // output rows per scheduling unit

// y[:, col0 : col0 + O] (+ bias) for one packed weight (O rows). The weights of a block of kOut
// outputs stay in cache while the row groups pass over them (read from DRAM once per call).
template <class W>
void segment(const at::BFloat16* x, int64_t R, int64_t K, const float* xs, const uint8_t* wp, int64_t O,
             const float* bias, at::BFloat16* y, int64_t ldy, int64_t col0) {
  const int64_t C = (K + 63) / 64, rb = row_bytes<W>(C);
  at::parallel_for(0, (O + kOut - 1) / kOut, 1, [&](int64_t b0, int64_t b1) {
    float out[kRows];
    std::vector<float> mins(W::kOffset ? 2 * C : 0);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t o0 = blk * kOut, o1 = std::min<int64_t>(O, o0 + kOut);
      for (int64_t r0 = 0; r0 < R; r0 += kRows) {
        const int nr = int(std::min<int64_t>(kRows, R - r0));
        for (int64_t o = o0; o < o1; ++o) {
          direct_rows<W>(nr, wp + o * rb, x + r0 * K, K, C, xs ? xs + r0 * 2 * C : nullptr, mins.data(), out);
          const float b = bias ? bias[col0 + o] : 0.f;
          for (int r = 0; r < nr; ++r) y[(r0 + r) * ldy + col0 + o] = at::BFloat16(out[r] + b);
        }
      }
    }
  });
}

// (R, 2C) sums of x over each 32-element block (zero past K), for the offset types
std::vector<float> block_sums(const at::BFloat16* x, int64_t R, int64_t K) {
  const int64_t nb = 2 * ((K + 63) / 64);
  std::vector<float> s(R * nb);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t n = std::max<int64_t>(0, std::min<int64_t>(32, K - b * 32));
      const __mmask32 m = (__mmask32)(n >= 32 ? 0xffffffffu : ((1u << n) - 1));
      const __m512i v = _mm512_maskz_loadu_epi16(m, x + r * K + b * 32);  // 32 bf16
      const __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)), 16));
      const __m512 hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1)), 16));
      s[r * nb + b] = _mm512_reduce_add_ps(_mm512_add_ps(lo, hi));
    }
  }
  return s;
}

bool has_offset(int64_t type) { return type == 2 || type == 3; }

void dispatch(int64_t type, const at::BFloat16* x, int64_t R, int64_t K, const float* xs, const uint8_t* wp,
              int64_t O, const float* bias, at::BFloat16* y, int64_t ldy, int64_t col0) {
  switch (type) {
    case 0: segment<Q8_0i>(x, R, K, nullptr, wp, O, bias, y, ldy, col0); break;
    case 1: segment<Q5_0i>(x, R, K, nullptr, wp, O, bias, y, ldy, col0); break;
    case 2: segment<Q4_1i>(x, R, K, xs, wp, O, bias, y, ldy, col0); break;
    case 3: segment<Q4_Ki>(x, R, K, xs, wp, O, bias, y, ldy, col0); break;
    case 4: segment<Q6_Ki>(x, R, K, nullptr, wp, O, bias, y, ldy, col0); break;
    default: TORCH_CHECK(false, "quant_linear: unknown weight type ", type);
  }
}

int64_t chunk_multiple(int64_t type) {
  const int64_t base = type % plait_quant::kTileCode;
  return (base == 3 || base == 4) ? 4 : 1;
}

int64_t packed_row_bytes(int64_t type, int64_t chunks);

// Bytes of one row of a pack of `type`: a packed row, or a tile of 16 (tile codes; the tile
// kernels cover Q8_0, Q5_0, Q4_K and Q6_K)
int64_t pack_row_bytes(int64_t type, int64_t chunks) {
  if (type < plait_quant::kTileCode) return packed_row_bytes(type, chunks);
  TORCH_CHECK(plait_quant::has_tiles(type - plait_quant::kTileCode), "quant_linear: no tile layout for type ", type);
  return plait_quant::kTileRows * packed_row_bytes(type - plait_quant::kTileCode, chunks);
}

int64_t packed_row_bytes(int64_t type, int64_t chunks) {
  switch (type) {
    case 0: return row_bytes<Q8_0>(chunks);
    case 1: return row_bytes<Q5_0>(chunks);
    case 2: return row_bytes<Q4_1>(chunks);
    case 3: return row_bytes<Q4_K>(chunks);
    case 4: return row_bytes<Q6_K>(chunks);
    default: TORCH_CHECK(false, "quant_linear: unknown weight type ", type);
  }
  return 0;
}

template <class W>
void dequant_row(const uint8_t* w, int64_t C, int64_t K, float* out) {
  alignas(64) float buf[64];
  for (int64_t c = 0; c < C; ++c) {
    __m512 f[4];
    W::values(w, c, f);
    for (int g = 0; g < 4; ++g) _mm512_store_ps(buf + 16 * g, f[g]);
    const int64_t n = std::min<int64_t>(64, K - c * 64);
    std::memcpy(out + c * 64, buf, n * sizeof(float));
  }
}

// The checks both linear kernels share; returns sum O_i.
int64_t check_args(const torch::Tensor& x, const std::vector<torch::Tensor>& packs, const std::vector<int64_t>& types,
                   int64_t K, const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K && x.is_contiguous(), "quant_linear: x must be contiguous (R, K)");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16, "quant_linear: x must be bf16");
  TORCH_CHECK(packs.size() == types.size() && !packs.empty(), "quant_linear: one type per pack");
  int64_t O = 0;
  int64_t mult = 1;
  for (size_t i = 0; i < packs.size(); ++i) {
    TORCH_CHECK(packs[i].dim() == 2 && packs[i].scalar_type() == at::kByte && packs[i].is_contiguous(),
                "quant_linear: packs are contiguous uint8 (O, row bytes)");
    O += plait_quant::output_rows(types[i], packs[i].size(0));
    mult = std::max(mult, chunk_multiple(types[i]));
  }
  const int64_t C = (K + 63) / 64;
  TORCH_CHECK(C % mult == 0, "quant_linear: K-quant weights need K a multiple of 256, got ", K);
  for (size_t i = 0; i < packs.size(); ++i) {
    TORCH_CHECK(packs[i].size(1) == pack_row_bytes(types[i], C), "quant_linear: pack ", i,
                " has rows of ", packs[i].size(1), " bytes, expected ", pack_row_bytes(types[i], C));
  }
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == O,
                "quant_linear: bias must be contiguous fp32 (O,)");
  }
  return O;
}

}  // namespace

// quant_dot8.cpp: the int8 (VNNI) kernel, same arguments, checked here
torch::Tensor quant_linear_q8(const torch::Tensor& x, const std::vector<torch::Tensor>& packs,
                              const std::vector<int64_t>& types, int64_t K, const c10::optional<torch::Tensor>& bias);
std::vector<torch::Tensor> quantize_rows(const torch::Tensor& x, int64_t n);
torch::Tensor tile_pack(const torch::Tensor& pack, int64_t type, int64_t K);  // quant_tiles.cpp

// y (R, sum O_i) = x (R, K) @ [W_0; W_1; ...]^T (+ bias): packs[i] (O_i, row bytes) uint8 of
// types[i], all with K columns. x and the output bf16; bias fp32 (sum O_i) or none. `int8`: the
// activations quantised to int8 per row and block and VNNI dot products (quant_dot8.cpp).
torch::Tensor quant_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& packs,
                           const std::vector<int64_t>& types, int64_t K, const c10::optional<torch::Tensor>& bias,
                           bool int8) {
  const int64_t O = check_args(x, packs, types, K, bias);
  if (int8) return quant_linear_q8(x, packs, types, K, bias);
  for (int64_t t : types) TORCH_CHECK(t < plait_quant::kTileCode, "quant_linear: tiles need int8 activations");
  const float* bp = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  const int64_t R = x.size(0);
  auto y = torch::empty({R, O}, x.options());
  if (R == 0) return y;
  const at::BFloat16* xp = x.data_ptr<at::BFloat16>();
  std::vector<float> xs;
  if (std::any_of(types.begin(), types.end(), has_offset)) xs = block_sums(xp, R, K);
  int64_t col = 0;
  for (size_t i = 0; i < packs.size(); ++i) {
    dispatch(types[i], xp, R, K, xs.empty() ? nullptr : xs.data(), packs[i].data_ptr<uint8_t>(), packs[i].size(0),
             bp, y.data_ptr<at::BFloat16>(), O, col);
    col += packs[i].size(0);
  }
  return y;
}

// Rows `ids` of a packed weight (O, row bytes) of `type` dequantised to fp32 (N, K).
torch::Tensor quant_rows(const torch::Tensor& pack, int64_t type, int64_t K, const torch::Tensor& ids) {
  TORCH_CHECK(pack.dim() == 2 && pack.scalar_type() == at::kByte && pack.is_contiguous(), "quant_rows: bad pack");
  TORCH_CHECK(ids.dim() == 1 && ids.scalar_type() == at::kLong, "quant_rows: ids must be int64 (N,)");
  const int64_t C = (K + 63) / 64;
  TORCH_CHECK(C % chunk_multiple(type) == 0, "quant_rows: K-quant weights need K a multiple of 256");
  TORCH_CHECK(pack.size(1) == packed_row_bytes(type, C), "quant_rows: pack rows have the wrong size");
  auto ids_c = ids.contiguous();
  const int64_t N = ids_c.size(0), O = pack.size(0);
  auto out = torch::empty({N, K}, torch::kFloat);
  const int64_t* ip = ids_c.data_ptr<int64_t>();
  for (int64_t n = 0; n < N; ++n) TORCH_CHECK(ip[n] >= 0 && ip[n] < O, "quant_rows: id ", ip[n], " out of range");
  const uint8_t* wp = pack.data_ptr<uint8_t>();
  float* op = out.data_ptr<float>();
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* w = wp + ip[n] * pack.size(1);
    switch (type) {
      case 0: dequant_row<Q8_0>(w, C, K, op + n * K); break;
      case 1: dequant_row<Q5_0>(w, C, K, op + n * K); break;
      case 2: dequant_row<Q4_1>(w, C, K, op + n * K); break;
      case 3: dequant_row<Q4_K>(w, C, K, op + n * K); break;
      case 4: dequant_row<Q6_K>(w, C, K, op + n * K); break;
      default: TORCH_CHECK(false, "quant_rows: unknown weight type ", type);
    }
  }
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("quant_linear", &quant_linear, py::call_guard<py::gil_scoped_release>(), "y = x @ W^T (+ bias) on packed GGUF blocks", py::arg("x"), py::arg("packs"),
        py::arg("types"), py::arg("k"), py::arg("bias") = py::none(), py::arg("int8") = false);
  m.def("quantize_rows", &quantize_rows, py::call_guard<py::gil_scoped_release>(), "int8 quants and fp32 scales of x's rows per block of n", py::arg("x"),
        py::arg("n"));
  m.def("tile_pack", &tile_pack, py::call_guard<py::gil_scoped_release>(), "a packed matrix in the tile layout", py::arg("pack"),
        py::arg("type"), py::arg("k"));
  m.def("quant_rows", &quant_rows, py::call_guard<py::gil_scoped_release>(), "rows of a packed weight, dequantised to fp32", py::arg("pack"), py::arg("type"),
        py::arg("k"), py::arg("ids"));
}
