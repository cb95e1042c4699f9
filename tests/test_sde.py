"""SDE invariants by autograd, closed forms against the papers, marginals against Euler-Maruyama simulation."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import SDES

from edm_se import sde as S



def _grid(sde, n=9):
    return torch.linspace(0.02, sde.t_max, n, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("name", SDES)
def test_sigma_squared_derivative_is_g2_over_s2(name):
    sde = SDES[name]()
    t = _grid(sde)
    (dsig2,) = torch.autograd.grad((sde.sigma(t) ** 2).sum(), t)
    expected = (sde.g(t) ** 2 / sde.s(t) ** 2).detach()
    torch.testing.assert_close(dsig2, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", SDES)
def test_drift_rate_is_minus_dlog_s(name):
    sde = SDES[name]()
    t = _grid(sde)
    (dlog_s,) = torch.autograd.grad((torch.log(sde.s(t)) + 0 * t).sum(), t)
    torch.testing.assert_close(-dlog_s, sde.f(t).detach(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", SDES)
def test_center_weight_rate_by_autograd_and_its_end_values(name):
    """m' by autograd equals m_dot; m(0) = 1 (the process starts at x0); m = 1 wherever unit_center claims it."""
    sde = SDES[name]()
    t = _grid(sde)
    (dm,) = torch.autograd.grad((sde.m(t) + 0 * t).sum(), t)
    torch.testing.assert_close(dm, sde.m_dot(t).detach(), rtol=1e-9, atol=1e-12)
    assert float(sde.m(torch.tensor(0.0, dtype=torch.float64))) == pytest.approx(1.0, abs=1e-15)
    y = torch.randn(3, 2, dtype=torch.float64)
    if sde.unit_center:
        assert sde.center(y, 0.5) is y and torch.all(sde.m(t.detach()) == 1)
    else:
        torch.testing.assert_close(sde.center(y, 0.5), float(sde.m(torch.tensor(0.5, dtype=torch.float64))) * y)


@pytest.mark.parametrize("name", SDES)
def test_sigma_inverse_and_boundary_values(name):
    sde = SDES[name]()
    t = torch.linspace(0.0, sde.t_max, 11, dtype=torch.float64)
    torch.testing.assert_close(sde.sigma_inv(sde.sigma(t)), t, rtol=0, atol=1e-9)
    assert float(sde.sigma(torch.tensor(0.0, dtype=torch.float64))) == 0.0
    assert float(sde.s(torch.tensor(0.0, dtype=torch.float64))) == 1.0
    assert torch.all(torch.diff(sde.sigma(t)) > 0), "sigma must increase with t"


def test_ouve_std_matches_sgmse_closed_form():
    sde = S.OUVE(theta=1.5, sigma_min=0.05, sigma_max=0.5)
    t = torch.linspace(0, 1, 21, dtype=torch.float64)
    lr = math.log(0.5 / 0.05)
    var = 0.05 ** 2 * ((0.5 / 0.05) ** (2 * t) - torch.exp(-2 * 1.5 * t)) * lr / (1.5 + lr)
    torch.testing.assert_close(sde.std(t), torch.sqrt(var), rtol=1e-12, atol=1e-14)


def test_ouve_decoupled_sigma_does_not_depend_on_theta():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    a, b = S.OUVEDecoupled(theta=0.0), S.OUVEDecoupled(theta=3.0)
    torch.testing.assert_close(a.sigma(t), b.sigma(t))
    assert not torch.allclose(a.s(t[1:]), b.s(t[1:]))


