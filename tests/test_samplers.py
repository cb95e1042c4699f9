"""Samplers against exact denoisers: Karras Alg. 1 transcription, convergence order, distributions, NFE counts."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import SDES

from edm_se import sde as S
from edm_se import samplers as SM
from edm_se import schedules as SC

V = 0.01  # variance of the Gaussian residual x0 - y per element


class GaussianOracle:
    """Exact denoiser for residuals r = x0 - y ~ N(m, V): E[r | r + sigma n] = m + V / (V + sigma^2) (x - m)."""

    def __init__(self, m: torch.Tensor) -> None:
        self.m = m
        self.calls = 0

    def __call__(self, x_tilde, y, sigma):
        self.calls += 1
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, *([1] * (x_tilde.ndim - 1)))
        return self.m + V / (V + sigma ** 2) * (x_tilde - self.m)


def _problem(sde, t_start, batch=1, n=256, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    y = 0.3 * torch.randn(batch, n, dtype=dtype, generator=g)
    m = 0.1 * torch.randn(1, n, dtype=dtype, generator=g)
    t0 = torch.tensor(t_start * sde.t_max, dtype=torch.float64)
    sig0, s0 = float(sde.sigma(t0)), float(sde.s(t0))
    x_tilde_T = m + math.sqrt(V + sig0 ** 2) * torch.randn(batch, n, dtype=dtype, generator=g)
    exact = m + (x_tilde_T - m) * math.sqrt(V / (V + sig0 ** 2))  # PF-ODE solution at sigma = 0
    return y, m, sde.center(y, t0) + s0 * x_tilde_T, exact


@pytest.mark.parametrize("in_sigma", [True, False], ids=["in_sigma", "in_t"])
@pytest.mark.parametrize("t_start", [1.0, 0.5])
@pytest.mark.parametrize("name", SDES)
def test_ode_samplers_converge_at_their_order(name, t_start, in_sigma):
    sde = SDES[name]()
    y, m, x_init, exact = _problem(sde, t_start)
    orders = {}
    karras = SC.Karras(sigma_min=1e-4)
    for label, make in (("heun", lambda n: SM.EDMHeun(n, schedule=karras, steps_in_sigma=in_sigma)),
                        ("euler", lambda n: SM.Euler(n, schedule=karras, steps_in_sigma=in_sigma))):
        errs = []
        for n in (32, 64):
            out = make(n)(GaussianOracle(m), sde, y, x_init=x_init, t_start=t_start)
            errs.append(float((out.x0_hat - y - exact).abs().max()))
        orders[label] = math.log2(errs[0] / errs[1])
    assert orders["heun"] > 1.6, orders
    assert 0.7 < orders["euler"] < 1.5, orders


@pytest.mark.parametrize("name", ["oucosine", "vp", "bbed"])
def test_steps_in_sigma_are_accurate_with_few_steps_on_stiff_schedules(name):
    """With 4 Euler steps, stepping in sigma stays close to the exact ODE solution where stepping in t overshoots."""
    sde = SDES[name]()
    y, m, x_init, exact = _problem(sde, 1.0)
    err = {}
    for in_sigma in (True, False):
        out = SM.Euler(4, schedule=SC.Karras(sigma_min=0.01), steps_in_sigma=in_sigma)(GaussianOracle(m), sde, y,
                                                                                       x_init=x_init)
        err[in_sigma] = float((out.x0_hat - y - exact).abs().pow(2).mean().sqrt())
    assert err[True] < 0.5 * err[False], err


def test_heun_is_karras_algorithm_1():
    """EDM SDE + Karras schedule + EDMHeun(s_churn=0) against a hand-written transcription of Karras et al. Alg. 1."""
    sde = S.EDM(sigma_max=2.0)
    y, m, x_init, _ = _problem(sde, 1.0, batch=2, n=64)
    oracle = GaussianOracle(m)
    n, sigma_min, sigma_max, rho = 7, 0.002, 2.0, 7.0
    out = SM.EDMHeun(n, schedule=SC.Karras(sigma_min=sigma_min, rho=rho))(oracle, sde, y, x_init=x_init)

    def D(x, sigma):  # absolute denoiser D(x; sigma) of Alg. 1 (s = 1, so x_tilde = x - y)
        return y + oracle(x - y, y, torch.tensor(sigma, dtype=torch.float64))

    i = torch.arange(n, dtype=torch.float64)
    t = (sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    t = torch.cat([t, torch.zeros(1, dtype=torch.float64)]).tolist()
    x = x_init.clone()
    for k in range(n):
        d = (x - D(x, t[k])) / t[k]
        x_next = x + (t[k + 1] - t[k]) * d
        if t[k + 1] != 0:
            d2 = (x_next - D(x_next, t[k + 1])) / t[k + 1]
            x_next = x + (t[k + 1] - t[k]) * (0.5 * d + 0.5 * d2)
        x = x_next
    torch.testing.assert_close(out.x0_hat, x, rtol=0, atol=1e-6)
    assert out.nfe == 2 * n - 1


@pytest.mark.parametrize("churn", [0.0, 2.0])
def test_heun_in_sigma_depends_only_on_the_sigma_range_not_on_s_or_the_time_parameterisation(churn):
    """Karras et al. (2022) Sec. 4 / eq. 4: the ODE in x_tilde = (x - y) / s depends on sigma alone. With steps in
    sigma, the same denoiser and the same starting x_tilde, VE, OU-cosine with theta = 0 and with theta = 1.5 (s(t) =
    exp(-1.5 t)), all with sigma(1) = 1.5, must return the same x0_hat (why the `design` study's ve+edm and
    oucosine+edm cells score the same); OUVE with sigma_max = 0.5 must not."""
    g = torch.Generator().manual_seed(0)
    y = 0.3 * torch.randn(2, 128, dtype=torch.float64, generator=g)
    m = 0.1 * torch.randn(1, 128, dtype=torch.float64, generator=g)
    x_tilde_T = 1.5 * torch.randn(2, 128, dtype=torch.float64, generator=g)
    outs = {}
    ve = S.VE(sigma_min=0.01, sigma_max=math.hypot(1.5, 0.01))  # its sigma(1) = sqrt(sigma_max^2 - sigma_min^2)
    for name, sde in (("ve", ve), ("oucosine", S.OUCosine(theta=0.0, sigma_max=1.5)),
                      ("oucosine_drift", S.OUCosine(theta=1.5, sigma_max=1.5)), ("ouve", S.OUVE(sigma_max=0.5))):
        s_T = float(sde.s(torch.tensor(sde.t_max, dtype=torch.float64)))
        sampler = SM.EDMHeun(6, s_churn=churn, schedule=SC.Karras(sigma_min=0.05))
        outs[name] = sampler(GaussianOracle(m), sde, y, x_init=y + s_T * x_tilde_T,
                             generator=torch.Generator().manual_seed(1)).x0_hat
    torch.testing.assert_close(outs["oucosine"], outs["ve"], rtol=0, atol=1e-9)
    torch.testing.assert_close(outs["oucosine_drift"], outs["ve"], rtol=0, atol=1e-9)
    assert float((outs["ouve"] - outs["ve"]).abs().max()) > 1e-3


@pytest.mark.parametrize("n", [1, 2, 5])
def test_nfe_is_counted(n):
    sde = S.OUVE()
    y, m, _, _ = _problem(sde, 1.0, n=16)
    for sampler, expected in ((SM.EDMHeun(n), 2 * n - 1), (SM.Euler(n), n), (SM.EulerMaruyama(n), n),
                              (SM.PC(n, corrector_steps=1), 2 * n), (SM.PC(n, corrector_steps=2), 3 * n),
                              (SM.EDMHeun(n, s_churn=1.0), 2 * n - 1)):
        oracle = GaussianOracle(m)
        out = sampler(oracle, sde, y, generator=torch.Generator().manual_seed(0))
        assert out.nfe == expected == oracle.calls, type(sampler).__name__


@pytest.mark.parametrize("name", ["edm", "ouve", "oucosine_theta", "bbed", "ve", "sbvp"])
@pytest.mark.parametrize("kind", ["em", "pc", "churn"])
def test_stochastic_samplers_reach_the_data_distribution(name, kind):
    """Start from the true marginal at t_start; the output residual must be N(m, V): Monte-Carlo mean and variance
    with tolerances from the sample size (4 standard errors) plus the discretisation budget."""
    sde = SDES[name]()
    t_start = 0.8
    y, m, x_init, _ = _problem(sde, t_start, batch=40, n=256, seed=3)
    sampler = {"em": SM.EulerMaruyama(200, schedule=SC.Uniform(t_min=1e-3)),
               "pc": SM.PC(800, schedule=SC.Uniform(t_min=1e-3), snr=0.2),  # ancestral: 1st order
               "churn": SM.EDMHeun(64, s_churn=20.0, schedule=SC.Karras(sigma_min=1e-3))}[kind]
    out = sampler(GaussianOracle(m), sde, y, x_init=x_init, t_start=t_start,
                  generator=torch.Generator().manual_seed(1))
    z = (out.x0_hat - y - m).flatten()
    n = z.numel()
    assert abs(float(z.mean())) < 4 * math.sqrt(V / n) + 0.02 * math.sqrt(V)
    assert float(z.var()) == pytest.approx(V, rel=4 * math.sqrt(2 / n) + 0.06)


def test_generator_makes_runs_reproducible_and_t_start_is_checked():
    sde = S.OUVE()
    y, m, _, _ = _problem(sde, 1.0, n=32)
    a = SM.PC(4)(GaussianOracle(m), sde, y, generator=torch.Generator().manual_seed(5)).x0_hat
    b = SM.PC(4)(GaussianOracle(m), sde, y, generator=torch.Generator().manual_seed(5)).x0_hat
    c = SM.PC(4)(GaussianOracle(m), sde, y, generator=torch.Generator().manual_seed(6)).x0_hat
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError):
        SM.EDMHeun(4)(GaussianOracle(m), sde, y, t_start=0.0)
    with pytest.raises(ValueError):
        SM.EDMHeun(0)


@pytest.mark.parametrize("make", [lambda: SM.EDMHeun(4), lambda: SM.EDMHeun(4, s_churn=2.0), lambda: SM.Euler(5),
                                  lambda: SM.PC(3), lambda: SM.Posterior(4), lambda: SM.EulerMaruyama(4),
                                  lambda: SM.PC(3, predictor_in_sigma=False)],
                         ids=["heun", "heun_churn", "euler", "pc", "posterior", "em", "pc_in_t"])
def test_estimates_are_each_calls_clean_estimate_and_change_nothing(make):
    """``estimates=[]`` receives y + D of every network call, in order, with the call's sigma (checked against the
    denoiser's own inputs and outputs); the samples are bit for bit those of a call without it."""
    sde = S.OUVE()
    y, m, _, _ = _problem(sde, 1.0, batch=2, dtype=torch.float32)
    seen = []

    def recording(x_tilde, yy, sigma):
        out = GaussianOracle(m.float())(x_tilde, yy, sigma).to(x_tilde.dtype)
        seen.append((float(sigma[0]), out))
        return out

    plain = make()(recording, sde, y, generator=torch.Generator().manual_seed(3))
    seen.clear()
    estimates: list = []
    out = make()(recording, sde, y, generator=torch.Generator().manual_seed(3), estimates=estimates)
    assert torch.equal(out.x0_hat, plain.x0_hat)
    assert [e["nfe"] for e in estimates] == list(range(1, out.nfe + 1)) and len(seen) == out.nfe
    for e, (sigma, d) in zip(estimates, seen):
        assert e["sigma"] == pytest.approx(sigma, rel=1e-12) and e["sigma"] == pytest.approx(float(sde.sigma(
            torch.tensor(e["t"], dtype=torch.float64))), rel=1e-12)
        assert e["x0_hat"].dtype == y.dtype and torch.equal(e["x0_hat"], y + d)
    assert all(a["time"] <= b["time"] for a, b in zip(estimates, estimates[1:]))
    if getattr(make(), "s_churn", 0.0) == 0.0:  # (churn raises t before a step's first call)
        assert all(a["t"] >= b["t"] for a, b in zip(estimates, estimates[1:]))
    # every sampler here ends on the denoiser's clean estimate (PC with its default final_denoise=True)
    torch.testing.assert_close(estimates[-1]["x0_hat"], out.x0_hat, rtol=0, atol=1e-6)


