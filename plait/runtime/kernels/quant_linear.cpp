// plait CPU kernel: y (R, O) = x (R, K) @ W^T for weights kept in (repacked) GGUF blocks.
//
// Why: decoding reads every weight once per step, so the bytes per weight set the speed. The
// bundled GGUFs hold 4.5-8.5 bits per weight; dequantised to bf16 they cost 16. This kernel
// reads the blocks themselves: activations are quantised per row and per 32-element block to
// int8 (d = max|x| / 127, q = round(x / d), as llama.cpp's Q8_0), and every 64-element weight
// chunk is unpacked in registers to 64 unsigned bytes plus per-lane float scales, then meets
// every activation row with one AVX512-VNNI dot product (vpdpbusd, u8 x s8 -> 16 int32 lanes,
// each lane 4 consecutive elements), one int->float conversion and one FMA by the lane's
// weight scale x activation scale. Offsets (Q5_0's -16, Q8_0's -128 as bytes, Q6_K's -32) are
// removed exactly in int32 by starting the dot product at -offset x (sum of the lane's
// activation bytes); affine types (Q4_1, Q4_K: value = s q + m) add m x d_x x sum in float.
//
// Batch invariance: a row's result is the same sequence of operations whatever the row count:
// its activation quantisation depends on the row only, and each (row, output) sums the chunks
// in order 0..C-1 into one 16-lane float accumulator, reduced in a fixed order. Row grouping
// and the thread split change which rows share a weight load, never the arithmetic.
//
// Layout (one byte row per output row, K padded with zero weights to the chunk size):
//   Q8_0 chunk (68 B): d0 d1 (fp16), 64 bytes q + 128
//   Q5_0 chunk (44 B): d0 d1, 8 bytes bit 4 of element j at bit j, 32 bytes nibbles
//   Q4_1 chunk (40 B): d0 d1 m0 m1 (fp16), 32 bytes nibbles
//   Q4_K superblock (148 B): d dmin (fp16), 4 x [sc0 sc1 mn0 mn1 (u8), 32 bytes nibbles]
//   Q6_K superblock (210 B): d (fp16), 16 x int8 scale, 4 x [16 bytes 2-bit highs, 32 nibbles]
// "nibbles": byte j holds element j (low 4 bits) and element 32 + j (high 4 bits); Q6_K's high
// byte j holds the top 2 bits of element 16 k + j at bits 2k..2k+1. The packing is written by
// plait/runtime/quant/formats.py (its numpy decoder is the reference twin).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// scale lanes for two 32-element blocks: lanes 0-7 = a, 8-15 = b
inline __m512 pair(float a, float b) {
  return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

inline __m512i nibbles(const uint8_t* p) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i m = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(v, m);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

struct Q8_0 {
  static constexpr int64_t kChunk = 68, kSuper = 1;  // bytes per chunk; chunks per superblock
  static constexpr int kOffset = 128;
  static constexpr bool kAffine = false;
  static inline void unpack(const uint8_t* row, int64_t c, __m512i& q, __m512& s, __m512& m) {
    const uint8_t* p = row + c * kChunk;
    s = pair(h2f(p), h2f(p + 2));
    q = _mm512_loadu_si512(p + 4);
    (void)m;
  }
};

struct Q5_0 {
  static constexpr int64_t kChunk = 44, kSuper = 1;
  static constexpr int kOffset = 16;
  static constexpr bool kAffine = false;
  static inline void unpack(const uint8_t* row, int64_t c, __m512i& q, __m512& s, __m512& m) {
    const uint8_t* p = row + c * kChunk;
    s = pair(h2f(p), h2f(p + 2));
    uint64_t bits;
    std::memcpy(&bits, p + 4, 8);
    const __m512i lo = nibbles(p + 12);
    q = _mm512_mask_add_epi8(lo, (__mmask64)bits, lo, _mm512_set1_epi8(16));
    (void)m;
  }
};

struct Q4_1 {
  static constexpr int64_t kChunk = 40, kSuper = 1;
  static constexpr int kOffset = 0;
  static constexpr bool kAffine = true;
  static inline void unpack(const uint8_t* row, int64_t c, __m512i& q, __m512& s, __m512& m) {
    const uint8_t* p = row + c * kChunk;
    s = pair(h2f(p), h2f(p + 2));
    m = pair(h2f(p + 4), h2f(p + 6));
    q = nibbles(p + 8);
  }
};

struct Q4_K {
  static constexpr int64_t kChunk = 36, kSuper = 4, kSuperBytes = 148;
  static constexpr int kOffset = 0;
  static constexpr bool kAffine = true;
  static inline void unpack(const uint8_t* row, int64_t c, __m512i& q, __m512& s, __m512& m) {
    const uint8_t* sb = row + (c >> 2) * kSuperBytes;
    const uint8_t* p = sb + 4 + (c & 3) * kChunk;
    const float d = h2f(sb), dmin = h2f(sb + 2);
    s = pair(d * float(p[0]), d * float(p[1]));
    m = pair(-dmin * float(p[2]), -dmin * float(p[3]));
    q = nibbles(p + 4);
  }
};

struct Q6_K {
  static constexpr int64_t kChunk = 48, kSuper = 4, kSuperBytes = 210;
  static constexpr int kOffset = 32;
  static constexpr bool kAffine = false;
  static inline void unpack(const uint8_t* row, int64_t c, __m512i& q, __m512& s, __m512& m) {
    const uint8_t* sb = row + (c >> 2) * kSuperBytes;
    const uint8_t* p = sb + 18 + (c & 3) * kChunk;
    const float d = h2f(sb);
    const int8_t* sc = reinterpret_cast<const int8_t*>(sb + 2) + (c & 3) * 4;
    const __m128 s4 = _mm_mul_ps(_mm_set1_ps(d), _mm_cvtepi32_ps(_mm_cvtepi8_epi32(
                                                     _mm_cvtsi32_si128(*reinterpret_cast<const int32_t*>(sc)))));
    const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    s = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s4));
    const __m512i h = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i shift = _mm512_set_epi16(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2,
                                           0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i top = _mm512_and_si512(_mm512_srlv_epi16(h, shift), _mm512_set1_epi8(3));
    q = _mm512_or_si512(nibbles(p + 16), _mm512_slli_epi16(top, 4));
    (void)m;
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

// Activations quantised for one call: per row r and chunk c, 64 int8 values, 16 lane scales
// (d of the lane's 32-block) and 16 lane sums of the int8 values (4 elements each).
struct Act {
  int64_t R = 0, C = 0;
  std::vector<int8_t> q;    // (R, C * 64)
  std::vector<float> d;     // (R, C, 16)
  std::vector<int32_t> sum; // (R, C, 16)
};

template <class T>
Act quantize_rows(const T* x, int64_t R, int64_t K, int64_t C) {
  Act a;
  a.R = R;
  a.C = C;
  a.q.assign(R * C * 64, 0);
  a.d.assign(R * C * 16, 0.f);
  a.sum.assign(R * C * 16, 0);
  at::parallel_for(0, R, 1, [&](int64_t r0, int64_t r1) {
    float buf[32];
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t b = 0; b < C * 2; ++b) {
        const int64_t k0 = b * 32, n = std::max<int64_t>(0, std::min<int64_t>(32, K - k0));
        float amax = 0.f;
        for (int64_t i = 0; i < 32; ++i) {
          buf[i] = i < n ? float(x[r * K + k0 + i]) : 0.f;
          amax = std::max(amax, std::fabs(buf[i]));
        }
        const float d = amax / 127.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        int8_t* q = a.q.data() + r * C * 64 + k0;
        for (int64_t i = 0; i < 32; ++i) q[i] = int8_t(std::nearbyint(buf[i] * id));
        float* dl = a.d.data() + (r * C + b / 2) * 16 + (b % 2) * 8;
        int32_t* sl = a.sum.data() + (r * C + b / 2) * 16 + (b % 2) * 8;
        for (int l = 0; l < 8; ++l) {
          dl[l] = d;
          sl[l] = int32_t(q[4 * l]) + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3];
        }
      }
    }
  });
  return a;
}

