// plait CPU kernel: the whole attention of one layer of one decode step over shared KV segments.
//
// Inputs (T new tokens, Hq query heads, Hkv KV heads, G = Hq / Hkv, D head dim, Rr rotary dims):
//   q (T, Hq, D), k_new / v_new (T, Hkv, D): the layer's projections before RoPE (any row and
//     head strides, last dim contiguous);
//   k_arena / v_arena (Hkv, S, D): the layer's KV arena (last dim contiguous);
//   slots (T): arena slot of every new token; key_cos / key_sin (T, Rr) float32: the new keys'
//     rotation at their segment-local positions;
//   reads (n, 4) int64: per segment read [first entry, end entry, base slot, visible keys];
//   entry_rows (N), entry_limits (N) int64: per read entry, the query row and its last visible
//     key in that segment (-1: none); entry_cos / entry_sin (N, Rr) float32: the row's query
//     rotation relative to the segment's start in the row's view.
// Output (T, Hq, D) in q's dtype: every row's softmax over the union of the keys it may see in all
// segments it reads. Keys are rotated and written first (a read may see same-step keys).
//
// Why: the per-read kernel (segment_attention.cpp) leaves a decode step with ~15 small torch ops
// per layer around it (key rotation and write, query gather and rotation per read, regrouping,
// and the log-sum-exp merge of each row's partials), which cost more than the attention itself
// on a 4-worker Hogwild step. Here one call does all of it; a row's softmax state simply carries
// on from one segment to the next (online softmax), which is the exact merge. Work splits over
// (KV head, query-head chunk) tasks; each task owns its rows' state. The reference twin is the
// runner's per-read path with its LSE merge (tests/runtime/test_runner.py,
// tests/runtime/test_kernels.py).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <vector>

#include "online_softmax.h"

