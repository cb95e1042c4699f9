"""The diffusion core's Gaussian noise (edm_se.noise): torch.randn's sample and generator state, drawn faster."""

from __future__ import annotations

import pytest
import torch

from edm_se import noise as N


@pytest.mark.parametrize("shape,dtype", [((1, 1, 256, 64), torch.complex128), ((3, 1, 7, 5), torch.complex128),
                                         ((1003,), torch.float64), ((16,), torch.float64), ((2, 3), torch.float64),
                                         ((5,), torch.complex128), ((4, 8), torch.complex64)])
def test_randn_like_reproduces_torch_randn_and_generator_state(shape, dtype):
    # the vectorised float64 Box-Muller must give torch.randn's values (to a few ulp, never another sample) and leave
    # the generator where torch.randn leaves it, including the n % 16 tail and the n < 16 path
    assert N._fast_normal_ok()
    for seed in (0, 7):
        g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        ref = torch.randn(shape, dtype=dtype, generator=g1)
        z = N.randn_like(torch.empty(shape, dtype=dtype), g2)
        assert z.shape == ref.shape and z.dtype == ref.dtype
        zr, rr = (torch.view_as_real(z), torch.view_as_real(ref)) if dtype.is_complex else (z, ref)
        assert torch.all((zr - rr).abs() <= 1e-15 * rr.abs()), (zr - rr).abs().max()
        assert torch.equal(g1.get_state(), g2.get_state())
        # the next draw after it is the same too
        assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_randn_like_falls_back_to_torch_randn(monkeypatch):
    monkeypatch.setattr(N, "_FAST_NORMAL", False)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x = torch.empty(2, 1, 8, 9, dtype=torch.complex128)
    assert torch.equal(N.randn_like(x, g1), torch.randn(x.shape, dtype=x.dtype, generator=g2))


def test_edm_se_normal_torch_selects_torch_randn_exactly():
    """``EDM_SE_NORMAL=torch`` (for machines where the vectorised draw is slower) gives torch.randn's own values, bit
    for bit, and the vectorised check is skipped."""
    import os
    import subprocess
    import sys

    code = ("import torch; from edm_se import noise as N; x = torch.empty(2, 1, 16, 9, dtype=torch.complex128); "
            "a = N.randn_like(x, torch.Generator().manual_seed(5)); "
            "b = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(5)); "
            "print(N._fast_normal_ok(), torch.equal(a, b))")
    out = {}
    for value in ("torch", ""):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "EDM_SE_NORMAL": value})
        assert res.returncode == 0, res.stderr[-1000:]
        out[value] = res.stdout.split()
    assert out["torch"] == ["False", "True"]
    assert out[""][0] == "True"  # unset: the vectorised path (torch.randn's sample to a few ulp)
