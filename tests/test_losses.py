"""Denoising losses: per-example values, zero at the exact denoiser, noise-level distributions, prior matching."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from edm_se import losses as L
from edm_se import precond as P
from edm_se import sde as S
from edm_se.denoiser import Denoiser


class Spy(nn.Module):
    """Denoiser stand-in that records its inputs and returns a fixed residual."""

    def __init__(self, out, precond):
        super().__init__()
        self.out, self.precond = out, precond

    def forward(self, x_tilde, y, sigma):
        self.x_tilde, self.sigma = x_tilde, sigma
        return self.out


def _batch(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, 1, 8, 4, dtype=torch.complex64, generator=g)
    y = x0 + 0.3 * torch.randn(b, 1, 8, 4, dtype=torch.complex64, generator=g)
    return x0, y


def test_exact_denoiser_gives_zero_and_shape_b():
    x0, y = _batch()
    sde = S.OUVE()
    loss = L.DenoisingLoss()(Spy(x0 - y, P.EDM()), sde, x0, y, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (6,)
    assert float(loss.abs().max()) == 0.0


def test_loss_value_is_weighted_mse_and_reproducible():
    x0, y = _batch()
    sde = S.OUVE()
    pc = P.EDM(sigma_data=0.1)
    spy = Spy(torch.zeros_like(x0), pc)
    loss = L.DenoisingLoss()(spy, sde, x0, y, generator=torch.Generator().manual_seed(3))
    expected = pc.loss_weight(spy.sigma).float() * (x0 - y).abs().pow(2).reshape(6, -1).mean(1)
    torch.testing.assert_close(loss, expected)
    again = L.DenoisingLoss()(spy, sde, x0, y, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(loss, again)
    noise = (spy.x_tilde - (x0 - y)) / spy.sigma.float().reshape(-1, 1, 1, 1)
    assert float(noise.abs().pow(2).mean()) == pytest.approx(1.0, abs=0.35)


def test_log_normal_sigma_distribution():
    sde = S.EDM(sigma_max=100.0)
    t = L.LogNormalSigma(p_mean=-1.2, p_std=0.5, t_eps=1e-6).sample(20000, sde, torch.Generator().manual_seed(0))
    log_sigma = torch.log(sde.sigma(t))
    n = t.numel()
    assert float(log_sigma.mean()) == pytest.approx(-1.2, abs=4 * 0.5 / math.sqrt(n))
    assert float(log_sigma.std()) == pytest.approx(0.5, rel=4 * math.sqrt(1 / (2 * n)))
    clipped = L.LogNormalSigma(p_mean=5.0, p_std=0.1).sample(100, S.OUVE(), torch.Generator().manual_seed(0))
    assert float(clipped.max()) <= 1.0


def test_uniform_time_distribution():
    t = L.UniformTime(t_eps=0.03).sample(20000, S.OUVE(), torch.Generator().manual_seed(0))
    assert float(t.min()) >= 0.03 and float(t.max()) <= 1.0
    assert float(t.mean()) == pytest.approx(0.515, abs=4 * 0.28 / math.sqrt(20000))


def test_prior_fraction_trains_at_the_prior():
    """prior_fraction=1: every example at t_max with the residual left out of the input (x_tilde = sigma_max noise)."""
    _, y = _batch(b=8)
    x0 = y + 100.0  # a residual far larger than sigma_max makes its presence obvious
    sde = S.OUCosine(theta=1.0)
    spy = Spy(torch.zeros_like(x0), P.EDM())
    L.DenoisingLoss(prior_fraction=1.0)(spy, sde, x0, y, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(spy.sigma, torch.full((8,), sde.sigma_max, dtype=torch.float64))
    assert float(spy.x_tilde.abs().pow(2).mean().sqrt()) == pytest.approx(sde.sigma_max, rel=0.2)
    plain = Spy(torch.zeros_like(x0), P.EDM())
    L.DenoisingLoss(prior_fraction=0.0, noise_level=_AtMax())(plain, sde, x0, y,
                                                              generator=torch.Generator().manual_seed(0))
    assert float(plain.x_tilde.abs().pow(2).mean().sqrt()) > 90  # the ordinary loss keeps the residual


class _AtMax(L.NoiseLevel):
    def sample(self, batch, sde, generator=None, device=None):
        return torch.full((batch,), sde.t_max, dtype=torch.float64)


def test_weightings():
    sigma = torch.tensor([0.01, 0.1, 1.0], dtype=torch.float64)
    pc = P.EDM(sigma_data=0.1)
    torch.testing.assert_close(L.ConstantWeight(2.0)(sigma, pc), torch.full_like(sigma, 2.0))
    msnr = L.MinSNRWeight(gamma=5.0)(sigma, pc)
    snr = 0.01 / sigma ** 2
    torch.testing.assert_close(msnr, pc.loss_weight(sigma) * torch.clamp(snr, max=5.0) / snr)


def test_gradients_reach_the_network():
    net = nn.Conv2d(4, 2, 3, padding=1)
    den = Denoiser(_Net(net), P.EDM())
    x0, y = _batch(b=2)
    loss = L.DenoisingLoss()(den, S.OUVE(), x0, y, generator=torch.Generator().manual_seed(0)).mean()
    loss.backward()
    assert net.weight.grad is not None and float(net.weight.grad.abs().sum()) > 0


class _Net(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x, c_noise):
        return self.conv(x)