def test_complex_input_keeps_dtype_and_trajectory():
    sde = S.OUVE()
    y = torch.randn(2, 1, 8, 4, dtype=torch.complex64)
    x0 = y + 0.1 * torch.randn(2, 1, 8, 4, dtype=torch.complex64)
    out = SM.EDMHeun(3, return_trajectory=True)(lambda xt, yy, sigma: (x0 - y).to(xt.dtype), sde, y,
                                                 generator=torch.Generator().manual_seed(0))
    assert out.x0_hat.dtype == torch.complex64 and out.x0_hat.shape == y.shape
    assert len(out.trajectory) == 4
    torch.testing.assert_close(out.x0_hat, x0)  # exact single-point denoiser: the last step returns x0


def test_schedules():
    sde = S.OUVE()
    k = SC.Karras(sigma_min=0.06, rho=7)(5, sde)
    assert k.shape == (6,) and float(k[-1]) == 0 and torch.all(torch.diff(k) < 0)
    assert float(sde.sigma(k[0])) == pytest.approx(sde.sigma_max) and float(sde.sigma(k[-2])) == pytest.approx(0.06)
    u = SC.Uniform()(4, sde, t_start=0.5)
    torch.testing.assert_close(u, torch.tensor([0.5, 0.5 - 0.47 / 3, 0.5 - 2 * 0.47 / 3, 0.03, 0.0],
                                               dtype=torch.float64))


