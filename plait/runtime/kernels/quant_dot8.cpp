// plait CPU kernel: y (R, O) = x (R, K) @ W^T on packed GGUF blocks with int8 dot products
// (AVX512-VNNI), activations quantised to int8 row by row, as llama.cpp computes.
//
// Why: one decode row is compute-bound in quant_linear.cpp's exact kernel (a table lookup, two
// bf16 dots and two FMAs per 64 weights). Here a 64-weight chunk is one vector of unsigned bytes
// (nibbles masked, Q5_0's fifth bit added, Q8_0's sign bit flipped) that meets the row's int8
// quants in one `vpdpbusd` (64 products); the K-quants (Q4_K, Q6_K) multiply by their small integer
// block scales in integers (`vpmaddubsw` + `vpdpwssd`) and convert to float once per 256 weights.
// The price is the activations' rounding: each row is quantised per block (32 elements for the
// 32-element-block types, 256 for the K-quants) to int8 with scale amax / 127, round to nearest
// even. Everything after the quantisation is exact integer arithmetic until the block's (or
// superblock's) fp32 scale is applied.
//
// Batch invariance: a row's quantisation and every operation on it are the same whatever the row
// count; rows are processed in register tiles of up to kRows that only share the weight unpack.
//
// Offsets: a type stored with a bias (Q8_0's q + 128, Q5_0's q + 16, Q6_K's q + 32) subtracts
// bias x (sum of the quants it met) in integers; Q4_1's and Q4_K's minimum terms multiply the
// row's block sums (fp32) after the dots, in a fixed order. Layouts: quant_linear.cpp's header.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include "quant_common.h"
#include "quant_rows8.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

using plait_quant::halves;
using plait_quant::offset_dot;
using plait_quant::pair_scales;
using plait_quant::Quants;
using plait_quant::kChunkElems;
using plait_quant::quantize_row;

// 32 nibble bytes -> 64 bytes in element order (low nibbles = elements 0-31, high = 32-63):
// the 32 bytes in both halves, the upper half's 16-bit words shifted right by 4, then masked
inline __m512i nibbles64(const uint8_t* p) {
  const __m512i b = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_and_si512(_mm512_mask_srli_epi16(b, 0xffff0000u, b, 4), _mm512_set1_epi8(15));
}

// ---- weight types: a chunk as 64 unsigned bytes, and its scales --------------------------------

// 32-element-block types: u8(row, c) the chunk's stored values; scales(row, c) the lanes' weight
// scales (8 lanes per block); kBias subtracted per quant met; kOffset types add mins x block sums.
struct Q8_0 {
  static constexpr bool kSuper = false;
  static constexpr int64_t kChunk = 68;
  static constexpr int kBias = 128;
  static constexpr bool kOffset = false;
  static inline __m512i u8(const uint8_t* row, int64_t c) {  // q + 128: flip the sign bit
    return _mm512_xor_si512(_mm512_loadu_si512(row + c * kChunk + 4), _mm512_set1_epi8(char(0x80)));
  }
  static inline void mins(const uint8_t*, int64_t, float*) {}
};

struct Q5_0 {
  static constexpr bool kSuper = false;
  static constexpr int64_t kChunk = 44;
  static constexpr int kBias = 16;
  static constexpr bool kOffset = false;
  static inline __m512i u8(const uint8_t* row, int64_t c) {  // q + 16 = nibble + 16 x fifth bit
    const uint8_t* p = row + c * kChunk;
    uint64_t bits;
    std::memcpy(&bits, p + 4, 8);
    const __m512i v = nibbles64(p + 12);
    return _mm512_mask_add_epi8(v, (__mmask64)bits, v, _mm512_set1_epi8(16));
  }
  static inline void mins(const uint8_t*, int64_t, float*) {}
};

struct Q4_1 {
  static constexpr bool kSuper = false;
  static constexpr int64_t kChunk = 40;
  static constexpr int kBias = 0;
  static constexpr bool kOffset = true;
  static inline __m512i u8(const uint8_t* row, int64_t c) { return nibbles64(row + c * kChunk + 8); }
  static inline void mins(const uint8_t* row, int64_t c, float* m) { halves(row + c * kChunk + 4, m[2 * c], m[2 * c + 1]); }
};

