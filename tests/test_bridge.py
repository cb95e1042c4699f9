"""The Schrödinger bridges in the signal model: SBVE checked against sgmse's own code (its PyPI wheel), SBVP against
the closed forms of Jukić et al. (2024, Table 1 and eq. 11, 19), transcribed here as NeMo's SBNoiseScheduleVP and
SBSampler write them (NeMo is not installed here)."""

from __future__ import annotations

import pytest
import torch

from edm_se import samplers as SM
from edm_se import sde as S
from sgmse_reference import sgmse_module

GRID = torch.linspace(1e-3, 0.995, 200, dtype=torch.float64)


def _sgmse_sbve(k=2.6, c=0.4):
    return sgmse_module("sdes").SBVESDE(k=k, c=c, eps=0.0)


@pytest.mark.parametrize("k,c", [(2.6, 0.4), (1.5, 1.2)])
def test_sbve_marginal_equals_sgmse_closed_form_on_a_grid(k, c):
    # sgmse builds log(k) and sigma_T as float32 tensors (torch.tensor(k)), and near t = 1 the closed form cancels
    # (sigma_T^2 - sigma_t^2), which turns float32 rounding into 1e-5 relative, by an amount that depends on the
    # CPU's float32 log. With float64 as torch's default dtype the same sgmse code evaluates its formula in double
    # precision, so both sides must agree to double precision.
    ours, theirs = S.SBVE(k=k, c=c), _sgmse_sbve(k, c)
    one, zero = torch.ones(GRID.numel(), 1, 1, 1, dtype=torch.float64), torch.zeros(GRID.numel(), 1, 1, 1,
                                                                                    dtype=torch.float64)
    tol = {"rtol": 1e-9, "atol": 1e-12}
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        mean_x, mean_y, std = theirs._mean(one, zero, GRID), theirs._mean(zero, one, GRID), theirs._std(GRID)
        sigma_t, sigma_T, sigma_bart = theirs._sigmas_alphas(GRID)[:3]
    finally:
        torch.set_default_dtype(default)
    torch.testing.assert_close(ours.mean(one, zero, GRID), mean_x, **tol)  # w_x(t)
    torch.testing.assert_close(ours.mean(zero, one, GRID), mean_y, **tol)  # w_y(t)
    torch.testing.assert_close(ours.std(GRID), std, **tol)
    torch.testing.assert_close(ours.v(GRID), sigma_t ** 2, **tol)
    torch.testing.assert_close(ours.v_bar(GRID), sigma_bart ** 2, **tol)
    _, g = theirs.sde(None, None, GRID)
    torch.testing.assert_close(ours.g(GRID), g.to(torch.float64), rtol=1e-6, atol=0)  # theirs: sqrt in float32
    assert float(ours.std(torch.tensor(1.0 - 1e-12, dtype=torch.float64))) < 1e-5  # the bridge ends at y


class _Fixed:
    """A denoiser returning a fixed residual estimate (the sampler's ``D - y``)."""

    def __init__(self, d):
        self.d = d

    def __call__(self, x_tilde, y, sigma):
        return self.d