def test_sgmse_plus_pc_matches_a_transcription_of_sgmse_plus_loop():
    """``PC(predictor_in_sigma=False, final_denoise=False)`` (``+experiment=sgmse_plus``) against a hand-written
    transcription of sgmse's ``get_pc_sampler`` (ReverseDiffusionPredictor + AnnealedLangevinDynamics, OUVE with its
    own closed-form formulas, the exact marginal score of a Gaussian residual), same noise draws."""
    theta, smin, smax, n_steps, snr, eps = 1.5, 0.05, 0.5, 30, 0.5, 0.03
    log_r = math.log(smax / smin)

    def std(t):  # sgmse OUVESDE._std
        return smin * math.sqrt((math.exp(2 * t * log_r) - math.exp(-2 * theta * t)) * log_r / (theta + log_r))

    def g(t):  # sgmse OUVESDE.sde diffusion
        return smin * (smax / smin) ** t * math.sqrt(2 * log_r)

    def score(x, y, t):  # exact score of x_t = y + s (r + sigma n) with r ~ N(m, V)
        s = math.exp(-theta * t)
        return -(x - y - s * m) / (s ** 2 * V + std(t) ** 2)

    g_ours = torch.Generator().manual_seed(11)
    y = 0.3 * torch.randn(2, 64, dtype=torch.float64, generator=g_ours)
    m = 0.1 * torch.randn(1, 64, dtype=torch.float64, generator=g_ours)
    state = g_ours.get_state()

    gen = torch.Generator().set_state(state)
    xt = y + std(1.0) * torch.randn(y.shape, dtype=torch.float64, generator=gen)  # prior_sampling
    timesteps = torch.linspace(1.0, eps, n_steps, dtype=torch.float64)
    for i in range(n_steps):
        t = float(timesteps[i])
        stepsize = t - float(timesteps[i + 1]) if i != n_steps - 1 else float(timesteps[-1])
        # AnnealedLangevinDynamics.update_fn (one step, alpha = 1)
        step_size = (snr * std(t)) ** 2 * 2
        noise = torch.randn(xt.shape, dtype=torch.float64, generator=gen)
        xt = xt + step_size * score(xt, y, t) + noise * math.sqrt(step_size * 2)
        # ReverseDiffusionPredictor.update_fn: rsde.discretize, then x_mean = x - f, x = x_mean + G z
        f = (theta * (y - xt) - g(t) ** 2 * score(xt, y, t)) * stepsize
        x_mean = xt - f
        if i == n_steps - 1:
            break  # sgmse returns xt_mean (denoise=True); its last z does not matter
        xt = x_mean + g(t) * math.sqrt(stepsize) * torch.randn(xt.shape, dtype=torch.float64, generator=gen)
    expected = x_mean

    sampler = SM.PC(n_steps, schedule=SC.Uniform(t_min=eps), snr=snr, corrector_steps=1, final_denoise=False,
                    predictor_in_sigma=False)
    out = sampler(GaussianOracle(m), S.OUVE(theta, smin, smax), y, generator=torch.Generator().set_state(state))
    torch.testing.assert_close(out.x0_hat, expected, rtol=1e-9, atol=1e-12)
    # a wrong Langevin step (the square root left out, or a factor 2) does not pass
    wrong = SM.PC(n_steps, schedule=SC.Uniform(t_min=eps), snr=snr * math.sqrt(2), corrector_steps=1,
                  final_denoise=False, predictor_in_sigma=False)
    bad = wrong(GaussianOracle(m), S.OUVE(theta, smin, smax), y, generator=torch.Generator().set_state(state))
    assert (bad.x0_hat - expected).abs().max() > 1e-3