namespace {

using namespace plait_kernels;

// dst[0:D] = x rotated by (cos, sin) over its first Rr dims ("rotate half" pairs i, i + Rr/2);
// the remaining dims pass through. Computed in fp32.
template <class T>
inline void rotate(const T* x, const float* cos, const float* sin, int64_t Rr, int64_t D, float* dst) {
  const int64_t half = Rr / 2;
  int64_t i = 0;
  if (half % 16 == 0) {
    for (; i < half; i += 16) {
      const __m512 a = load16(x + i), b = load16(x + i + half);
      _mm512_storeu_ps(dst + i, _mm512_fnmadd_ps(b, _mm512_loadu_ps(sin + i), _mm512_mul_ps(a, _mm512_loadu_ps(cos + i))));
      _mm512_storeu_ps(dst + i + half,
                       _mm512_fmadd_ps(a, _mm512_loadu_ps(sin + i + half), _mm512_mul_ps(b, _mm512_loadu_ps(cos + i + half))));
    }
  }
  for (; i < half; ++i) {
    const float a = to_float(x[i]), b = to_float(x[i + half]);
    dst[i] = a * cos[i] - b * sin[i];
    dst[i + half] = b * cos[i + half] + a * sin[i + half];
  }
  for (i = Rr; i < D; ++i) dst[i] = to_float(x[i]);
}

// dst[0:D] = src in T (round to nearest even); D is a multiple of 16
inline void store_row(const float* src, int64_t D, at::BFloat16* dst) {
  for (int64_t i = 0; i < D; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
}
inline void store_row(const float* src, int64_t D, float* dst) { std::memcpy(dst, src, D * sizeof(float)); }

struct Step {
  const char* q; int64_t q_t, q_h;  // strides in elements (row, head)
  const char* kn; int64_t kn_t, kn_h;
  const char* vn; int64_t vn_t, vn_h;
  char* ka; int64_t ka_h, ka_s;
  char* va; int64_t va_h, va_s;
  const int64_t* slots;
  const float* kcos; const float* ksin;
  const int64_t* reads; int64_t n_reads;
  const int64_t* rows; const int64_t* lims;
  const float* rcos; const float* rsin;
  char* out;  // (T, Hq, D) contiguous
  int64_t T, Hq, Hkv, D, Rr;
  float scale;
};

// rotate and store the new keys, copy the new values, for tokens [t0, t1)
template <class T>
void write_keys(const Step& st, int64_t t0, int64_t t1) {
  std::vector<float> buf(st.D);
  const T* kn = reinterpret_cast<const T*>(st.kn);
  const T* vn = reinterpret_cast<const T*>(st.vn);
  T* ka = reinterpret_cast<T*>(st.ka);
  T* va = reinterpret_cast<T*>(st.va);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t slot = st.slots[t];
    for (int64_t h = 0; h < st.Hkv; ++h) {
      rotate(kn + t * st.kn_t + h * st.kn_h, st.kcos + t * st.Rr, st.ksin + t * st.Rr, st.Rr, st.D, buf.data());
      store_row(buf.data(), st.D, ka + h * st.ka_h + slot * st.ka_s);
      std::memcpy(va + h * st.va_h + slot * st.va_s, vn + t * st.vn_t + h * st.vn_h, st.D * sizeof(T));
    }
  }
}

// all reads of KV head h for query heads h*G + [g0, g1): every row's state runs over its reads
template <class T>
void attend_task(const Step& st, int64_t h, int64_t g0, int64_t g1) {
  constexpr bool kBF16 = std::is_same<T, at::BFloat16>::value;
  const int64_t G = st.Hq / st.Hkv, Gc = g1 - g0, D = st.D;
  const T* q = reinterpret_cast<const T*>(st.q);
  const T* ka = reinterpret_cast<const T*>(st.ka) + h * st.ka_h;
  const T* va = reinterpret_cast<const T*>(st.va) + h * st.va_h;
  // state of (row, head) pairs for the whole step; tile copies for the read in progress
  thread_local std::vector<float> o, m, l, to, tm, tl, qf, rot;
  thread_local std::vector<uint32_t> q2;
  thread_local std::vector<int64_t> tlim;
  o.assign(st.T * Gc * D, 0.f);
  m.assign(st.T * Gc, -std::numeric_limits<float>::infinity());
  l.assign(st.T * Gc, 0.f);
  rot.resize(D);
  for (int64_t i = 0; i < st.n_reads; ++i) {
    const int64_t* rd = st.reads + 4 * i;
    const int64_t e0 = rd[0], e1 = rd[1], base = rd[2], visible = rd[3];
    const int64_t R = (e1 - e0) * Gc;
    if (R == 0 || visible == 0) continue;
    to.resize(R * D);
    tm.resize(R);
    tl.resize(R);
    tlim.resize(R);
    if constexpr (kBF16) q2.resize(R * (D / 2)); else qf.resize(R * D);
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t row = st.rows[e];
      for (int64_t g = 0; g < Gc; ++g) {
        const int64_t r = (e - e0) * Gc + g, s = row * Gc + g;
        rotate(q + row * st.q_t + (h * G + g0 + g) * st.q_h, st.rcos + e * st.Rr, st.rsin + e * st.Rr, st.Rr, D,
               rot.data());
        if constexpr (kBF16) {  // bf16 row stored as 32-bit (2p, 2p+1) pairs
          store_row(rot.data(), D, reinterpret_cast<at::BFloat16*>(q2.data() + r * (D / 2)));
        } else {
          std::memcpy(qf.data() + r * D, rot.data(), D * sizeof(float));
        }
        tlim[r] = std::min(st.lims[e], visible - 1);
        std::memcpy(to.data() + r * D, o.data() + s * D, D * sizeof(float));
        tm[r] = m[s];
        tl[r] = l[s];
      }
    }
    const Rows rows{kBF16 ? q2.data() : nullptr, kBF16 ? nullptr : qf.data(), tlim.data(), to.data(), tm.data(),
                    tl.data()};
    attend_keys<T>(rows, R, D, ka + base * st.ka_s, st.ka_s, va + base * st.va_s, st.va_s, visible,
                   st.scale * kLog2e);
    for (int64_t e = e0; e < e1; ++e) {
      for (int64_t g = 0; g < Gc; ++g) {
        const int64_t r = (e - e0) * Gc + g, s = st.rows[e] * Gc + g;
        std::memcpy(o.data() + s * D, to.data() + r * D, D * sizeof(float));
        m[s] = tm[r];
        l[s] = tl[r];
      }
    }
  }
  T* out = reinterpret_cast<T*>(st.out);
  for (int64_t t = 0; t < st.T; ++t) {  // rows that read nothing get zeros
    finish_rows<T>(o.data() + t * Gc * D, m.data() + t * Gc, l.data() + t * Gc, Gc, D,
                   out + (t * st.Hq + h * G + g0) * D, D, nullptr, 0);
  }
}

template <class T>
void run_step(const Step& st) {
  at::parallel_for(0, st.T, 16, [&](int64_t t0, int64_t t1) { write_keys<T>(st, t0, t1); });
  // tasks: KV heads x chunks of their G query heads, enough chunks to use the threads
  const int64_t G = st.Hq / st.Hkv;
  // (a row-head's result does not depend on the chunking: each task owns whole row-heads; long
  // steps (prefill) split finer so that the threads stay busy when Hkv is small)
  const int64_t want = at::get_num_threads() * (st.T > 64 ? 4 : 1);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(G, (want + st.Hkv - 1) / st.Hkv));
  at::parallel_for(0, st.Hkv * chunks, 1, [&](int64_t a, int64_t b) {
    for (int64_t task = a; task < b; ++task) {
      const int64_t h = task / chunks, c = task % chunks;
      attend_task<T>(st, h, c * G / chunks, (c + 1) * G / chunks);
    }
  });
}

}  // namespace

