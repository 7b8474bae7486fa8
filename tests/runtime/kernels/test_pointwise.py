"""The fused RMSNorm and SwiGLU kernels against their twins, the torch code in plait.runtime.model.

The kernels follow the twin's arithmetic (fp32 math, the same roundings to the activation dtype)
but sum the mean of squares in their own order and compute exp with their own polynomial, so a
result may sit one rounding of the output dtype away from the twin's, never more; each row is
computed alone (a row's bits do not depend on the rows beside it).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from plait.runtime import kernels
from plait.runtime.kernels import pointwise
from plait.runtime.model import RMSNorm, swiglu

needs_kernels = pytest.mark.skipif(
    not kernels.available(), reason=f"CPU kernels unavailable: {kernels.unavailable_reason()}"
)


def _twin_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _within_one_rounding(y: torch.Tensor, ref: torch.Tensor) -> bool:
    ulp = 2.0**-7 if y.dtype == torch.bfloat16 else 2.0**-20  # fp32: the scale's last bits
    err = (y.float() - ref.float()).abs()
    return bool((err <= ulp * ref.float().abs() + 1e-30).all())


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("rows,h", [(1, 896), (3, 17), (5, 64), (2, 1536), (7, 1000)])
def test_rms_norm_matches_the_torch_twin(dtype, rows, h):
    g = torch.Generator().manual_seed(h + rows)
    x = (torch.randn(rows, h, generator=g) * 3).to(dtype)
    x[0, :3] = torch.tensor([400.0, -0.0, 1e-3])  # an outlier, a signed zero, a tiny value
    w = (torch.randn(h, generator=g) * 0.5 + 1).to(dtype)
    with torch.inference_mode():
        y = pointwise.rms_norm(x, w, 1e-6)
    ref = _twin_norm(x, w, 1e-6)
    assert y.dtype == dtype and y.shape == x.shape
    assert _within_one_rounding(y, ref)
    if dtype == torch.bfloat16:  # fp32 rows shift together when the scale's last bit differs
        assert (y == ref).float().mean() > 0.97  # almost always the same bits
    # a row alone gives the bits it gets beside the others
    with torch.inference_mode():
        assert torch.equal(pointwise.rms_norm(x[-1:], w, 1e-6), y[-1:])


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("rows,i", [(1, 4864), (3, 17), (4, 8960), (9, 33)])
def test_silu_mul_matches_the_torch_twin(dtype, rows, i):
    g = torch.Generator().manual_seed(i + rows)
    gu = (torch.randn(rows, 2 * i, generator=g) * 4).to(dtype)
    gu[0, :6] = torch.tensor([100.0, -100.0, 0.0, -0.0, 88.5, -89.0])  # overflowing exp
    with torch.inference_mode():
        y = pointwise.silu_mul(gu)
    gate, up = gu.chunk(2, dim=-1)
    ref = F.silu(gate) * up
    assert y.dtype == dtype and y.shape == (rows, i)
    assert _within_one_rounding(y, ref)
    if dtype == torch.bfloat16:
        assert (y == ref).float().mean() > 0.97
    with torch.inference_mode():
        assert torch.equal(pointwise.silu_mul(gu[-1:]), y[-1:])


@needs_kernels
def test_the_model_uses_them_only_without_autograd():
    norm = RMSNorm(64, 1e-6)
    x = torch.randn(3, 64)
    with torch.no_grad():
        fused = norm(x)
    x.requires_grad_(True)
    plain = norm(x)  # autograd: the torch code, with a gradient
    plain.sum().backward()
    assert x.grad is not None and torch.allclose(fused, plain.detach(), rtol=1e-5, atol=1e-6)
    gu = torch.randn(2, 16).bfloat16()
    with torch.no_grad():
        assert _within_one_rounding(swiglu(gu), F.silu(gu[:, :8]) * gu[:, 8:])