def test_langevin_corrector_step_is_two_snr_std_squared():
    """One corrector step from a known state, by hand: x + eps score + sqrt(2 eps) z with eps = 2 (snr std)^2."""
    sde = S.OUVE()
    y, m, _, _ = _problem(sde, 1.0, n=16, seed=4)
    x = y + 0.2
    t = torch.tensor(0.6, dtype=torch.float64)
    pc = SM.PC(1, snr=0.3, corrector_steps=1, final_denoise=True)
    gen = torch.Generator().manual_seed(2)
    got = pc._step(SM._Counted(GaussianOracle(m), sde, y), sde, y, x, t, torch.tensor(0.0, dtype=torch.float64),
                   gen)
    z = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    oracle = GaussianOracle(m)
    s, std = float(sde.s(t)), float(sde.std(t))
    eps = 2 * (0.3 * std) ** 2
    score = sde.score(x, y, y + oracle((x - y) / s, y, sde.sigma(t)), t)
    x_corr = x + eps * score + math.sqrt(2 * eps) * z
    torch.testing.assert_close(got, y + oracle((x_corr - y) / s, y, sde.sigma(t)))  # then the final denoise


@pytest.mark.parametrize("sampler", ["heun", "euler"])
def test_constant_denoiser_trajectory_is_the_exact_ode_solution(sampler):
    """With D = y + r constant, the PF-ODE in sigma is linear: x_tilde(sigma) = r + (sigma / sigma_0)(x_tilde_0 - r)
    exactly, and Euler and Heun both reproduce it at every grid point (not only at the end)."""
    sde = S.OUCosine(theta=1.0)
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 1, 8, 4, dtype=torch.complex128, generator=g)
    r = 0.1 * torch.randn(2, 1, 8, 4, dtype=torch.complex128, generator=g)
    n = 5
    smp = (SM.EDMHeun(n, return_trajectory=True) if sampler == "heun"
           else SM.Euler(n, schedule=SC.Karras(sigma_min=0.05), return_trajectory=True))
    out = smp(lambda xt, yy, sigma: r.to(xt.dtype), sde, y, generator=torch.Generator().manual_seed(1))
    ts = smp.schedule(n, sde, 1.0)
    x0_tilde = (out.trajectory[0] - y) / float(sde.s(ts[0]))
    sig0 = float(sde.sigma(ts[0]))
    for i, x in enumerate(out.trajectory[:-1]):
        sig, s = float(sde.sigma(ts[i])), float(sde.s(ts[i]))
        torch.testing.assert_close(x, y + s * (r + sig / sig0 * (x0_tilde - r)), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.x0_hat, y + r)


