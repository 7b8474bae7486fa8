"""plait's compiled few-row linear kernel equals F.linear (its reference twin) on random shapes.

The kernels are built on first use (~80 s once per machine on 2 cores); on a CPU without AVX512-BF16 these
tests check only the fallback (the kernel tests are skipped with the reason).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from plait.runtime import kernels
from plait.runtime.model import linear

needs_kernels = pytest.mark.skipif(
    not kernels.available(), reason=f"CPU kernels unavailable: {kernels.unavailable_reason()}"
)

# (rows, out, in): tails in every loop (in not a multiple of 32/64, out not a multiple of the
# 16-row chunk), long rows that the kernel cuts into k-blocks (4864, 7001), rows above one
# 8-row register block (9, 13, 16, 25)
SHAPES = [
    (1, 37, 45),
    (2, 100, 896),
    (3, 5, 1000),
    (4, 896, 4864),
    (5, 64, 64),
    (8, 129, 7001),
    (9, 50, 333),
    (13, 40, 4864),
    (16, 300, 896),
    (25, 70, 896),  # a 4-worker pass that also feeds three step headers
]


def _ref(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x.double(), w.double(), None if b is None else b.double())


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("rows,out,inp", SHAPES)
@pytest.mark.parametrize("bias", [False, True])
def test_skinny_linear_matches_reference(dtype, rows, out, inp, bias):
    g = torch.Generator().manual_seed(rows * 1000 + out + inp)
    x = torch.randn(rows, inp, generator=g).to(dtype)
    w = torch.randn(out, inp, generator=g).to(dtype)
    b = torch.randn(out, generator=g).to(dtype) if bias else None
    ref = _ref(x, w, b)
    with torch.no_grad():
        got = kernels.skinny_linear(x, w, b).double()
        torch_out = F.linear(x, w, b).double()
    assert got.shape == (rows, out) and kernels.skinny_linear(x, w, b).dtype == dtype
    # bf16: both round the fp32 sum once to bf16 (rel. 2^-9); fp32: summation order only
    tol = (1e-2 if dtype == torch.bfloat16 else 1e-5) * ref.abs().max().item()
    assert (got - ref).abs().max().item() <= tol
    assert (got - ref).abs().max().item() <= 2 * (torch_out - ref).abs().max().item() + 1e-6


@needs_kernels
def test_threads_split_outputs_not_sums():
    """Every output is summed by one thread in a fixed order: any thread count, same bits."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 896, generator=g).bfloat16()
    w = torch.randn(2000, 896, generator=g).bfloat16()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernels.skinny_linear(x, w)
        torch.set_num_threads(2)
        two = kernels.skinny_linear(x, w)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@needs_kernels
