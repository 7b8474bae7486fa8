"""Packed GGUF weights: layout twin, both kernels vs their twins, batch invariance, fusion.

Random GGUF blocks of each packed type (random quants, sane fp16 scales) are packed and
compared with `gguf.quants.dequantize` of the same bytes: the numpy decoder and the kernel's
row dequantisation must match it exactly. The exact kernel (`int8=False`) is held against the
reference twin F.linear(x, W) in fp32 on the exact dequantised weights: the kernel multiplies the
exact integers with x in fp32 and applies each block's scale (and offset x block sum) in fp32,
then rounds to bf16, so the tolerance is a bf16 rounding of the result plus the fp32 reordering
bound K * 2^-24 * (sum|w x| + sum|offset x|). The int8 kernel's activation quantisation equals
its numpy twin bit for bit, and its result is the twin's float64 product of the dequantised
quants and weights up to the same bounds (its integer sums are exact).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plait.runtime.kernels import quant as qk
from plait.runtime.quant import activations, formats, tiles
from plait.runtime.quant.weight import PackedWeight, QuantLinear, concat, pack_tensor

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize  # noqa: E402

needs_kernel = pytest.mark.skipif(not qk.available(), reason=f"quant kernels: {qk.why_not()}")


def test_the_kernels_build_where_the_cpu_supports_them() -> None:
    """The tests below skip without the kernels: a CPU that supports them must also build them,
    so a compile error fails here instead of turning every kernel test into a skip."""
    from plait.runtime import kernels

    if not kernels.enabled() or not qk.cpu_supported()[0]:
        pytest.skip(f"quant kernels not expected here: {qk.why_not()}")
    assert qk.available(), qk.why_not()


# (elements per block, bytes per block, byte offsets of fp16 fields)
_SPEC = {
    "Q8_0": (32, 34, (0,)),
    "Q5_0": (32, 22, (0,)),
    "Q4_1": (32, 20, (0, 2)),
    "Q4_K": (256, 144, (0, 2)),
    "Q6_K": (256, 210, (208,)),
}


def random_blocks(qtype: str, rows: int, k: int, seed: int = 0) -> np.ndarray:
    """Random GGUF bytes (rows, row bytes) of an (rows, k) matrix, scales ~1e-2."""
    n, size, halves = _SPEC[qtype]
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, size=(rows, k // n, size), dtype=np.uint8)
    for at in halves:
        scale = rng.uniform(0.002, 0.02, size=(rows, k // n)) * rng.choice([-1, 1], (rows, k // n))
        if qtype in ("Q4_K",):
            scale = np.abs(scale)
        b[..., at : at + 2] = scale.astype(np.float16).view(np.uint8).reshape(rows, k // n, 2)
    return b.reshape(rows, -1)


def reference(raw: np.ndarray, qtype: str, k: int) -> torch.Tensor:
    w = dequantize(raw, gguf.GGMLQuantizationType[qtype]).reshape(raw.shape[0], k)
    return torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))


SHAPES = [("Q8_0", 96), ("Q8_0", 64), ("Q5_0", 160), ("Q4_1", 32), ("Q4_K", 512), ("Q6_K", 256)]


@pytest.mark.parametrize("qtype,k", SHAPES)
def test_packed_layout_decodes_to_the_gguf_values(qtype, k):
    raw = random_blocks(qtype, 7, k)
    packed = formats.pack(raw, qtype, k)
    assert packed.shape == (7, formats.row_bytes(qtype, k))
    ref = reference(raw, qtype, k)
    assert torch.equal(torch.from_numpy(formats.unpack(packed, qtype, k)), ref)
    if qk.available():
        ids = torch.tensor([6, 0, 3, 3])
        rows = qk.quant_rows(torch.from_numpy(packed), formats.TYPES[qtype], k, ids)
        assert torch.equal(rows, ref[ids])


@pytest.mark.parametrize(
    "qtype,k",
    [("Q8_0", 96), ("Q5_0", 160), ("Q5_0", 64), ("Q8_0", 896), ("Q4_K", 512), ("Q6_K", 256)],
)
def test_tile_layout_round_trips(qtype, k):
    raw = random_blocks(qtype, 48, k, seed=k)
    packed = formats.pack(raw, qtype, k)
    tiled = tiles.tile(packed, qtype, k)
    assert tiled.shape == (3, 16 * packed.shape[1])  # the same bytes
    assert np.array_equal(tiles.untile(tiled, qtype, k), packed)
    w = PackedWeight([torch.from_numpy(packed)], [formats.TYPES[qtype]], k)
    if qk.available():  # the compiled tiler (what loading uses) is the numpy one, byte for byte
        fast = qk.tile_pack(torch.from_numpy(packed), formats.TYPES[qtype], k)
        assert np.array_equal(fast.numpy(), tiled)
        w.set_int8(True)
        assert w.tiled == [True] and w.kernel_types == [tiles.TILE_CODE + formats.TYPES[qtype]]
        assert torch.equal(w.dense(), reference(raw, qtype, k))  # the twin reads tiles too
        w.set_int8(False)
        assert w.tiled == [False] and torch.equal(w.packs[0], torch.from_numpy(packed))
    with pytest.raises(ValueError, match="no tile layout"):
        tiles.tile(packed[:40], qtype, k)  # not whole tiles of 16 rows


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="multiple of 256"):
        formats.pack(np.zeros((2, 144 // 2), np.uint8), "Q4_K", 128)
    with pytest.raises(ValueError, match="no packed layout"):
        formats.pack(np.zeros((2, 18), np.uint8), "Q4_0", 32)


def _tolerance(x: torch.Tensor, w: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    k = x.shape[1]
    spread = w.abs() + w.abs().amax(dim=1, keepdim=True)  # |scale x q| and |offset| per element
    return ref.abs() * 2.0**-8 + 4 * k * 2.0**-24 * (x.to(w.dtype).abs() @ spread.T) + 1e-6


@needs_kernel
@pytest.mark.parametrize("qtype,k", SHAPES)
@pytest.mark.parametrize("rows", [1, 3, 8, 9, 33])
def test_kernel_matches_dequantised_linear(qtype, k, rows):
    raw = random_blocks(qtype, 37, k, seed=rows)
    w = reference(raw, qtype, k)  # (37, k): the GGUF's exact weights
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(rows)).bfloat16()
    bias = torch.randn(37)
    y = qk.quant_linear(x, [pack_tensor(raw, qtype, k)], [formats.TYPES[qtype]], k, bias, False)
    ref = F.linear(x.float(), w, bias)
    assert y.dtype == torch.bfloat16 and y.shape == (rows, 37)
    err = (y.float() - ref).abs()
    assert bool((err <= _tolerance(x, w, ref) + 2.0**-8 * bias.abs()).all()), float(err.max())


@needs_kernel
@pytest.mark.parametrize("k", [32, 96, 896, 512, 1000])
def test_int8_activation_quantisation_matches_its_twin(k):
    x = torch.randn(5, k, generator=torch.Generator().manual_seed(k)) * 4
    x[1, : min(k, 40)] = 0  # an all-zero block (scale 0)
    x[2, 3] = 900.0  # an outlier
    x = x.bfloat16()
    for block in (32, 256) if k % 256 == 0 else (32,):
        q, d = qk.quantize_rows(x, block)
        tq, td = activations.quantize(x.float().numpy(), block)
        assert np.array_equal(q.numpy(), tq) and np.array_equal(d.numpy(), td), block


def _layout(raw: np.ndarray, qtype: str, k: int, tiled: bool) -> tuple[torch.Tensor, int]:
    """(pack, kernel type code) of raw blocks in the row or the tile layout."""
    packed = formats.pack(raw, qtype, k)
    if not tiled:
        return torch.from_numpy(packed), formats.TYPES[qtype]
    return torch.from_numpy(tiles.tile(packed, qtype, k)), tiles.TILE_CODE + formats.TYPES[qtype]


TILED = [
    ("Q8_0", 96, True), ("Q8_0", 896, True), ("Q5_0", 160, True), ("Q5_0", 896, True),
    ("Q4_K", 256, True), ("Q4_K", 768, True), ("Q6_K", 256, True), ("Q6_K", 512, True),
]  # fmt: skip


@needs_kernel
@pytest.mark.parametrize(
    "qtype,k,tiled",
    [(t, k, False) for t, k in SHAPES + [("Q5_0", 896), ("Q6_K", 768), ("Q4_K", 256)]] + TILED,
)
@pytest.mark.parametrize("rows", [1, 3, 9, 33])
def test_int8_kernel_matches_its_twin(qtype, k, tiled, rows):
    o = 48 if tiled else 37  # tiles come in 16 rows
    raw = random_blocks(qtype, o, k, seed=rows)
    pack, code = _layout(raw, qtype, k, tiled)
    x = (3 * torch.randn(rows, k, generator=torch.Generator().manual_seed(rows))).bfloat16()
    bias = torch.randn(o)
    y = qk.quant_linear(x, [pack], [code], k, bias, True)
    rows_pack = [pack_tensor(raw, qtype, k)]  # the twin reads the row layout
    ref = activations.linear_reference(x, rows_pack, [formats.TYPES[qtype]], k, bias)  # float64
    w = reference(raw, qtype, k)
    tol = _tolerance(activations.dequantized(x, qtype), w.double(), ref)  # the quants' product
    assert y.dtype == torch.bfloat16 and y.shape == (rows, o)
    err = (y.double() - ref).abs()
    assert bool((err <= tol).all()), float((err / tol).max())
    # and it is a close approximation of the exact product (the activations' rounding only)
    exact = F.linear(x.float(), w, bias).double()
    assert float((y.double() - exact).norm() / exact.norm()) < 0.02


_INVARIANT = [("Q5_0", 896), ("Q6_K", 512), ("Q4_1", 96), ("Q4_K", 256), ("Q8_0", 160)]


@needs_kernel
@pytest.mark.parametrize(
    "qtype,k,int8,tiled",
    [(t, k, i8, False) for t, k in _INVARIANT for i8 in (False, True)]
    + [(t, k, True, True) for t, k in _INVARIANT if t in tiles.TILE_TYPES],
)
def test_a_rows_result_never_depends_on_the_row_count(qtype, k, int8, tiled):
    raw = random_blocks(qtype, 48, k, seed=1)
    pack, code = _layout(raw, qtype, k, tiled)
    packs, types = [pack], [code]
    x = torch.randn(64, k, generator=torch.Generator().manual_seed(5)).bfloat16()
    whole = qk.quant_linear(x, packs, types, k, None, int8)  # 64 rows
    for start, n in [(0, 1), (5, 1), (3, 4), (8, 8), (10, 9), (20, 31), (0, 64)]:
        part = qk.quant_linear(x[start : start + n], packs, types, k, None, int8)
        assert torch.equal(part, whole[start : start + n]), (start, n)


@needs_kernel
@pytest.mark.parametrize("int8", [False, True])
def test_fused_segments_of_different_types(int8):
    k = 256
    raws = [("Q5_0", random_blocks("Q5_0", 32, k, 1)), ("Q8_0", random_blocks("Q8_0", 8, k, 2))]
    parts = [PackedWeight([pack_tensor(r, t, k)], [formats.TYPES[t]], k, int8) for t, r in raws]
    fused = concat([parts[0], parts[1], parts[1]])  # q | k | v shapes, the last two merged
    assert fused.type_names == ["Q5_0", "Q8_0"] and fused.shape == (48, k)
    x = torch.randn(5, k).bfloat16()
    bias = torch.randn(48)
    with torch.inference_mode():  # the kernel (autograd takes the dense twin)
        lin = QuantLinear(fused, bias)
        lin.set_int8(int8)  # int8: both segments tiled (32 and 16 rows)
        assert fused.tiled == [int8, int8] and lin.pack0 is fused.packs[0]
        y = lin(x)
        pieces = [p.matmul(x) for p in (parts[0], parts[1], parts[1])]
    assert torch.equal(y, (torch.cat(pieces, dim=1).float() + bias).bfloat16()) or torch.allclose(
        y.float(), torch.cat(pieces, dim=1).float() + bias, atol=2e-2, rtol=2.0**-7
    )
    if int8:  # the int8 twin: x's quants times the exact weights
        rows = [fused.row_pack(i) for i in range(2)]
        twin = activations.linear_reference(x, rows, fused.types, k, bias).float()
    else:  # the exact weights times x
        twin = F.linear(x.float(), fused.dense(), bias)
    assert torch.allclose(y.float(), twin, rtol=2.0**-7, atol=1e-3)
    with pytest.raises(ValueError, match="activation mode"):
        concat([parts[0], PackedWeight(parts[1].packs, parts[1].types, k, not int8)])


def test_twin_path_without_the_kernel(monkeypatch):
    k = 64
    raw = random_blocks("Q8_0", 9, k)
    w = PackedWeight([pack_tensor(raw, "Q8_0", k)], [0], k)
    monkeypatch.setattr(qk, "available", lambda: False)
    x = torch.randn(2, 3, k).bfloat16()
    y = w.matmul(x)
    ref = F.linear(x.float(), reference(raw, "Q8_0", k).bfloat16().float())
    assert y.shape == (2, 3, 9) and torch.allclose(y.float(), ref, rtol=2.0**-7, atol=1e-4)
    assert torch.equal(
        w.rows(torch.tensor([[1, 4]])), reference(raw, "Q8_0", k)[[1, 4]][None].bfloat16()
    )