@pytest.mark.parametrize("name", ["edm_heun", "euler", "posterior", "pc"])
def test_denoiser_sees_the_callers_dtype_while_the_state_is_double(name):
    """With float64=True the state is complex128 but the denoiser gets complex64 x_tilde and y (the caller's
    dtype, as NVlabs/edm's network side runs float32); the result equals the float32 oracle's to float32 precision."""
    seen = []
    y = torch.randn(2, 1, 8, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    r = 0.1 * torch.randn(2, 1, 8, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))

    def den(x_tilde, yy, sigma):
        seen.append((x_tilde.dtype, yy.dtype))
        return r

    make = {"edm_heun": lambda: SM.EDMHeun(3), "euler": lambda: SM.Euler(3), "posterior": lambda: SM.Posterior(3),
            "pc": lambda: SM.PC(2)}[name]
    out = make()(den, S.OUVE(), y, generator=torch.Generator().manual_seed(0))
    assert set(seen) == {(torch.complex64, torch.complex64)} and len(seen) == out.nfe
    assert out.x0_hat.dtype == torch.complex64
    torch.testing.assert_close(out.x0_hat, y + r)  # a constant residual estimate: the clean estimate is y + r


@pytest.mark.parametrize("name", ["edm_heun", "euler", "posterior", "pc", "edm_heun_churn"])
def test_last_step_in_the_callers_dtype_is_bit_identical_to_the_float64_sum(name, monkeypatch):
    """The last step returns ``y + D`` summed in complex64 (``_Counted.final``) instead of upcasting both, summing
    in complex128 and casting back: the result is the same bit for bit (double rounding of a sum is innocuous
    from 53 to 24 bits). Checked against the float64 path itself on values of magnitudes 1e-6 to 1e3, through the
    whole sampler with a denoiser whose output depends on its input."""
    g = torch.Generator().manual_seed(3)
    scale = 10.0 ** torch.randint(-6, 4, (2, 1, 32, 16), generator=g).double()
    y = (torch.randn(2, 1, 32, 16, dtype=torch.complex128, generator=g) * scale).to(torch.complex64)

    def den(x_tilde, yy, sigma):
        return (0.3 * x_tilde + 0.7 * yy.conj() * torch.exp(-sigma.float()).reshape(-1, 1, 1, 1)).to(torch.complex64)

    make = {"edm_heun": lambda: SM.EDMHeun(3), "euler": lambda: SM.Euler(3), "posterior": lambda: SM.Posterior(3),
            "pc": lambda: SM.PC(2), "edm_heun_churn": lambda: SM.EDMHeun(3, s_churn=1.0)}[name]
    new = make()(den, S.OUVE(), y, generator=torch.Generator().manual_seed(0))

    def float64_final(self, x_tilde, t):  # the path before: upcast, complex128 sum, cast back at the end
        return self.y + self.residual(x_tilde, t)

    monkeypatch.setattr(SM._Counted, "final", float64_final)
    old = make()(den, S.OUVE(), y, generator=torch.Generator().manual_seed(0))
    assert new.nfe == old.nfe and new.x0_hat.dtype == old.x0_hat.dtype == torch.complex64
    assert torch.equal(torch.view_as_real(new.x0_hat), torch.view_as_real(old.x0_hat))


