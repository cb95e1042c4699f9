"""Preconditioning invariants (Monte-Carlo), SGMSE+ recast via Tweedie, channel packing of the Denoiser."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from edm_se import precond as P
from edm_se import sde as S
from edm_se.denoiser import Denoiser

SIGMAS = torch.tensor([0.003, 0.05, 0.1, 0.4, 2.0], dtype=torch.float64)


def test_edm_scalings_give_unit_variance_inputs_and_targets():
    """Karras et al. Appendix B.6: var(c_in x_tilde) = 1, var(target of F) = 1, lambda c_out^2 = 1."""
    sd = 0.1
    pc = P.EDM(sigma_data=sd)
    g = torch.Generator().manual_seed(0)
    n = 200000
    r = sd * torch.randn(n, dtype=torch.float64, generator=g)
    noise = torch.randn(n, dtype=torch.float64, generator=g)
    tol = 4 * math.sqrt(2 / n) + 1e-3
    for sigma in SIGMAS:
        x = r + sigma * noise
        assert float((pc.c_in(sigma) * x).var()) == pytest.approx(1, rel=tol)
        target = (r - pc.c_skip(sigma) * x) / pc.c_out(sigma)
        assert float(target.var()) == pytest.approx(1, rel=tol)
        assert float(pc.loss_weight(sigma) * pc.c_out(sigma) ** 2) == pytest.approx(1, rel=1e-12)
    assert torch.all(pc.c_shift(torch.ones(3), SIGMAS[:1]) == 0)


class ScoreNet(nn.Module):
    """Fake backbone returning F = -t * (true score of x_t) for Gaussian residuals N(m, V) (real channels)."""

    def __init__(self, sde, m, v):
        super().__init__()
        self.sde, self.m, self.v = sde, m, v
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x, c_noise):
        t = torch.exp(c_noise.double()).reshape(-1, 1)
        x_t, y = x[:, 0:1].double().flatten(1), x[:, 1:2].double().flatten(1)
        s, sigma = self.sde.s(t), self.sde.sigma(t)
        score = -(x_t - self.sde.center(y, t.flatten()) - s * self.m) / (s ** 2 * (self.v + sigma ** 2))
        return (-t * score).reshape(x[:, 0:1].shape)


@pytest.mark.parametrize("sde", [S.OUVE(), S.SBVP()], ids=["ouve", "sbvp"])
def test_sgmse_precond_recovers_the_tweedie_denoiser(sde):
    """With a network that outputs -t * score (SGMSE+ convention) of the x_t it reads, D equals E[x0 - y | x_tilde]
    exactly; on SBVP the network reads x_t = m y + s x_tilde (c_shift = m y), so its score is of the true x_t."""
    m, v = 0.2, 0.01
    den = Denoiser(ScoreNet(sde, m, v), P.SGMSE(sde=sde))
    g = torch.Generator().manual_seed(0)
    y = torch.randn(5, 1, 16, dtype=torch.float64, generator=g)
    x_tilde = torch.randn(5, 1, 16, dtype=torch.float64, generator=g)
    sigma = sde.sigma(torch.tensor([0.1, 0.3, 0.5, 0.8, 1.0], dtype=torch.float64) * sde.t_max)
    expected = m + v / (v + sigma.reshape(-1, 1, 1) ** 2) * (x_tilde - m)
    torch.testing.assert_close(den(x_tilde, y, sigma), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sde", [S.OUVE(), S.SBVP()], ids=["ouve", "sbvp"])
def test_sgmse_weight_equals_score_matching_objective(sde):
    """1/sigma^2 |D - r|^2 == |std * score + z|^2 (Richter et al. 2023, eq. 8)."""
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    r, z, D, y = (torch.randn(2, 8, dtype=torch.float64, generator=g) for _ in range(4))
    sigma, s = sde.sigma(t)[:, None], sde.s(t)[:, None]
    x_t = sde.center(y, t) + s * (r + sigma * z)
    score = sde.score(x_t, y, y + D, t)
    lhs = P.SGMSE(sde=sde).loss_weight(sigma) * (D - r) ** 2
    torch.testing.assert_close(lhs, (sde.std(t)[:, None] * score + z) ** 2)


def test_scaled_shift_and_hybrid_take_the_right_terms():
    sde = S.OUVE()
    y = torch.randn(2, 1, 4, 4)
    sigma = torch.tensor([0.1, 0.5], dtype=torch.float64)
    ss = P.EDMScaledShift(sigma_data=0.1, shift=1.0)
    torch.testing.assert_close(ss.c_shift(y, sigma), ss.c_in(sigma).float().reshape(2, 1, 1, 1) * y)
    hy = P.Hybrid(sde=sde, base=P.EDM(sigma_data=0.1), c_noise=lambda sde: P.SGMSE(sde=sde))
    torch.testing.assert_close(hy.c_noise(sigma), torch.log(sde.sigma_inv(sigma)))
    torch.testing.assert_close(hy.c_out(sigma), P.EDM(sigma_data=0.1).c_out(sigma))
    with pytest.raises(ValueError):
        P.SGMSE()


class Echo(nn.Module):
    """Returns its first two input channels (complex) or the first (real): exposes the Denoiser's packing."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x, c_noise):
        self.last_c_noise = c_noise
        return x[:, :2] * self.w if x.shape[1] == 4 else x[:, :1] * self.w