// out[r] = sum over chunks of (row r of the activations) . (weight row `w`), NR rows.
// aux: symmetric types: -offset x lane sums (int32); affine: d x lane sums (float).
template <class W, int NR>
inline void tile(const uint8_t* w, const Act& a, int64_t r0, const int32_t* aux, float* out) {
  const int64_t C = a.C;
  __m512 acc[NR], accm[NR];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    acc[r] = _mm512_setzero_ps();
    accm[r] = _mm512_setzero_ps();
  }
  for (int64_t c = 0; c < C; ++c) {
    __m512i q;
    __m512 s, m = _mm512_setzero_ps();
    W::unpack(w, c, q, s, m);
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const int64_t rc = (r0 + r) * C + c;
      const __m512i xv = _mm512_loadu_si512(a.q.data() + rc * 64);
      const __m512 dx = _mm512_loadu_ps(a.d.data() + rc * 16);
      const __m512i init = W::kAffine ? _mm512_setzero_si512() : _mm512_loadu_si512(aux + rc * 16);
      const __m512i dot = _mm512_dpbusd_epi32(init, q, xv);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(s, dx), acc[r]);
      if constexpr (W::kAffine) {
        accm[r] = _mm512_fmadd_ps(m, _mm512_loadu_ps(reinterpret_cast<const float*>(aux) + rc * 16), accm[r]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    out[r] = _mm512_reduce_add_ps(W::kAffine ? _mm512_add_ps(acc[r], accm[r]) : acc[r]);
  }
}