@pytest.mark.parametrize("name", ["flow", "bbed", "sbve", "sbvp", "oucosine"])
def test_two_heun_steps_keep_a_share_of_the_prior_noise_that_grows_with_sigma_max(name):
    """Why EDM Heun collapses at NFE 3 on the flow, BBED and bridge cells of the `design` study with an exact
    denoiser too. On a Karras grid with N = 2 the first step jumps from sigma_max to sigma_min; its trapezoid
    keeps (1 + r) / 2 of the prior's residual (r = sigma_min / sigma_max), and the slope at sigma_min cancels only a
    share 1 - k(sigma_min) of it, k(sigma) = V / (V + sigma^2). For the Gaussian oracle the whole map is linear in
    a = x_tilde_T - m, out - m = G a, with G in closed form below; for a large sigma_max the leftover |G| sigma_max is
    about sigma_max k^2 / 2 (flow 499.5: 2.5, SBVP 662: 3.3, BBED 41.7: 0.24, SBVE 23.2: 0.14), above the data's std
    sqrt(V) = 0.1, while Euler's two steps stay within it (and OU-cosine's sigma_max = 1.5 is harmless)."""
    sde = SDES[name]()
    sigma_min = 0.3  # the edm_heun preset's grid (conf/sampler/edm_heun.yaml)
    y, m, x_init, _ = _problem(sde, 1.0, batch=2, n=256)
    heun = SM.EDMHeun(2, schedule=SC.Karras(sigma_min=sigma_min))(GaussianOracle(m), sde, y, x_init=x_init)
    euler = SM.Euler(2)(GaussianOracle(m), sde, y, x_init=x_init)
    t0 = torch.tensor(sde.t_max, dtype=torch.float64)
    a = (x_init - sde.center(y, t0)) / sde.s(t0) - m
    smax = float(sde.sigma(t0))
    k = lambda s: V / (V + s ** 2)  # noqa: E731 - the oracle's shrinkage at sigma
    r, h = sigma_min / smax, sigma_min - smax
    e = k(smax) + r * (1 - k(smax))  # the Euler state's gain: x_tilde_e - m = e a
    gain = k(sigma_min) * ((1 + r) / 2 + k(smax) * (1 - r) / 2 + h / 2 * (1 - k(sigma_min)) * e / sigma_min)
    torch.testing.assert_close(heun.x0_hat - y - m, gain * a, rtol=1e-6, atol=1e-9)
    if smax > 100:  # then the leftover is about sigma_max k(sigma_min)^2 / 2 of the unit prior noise
        assert abs(gain) * smax == pytest.approx(smax * k(sigma_min) ** 2 / 2, rel=0.05)
    heun_dev = float((heun.x0_hat - y - m).pow(2).mean().sqrt())
    euler_dev = float((euler.x0_hat - y - m).pow(2).mean().sqrt())
    assert euler_dev < math.sqrt(V)  # Euler's two steps: within the data's own spread
    if smax > 20:
        assert heun_dev > math.sqrt(V) and heun_dev > 2 * euler_dev  # Heun's: beyond it
    else:
        assert heun_dev < math.sqrt(V)


