"""The Gaussian noise of the diffusion core: :func:`randn_like`, ``torch.randn``'s sample drawn faster.

Samplers draw the state's noise at every stochastic step, and the training loss once per batch. On the CPU in
float64 / complex128 (the samplers' state) PyTorch's ``normal_`` runs a scalar loop; :func:`randn_like` computes
the same algorithm (uniforms from the generator, Box-Muller on blocks of 16) with vectorised arithmetic, so every
seed draws the sample it always drew (to a few ulp) and leaves the generator in the same state.
``benchmarks/noise_draw.py`` measures it; ``EDM_SE_NORMAL=torch`` in the environment takes ``torch.randn`` itself.
"""

from __future__ import annotations

import math
import os

import torch

__all__ = ["randn_like"]


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` (complex: each part has variance 1/2), drawn from ``generator``.

    The values are those of ``torch.randn(x.shape, dtype=x.dtype, generator=generator)``, and the generator ends
    in the same state. On the CPU in float64 / complex128 they are computed by :func:`_normal_fill_float64`, about
    2.4x faster (1.8 ms against 4.3 ms for a 256 x 512 state) and equal to within 5 ulp (relative 1e-15;
    ``tests/test_noise.py``)."""
    if x.device.type == "cpu" and x.dtype in (torch.float64, torch.complex128) and _fast_normal_ok():
        n = x.numel() * (2 if x.is_complex() else 1)
        if n >= 16:
            z = _normal_fill_float64(n, generator, 1.0 / math.sqrt(2.0) if x.is_complex() else 1.0)
            return (torch.view_as_complex(z.view(*x.shape, 2)) if x.is_complex() else z.view(x.shape))
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def _box_muller16(u: torch.Tensor, std: float) -> torch.Tensor:
    """(K, 2, 8) uniforms -> (K, 2, 8) normals: per block of 16, ``r = sqrt(-2 log(1 - u[:8]))``,
    ``theta = 2 pi u[8:]``, then ``(r cos theta, r sin theta) std`` (ATen's ``normal_fill_16``)."""
    r = torch.log(torch.rsub(u[:, 0], 1.0)).mul_(-2.0).sqrt_()
    theta = u[:, 1].mul(2.0 * math.pi)
    out = torch.empty_like(u)
    torch.mul(r, torch.cos(theta), out=out[:, 0])
    torch.mul(r, torch.sin(theta), out=out[:, 1])
    return out.mul_(std) if std != 1.0 else out


def _normal_fill_float64(n: int, generator: torch.Generator | None, std: float) -> torch.Tensor:
    """``n >= 16`` float64 normals with standard deviation ``std``, drawn as PyTorch's CPU ``normal_`` draws them
    (ATen ``normal_fill``: ``n`` uniforms in [0, 1) from the generator, Box-Muller on blocks of 16, and, when
    ``16`` does not divide ``n``, 16 more uniforms that replace the last 16 values), with vectorised arithmetic
    in place of its scalar loop. ``torch.randn`` of a complex dtype is this on the real view with ``std`` =
    1 / sqrt(2). Returns a (n,) float64 tensor."""
    u = torch.rand(n, dtype=torch.float64, generator=generator)
    m = n - n % 16
    if m == n:  # (a complex STFT state always: 2 F T values with F = 256)
        return _box_muller16(u.view(-1, 2, 8), std).view(-1)
    out = torch.empty(n, dtype=torch.float64)
    out[:m] = _box_muller16(u[:m].view(-1, 2, 8), std).view(-1)
    tail = torch.rand(16, dtype=torch.float64, generator=generator)
    out[n - 16:] = _box_muller16(tail.view(1, 2, 8), std).view(-1)
    return out


_FAST_NORMAL: bool | None = None


def _fast_normal_ok() -> bool:
    """Whether :func:`_normal_fill_float64` reproduces this PyTorch's ``torch.randn`` (checked once per process
    on 1000 real and 520 complex draws, values within 5 ulp and the generator's final state; False: the plain
    ``torch.randn`` is used, e.g. after a PyTorch release changes its algorithm). ``EDM_SE_NORMAL=torch`` in the
    environment makes it False from the start: for a machine where ``benchmarks/noise_draw.py`` measures the
    vectorised form slower (seen once, on a 2-core AMD EPYC VM); the values then are ``torch.randn``'s exactly."""
    global _FAST_NORMAL
    if _FAST_NORMAL is None and os.environ.get("EDM_SE_NORMAL", "").lower() == "torch":
        _FAST_NORMAL = False
    if _FAST_NORMAL is None:
        ok = True
        for shape, dtype in (((1000,), torch.float64), ((4, 130), torch.complex128)):
            g1, g2 = torch.Generator().manual_seed(20261202), torch.Generator().manual_seed(20261202)
            ref = torch.randn(shape, dtype=dtype, generator=g1)
            n = ref.numel() * (2 if dtype.is_complex else 1)
            z = _normal_fill_float64(n, g2, 1.0 / math.sqrt(2.0) if dtype.is_complex else 1.0)
            ref = torch.view_as_real(ref).reshape(-1) if dtype.is_complex else ref
            ok = ok and bool(torch.allclose(z, ref, rtol=1e-15, atol=0.0)) and torch.equal(
                g1.get_state(), g2.get_state())
        _FAST_NORMAL = ok
    return _FAST_NORMAL