template <class W>
inline void tile_rows(const uint8_t* w, const Act& a, int64_t r0, int nr, const int32_t* aux, float* out) {
  switch (nr) {
    case 1: tile<W, 1>(w, a, r0, aux, out); break;
    case 2: tile<W, 2>(w, a, r0, aux, out); break;
    case 3: tile<W, 3>(w, a, r0, aux, out); break;
    case 4: tile<W, 4>(w, a, r0, aux, out); break;
    case 5: tile<W, 5>(w, a, r0, aux, out); break;
    case 6: tile<W, 6>(w, a, r0, aux, out); break;
    case 7: tile<W, 7>(w, a, r0, aux, out); break;
    default: tile<W, 8>(w, a, r0, aux, out); break;
  }
}

constexpr int kRows = 8;     // activation rows per register tile
constexpr int64_t kOut = 16; // output rows per scheduling unit (their weights stay in L2)

// y[:, col0 : col0 + O] (+ bias) for one packed weight (O rows) against the activations.
template <class W, class T>
void segment(const Act& a, const uint8_t* wp, int64_t O, const float* bias, T* y, int64_t ldy, int64_t col0) {
  const int64_t R = a.R, C = a.C, rb = row_bytes<W>(C);
  std::vector<int32_t> aux(R * C * 16);
  for (int64_t i = 0; i < R * C * 16; ++i) {
    if constexpr (W::kAffine) {
      const float v = a.d[i] * float(a.sum[i]);
      std::memcpy(&aux[i], &v, 4);
    } else {
      aux[i] = -W::kOffset * a.sum[i];
    }
  }
  at::parallel_for(0, (O + kOut - 1) / kOut, 1, [&](int64_t b0, int64_t b1) {
    const int64_t o0 = b0 * kOut, o1 = std::min<int64_t>(O, b1 * kOut);
    float out[kRows];
    for (int64_t r0 = 0; r0 < R; r0 += kRows) {
      const int nr = int(std::min<int64_t>(kRows, R - r0));
      for (int64_t o = o0; o < o1; ++o) {
        tile_rows<W>(wp + o * rb, a, r0, nr, aux.data(), out);
        const float b = bias ? bias[col0 + o] : 0.f;
        for (int r = 0; r < nr; ++r) y[(r0 + r) * ldy + col0 + o] = T(out[r] + b);
      }
    }
  });
}

template <class T>
void dispatch(int64_t type, const Act& a, const uint8_t* wp, int64_t O, const float* bias, T* y, int64_t ldy,
              int64_t col0) {
  switch (type) {
    case 0: segment<Q8_0, T>(a, wp, O, bias, y, ldy, col0); break;
    case 1: segment<Q5_0, T>(a, wp, O, bias, y, ldy, col0); break;
    case 2: segment<Q4_1, T>(a, wp, O, bias, y, ldy, col0); break;
    case 3: segment<Q4_K, T>(a, wp, O, bias, y, ldy, col0); break;
    case 4: segment<Q6_K, T>(a, wp, O, bias, y, ldy, col0); break;
    default: TORCH_CHECK(false, "quant_linear: unknown weight type ", type);
  }
}