def test_bbed_variance_matches_quadrature():
    """BBED's closed form (with E1) against direct numerical integration of int c^2 k^(2u) / (1-u)^2 du."""
    sde = S.BBED(k=2.6, c=0.51)
    for t in (0.1, 0.5, 0.9, 0.999):
        # substitute v = -log(1 - u) (du = (1 - u) dv) so the integrand stays smooth up to t = 0.999
        v = torch.linspace(0, -math.log(1 - t), 200001, dtype=torch.float64)
        u = 1 - torch.exp(-v)
        integrand = 0.51 ** 2 * 2.6 ** (2 * u) / (1 - u)
        quad = torch.trapezoid(integrand, v)
        assert float(sde.sigma(torch.tensor(t, dtype=torch.float64)) ** 2) == pytest.approx(float(quad), rel=1e-6)


def test_vp_matches_karras_table1():
    sde = S.VP(beta_min=0.1, beta_d=19.9)
    t = torch.linspace(0.01, 1, 7, dtype=torch.float64)
    sigma = torch.sqrt(torch.exp(0.5 * 19.9 * t ** 2 + 0.1 * t) - 1)
    torch.testing.assert_close(sde.sigma(t), sigma)
    torch.testing.assert_close(sde.s(t), 1 / torch.sqrt(1 + sigma ** 2))


@pytest.mark.parametrize("name", SDES)
def test_marginal_matches_euler_maruyama_simulation(name):
    """Simulate dx = [m' y - f (x - m y)] dt + g dw (m = 1: dx = f (y - x) dt + g dw) from x0 and compare the
    sample mean and std at t with mean(), std().

    Tolerances come from the sample size: the mean's standard error is std / sqrt(n); the std's is std / sqrt(2n);
    the time step adds an O(dt) bias, bounded here by simulating with 2000 steps."""
    sde = SDES[name]()
    gen = torch.Generator().manual_seed(0)
    n, steps = 20000, 2000
    t_end = 0.7 * sde.t_max
    x0, y = 0.3, -0.2
    x = torch.full((n,), x0, dtype=torch.float64)
    ts = torch.linspace(0, t_end, steps + 1, dtype=torch.float64)
    for i in range(steps):
        t, dt = ts[i], ts[i + 1] - ts[i]
        drift = sde.m_dot(t) * y + sde.f(t) * (sde.m(t) * y - x)
        x = x + drift * dt + sde.g(t) * torch.sqrt(dt) * torch.randn(n, dtype=torch.float64, generator=gen)
    mean = float(sde.mean(torch.tensor([x0], dtype=torch.float64), torch.tensor([y], dtype=torch.float64), t_end))
    std = float(sde.std(torch.tensor(t_end, dtype=torch.float64)))
    assert abs(float(x.mean()) - mean) < 4 * std / math.sqrt(n) + 2e-3 * (abs(x0) + abs(y))
    assert abs(float(x.std()) - std) < 4 * std / math.sqrt(2 * n) + 5e-3 * std


@pytest.mark.parametrize("name", SDES)
def test_perturb_and_prior_shapes_and_complex_noise(name):
    sde = SDES[name]()
    gen = torch.Generator().manual_seed(1)
    y = torch.zeros(4000, 1, 2, 2, dtype=torch.complex64)
    prior = sde.prior(y, generator=gen)
    assert prior.shape == y.shape and prior.dtype == y.dtype
    # E|noise|^2 = 1 for complex noise, so E|x_T - y|^2 = std(t_max)^2
    std = float(sde.std(torch.tensor(sde.t_max, dtype=torch.float64)))
    measured = float((prior - y).abs().pow(2).mean().sqrt())
    assert measured == pytest.approx(std, rel=0.03)
    x0 = torch.ones_like(y)
    t = torch.full((4000,), 0.5, dtype=torch.float64)
    xt = sde.perturb(x0, y, t, torch.zeros_like(y))
    torch.testing.assert_close(xt, sde.mean(x0, y, t))


def test_invalid_parameters_raise():
    with pytest.raises(ValueError):
        S.OUVE(sigma_min=0.5, sigma_max=0.05)
    with pytest.raises(ValueError):
        S.BBED(t_max=1.0)
    with pytest.raises(ValueError):
        S.OUCosine(theta=-1)