// the chunk's two fp16 block scales (its first 4 bytes) -> lanes 0-7 d0, lanes 8-15 d1
template <class W>
inline __m512 block_scales(const uint8_t* row, int64_t c) {
  int32_t both;
  std::memcpy(&both, row + c * W::kChunk, 4);
  const __m256i pick = _mm256_set_epi64x(0x0302030203020302, 0x0302030203020302, 0x0100010001000100, 0x0100010001000100);
  return _mm512_cvtph_ps(_mm256_shuffle_epi8(_mm256_set1_epi32(both), pick));
}

// 256-element superblocks. head(sb): what every row shares (the integer scales as int16 words,
// the fp32 scales); u8(sb, j): chunk j's values; words(h, j): the 32 int16 scales of chunk j's
// maddubs pairs; finish(h, isum, dx, sums, y, off): applies the superblock's scales to a row's
// integer sum (sums: the row's quant sums per scale group of the type).
alignas(64) const int16_t kQ4KWords[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}};
alignas(64) const int16_t kQ6KWords[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};

inline __m512i word_index(const int16_t (*t)[32], int j) { return _mm512_load_si512(t[j]); }

struct Q4_K {
  static constexpr bool kSuper = true;
  static constexpr int64_t kSuperBytes = 148;
  struct Head {
    __m512i sc;  // words 0-7: the 8 block scales
    __m128i mn;  // the 8 block mins as int16
    __m128 dd;   // d, dmin, 0, 0
  };
  static inline Head head(const uint8_t* sb) {
    int32_t dm;
    std::memcpy(&dm, sb, 4);
    return {_mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sb + 4)))),
            _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sb + 12))),
            _mm_cvtph_ps(_mm_cvtsi32_si128(dm))};
  }
  static inline __m512i u8(const uint8_t* sb, int j) { return nibbles64(sb + 20 + 32 * j); }
  static inline __m512i words(const Head& h, int j) { return _mm512_permutexvar_epi16(word_index(kQ4KWords, j), h.sc); }
  static inline const int16_t* sums(const Quants& xq, int64_t r, int64_t s) { return xq.bs32.data() + (r * xq.C / 4 + s) * 8; }
  // y += d dx x isum; off -= dmin dx x (mins . block sums), four pair sums in off's lanes
  static inline void finish(const Head& h, __m512i isum, float dx, const int16_t* bs, __m512& y, __m128& off) {
    const __m128 s = _mm_mul_ps(h.dd, _mm_set1_ps(dx));  // d dx, dmin dx
    y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_broadcastss_ps(s), y);
    const __m128i m = _mm_madd_epi16(h.mn, _mm_loadu_si128(reinterpret_cast<const __m128i*>(bs)));
    off = _mm_fnmadd_ps(_mm_cvtepi32_ps(m), _mm_shuffle_ps(s, s, 0x55), off);
  }
};

struct Q6_K {
  static constexpr bool kSuper = true;
  static constexpr int64_t kSuperBytes = 210;
  struct Head {
    __m256i sc;  // the 16 int8 scales as int16
    float d;
  };
  static inline Head head(const uint8_t* sb) {
    return {_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sb + 2))),
            _cvtsh_ss(*reinterpret_cast<const uint16_t*>(sb))};
  }
  static inline __m512i u8(const uint8_t* sb, int j) {  // nibble | top 2 bits << 4 (q + 32)
    const uint8_t* p = sb + 18 + 48 * j;
    // byte i of the 16 top bytes holds the top bits of element 16 k + i at bits 2k..2k+1:
    // 128-bit lane k rotates its dwords left by 4 - 2k (mod 32), which puts them at bits 4-5
    const __m512i t = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i r = _mm512_rolv_epi32(t, _mm512_set_epi32(30, 30, 30, 30, 0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4));
    return _mm512_ternarylogic_epi32(r, _mm512_set1_epi8(0x30), nibbles64(p + 16), 0xEA);
  }
  static inline __m512i words(const Head& h, int j) {
    return _mm512_permutexvar_epi16(word_index(kQ6KWords, j), _mm512_castsi256_si512(h.sc));
  }
  static inline const int16_t* sums(const Quants& xq, int64_t r, int64_t s) { return xq.bs16.data() + (r * xq.C / 4 + s) * 16; }
  // y += d dx x (isum - 32 x sum_g sc_g x (sum of group g's 16 quants)), the bias in lanes 0-7
  static inline void finish(const Head& h, __m512i isum, float dx, const int16_t* bs, __m512& y, __m128&) {
    const __m256i m = _mm256_madd_epi16(h.sc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs)));
    isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(m, 5)));
    y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(h.d * dx), y);
  }
};