int64_t chunk_multiple(int64_t type) { return (type == 3 || type == 4) ? 4 : 1; }

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
  const __m512 zero = _mm512_setzero_ps();
  float lanes[64];
  for (int64_t c = 0; c < C; ++c) {
    __m512i q;
    __m512 s, m = zero;
    W::unpack(w, c, q, s, m);
    alignas(64) uint8_t qb[64];
    alignas(64) float sb[16], mb[16];
    _mm512_store_si512(qb, q);
    _mm512_store_ps(sb, s);
    _mm512_store_ps(mb, m);
    for (int e = 0; e < 64; ++e) {
      const float v = float(int(qb[e]) - W::kOffset);
      lanes[e] = W::kAffine ? sb[e / 4] * v + mb[e / 4] : sb[e / 4] * v;
    }
    const int64_t n = std::min<int64_t>(64, K - c * 64);
    if (n > 0) std::memcpy(out + c * 64, lanes, n * sizeof(float));
  }
}

}  // namespace

// y (R, sum O_i) = x (R, K) @ [W_0; W_1; ...]^T (+ bias): packs[i] (O_i, row bytes) uint8 of
// types[i], all with K columns. Output in x's dtype (bf16 or fp32); bias fp32 (sum O_i) or none.
torch::Tensor quant_linear(const torch::Tensor& x, const std::vector<torch::Tensor>& packs,
                           const std::vector<int64_t>& types, int64_t K, const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K && x.is_contiguous(), "quant_linear: x must be contiguous (R, K)");
  TORCH_CHECK(packs.size() == types.size() && !packs.empty(), "quant_linear: one type per pack");
  int64_t O = 0;
  int64_t mult = 1;
  for (size_t i = 0; i < packs.size(); ++i) {
    TORCH_CHECK(packs[i].dim() == 2 && packs[i].scalar_type() == at::kByte && packs[i].is_contiguous(),
                "quant_linear: packs are contiguous uint8 (O, row bytes)");
    O += packs[i].size(0);
    mult = std::max(mult, chunk_multiple(types[i]));
  }
  const int64_t R = x.size(0), C = (K + 63) / 64;
  TORCH_CHECK(C % mult == 0, "quant_linear: K-quant weights need K a multiple of 256, got ", K);
  for (size_t i = 0; i < packs.size(); ++i) {
    TORCH_CHECK(packs[i].size(1) == packed_row_bytes(types[i], C), "quant_linear: pack ", i,
                " has rows of ", packs[i].size(1), " bytes, expected ", packed_row_bytes(types[i], C));
  }
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == O,
                "quant_linear: bias must be contiguous fp32 (O,)");
  }
  const float* bp = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  auto y = torch::empty({R, O}, x.options());
  if (R == 0) return y;
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  TORCH_CHECK(bf16 || x.scalar_type() == at::kFloat, "quant_linear: x must be bf16 or fp32");
  const Act a = bf16 ? quantize_rows(x.data_ptr<at::BFloat16>(), R, K, C) : quantize_rows(x.data_ptr<float>(), R, K, C);
  int64_t col = 0;
  for (size_t i = 0; i < packs.size(); ++i) {
    const uint8_t* wp = packs[i].data_ptr<uint8_t>();
    if (bf16) {
      dispatch<at::BFloat16>(types[i], a, wp, packs[i].size(0), bp, y.data_ptr<at::BFloat16>(), O, col);
    } else {
      dispatch<float>(types[i], a, wp, packs[i].size(0), bp, y.data_ptr<float>(), O, col);
    }
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
  m.def("quant_linear", &quant_linear, "y = x @ W^T (+ bias) on packed GGUF blocks", py::arg("x"), py::arg("packs"),
        py::arg("types"), py::arg("k"), py::arg("bias") = py::none());
  m.def("quant_rows", &quant_rows, "rows of a packed weight, dequantised to fp32", py::arg("pack"), py::arg("type"),
        py::arg("k"), py::arg("ids"));
}