def test_denoiser_packs_complex_channels():
    pc = P.EDMScaledShift(sigma_data=0.1)
    den = Denoiser(Echo(), pc)
    x = torch.randn(2, 1, 6, 4, dtype=torch.complex64)
    y = torch.randn(2, 1, 6, 4, dtype=torch.complex64)
    sigma = torch.tensor([0.2, 0.7], dtype=torch.float64)
    out = den(x, y, sigma)
    b = lambda v: v.float().reshape(2, 1, 1, 1)  # noqa: E731
    net_in = b(pc.c_in(sigma)) * x + pc.c_shift(y, sigma)
    torch.testing.assert_close(out, b(pc.c_skip(sigma)) * x + b(pc.c_out(sigma)) * net_in)
    torch.testing.assert_close(den.net.last_c_noise, pc.c_noise(sigma).float())
    assert out.dtype == torch.complex64
    real = den(x.real.contiguous(), y.real.contiguous(), 0.3)
    assert real.shape == x.shape and real.dtype == torch.float32


def test_denoise_and_score_consistency():
    sde = S.OUCosine(theta=1.0)
    den = Denoiser(Echo(), P.EDM(sigma_data=0.1))
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64).float()
    y = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64).float()
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    x0_hat = den.denoise(x_t, y, t, sde)
    s = sde.s(t).float().reshape(3, 1, 1, 1)
    torch.testing.assert_close(x0_hat, y + den((x_t - y) / s, y, sde.sigma(t)))
    score = den.score(x_t, y, t, sde)
    std = sde.std(t).float().reshape(3, 1, 1, 1)
    torch.testing.assert_close(score, -(x_t - y - s * (x0_hat - y)) / std ** 2)


class EchoY(nn.Module):
    """Returns the conditioner channels: [Re y, Im y] (complex packing) or y (real packing)."""

    def forward(self, x, c_noise):
        half = x.shape[1] // 2
        return x[:, 2:4] if x.shape[1] == 4 else x[:, half:]


def test_denoiser_passes_y_as_the_conditioning_channels():
    """The backbone must see y itself (real then imaginary part, after the noisy input's channels): swapping,
    dropping or conjugating y changes the output."""
    pc = P.EDM(sigma_data=0.1)  # c_shift = 0, so y reaches the net only through its own channels
    den = Denoiser(EchoY(), pc)
    x = torch.randn(2, 1, 6, 4, dtype=torch.complex64)
    y = torch.randn(2, 1, 6, 4, dtype=torch.complex64)
    sigma = torch.tensor([0.2, 0.7], dtype=torch.float64)
    b = lambda v: v.float().reshape(2, 1, 1, 1)  # noqa: E731
    torch.testing.assert_close(den(x, y, sigma), b(pc.c_skip(sigma)) * x + b(pc.c_out(sigma)) * y)
    assert not torch.allclose(den(x, y.conj(), sigma), den(x, y, sigma))
    xr, yr = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    torch.testing.assert_close(den(xr, yr, sigma), b(pc.c_skip(sigma)).reshape(2, 1, 1) * xr
                               + b(pc.c_out(sigma)).reshape(2, 1, 1) * yr)
