"""Reverse-process samplers: EDM Heun with churn, Euler, DPM-Solver++(2M), Euler-Maruyama, SGMSE+'s
predictor-corrector and the bridge posterior sampler (Schrödinger bridge SDE sampler).

Every sampler is called as ``sampler(denoiser, sde, y, *, x_init=None, t_start=1.0, generator=None,
estimates=None)`` and returns :class:`SampleOutput` with the absolute clean estimate ``x0_hat`` (same shape and dtype
as ``y``), the number of network calls actually made (``nfe``, counted) and optionally the trajectory. A list passed
as ``estimates`` receives the clean estimate ``y + D`` of every network call as it is made (what stopping the
sampler after that call would give; the last one is ``x0_hat`` for samplers that end on the denoiser's estimate).
``denoiser(x_tilde, y, sigma)`` is any callable returning the residual estimate ``E[x0 - y | x_tilde]`` (an
:class:`edm_se.denoiser.Denoiser`, or an exact oracle in tests). Tensors may be real or complex, of any shape with a leading batch dimension.

The step grid comes from a :mod:`edm_se.schedules` object: ``t_0 = t_start t_max > ... > t_{N-1} > t_N = 0``.
Starting part-way (``t_start < 1``) begins from ``y + std(t_0) noise`` (as BBED and CRP do), unless ``x_init`` is
given. The state arithmetic runs in float64 (complex128) when ``float64=True``; as in NVlabs/edm, the denoiser (its
preconditioning and network) sees the caller's dtype of ``y``, and its output is cast back (the last step's clean
estimate ``y + D`` is summed in the caller's dtype: bit for bit the float64 sum rounded back). Steps in sigma work on
the residual ``x_tilde = (x - y) / s`` (``(x - m y) / s`` on :class:`edm_se.sde.SBVP`, whose mean has a centre weight
``m(t)``) with fused interpolations, and the next step takes the residual the last one made instead of recomputing it
from ``x``, so a step costs a few passes over the state besides its network calls
(``benchmarks/sampler_overhead.py`` measures the ratio).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from edm_se.schedules import Karras, Schedule, Uniform
from edm_se.noise import randn_like
from edm_se.sde import batch_view

__all__ = ["SampleOutput", "Sampler", "EDMHeun", "Euler", "DPMSolver2M", "EulerMaruyama", "PC", "Posterior"]


@dataclass
class SampleOutput:
    """Result of a sampler call.

    Attributes:
        x0_hat: clean estimate, shape and dtype of ``y``.
        nfe: number of denoiser (network) calls made.
        trajectory: states ``x_t`` after every step (including the start), when requested; else None.
    """

    x0_hat: torch.Tensor
    nfe: int
    trajectory: list[torch.Tensor] | None = field(default=None)


class _Counted:
    """Denoiser wrapper that counts network calls.

    ``residual(x_tilde, t)`` is ``D = E[x0 - y | x_tilde]`` at time ``t``, and ``__call__(x, t)`` the absolute clean
    estimate ``y + D((x - y) / s(t))``; both return the dtype of the sampler's state (float64 / complex128 with
    ``float64=True``). The denoiser itself sees ``y_net`` and its dtype, the caller's ``y``: as in NVlabs/edm, the
    preconditioning and the network run in the network's precision and only the state arithmetic in double.
    """

    def __init__(self, denoiser, sde, y: torch.Tensor, y_net: torch.Tensor | None = None,
                 estimates: list | None = None) -> None:
        self.denoiser, self.sde, self.y, self.nfe = denoiser, sde, y, 0
        self.y_net = y if y_net is None else y_net
        self.estimates = estimates
        self._last: tuple[torch.Tensor, float, torch.Tensor] | None = None  # (x, t, x_tilde) of from_residual
        self.memory: dict = {}  # per-call scratch space of multistep samplers (the sampler objects are shared)

    def center(self, t: torch.Tensor) -> torch.Tensor:
        """``m(t) y``, the point the residual is measured from: the state's ``y`` itself when ``m = 1`` (every SDE
        but :class:`edm_se.sde.SBVP`)."""
        return self.sde.center(self.y, t)

    def from_residual(self, x_tilde: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The state ``m(t) y + s(t) x_tilde`` at the scalar time ``t``, remembering ``x_tilde`` for
        :meth:`to_residual` of the next step."""
        x = _from_residual(x_tilde, self.center(t), self.sde.s(t))
        self._last = (x, float(t), x_tilde)
        return x

    def to_residual(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``(x - m y) / s`` at the scalar time ``t``; when ``x`` is the state :meth:`from_residual` just made at the
        same ``t`` (the next step of a sampler in sigma), its ``x_tilde`` itself: two passes over the state fewer,
        and no rounding."""
        last = self._last
        if last is not None and last[0] is x and last[1] == float(t):
            return last[2]
        return _to_residual(x, self.center(t), self.sde.s(t))

    def _net(self, x_tilde: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One counted denoiser call at time ``t`` on ``x_tilde`` cast to the caller's dtype (its output as it is)."""
        self.nfe += 1
        sigma = self.sde.sigma(t).expand(x_tilde.shape[0])
        out = self.denoiser(x_tilde.to(self.y_net.dtype), self.y_net, sigma)
        if self.estimates is not None:
            self.estimates.append({"nfe": self.nfe, "t": float(t), "sigma": float(sigma[0]),
                                   "x0_hat": self.y_net + out.to(self.y_net.dtype), "time": time.perf_counter()})
        return out

    def residual(self, x_tilde: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._net(x_tilde, t).to(x_tilde.dtype)

    def final(self, x_tilde: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean estimate ``y + D`` of the last step (to sigma = 0), in the dtype of the caller's ``y``.

        With ``float64=True`` it is the float32 (complex64) sum of ``y`` and the network's ``D``: the same values
        as the sum of their float64 upcasts rounded back to float32, since a sum rounded to 53 bits and then to 24
        rounds as the sum rounded once to 24 (Figueroa 1995: double rounding is innocuous for +, -, x, / when
        the wider format has at least 2p + 2 bits), and three passes over the state fewer (two casts and a
        complex128 sum). Tested bit for bit against the float64 path (``tests/test_samplers.py``)."""
        return self.y_net + self._net(x_tilde, t).to(self.y_net.dtype)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.y + self.residual(_to_residual(x, self.center(t), self.sde.s(t)), t)


def _to_residual(x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``(x - y) / s`` for a scalar or (B,) ``s`` (one pass fewer than a division for a scalar)."""
    if s.numel() == 1:
        return (x - y) * (1.0 / float(s))
    return (x - y) / batch_view(s, x)


def _from_residual(x_tilde: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``y + s x_tilde`` for a scalar or (B,) ``s``."""
    if s.numel() == 1:
        return torch.add(y, x_tilde, alpha=float(s))
    return y + batch_view(s, x_tilde) * x_tilde


class Sampler:
    """Shared set-up. Args: ``num_steps`` (N >= 1), ``schedule`` (:class:`edm_se.schedules.Schedule`),
    ``float64`` (work in double precision), ``return_trajectory``."""

    def __init__(self, num_steps: int, schedule: Schedule, float64: bool = True,
                 return_trajectory: bool = False) -> None:
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.num_steps = int(num_steps)
        self.schedule = schedule
        self.float64 = bool(float64)
        self.return_trajectory = bool(return_trajectory)

    def _setup(self, denoiser, sde, y, x_init, t_start, generator, estimates=None):
        if not 0 < float(t_start) <= 1:
            raise ValueError(f"t_start must be in (0, 1], got {t_start}")
        work = y
        if self.float64:
            work = y.to(torch.complex128 if y.is_complex() else torch.float64)
        ts = self.schedule(self.num_steps, sde, float(t_start))
        den = _Counted(denoiser, sde, work, y, estimates)
        if x_init is None:
            # m y + std(t_0) z, made from its residual (x - m y) / s = sigma(t_0) z, which the first step then
            # takes as it is instead of computing it back from x (two passes over the state fewer)
            x = den.from_residual(randn_like(work, generator) * float(sde.sigma(ts[0])), ts[0])
        else:
            if x_init.shape != y.shape:
                raise ValueError(f"x_init {tuple(x_init.shape)} and y {tuple(y.shape)} differ in shape")
            x = x_init.to(work.dtype)
        return den, work, x, ts

    @torch.no_grad()
    def __call__(self, denoiser, sde, y: torch.Tensor, *, x_init: torch.Tensor | None = None, t_start: float = 1.0,
                 generator: torch.Generator | None = None, estimates: list | None = None) -> SampleOutput:
        """Run the reverse process from ``t_start`` (see the module docstring); ``y`` (B, ...) real or complex.

        ``estimates``: a list that receives, per network call, ``{"nfe": k, "t", "sigma": the call's time and
        noise level, "x0_hat": y + D (shape and dtype of y), "time": time.perf_counter() when the call returned}``.
        """
        den, yw, x, ts = self._setup(denoiser, sde, y, x_init, t_start, generator, estimates)
        traj = [x] if self.return_trajectory else None
        for i in range(self.num_steps):
            x = self._step(den, sde, yw, x, ts[i], ts[i + 1], generator)
            if traj is not None:
                traj.append(x)
        return SampleOutput(x0_hat=x.to(y.dtype), nfe=den.nfe,
                            trajectory=[t.to(y.dtype) for t in traj] if traj is not None else None)

    def _step(self, den: "_Counted", sde, y: torch.Tensor, x: torch.Tensor, t_cur: torch.Tensor,
              t_next: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One step from ``t_cur`` to ``t_next`` (``t_next = 0`` on the last); ``den(x, t)`` is the clean estimate."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class EDMHeun(Sampler):
    """Karras et al. (2022) Algorithm 2 (Algorithm 1 when ``s_churn = 0``), generalised to ``s(t)`` and the shift
    toward ``y`` (Gonzalez et al. 2024, Alg. 1): Heun steps on the probability-flow ODE in ``t``; churn adds noise
    in the residual coordinates ``x_tilde`` raising sigma by ``gamma = min(s_churn / N, sqrt(2) - 1)`` when
    ``s_min <= sigma <= s_max``. The step to ``t = 0`` is Euler (in sigma: the clean estimate), so
    ``nfe = 2 N - 1``.

    Args:
        num_steps: N.
        schedule: step grid (default Karras, rho = 7).
        s_churn, s_min, s_max, s_noise: EDM stochasticity (Karras et al. Table 5 names).
        heun: False turns the 2nd-order correction off (= Euler with churn).
        steps_in_sigma: True (default) integrates the ODE with sigma as the variable on the residual
            ``x_tilde = (x - y) / s``: ``d x_tilde / d sigma = (x_tilde - D) / sigma``, Karras et al.'s recommended
            ``sigma(t) = t, s(t) = 1`` applied to any SDE (the ODE's solution does not depend on s or on the
            parameterisation of time, only its discretisation does). False steps in ``t`` with ``dx/dt`` from
            :meth:`edm_se.sde.SDE.probability_flow` (Karras et al. Alg. 1 in its general form), which needs many
            steps where ``sigma(t)`` is far from linear (OU-cosine, VP near t = 1).

    With N = 2 on a Karras grid the first step jumps from ``sigma_max`` to ``sigma_min``, and its trapezoid keeps
    about ``sigma_max k^2 / 2`` of the prior's unit noise (``k = V / (V + sigma_min^2)`` for a residual of variance
    ``V``), even with an exact denoiser: harmless for ``sigma_max`` near the data's scale, a collapse for BBED, the
    bridges and flow matching (``sigma_max`` 23-662). Use :class:`Euler`, :class:`DPMSolver2M` (Euler at N = 2) or
    :class:`Posterior` for 1-2 steps there.
    """

    def __init__(self, num_steps: int = 16, schedule: Schedule | None = None, s_churn: float = 0.0,
                 s_min: float = 0.0, s_max: float = float("inf"), s_noise: float = 1.0, heun: bool = True,
                 steps_in_sigma: bool = True, float64: bool = True, return_trajectory: bool = False) -> None:
        super().__init__(num_steps, schedule if schedule is not None else Karras(), float64, return_trajectory)
        self.steps_in_sigma = bool(steps_in_sigma)
        if s_churn < 0 or s_noise < 0:
            raise ValueError(f"s_churn and s_noise must be >= 0, got {s_churn}, {s_noise}")
        self.s_churn, self.s_min, self.s_max, self.s_noise = float(s_churn), float(s_min), float(s_max), float(
            s_noise)
        self.heun = bool(heun)

    def _step(self, den, sde, yw, x, t_cur, t_next, generator):
        sigma_cur = float(sde.sigma(t_cur))
        in_range = self.s_min <= sigma_cur <= self.s_max
        gamma = min(self.s_churn / self.num_steps, math.sqrt(2) - 1) if in_range else 0.0
        t_hat, x_hat, xt_hat = t_cur, x, None
        if gamma > 0:
            t_hat = torch.clamp(sde.sigma_inv(torch.tensor(sigma_cur * (1 + gamma), dtype=torch.float64)),
                                max=sde.t_max)
            sigma_hat = float(sde.sigma(t_hat))
            xt_hat = torch.add(den.to_residual(x, t_cur), randn_like(x, generator),
                               alpha=math.sqrt(max(sigma_hat ** 2 - sigma_cur ** 2, 0.0)) * self.s_noise)
            x_hat = _from_residual(xt_hat, den.center(t_hat), sde.s(t_hat)) if not self.steps_in_sigma else None
        if self.steps_in_sigma:
            # the ODE in sigma on the residual: d x_tilde / d sigma = (x_tilde - D) / sigma, so an Euler step is
            # the interpolation D + (sigma_next / sigma) (x_tilde - D), one pass over the state
            if xt_hat is None:
                xt_hat = den.to_residual(x, t_hat)
            if float(t_next) == 0.0:
                return den.final(xt_hat, t_hat)  # Euler step in sigma to sigma = 0: the clean estimate
            d1 = den.residual(xt_hat, t_hat)
            sig_hat, sig_next = float(sde.sigma(t_hat)), float(sde.sigma(t_next))
            xt_next = torch.lerp(d1, xt_hat, sig_next / sig_hat)
            if self.heun:
                # x_tilde + (h / 2) [(x_tilde - D1) / sig_hat + (x_euler - D2) / sig_next], h = sig_next - sig_hat
                d2 = den.residual(xt_next, t_next)
                h = sig_next - sig_hat
                xt_next = torch.add(torch.lerp(d1, xt_hat, 1.0 + 0.5 * h / sig_hat), xt_next - d2,
                                    alpha=0.5 * h / sig_next)
            return den.from_residual(xt_next, t_next)
        denoised = den(x_hat, t_hat)
        if float(t_next) == 0.0:
            return denoised  # Euler step in sigma to sigma = 0
        d = sde.probability_flow(x_hat, yw, denoised, t_hat)
        x_next = x_hat + (t_next - t_hat) * d
        if self.heun:
            d2 = sde.probability_flow(x_next, yw, den(x_next, t_next), t_next)
            x_next = x_hat + (t_next - t_hat) * (0.5 * d + 0.5 * d2)
        return x_next


class Euler(EDMHeun):
    """First-order Euler on the probability-flow ODE (no churn by default), ``nfe = N``; default grid uniform in t
    (the seed paper's ODE baseline)."""

    def __init__(self, num_steps: int = 16, schedule: Schedule | None = None, s_churn: float = 0.0,
                 s_min: float = 0.0, s_max: float = float("inf"), s_noise: float = 1.0, steps_in_sigma: bool = True,
                 float64: bool = True, return_trajectory: bool = False) -> None:
        super().__init__(num_steps, schedule if schedule is not None else Uniform(), s_churn, s_min, s_max,
                         s_noise, heun=False, steps_in_sigma=steps_in_sigma, float64=float64,
                         return_trajectory=return_trajectory)


class DPMSolver2M(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2; k-diffusion's ``sample_dpmpp_2m``): a multistep
    second-order exponential integrator of the probability-flow ODE in sigma, on the residual ``x_tilde``.

    Every step is the first-order step in sigma, ``D + (sigma_next / sigma) (x_tilde - D)`` (the exact solution for
    a constant denoiser, as :class:`Euler` takes it), with ``D`` replaced from the second step on by its linear
    extrapolation in ``lambda = -log sigma`` from this call and the last one, ``D + (D - D_last) / (2 q)``, ``q =
    h_last / h``, ``h = log(sigma / sigma_next)``. One network call a step (``nfe = N``), second order, and no
    trapezoid over a step that spans decades of sigma (see :class:`EDMHeun` on N = 2), so with N = 2 it is exactly
    :class:`Euler`. The step to sigma = 0 returns the clean estimate, as k-diffusion's does.

    Args:
        num_steps: N.
        schedule: step grid (default Karras, rho = 7).
    """

    def __init__(self, num_steps: int = 16, schedule: Schedule | None = None, float64: bool = True,
                 return_trajectory: bool = False) -> None:
        super().__init__(num_steps, schedule if schedule is not None else Karras(), float64, return_trajectory)

    def _step(self, den, sde, yw, x, t_cur, t_next, generator):
        xt = den.to_residual(x, t_cur)
        if float(t_next) == 0.0:
            return den.final(xt, t_cur)
        d = den.residual(xt, t_cur)
        sig, sig_next = float(sde.sigma(t_cur)), float(sde.sigma(t_next))
        last = den.memory.get("dpmpp_2m")  # (D, sigma) of the last step of this call
        d_used = d
        if last is not None:
            q = math.log(last[1] / sig) / math.log(sig / sig_next)
            d_used = torch.add(d, d - last[0], alpha=1.0 / (2.0 * q))
        den.memory["dpmpp_2m"] = (d, sig)
        return den.from_residual(torch.lerp(d_used, xt, sig_next / sig), t_next)


class EulerMaruyama(Sampler):
    """Euler-Maruyama on the reverse-time SDE ``dx = [f (y - x) - g^2 score] dt + g dw`` (Song et al. 2021, eq. 6);
    the last step (to t = 0) returns the clean estimate. ``nfe = N``."""

    def __init__(self, num_steps: int = 30, schedule: Schedule | None = None, float64: bool = True,
                 return_trajectory: bool = False) -> None:
        super().__init__(num_steps, schedule if schedule is not None else Uniform(), float64, return_trajectory)

    def _step(self, den, sde, yw, x, t_cur, t_next, generator):
        denoised = den(x, t_cur)
        if float(t_next) == 0.0:
            return denoised
        dt = t_next - t_cur
        return (x + sde.reverse_drift(x, yw, denoised, t_cur) * dt
                + batch_view(sde.g(t_cur), x) * torch.sqrt(-dt) * randn_like(x, generator))


class PC(Sampler):
    """SGMSE+'s predictor-corrector sampler (Song et al. 2021, Alg. 4-5; Richter et al. 2023): per step,
    ``corrector_steps`` annealed-Langevin corrections with step ``2 (snr std(t))^2`` then one reverse-diffusion
    predictor step. The predictor is Song et al.'s reverse-diffusion step in one of two discretisations:
    ``predictor_in_sigma=True`` (default) steps the residual ``x_tilde = (x - y) / s`` from ``sigma_i`` to
    ``sigma_{i+1}`` by sampling the Gaussian posterior given the denoised estimate ``D`` (ancestral sampling, Ho et
    al. 2020 eq. 7 in EDM's sigma form): ``D + (x_tilde - D) sigma_down / sigma_i + sigma_up z`` with
    ``sigma_up = sigma_{i+1} sqrt(1 - sigma_{i+1}^2 / sigma_i^2)``, ``sigma_down^2 = sigma_{i+1}^2 - sigma_up^2``
    (to first order in the step, Song et al.'s reverse-diffusion step; stable for any step size and schedule), then
    maps back with ``s(t_{i+1})``; ``False`` is SGMSE+'s Euler
    discretisation in t, ``x - [f (y - x) - g^2 score] dt + g sqrt(dt) z``, which diverges with few steps when
    ``g^2 dt`` exceeds ``2 std^2`` (e.g. OU-cosine near t = 1). The last step (to t = 0) returns the
    denoiser's clean estimate at ``t_{N-1}`` (Tweedie, as the other samplers do) when ``final_denoise`` is True;
    False returns the predictor's mean as SGMSE+ does, which keeps noise of about ``std(t_eps)``.
    ``nfe = N (1 + corrector_steps)`` (60 for SGMSE+'s 30 steps).

    Args:
        num_steps: N (SGMSE+: 30).
        schedule: default uniform in t down to ``sde.t_eps``.
        snr: corrector signal-to-noise ratio r (SGMSE+: 0.5).
        corrector_steps: Langevin steps per step (SGMSE+: 1; 0 gives the predictor alone).
        final_denoise: see above.
        predictor_in_sigma: see above (False reproduces SGMSE+ exactly).
    """

    def __init__(self, num_steps: int = 30, schedule: Schedule | None = None, snr: float = 0.5,
                 corrector_steps: int = 1, final_denoise: bool = True, predictor_in_sigma: bool = True,
                 float64: bool = True, return_trajectory: bool = False) -> None:
        super().__init__(num_steps, schedule if schedule is not None else Uniform(), float64, return_trajectory)
        if snr < 0 or corrector_steps < 0:
            raise ValueError(f"snr and corrector_steps must be >= 0, got {snr}, {corrector_steps}")
        self.snr, self.corrector_steps = float(snr), int(corrector_steps)
        self.final_denoise = bool(final_denoise)
        self.predictor_in_sigma = bool(predictor_in_sigma)

    def _step(self, den, sde, yw, x, t_cur, t_next, generator):
        if self.predictor_in_sigma:
            x_tilde = den.to_residual(x, t_cur)
            sig = float(sde.sigma(t_cur))
            for _ in range(self.corrector_steps):
                # the Langevin step below in the residual: with std = s sigma and score = -(x_tilde - D) / (s
                # sigma^2), x_tilde + (step score + sqrt(2 step) z) / s = x_tilde - 2 r^2 (x_tilde - D) + 2 r sigma z
                x_tilde = torch.add(torch.lerp(x_tilde, den.residual(x_tilde, t_cur), 2 * self.snr ** 2),
                                    randn_like(x, generator), alpha=2 * self.snr * sig)
            if float(t_next) == 0.0 and self.final_denoise:
                return den.final(x_tilde, t_cur)
            d_tilde = den.residual(x_tilde, t_cur)
            sig_next = float(sde.sigma(t_next))
            # ancestral step: the Gaussian posterior of x_tilde at sigma_next given x_tilde and D
            sigma_up = sig_next * math.sqrt(max(1.0 - sig_next ** 2 / sig ** 2, 0.0))
            sigma_down = math.sqrt(max(sig_next ** 2 - sigma_up ** 2, 0.0))
            xt_mean = torch.lerp(d_tilde, x_tilde, sigma_down / sig)
            if float(t_next) == 0.0:
                return den.from_residual(xt_mean, t_next)  # SGMSE+'s output: the last predictor mean
            # m y + s_next (xt_mean + sigma_up z): the state stays a residual for the next step's to_residual
            return den.from_residual(torch.add(xt_mean, randn_like(x, generator), alpha=sigma_up), t_next)
        else:
            std = float(sde.std(t_cur))
            for _ in range(self.corrector_steps):  # SGMSE+'s annealed Langevin corrector, in x
                score = sde.score(x, yw, den(x, t_cur), t_cur)
                step = 2 * (self.snr * std) ** 2
                x = x + step * score + math.sqrt(2 * step) * randn_like(x, generator)
            denoised = den(x, t_cur)
            if float(t_next) == 0.0 and self.final_denoise:
                return denoised
            dt = t_cur - t_next
            x_mean = x - sde.reverse_drift(x, yw, denoised, t_cur) * dt
            noise_std = sde.g(t_cur) * torch.sqrt(dt)
            if float(t_next) == 0.0:
                return x_mean  # SGMSE+'s output: the last predictor mean
            return _from_residual(randn_like(x, generator), x_mean, noise_std)


class Posterior(PC):
    """Ancestral sampling from the exact Gaussian posterior of the forward process, given the denoiser's clean
    estimate: in the residual ``x_tilde = (x - y) / s``, a Brownian motion with variance ``sigma(t)^2`` started at
    ``x0 - y``, the step from ``sigma_c`` to ``sigma_n`` draws

        x_tilde_n ~ N(D + (sigma_n^2 / sigma_c^2) (x_tilde_c - D), sigma_n^2 (1 - sigma_n^2 / sigma_c^2)),

    then maps back with ``s(t_n)`` (and the centre ``m(t_n) y``). On :class:`edm_se.sde.SBVE` this is the
    Schrödinger bridge's SDE sampler (Jukić et al. 2024, eq. 19; sgmse's ``get_sb_sampler(sampler_type="sde")``):
    ``x_n = (v_n / v_c) x_c + (1 - v_n / v_c) D + sqrt(v_n (1 - v_n / v_c)) z`` with ``v`` the VE reference
    variance (tested against sgmse's weights); on :class:`edm_se.sde.SBVP` the same update with the VP reference's
    scale, ``x_n = alpha_n [(v_n / (alpha_c v_c)) x_c + (1 - v_n / v_c) D + sqrt(v_n (1 - v_n / v_c)) z]`` (tested
    against the paper's weights). Its deterministic counterpart, the SB-ODE sampler, is :class:`Euler` (first order
    in sigma). For
    every other SDE of the signal model it is DDPM-style ancestral sampling (:class:`PC` with no corrector).
    The denoiser is evaluated at the current state's own time; sgmse evaluates it at the next time instead. The
    last step returns the clean estimate. ``nfe = N``.

    Args:
        num_steps: N (sgmse's SB default: 50).
        schedule: default uniform in t from ``t_max`` down to ``sde.t_eps`` (sgmse: ``linspace(1, 1e-4)``).
    """

    def __init__(self, num_steps: int = 16, schedule: Schedule | None = None, float64: bool = True,
                 return_trajectory: bool = False) -> None:
        super().__init__(num_steps, schedule, snr=0.0, corrector_steps=0, final_denoise=True,
                         predictor_in_sigma=True, float64=float64, return_trajectory=return_trajectory)