@pytest.mark.parametrize("t_cur,t_next", [(0.999, 0.9), (0.6, 0.45), (0.2, 0.01)])
def test_posterior_step_is_the_sb_sde_update_of_sgmse(t_cur, t_next):
    ours, theirs = S.SBVE(), _sgmse_sbve()
    gen = torch.Generator().manual_seed(0)
    y, x, est = (torch.randn(2, 1, 4, 3, dtype=torch.complex128, generator=gen) for _ in range(3))
    tc, tn = torch.tensor(t_cur, dtype=torch.float64), torch.tensor(t_next, dtype=torch.float64)
    den = SM._Counted(_Fixed(est - y), ours, y)
    x_next = SM.Posterior(1)._step(den, ours, y, x, tc, tn, torch.Generator().manual_seed(7))
    z = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(7))  # the same draw
    sig_c, sig_n = (theirs._sigmas_alphas(t.reshape(1))[0] for t in (tc, tn))
    w_prev = sig_n ** 2 / sig_c ** 2  # sgmse get_sb_sampler(sampler_type="sde"), VE: alpha = 1
    tmp = 1 - sig_n ** 2 / sig_c ** 2
    expected = w_prev * x + tmp * est + sig_n * torch.sqrt(tmp) * z
    torch.testing.assert_close(x_next, expected, rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("t_cur,t_next", [(0.99, 0.9), (0.6, 0.45), (0.2, 0.01)])
def test_euler_step_is_the_sb_ode_update_of_sgmse(t_cur, t_next):
    ours, theirs = S.SBVE(), _sgmse_sbve()
    gen = torch.Generator().manual_seed(1)
    y, x, est = (torch.randn(2, 1, 4, 3, dtype=torch.complex128, generator=gen) for _ in range(3))
    tc, tn = torch.tensor(t_cur, dtype=torch.float64), torch.tensor(t_next, dtype=torch.float64)
    x_next = SM.Euler(1)._step(SM._Counted(_Fixed(est - y), ours, y), ours, y, x, tc, tn, None)
    (sp, sT, sbp), (st, _, sbt) = (theirs._sigmas_alphas(t.reshape(1))[:3] for t in (tc, tn))
    w_prev = st * sbt / (sp * sbp)  # sgmse get_sb_sampler(sampler_type="ode"), VE: alpha = 1
    w_est = (sbt ** 2 - sbp * st * sbt / sp) / sT ** 2
    w_y = (st ** 2 - sp * st * sbt / sbp) / sT ** 2
    torch.testing.assert_close(x_next, w_prev * x + w_est * est + w_y * y, rtol=2e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------------- SB over VP
class _PaperVP:
    """Jukić et al. (2024) Table 1, VP row: f = -beta / 2, g^2 = c beta, alpha_t = exp(-int beta / 2), sigma_t^2 =
    c (exp(int beta) - 1); bars: alpha_bar = alpha_t / alpha_1, sigma_bar^2 = sigma_1^2 - sigma_t^2 (below eq. 9)."""

    def __init__(self, beta_0, beta_1, c):
        self.b0, self.b1, self.c = beta_0, beta_1, c

    def alpha(self, t):
        return torch.exp(-0.5 * (self.b0 * t + 0.5 * (self.b1 - self.b0) * t ** 2))

    def sigma(self, t):
        return torch.sqrt(self.c * (torch.exp(self.b0 * t + 0.5 * (self.b1 - self.b0) * t ** 2) - 1))

    def bars(self, t):
        one = torch.ones_like(t)
        a, a1, sg, s1 = self.alpha(t), self.alpha(one), self.sigma(t), self.sigma(one)
        return a, a1, sg, s1, a / a1, torch.sqrt(s1 ** 2 - sg ** 2)


VP_PARAMS = [(0.01, 20.0, 0.4), (0.1, 1.0, 0.5)]  # this lab's defaults; NeMo's test values


@pytest.mark.parametrize("b0,b1,c", VP_PARAMS)
def test_sbvp_marginal_equals_the_papers_closed_form_on_a_grid(b0, b1, c):
    """eq. 11: x_t = alpha sigma_bar^2 / sigma_1^2 x0 + alpha_bar sigma^2 / sigma_1^2 y + alpha sigma_bar sigma /
    sigma_1 z; and its weights of x0 and y do not sum to one (why SBVP needs the centre weight m)."""
    ours, paper = S.SBVP(beta_0=b0, beta_1=b1, c=c), _PaperVP(b0, b1, c)
    a, a1, sg, s1, abar, sbar = paper.bars(GRID)
    one, zero = torch.ones(GRID.numel(), 1, 1, 1, dtype=torch.float64), torch.zeros(GRID.numel(), 1, 1, 1,
                                                                                    dtype=torch.float64)
    w_x, w_y, std = a * sbar ** 2 / s1 ** 2, abar * sg ** 2 / s1 ** 2, a * sbar * sg / s1
    tol = {"rtol": 1e-9, "atol": 1e-12}
    torch.testing.assert_close(ours.mean(one, zero, GRID).flatten(), w_x, **tol)
    torch.testing.assert_close(ours.mean(zero, one, GRID).flatten(), w_y, **tol)
    torch.testing.assert_close(ours.std(GRID), std, **tol)
    torch.testing.assert_close(ours.alpha(GRID), a, **tol)
    torch.testing.assert_close(ours.v(GRID), sg ** 2, **tol)
    torch.testing.assert_close(ours.v_bar(GRID), sbar ** 2, **tol)
    torch.testing.assert_close(ours.g(GRID), torch.sqrt(c * (b0 + GRID * (b1 - b0))), **tol)
    assert float((w_x + w_y - 1).abs().max()) > 5e-3  # not the unit-centre signal model (0.84 and 0.0094 here)
    assert float(ours.std(torch.tensor(1.0 - 1e-12, dtype=torch.float64))) < 1e-4  # the bridge ends at y


def test_sbvp_sigma_inverse_with_beta_0_zero():
    """beta_0 = 0 is allowed: sigma_inv(sigma(t)) = t down to t = 0 (no 0 / 0 at sigma = 0)."""
    sde = S.SBVP(beta_0=0.0, beta_1=5.0)
    t = torch.linspace(0.0, sde.t_max, 11, dtype=torch.float64)
    torch.testing.assert_close(sde.sigma_inv(sde.sigma(t)), t, rtol=0, atol=1e-9)
    with pytest.raises(ValueError):
        S.SBVP(beta_0=1.0, beta_1=1.0)


@pytest.mark.parametrize("b0,b1,c", VP_PARAMS)
def test_sbvp_forward_sde_is_the_h_transform_of_the_vp_reference(b0, b1, c):
    """Pinning the reference dx = -beta/2 x dt + g dw at y (t = 1) adds g^2 grad log p(y | x_t) = g^2 (y / alpha_1
    - x / alpha_t) / (alpha_t sigma_bar_t^2) to its drift: our dx = [m' y - f (x - m y)] dt + g dw must have the same
    coefficients of x and of y."""
    ours, paper = S.SBVP(beta_0=b0, beta_1=b1, c=c), _PaperVP(b0, b1, c)
    a, a1, _, _, _, sbar = paper.bars(GRID)
    g2 = c * (b0 + GRID * (b1 - b0))
    coef_x = -0.5 * (b0 + GRID * (b1 - b0)) - g2 / (a ** 2 * sbar ** 2)
    coef_y = g2 / (a * a1 * sbar ** 2)
    torch.testing.assert_close(-ours.f(GRID), coef_x, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.m_dot(GRID) + ours.f(GRID) * ours.m(GRID), coef_y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("t_cur,t_next", [(0.999, 0.9), (0.6, 0.45), (0.2, 0.01)])
def test_posterior_step_on_sbvp_is_the_sb_sde_update(t_cur, t_next):
    """Jukić et al. eq. 19 (NeMo SBSampler, process="sde"): x_n = alpha_n sigma_n^2 / (alpha_c sigma_c^2) x_c +
    alpha_n (1 - sigma_n^2 / sigma_c^2) x0_hat + alpha_n sigma_n sqrt(1 - sigma_n^2 / sigma_c^2) z."""
    ours, paper = S.SBVP(), _PaperVP(0.01, 20.0, 0.4)
    gen = torch.Generator().manual_seed(0)
    y, x, est = (torch.randn(2, 1, 4, 3, dtype=torch.complex128, generator=gen) for _ in range(3))
    tc, tn = torch.tensor(t_cur, dtype=torch.float64), torch.tensor(t_next, dtype=torch.float64)
    x_next = SM.Posterior(1)._step(SM._Counted(_Fixed(est - y), ours, y), ours, y, x, tc, tn,
                                   torch.Generator().manual_seed(7))
    z = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(7))  # the same draw
    (ac, sc), (an, sn) = ((paper.alpha(t), paper.sigma(t)) for t in (tc, tn))
    tmp = 1 - sn ** 2 / sc ** 2
    expected = an * sn ** 2 / (ac * sc ** 2) * x + an * tmp * est + an * sn * torch.sqrt(tmp) * z
    torch.testing.assert_close(x_next, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("t_cur,t_next", [(0.99, 0.9), (0.6, 0.45), (0.2, 0.01)])
def test_euler_step_on_sbvp_is_the_sb_ode_update(t_cur, t_next):
    """NeMo SBSampler, process="ode" (Jukić et al. Sec. 2.3, first order): weights of x_c, x0_hat and the prior mean
    y from alpha, sigma and sigma_bar at both times."""
    ours, paper = S.SBVP(), _PaperVP(0.01, 20.0, 0.4)
    gen = torch.Generator().manual_seed(1)
    y, x, est = (torch.randn(2, 1, 4, 3, dtype=torch.complex128, generator=gen) for _ in range(3))
    tc, tn = torch.tensor(t_cur, dtype=torch.float64), torch.tensor(t_next, dtype=torch.float64)
    x_next = SM.Euler(1)._step(SM._Counted(_Fixed(est - y), ours, y), ours, y, x, tc, tn, None)
    ap, a1, sp, s1, _, sbp = paper.bars(tc)
    at, _, st, _, _, sbt = paper.bars(tn)
    w_prev = at * st * sbt / (ap * sp * sbp)
    w_est = at / s1 ** 2 * (sbt ** 2 - sbp * st * sbt / sp)
    w_y = at / (a1 * s1 ** 2) * (st ** 2 - sp * st * sbt / sbp)
    torch.testing.assert_close(x_next, w_prev * x + w_est * est + w_y * y, rtol=1e-9, atol=1e-12)


def test_denoiser_reads_the_sbvp_residual_from_the_centre():
    """Denoiser.denoise and score on SBVP: the network sees x_tilde = (x_t - m y) / s = x0 - y + sigma z, and the
    clean estimate is y + D."""
    from edm_se.denoiser import Denoiser

    class Spy(Denoiser):
        def forward(self, x_tilde, y, sigma):
            self.seen = x_tilde
            return torch.zeros_like(x_tilde)

    sde = S.SBVP()
    gen = torch.Generator().manual_seed(4)
    x0, y, z = (torch.randn(3, 1, 4, 5, dtype=torch.complex128, generator=gen) for _ in range(3))
    t = torch.tensor([0.3, 0.7, 0.95], dtype=torch.float64)
    den = Spy(torch.nn.Identity(), None)
    x_t = sde.perturb(x0, y, t, z)
    torch.testing.assert_close(den.denoise(x_t, y, t, sde), y)
    torch.testing.assert_close(den.seen, x0 - y + sde.sigma(t).reshape(-1, 1, 1, 1) * z, rtol=1e-9, atol=1e-9)
    # with D = 0 the mean is m y + s (y + D - y) = m y, so the score is -(x_t - m y) / std^2
    torch.testing.assert_close(den.score(x_t, y, t, sde),
                               -(x_t - sde.center(y, t)) / sde.std(t).reshape(-1, 1, 1, 1) ** 2)


def _ancestral_std(sde, n: int, tau2: float) -> float:
    """Exact std of N-step ancestral sampling with the exact denoiser for x0 - y ~ N(mu, tau2): the variance
    recursion of x_tilde through the posterior steps (it undershoots tau, as ancestral sampling with a point
    estimate does, and reaches tau as N grows)."""
    from edm_se.schedules import Uniform

    sig = [float(v) for v in sde.sigma(Uniform()(n, sde))]
    var = sig[0] ** 2  # the prior
    for sc, sn in zip(sig[:n - 1], sig[1:n]):
        rho = sn ** 2 / sc ** 2
        a = (1 - rho) * tau2 / (tau2 + sc ** 2) + rho  # x_tilde_n = (1 - rho) D(x_tilde_c) + rho x_tilde_c + noise
        var = a * a * var + sn ** 2 * (1 - rho)
    return (tau2 / (tau2 + sig[n - 1] ** 2)) * var ** 0.5  # the last step returns D


@pytest.mark.parametrize("n", [16, 200])
@pytest.mark.parametrize("bridge", ["sbve", "sbvp"])
def test_posterior_sampler_on_the_bridge_matches_the_exact_ancestral_recursion(n, bridge):
    """Gaussian data x0 - y ~ N(mu, tau^2), the exact denoiser, 20000 samples: mean mu, and the std the exact
    recursion predicts (SBVE: 0.237 at N = 16, 0.289 at N = 200, toward tau = 0.3). On SBVP y is not zero, so a
    wrong centre m(t) y would move the mean."""
    sde = S.SBVE() if bridge == "sbve" else S.SBVP()
    mu, tau = 0.7, 0.3
    y = torch.zeros(20000, dtype=torch.float64) if bridge == "sbve" else torch.full((20000,), 0.5, dtype=torch.float64)

    def exact(x_tilde, y_, sigma):  # E[x0 - y | x_tilde] for x0 - y ~ N(mu, tau^2)
        s2 = sigma.reshape(-1, *([1] * (x_tilde.ndim - 1))) ** 2
        return (tau ** 2 * x_tilde + s2 * mu) / (tau ** 2 + s2)

    out = SM.Posterior(n)(exact, sde, y, generator=torch.Generator().manual_seed(3))
    assert out.nfe == n
    expected = _ancestral_std(sde, n, tau ** 2)
    assert abs(float((out.x0_hat - y).mean()) - mu) < 0.01  # standard error 0.002
    assert abs(float(out.x0_hat.std()) - expected) < 0.006  # standard error 0.0015
    assert (expected < tau - 0.05) if n == 16 else (tau - 0.015 < expected < tau)
    again = SM.Posterior(n)(exact, sde, y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.x0_hat, again.x0_hat)


# ----------------------------------------------------------------------------------------------- flow matching
@pytest.mark.parametrize("sigma_min", [0.0, 0.2])
def test_flow_matching_marginal_is_the_straight_path(sigma_min):
    sde = S.FlowMatching(sigma_max=0.5, sigma_min=sigma_min)
    x0 = torch.randn(GRID.numel(), 1, 3, 2, dtype=torch.float64)
    y = torch.randn_like(x0)
    t = GRID.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(sde.mean(x0, y, GRID), (1 - t) * x0 + t * y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sde.std(GRID), (1 - GRID) * sigma_min + GRID * 0.5, rtol=1e-12, atol=1e-12)
    noise = torch.randn_like(x0)
    torch.testing.assert_close(sde.perturb(x0, y, GRID, noise), (1 - t) * x0 + t * y + (
        (1 - t) * sigma_min + t * 0.5) * noise, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_flow_matching_ode_step_is_the_conditional_flow_euler_update(sampler):
    """dx/dt = y - x0 + (sigma_max - sigma_min) eps (the conditional vector field of flow matching, with the
    denoiser's x0 and eps = (x - mu_t) / sigma_t); a fixed estimate makes the path straight, so Euler and Heun
    both land on it exactly."""
    sde = S.FlowMatching(sigma_max=0.5, sigma_min=0.1)
    gen = torch.Generator().manual_seed(2)
    y, x, est = (torch.randn(2, 1, 4, 3, dtype=torch.float64, generator=gen) for _ in range(3))
    tc, tn = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    step = (SM.Euler(1) if sampler == "euler" else SM.EDMHeun(1))._step
    x_next = step(SM._Counted(_Fixed(est - y), sde, y), sde, y, x, tc, tn, None)
    eps = (x - ((1 - tc) * est + tc * y)) / sde.std(tc)
    torch.testing.assert_close(x_next, x + (tn - tc) * (y - est + (0.5 - 0.1) * eps), rtol=1e-12, atol=1e-12)