def test_dpmpp_2m_is_k_diffusions_sample_dpmpp_2m():
    """EDM SDE (s = 1, so x_tilde = x - y) + Karras grid: DPMSolver2M against a hand transcription of k-diffusion's
    sample_dpmpp_2m (Lu et al. 2022, DPM-Solver++(2M)) with the absolute denoiser."""
    sde = S.EDM(sigma_max=2.0)
    y, m, x_init, _ = _problem(sde, 1.0, batch=2, n=64)
    oracle = GaussianOracle(m)
    n, sigma_min, sigma_max, rho = 6, 0.002, 2.0, 7.0
    out = SM.DPMSolver2M(n, schedule=SC.Karras(sigma_min=sigma_min, rho=rho))(oracle, sde, y, x_init=x_init)

    def model(x, sigma):
        return y + oracle(x - y, y, torch.tensor(sigma, dtype=torch.float64))

    i = torch.arange(n, dtype=torch.float64)
    sigmas = (sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)]).tolist()
    x, old = x_init.clone(), None
    for k in range(n):
        denoised = model(x, sigmas[k])
        if sigmas[k + 1] == 0:
            x = denoised
            break
        t, t_next = -math.log(sigmas[k]), -math.log(sigmas[k + 1])
        h = t_next - t
        if old is None:
            x = (sigmas[k + 1] / sigmas[k]) * x - math.expm1(-h) * denoised
        else:
            r = (t - (-math.log(sigmas[k - 1]))) / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (sigmas[k + 1] / sigmas[k]) * x - math.expm1(-h) * d
        old = denoised
    torch.testing.assert_close(out.x0_hat, x, rtol=0, atol=1e-9)
    assert out.nfe == n and oracle.calls == 2 * n  # ours, then the transcription


@pytest.mark.parametrize("name", SDES)
def test_dpmpp_2m_converges_at_second_order_and_equals_euler_at_two_steps(name):
    sde = SDES[name]()
    y, m, x_init, exact = _problem(sde, 1.0)
    karras = SC.Karras(sigma_min=1e-4)
    errs = []
    for n in (32, 64):
        out = SM.DPMSolver2M(n, schedule=karras)(GaussianOracle(m), sde, y, x_init=x_init)
        errs.append(float((out.x0_hat - y - exact).abs().max()))
    assert math.log2(errs[0] / errs[1]) > 1.8, errs
    sampler = SM.DPMSolver2M(2, schedule=karras)
    two = sampler(GaussianOracle(m), sde, y, x_init=x_init).x0_hat
    assert torch.equal(two, SM.Euler(2, schedule=karras)(GaussianOracle(m), sde, y, x_init=x_init).x0_hat)
    # the multistep memory lives in the call, not in the (shared) sampler object
    assert torch.equal(sampler(GaussianOracle(m), sde, y, x_init=x_init).x0_hat, two)