// A register tile: NR activation rows (from r0) x one output row w; out[r]. Each (row, output)
// pair runs the same operations in the same order whatever NR: the tile only decides which rows
// share a weight unpack. (Tiles of several output rows sharing each activation load measured
// 1.5-2.5x slower at one row, probably because interleaved reads of 2-4 weight rows defeat the
// prefetchers; docs/log.md.)
template <class W, int NR>
inline void dot32(const uint8_t* w, const Quants& xq, int64_t r0, float* mins, float* out) {
  const int64_t C = xq.C;
  __m512 y[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) y[r] = _mm512_setzero_ps();
  const int32_t* neg = W::kBias == 128 ? xq.neg128.data() : xq.neg16.data();  // need_bias()
  for (int64_t c = 0; c < C; ++c) {
    const __m512i v = W::u8(w, c);
    const __m512 dw = block_scales<W>(w, c);
    if constexpr (W::kOffset) W::mins(w, c, mins);
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const int64_t rc = (r0 + r) * C + c;
      const __m512i init = W::kBias ? _mm512_loadu_si512(neg + rc * 16) : _mm512_setzero_si512();
      const __m512i acc = _mm512_dpbusd_epi32(init, v, _mm512_loadu_si512(xq.q32.data() + rc * 64));
      y[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(dw, _mm512_loadu_ps(xq.dv32.data() + rc * 16)), y[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    out[r] = _mm512_reduce_add_ps(y[r]);
    if constexpr (W::kOffset) out[r] += offset_dot(mins, xq.xs32.data() + (r0 + r) * 2 * C, 2 * C);
  }
}

template <class W, int NR>
inline void dot256(const uint8_t* w, const Quants& xq, int64_t r0, float*, float* out) {
  const int64_t S = xq.C / 4;
  __m512 y[NR];
  __m128 off[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    y[r] = _mm512_setzero_ps();
    off[r] = _mm_setzero_ps();
  }
  for (int64_t s = 0; s < S; ++s) {
    const uint8_t* sb = w + s * W::kSuperBytes;
    const typename W::Head h = W::head(sb);
    __m512i acc[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {
      const __m512i v = W::u8(sb, j), sw = W::words(h, j);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        const __m512i x = _mm512_loadu_si512(xq.q256.data() + ((r0 + r) * xq.C + 4 * s + j) * 64);
        acc[r] = _mm512_dpwssd_epi32(acc[r], _mm512_maddubs_epi16(v, x), sw);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) W::finish(h, acc[r], xq.d256[(r0 + r) * S + s], W::sums(xq, r0 + r, s), y[r], off[r]);
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    const __m128 f = _mm_add_ps(off[r], _mm_movehl_ps(off[r], off[r]));  // lanes 0+2, 1+3
    out[r] = _mm512_reduce_add_ps(y[r]) + (_mm_cvtss_f32(f) + _mm_cvtss_f32(_mm_movehdup_ps(f)));
  }
}

template <class W, int NR>
inline void dot(const uint8_t* w, const Quants& xq, int64_t r0, float* mins, float* out) {
  if constexpr (W::kSuper) {
    dot256<W, NR>(w, xq, r0, mins, out);
  } else {
    dot32<W, NR>(w, xq, r0, mins, out);
  }
}

template <class W>
inline void dot_rows(int nr, const uint8_t* w, const Quants& xq, int64_t r0, float* mins, float* out) {
  switch (nr) {
    case 1: dot<W, 1>(w, xq, r0, mins, out); break;
    case 2: dot<W, 2>(w, xq, r0, mins, out); break;
    case 3: dot<W, 3>(w, xq, r0, mins, out); break;
    case 4: dot<W, 4>(w, xq, r0, mins, out); break;
    case 5: dot<W, 5>(w, xq, r0, mins, out); break;
    case 6: dot<W, 6>(w, xq, r0, mins, out); break;
    case 7: dot<W, 7>(w, xq, r0, mins, out); break;
    default: dot<W, 8>(w, xq, r0, mins, out); break;
  }
}

constexpr int kRows = 8;      // activation rows per register tile
constexpr int64_t kOut = 16;  // output rows per scheduling unit

template <class W>
void segment(const Quants& xq, const uint8_t* wp, int64_t rb, int64_t O, const float* bias, at::BFloat16* y,
             int64_t ldy, int64_t col0) {
  const int64_t R = xq.R;
  at::parallel_for(0, (O + kOut - 1) / kOut, 1, [&](int64_t b0, int64_t b1) {
    float out[kRows];
    std::vector<float> mins(2 * xq.C);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t o0 = blk * kOut, o1 = std::min<int64_t>(O, o0 + kOut);
      for (int64_t r0 = 0; r0 < R; r0 += kRows) {
        const int nr = int(std::min<int64_t>(kRows, R - r0));
        for (int64_t o = o0; o < o1; ++o) {
          dot_rows<W>(nr, wp + o * rb, xq, r0, mins.data(), out);
          const float b = bias ? bias[col0 + o] : 0.f;
          for (int r = 0; r < nr; ++r) y[(r0 + r) * ldy + col0 + o] = at::BFloat16(out[r] + b);
        }
      }
    }
  });
}

}  // namespace

void quant_tiles_q8(Quants& xq, const at::BFloat16* x, const torch::Tensor& pack, int64_t type, const float* bias,
                    at::BFloat16* y, int64_t ldy, int64_t col0);  // quant_tiles.cpp

// The int8 twin of quant_linear (same arguments): activations quantised per row and block.
torch::Tensor quant_linear_q8(const torch::Tensor& x, const std::vector<torch::Tensor>& packs,
                              const std::vector<int64_t>& types, int64_t K, const c10::optional<torch::Tensor>& bias) {
  // shapes, types and row sizes are checked by the caller (quant_linear.cpp's check_args)
  const int64_t R = x.size(0), C = (K + 63) / 64;
  int64_t O = 0;
  for (size_t i = 0; i < packs.size(); ++i) O += plait_quant::output_rows(types[i], packs[i].size(0));
  const float* bp = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  auto y = torch::empty({R, O}, x.options());
  if (R == 0) return y;
  const at::BFloat16* xp = x.data_ptr<at::BFloat16>();
  Quants xq;
  xq.R = R;
  xq.K = K;
  xq.C = C;
  int64_t col = 0;
  for (size_t i = 0; i < packs.size(); ++i) {
    const uint8_t* wp = packs[i].data_ptr<uint8_t>();
    const int64_t rows = plait_quant::output_rows(types[i], packs[i].size(0)), rb = packs[i].size(1);
    at::BFloat16* yp = y.data_ptr<at::BFloat16>();
    if (types[i] >= plait_quant::kTileCode) {
      quant_tiles_q8(xq, xp, packs[i], types[i], bp, yp, O, col);
      col += rows;
      continue;
    }
    switch (types[i]) {
      case 0: xq.need32(xp); xq.need_bias(128); segment<Q8_0>(xq, wp, rb, rows, bp, yp, O, col); break;
      case 1: xq.need32(xp); xq.need_bias(16); segment<Q5_0>(xq, wp, rb, rows, bp, yp, O, col); break;
      case 2: xq.need32(xp); segment<Q4_1>(xq, wp, rb, rows, bp, yp, O, col); break;
      case 3: xq.need256(xp); segment<Q4_K>(xq, wp, rb, rows, bp, yp, O, col); break;
      case 4: xq.need256(xp); segment<Q6_K>(xq, wp, rb, rows, bp, yp, O, col); break;
      default: TORCH_CHECK(false, "quant_linear_q8: unknown weight type ", types[i]);
    }
    col += rows;
  }
  return y;
}

// x (R, K) bf16 -> (quants (R, C*64) int8, scales (R, blocks) fp32) per block of n (32 or 256):
// the activations' quantisation, for the twin in tests.
std::vector<torch::Tensor> quantize_rows(const torch::Tensor& x, int64_t n) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.scalar_type() == at::kBFloat16, "quantize_rows: x (R, K) bf16");
  TORCH_CHECK(n == 32 || n == 256, "quantize_rows: block of 32 or 256");
  const int64_t R = x.size(0), K = x.size(1), C = (K + 63) / 64;
  TORCH_CHECK(n == 32 || C % 4 == 0, "quantize_rows: 256-blocks need K a multiple of 256");
  auto q = torch::empty({R, C * 64}, torch::kChar);
  auto d = torch::empty({R, C * 64 / n}, torch::kFloat);
  for (int64_t r = 0; r < R; ++r)
    quantize_row(x.data_ptr<at::BFloat16>() + r * K, K, C, n, q.data_ptr<int8_t>() + r * C * 64,
                 d.data_ptr<float>() + r * (C * 64 / n));
  return {q, d};
}