def test_noncontiguous_inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g).T  # (3, 64) view with strides (1, 3)
    w = torch.randn(10, 64, generator=g)
    got = kernels.skinny_linear(x, w)
    assert torch.allclose(got.double(), _ref(x, w, None), atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("invariant", [True, False])
def test_linear_routes_rows_to_the_kernel(monkeypatch, invariant):
    calls = []
    real = kernels.skinny_linear
    monkeypatch.setattr(kernels, "skinny_linear", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(kernels, "_invariant", invariant)
    w = torch.randn(8, 32).bfloat16()
    with torch.no_grad():
        linear(torch.randn(4, 32).bfloat16(), w)
        linear(torch.randn(kernels.SKINNY_MAX_ROWS + 1, 32).bfloat16(), w)  # prefill: torch if off
        linear(torch.randn(4, 32).half(), w.half())  # fp16: torch
    x = torch.randn(2, 32).bfloat16().requires_grad_()
    y = linear(x, w)  # autograd needs torch's op
    assert len(calls) == (2 if invariant else 1) and y.requires_grad


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("out,inp", [(37, 45), (100, 896), (50, 2500), (7, 4864)])
def test_rows_get_the_same_bits_in_any_batch(dtype, out, inp):
    """Batch invariance: a row's output bits do not depend on how many rows share the call
    (1 to 600: the streaming path up to 28 rows and the register tiles above), nor on where
    the row sits among them."""
    g = torch.Generator().manual_seed(out + inp)
    x = torch.randn(600, inp, generator=g).to(dtype)
    w = torch.randn(out, inp, generator=g).to(dtype)
    b = torch.randn(out, generator=g).to(dtype)
    alone = torch.cat([kernels.skinny_linear(x[i : i + 1], w, b) for i in range(0, 600, 37)])
    for rows in (2, 5, 8, 9, 27, 28, 29, 31, 64, 129, 600):
        for start in {0, 600 - rows, (600 - rows) // 3}:
            got = kernels.skinny_linear(x[start : start + rows], w, b)
            picks = [i - start for i in range(0, 600, 37) if start <= i < start + rows]
            assert torch.equal(
                got[picks], alone[[i // 37 for i in range(0, 600, 37) if start <= i < start + rows]]
            )


@pytest.fixture
def kernels_off(monkeypatch):
    """PLAIT_KERNELS=0 as a user would set it (re-read), restored afterwards."""
    before = kernels.enabled()
    monkeypatch.setenv(kernels.ENV, "0")
    kernels.set_enabled(None)
    yield
    kernels.set_enabled(before)


def test_disabled_by_environment(kernels_off):
    assert not kernels.available()
    assert kernels.unavailable_reason() == f"{kernels.ENV}=0"
    with pytest.raises(RuntimeError, match="unavailable"):
        kernels.skinny_linear(torch.randn(1, 4), torch.randn(2, 4))
    w = torch.randn(8, 32)
    x = torch.randn(3, 32)
    with torch.no_grad():
        assert torch.allclose(linear(x, w), F.linear(x, w), atol=1e-6)


@needs_kernels
def test_decoder_step_same_with_and_without_kernels(request):
    """A bf16 decode step through plait's model: kernels on vs off (the torch path)."""
    from plait.runtime.runner import Runner, StreamInput
    from plait.runtime.segments import KVStore
    from tests.helpers.tiny import tiny_model

    model = tiny_model("qwen2", 0, torch.bfloat16, heads=4, kv_heads=2, head_dim=64)

    def logits() -> torch.Tensor:
        store = KVStore(model.config, model.dtype)
        runner = Runner(model, store)
        segs = [store.new_segment(16) for _ in range(3)]
        runner.step([StreamInput([1, 2, 3, 4], [s], s) for s in segs])  # 12 rows: kernel
        return runner.step([StreamInput([5 + i], [s], s) for i, s in enumerate(segs)]).float()

    on = logits()
    request.getfixturevalue("kernels_off")
    off = logits()
    assert (on - off).abs().max().item() <= 0.05 * off.abs().max().item()
    assert torch.equal(on.argmax(-1), off.argmax(-1))


# ---------------------------------------------------------------- segment attention

# (B, Hkv, R, L, D): one block and less (L < 64, < 16), block tails, long segments, odd rows
ATTN_SHAPES = [
    (1, 2, 7, 981, 64),
    (5, 2, 28, 7, 64),
    (4, 2, 28, 30, 64),
    (1, 1, 3, 100, 16),
    (2, 3, 5, 65, 128),
    (1, 2, 1, 1, 32),
    (3, 1, 13, 129, 48),
]


def _strided_kv(B, H, L, D, dtype, g):  # noqa: ANN001, ANN202
    """K/V as the runner reads them: (B, Hkv, L, D) views of a (Hkv, slots, D) arena."""
    cap = L + 3
    arena = torch.randn(2, H, B * cap, D, generator=g).to(dtype)
    sh, ss, sd = arena[0].stride()
    return [a.as_strided((B, H, L, D), (cap * ss, sh, ss, sd)) for a in arena]


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("B,H,R,L,D", ATTN_SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_segment_attention_matches_reference(dtype, B, H, R, L, D, masked):
    from plait.runtime.attention import batched_attention, limit_bias

    g = torch.Generator().manual_seed(B * 7 + R * 13 + L + D)
    q = torch.randn(B, H, R, D, generator=g).to(dtype)
    k, v = _strided_kv(B, H, L, D, dtype, g)
    limits = torch.randint(-1, L, (B, R), generator=g) if masked else None
    if masked:
        limits[0, 0] = -1  # a row that sees no key
    out, lse = kernels.segment_attention(q, k, v, limits)
    bias = limit_bias(limits, L, 1, torch.float64)[:, None] if masked else None
    ref_out, ref_lse = batched_attention(
        q.double(), k.double(), v.double(), bias, None if limits is None else limits < 0, "math"
    )
    assert out.dtype == dtype and lse.dtype == torch.float32
    seen = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), seen)
    if seen.any():
        assert (lse.double()[seen] - ref_lse[seen]).abs().max().item() <= 1e-5
    assert torch.all(out[~seen] == 0)
    # bf16: output rounding (2^-9) and probabilities rounded to bf16 for the value sums
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    assert (out.double() - ref_out).abs().max().item() <= tol * max(1.0, ref_out.abs().max().item())


def test_batched_attention_leaves_the_kernel_choice_to_the_registry():
    """torch's kernels only: plait's kernels are picked once per step by choose_backend."""
    from plait.runtime.attention import batched_attention, limit_bias

    q = torch.randn(1, 1, 2, 16)
    k = v = torch.randn(1, 1, 5, 16)
    bias = limit_bias(torch.tensor([[1, 3]]), 5, 1, q.dtype)[:, None]
    for impl in ("auto", "plait"):
        with pytest.raises(ValueError, match="registry.choose_backend"):
            batched_attention(q, k, v, bias, None, impl)
    a = batched_attention(q, k, v, bias, None)  # default: sdpa on CPU
    b = batched_attention(q, k, v, bias, None, "math")
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


# ---------------------------------------------------------------- step attention (fused)


def _step_case(seed: int, dtype: torch.dtype, Hq: int, Hkv: int, D: int, Rr: int):  # noqa: ANN202
    """A random step: T new tokens written at distinct arena slots, 1-5 reads of random arena
    ranges (possibly covering the new slots), each read by a random subset of the rows with
    random limits (some -1, some past the visible keys); some rows read nothing."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    S = 300
    T = int(torch.randint(1, 10, (1,), generator=g))
    q = rnd(T, Hq, D).to(dtype)
    qkv = rnd(T, Hq + 2 * Hkv, D).to(dtype)  # k/v as strided views of one projection
    kn, vn = qkv[:, Hq : Hq + Hkv], qkv[:, Hq + Hkv :]
    ka, va = rnd(Hkv, S, D).to(dtype), rnd(Hkv, S, D).to(dtype)
    slots = torch.randperm(S, generator=g)[:T]
    kcos, ksin, rcos, rsin = (rnd(n, Rr) for n in (T, T, 64, 64))
    reads, rows, lims = [], [], []
    for _ in range(int(torch.randint(1, 6, (1,), generator=g))):
        base = int(torch.randint(0, S - 1, (1,), generator=g))
        visible = int(torch.randint(0, min(S - base, 150) + 1, (1,), generator=g))
        who = [t for t in range(T) if torch.rand(1, generator=g) < 0.7]
        reads.append([len(rows), len(rows) + len(who), base, visible])
        rows += who
        lims += [int(torch.randint(-1, visible + 3, (1,), generator=g)) for _ in who]
    N = len(rows)
    idx = lambda x: torch.tensor(x, dtype=torch.long).reshape(-1, *([4] if x is reads else []))  # noqa: E731
    return (
        q,
        kn,
        vn,
        ka,
        va,
        slots,
        kcos,
        ksin,
        idx(reads),
        idx(rows),
        idx(lims),
        rcos[:N],
        rsin[:N],
    )


def _step_reference(q, kn, vn, ka, va, slots, kcos, ksin, reads, rows, lims, rcos, rsin):  # noqa: ANN001, ANN202
    """Float64, one row and head at a time: write the rotated keys, then softmax over the
    concatenation of every key the row may see in each of its reads."""
    from plait.runtime.rope import apply_rotary

    T, Hq, D = q.shape
    Hkv = kn.shape[1]
    G = Hq // Hkv
    ka, va = ka.double().clone(), va.double().clone()
    ka[:, slots] = apply_rotary(
        kn.double(), kcos.double()[:, None], ksin.double()[:, None]
    ).transpose(0, 1)
    va[:, slots] = vn.double().transpose(0, 1)
    out = torch.zeros(T, Hq, D, dtype=torch.float64)
    for t in range(T):
        for hq in range(Hq):
            h = hq // G
            scores, values = [], []
            for e0, e1, base, visible in reads.tolist():
                for e in range(e0, e1):
                    if rows[e] != t:
                        continue
                    n = max(0, min(int(lims[e]), visible - 1) + 1)
                    qr = apply_rotary(q[t, hq].double(), rcos[e].double(), rsin[e].double())
                    scores.append(ka[h, base : base + n] @ qr * D**-0.5)
                    values.append(va[h, base : base + n])
            s = torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64)
            if s.numel():
                out[t, hq] = torch.softmax(s, 0) @ torch.cat(values)
    return out, ka, va


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    "Hq,Hkv,D,Rr",
    [(14, 2, 64, 64), (4, 2, 16, 16), (3, 1, 48, 48), (8, 8, 128, 128), (4, 2, 64, 32)],
)
@pytest.mark.parametrize("seed", range(3))
def test_step_attention_matches_reference(dtype, Hq, Hkv, D, Rr, seed):
    args = _step_case(seed * 31 + Hq + D, dtype, Hq, Hkv, D, Rr)
    ref_out, ref_k, ref_v = _step_reference(*args)
    out = kernels.step_attention(*args)
    ka, va = args[3], args[4]  # written in place by the kernel
    assert out.shape == ref_out.shape and out.dtype == dtype
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    assert (out.double() - ref_out).abs().max().item() <= tol * max(1.0, ref_out.abs().max().item())
    # keys rotated in fp32 and rounded once; values copied exactly
    ktol = 8e-3 if dtype == torch.bfloat16 else 1e-6
    assert (ka.double() - ref_k).abs().max().item() <= ktol * max(1.0, ref_k.abs().max().item())
    assert torch.equal(va.double(), ref_v)


@needs_kernels
def test_step_attention_same_for_any_thread_count():
    args = _step_case(5, torch.bfloat16, 14, 2, 64, 64)
    before = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)  # changes how query heads split into tasks
            outs.append(kernels.step_attention(*args))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


@needs_kernels
def test_step_attention_rejects_reads_outside_the_arena():
    args = list(_step_case(1, torch.float32, 4, 2, 16, 16))
    args[8] = torch.tensor([[0, 0, 290, 20]])  # 290 + 20 > 300 slots
    with pytest.raises(RuntimeError, match="outside"):
        kernels.step_attention(*args)
    args[8] = torch.tensor([[0, 0, 0, 5]])
    args[5] = torch.full((args[0].shape[0],), 300)
    with pytest.raises(RuntimeError, match="slot"):
        kernels.step_attention(*args)


def test_the_kernels_build_where_the_cpu_supports_them():
    """The kernel tests skip without the extension: a CPU that supports it must also build it,
    so a compile error fails here instead of turning every kernel test into a skip."""
    if not kernels.enabled() or not kernels.cpu_supported()[0]:
        pytest.skip(f"CPU kernels not expected here: {kernels.unavailable_reason()}")
    assert kernels.available(), kernels.unavailable_reason()