torch::Tensor step_attention(const torch::Tensor& q, const torch::Tensor& k_new, const torch::Tensor& v_new,
                             const torch::Tensor& k_arena, const torch::Tensor& v_arena, const torch::Tensor& slots,
                             const torch::Tensor& key_cos, const torch::Tensor& key_sin, const torch::Tensor& reads,
                             const torch::Tensor& entry_rows, const torch::Tensor& entry_limits,
                             const torch::Tensor& entry_cos, const torch::Tensor& entry_sin, double scale) {
  TORCH_CHECK(q.dim() == 3 && k_new.dim() == 3 && v_new.dim() == 3, "step_attention: q (T, Hq, D), k/v (T, Hkv, D)");
  const int64_t T = q.size(0), Hq = q.size(1), D = q.size(2), Hkv = k_new.size(1);
  TORCH_CHECK(k_new.size(0) == T && v_new.sizes() == k_new.sizes() && k_new.size(2) == D && Hkv > 0 && Hq % Hkv == 0,
              "step_attention: k_new, v_new must be (T, Hkv, D) with Hq a multiple of Hkv");
  TORCH_CHECK(k_arena.dim() == 3 && v_arena.sizes() == k_arena.sizes() && k_arena.size(0) == Hkv && k_arena.size(2) == D,
              "step_attention: arenas must be (Hkv, S, D)");
  TORCH_CHECK(D % 16 == 0 && D <= 128, "step_attention: head dim must be a multiple of 16, <= 128");
  for (const auto* t : {&q, &k_new, &v_new, &k_arena, &v_arena})
    TORCH_CHECK(t->stride(2) == 1 && t->scalar_type() == q.scalar_type(), "step_attention: last dims contiguous, one dtype");
  TORCH_CHECK(q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kFloat, "step_attention: bf16 or fp32");
  const int64_t Rr = key_cos.size(1), N = entry_rows.numel(), S = k_arena.size(1);
  TORCH_CHECK(Rr % 2 == 0 && Rr <= D, "step_attention: rotary dims must be even and <= head dim");
  for (const auto* t : {&key_cos, &key_sin, &entry_cos, &entry_sin})
    TORCH_CHECK(t->dim() == 2 && t->size(1) == Rr && t->is_contiguous() && t->scalar_type() == at::kFloat,
                "step_attention: rotation tables must be contiguous float32 (rows, Rr)");
  TORCH_CHECK(key_cos.size(0) == T && key_sin.size(0) == T && entry_cos.size(0) == N && entry_sin.size(0) == N,
              "step_attention: one key rotation per token, one query rotation per entry");
  for (const auto* t : {&slots, &reads, &entry_rows, &entry_limits})
    TORCH_CHECK(t->is_contiguous() && t->scalar_type() == at::kLong, "step_attention: index tensors contiguous int64");
  TORCH_CHECK(slots.numel() == T && entry_limits.numel() == N && reads.dim() == 2 && reads.size(1) == 4,
              "step_attention: slots (T), reads (n, 4), entry_limits (N)");
  const int64_t* sl = slots.data_ptr<int64_t>();
  for (int64_t t = 0; t < T; ++t) TORCH_CHECK(sl[t] >= 0 && sl[t] < S, "step_attention: slot outside the arena");
  const int64_t* rd = reads.data_ptr<int64_t>();
  const int64_t* er = entry_rows.data_ptr<int64_t>();
  for (int64_t i = 0; i < reads.size(0); ++i) {
    const int64_t* r = rd + 4 * i;
    TORCH_CHECK(0 <= r[0] && r[0] <= r[1] && r[1] <= N && r[3] >= 0 && r[2] >= 0 && r[2] + r[3] <= S,
                "step_attention: read ", i, " is outside the entries or the arena");
    for (int64_t e = r[0]; e < r[1]; ++e)
      TORCH_CHECK(0 <= er[e] && er[e] < T, "step_attention: entry row outside the step");
  }
  auto out = torch::empty({T, Hq, D}, q.options());
  Step st{static_cast<const char*>(q.data_ptr()), q.stride(0), q.stride(1),
          static_cast<const char*>(k_new.data_ptr()), k_new.stride(0), k_new.stride(1),
          static_cast<const char*>(v_new.data_ptr()), v_new.stride(0), v_new.stride(1),
          static_cast<char*>(k_arena.data_ptr()), k_arena.stride(0), k_arena.stride(1),
          static_cast<char*>(v_arena.data_ptr()), v_arena.stride(0), v_arena.stride(1),
          sl, key_cos.data_ptr<float>(), key_sin.data_ptr<float>(),
          rd, reads.size(0), er, entry_limits.data_ptr<int64_t>(),
          entry_cos.data_ptr<float>(), entry_sin.data_ptr<float>(),
          static_cast<char*>(out.data_ptr()), T, Hq, Hkv, D, Rr, float(scale)};
  if (q.scalar_type() == at::kBFloat16) run_step<at::BFloat16>(st);
  else run_step<float>(st);
  return out;
}
