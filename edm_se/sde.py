"""Forward processes for diffusion speech enhancement in one signal model.

Every SDE here is ``dx = f(t) (y - x) dt + g(t) dw`` on ``t in [0, t_max]``, whose marginal is

    x_t = y + s(t) * (x0 - y + sigma(t) * noise),   s(t) = exp(-int_0^t f),   sigma(t)^2 = int_0^t g^2 / s^2

(Gonzalez et al. 2024, "Investigating the design space of diffusion models for speech enhancement", eq. 8-12,
which extends Karras et al. 2022, eq. 4 and Table 1, with a mean drifting toward the noisy speech ``y``).
One member, the Schrödinger bridge over a variance-preserving reference process (:class:`SBVP`), shrinks the
state on the way, so the weights of ``x0`` and ``y`` in its mean do not sum to one. For it the model has a centre
weight ``m(t)`` (``m = 1`` for every other SDE, ``m(0) = 1``):

    x_t = m(t) y + s(t) * (x0 - y + sigma(t) * noise),   dx = [m'(t) y - f(t) (x - m(t) y)] dt + g(t) dw,

and the residual ``x_tilde = (x_t - m y) / s = (x0 - y) + sigma * noise`` is the same plain EDM problem: the
denoiser, the losses and the steps in sigma do not change, only the map between ``x`` and ``x_tilde``
(:meth:`SDE.center`).
``x0`` is the clean and ``y`` the noisy compressed complex STFT, shape (B, 1, F, T) complex64; every method also
works on real tensors of any shape. ``std(t) = s(t) * sigma(t)`` is the marginal standard deviation,
``x_tilde = (x_t - y) / s = (x0 - y) + sigma * noise`` is plain EDM on the residual ``x0 - y``.

A subclass implements only ``s(t)``, ``sigma(t)``, ``sigma_inv(sigma)``, ``f(t)`` and ``g(t)`` (and, where
``m != 1``, ``m(t)`` and ``m_dot(t)``) in closed form; the base class derives the rest. Times are float64 tensors
(or Python floats) internally; results are cast back.

Complex noise follows ``torch.randn`` semantics: real and imaginary parts each have variance 1/2, so
``E|noise|^2 = 1`` for both real and complex tensors (:func:`edm_se.noise.randn_like`, re-exported here).
"""

from __future__ import annotations

import math

import torch

from edm_se.noise import randn_like

__all__ = ["as_float64", "batch_view", "SDE", "EDM", "VE", "VP", "OUVE", "OUVEDecoupled", "OUVP", "OUCosine", "BBED",
           "SBVE", "SBVP", "FlowMatching", "randn_like"]


def as_float64(t: torch.Tensor | float) -> torch.Tensor:
    """A time or noise level as a float64 tensor (the precision of every coefficient in the diffusion core)."""
    return torch.as_tensor(t, dtype=torch.float64)


def batch_view(v: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Scalar or (B,) coefficient -> broadcastable against ``like`` (B, ...), on its device, in its real dtype."""
    real = like.real.dtype if like.is_complex() else like.dtype
    v = torch.as_tensor(v, device=like.device).to(real)
    if v.ndim == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (like.ndim - 1)))


class SDE:
    """Base class. Subclasses give ``s, sigma, sigma_inv, f, g`` in closed form.

    Attributes:
        t_max: the final process time (1.0; BBED stops at 0.999 because s(1) = 0).
        t_eps: the smallest time used by uniform-in-t training and sampling (SGMSE+: 0.03).
    """

    t_max: float = 1.0
    t_eps: float = 0.03
    unit_center: bool = True  # m(t) = 1: the centre of the marginal is y itself (every SDE but SBVP)

    # ------------------------------------------------------------ closed forms (subclasses)
    def s(self, t):
        """Scale s(t) (dimensionless), s(0) = 1."""
        raise NotImplementedError

    def sigma(self, t):
        """EDM noise level sigma(t) >= 0 of the residual ``x_tilde``; sigma(0) = 0, increasing."""
        raise NotImplementedError

    def sigma_inv(self, sigma):
        """Inverse of :meth:`sigma`: the time t with sigma(t) = ``sigma``."""
        raise NotImplementedError

    def f(self, t):
        """Drift rate f(t) = -d log s / dt of ``dx = f (y - x) dt + g dw``."""
        raise NotImplementedError

    def g(self, t):
        """Diffusion coefficient g(t) with g^2 = s^2 d(sigma^2)/dt."""
        raise NotImplementedError

    def m(self, t):
        """Centre weight m(t) of ``y`` in ``x_t = m y + s (x0 - y + sigma noise)`` (dimensionless); 1 unless
        :attr:`unit_center` is False."""
        return torch.ones_like(as_float64(t))

    def m_dot(self, t):
        """dm/dt (1/time unit); 0 unless :attr:`unit_center` is False."""
        return torch.zeros_like(as_float64(t))

    # ------------------------------------------------------------ derived
    def center(self, y: torch.Tensor, t) -> torch.Tensor:
        """The point ``m(t) y`` that the residual is measured from: ``x_tilde = (x_t - center) / s``. It is ``y``
        itself (the same tensor, no arithmetic) when ``m = 1``; ``t`` scalar or (B,)."""
        if self.unit_center:
            return y
        return batch_view(self.m(as_float64(t)), y) * y

    @property
    def sigma_max(self) -> float:
        """sigma(t_max)."""
        return float(self.sigma(as_float64(self.t_max)))

    def std(self, t):
        """Marginal standard deviation ``s(t) * sigma(t)`` of ``x_t`` given ``x0, y``."""
        t = as_float64(t)
        return self.s(t) * self.sigma(t)

    def mean(self, x0: torch.Tensor, y: torch.Tensor, t) -> torch.Tensor:
        """Marginal mean ``s x0 + (1 - s) y`` (``m y + s (x0 - y)`` where ``m != 1``); ``t`` scalar or (B,).
        Shapes of ``x0`` and ``y`` match."""
        s = batch_view(self.s(as_float64(t)), x0)
        if self.unit_center:
            return s * x0 + (1 - s) * y
        return self.center(y, t) + s * (x0 - y)

    def perturb(self, x0: torch.Tensor, y: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """Sample of the marginal: ``x_t = m y + s (x0 - y + sigma noise)`` (ARCHITECTURE.md signal model; m = 1
        but for :class:`SBVP`)."""
        tt = as_float64(t)
        s = batch_view(self.s(tt), x0)
        sigma = batch_view(self.sigma(tt), x0)
        return self.center(y, tt) + s * (x0 - y + sigma * noise)

    def prior(self, y: torch.Tensor, t=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Start of the reverse process: ``m y + std(t) * noise`` (``t`` defaults to ``t_max``).

        The true marginal also contains ``s(t) (x0 - y)``, unknown at inference; the gap is the prior mismatch
        (small when ``s(t_max) -> 0`` or ``sigma(t_max)`` is large compared with the residual).
        """
        t = as_float64(self.t_max if t is None else t)
        return self.center(y, t) + batch_view(self.std(t), y) * randn_like(y, generator)

    def sigma_dot_over_sigma(self, t):
        """d log sigma / dt = g^2 / (2 s^2 sigma^2), from sigma^2 = int g^2 / s^2."""
        t = as_float64(t)
        return self.g(t) ** 2 / (2 * self.s(t) ** 2 * self.sigma(t) ** 2)

    def probability_flow(self, x: torch.Tensor, y: torch.Tensor, denoised: torch.Tensor, t) -> torch.Tensor:
        """dx/dt of the probability-flow ODE given the clean estimate ``denoised`` (absolute, like ``x0``).

        ``dx/dt = (s'/s)(x - y) + (sigma'/sigma)(x - y - s (denoised - y))`` (Karras et al. 2022 eq. 4 with the
        shift toward ``y``; Gonzalez et al. 2024 eq. 14); with a centre weight, ``y`` in the brackets is ``m y``
        and ``m' y`` is added. Needs ``t > 0``.
        """
        tt = as_float64(t)
        s = batch_view(self.s(tt), x)
        c = self.center(y, tt)
        d = -batch_view(self.f(tt), x) * (x - c) + batch_view(self.sigma_dot_over_sigma(tt), x) * (
            x - c - s * (denoised - y))
        return d if self.unit_center else d + batch_view(self.m_dot(tt), y) * y

    def score(self, x: torch.Tensor, y: torch.Tensor, denoised: torch.Tensor, t) -> torch.Tensor:
        """Score ``-(x - mean) / std^2`` with the mean ``m y + s (denoised - y)`` from ``denoised`` (Tweedie;
        Karras et al. eq. 3)."""
        tt = as_float64(t)
        s = batch_view(self.s(tt), x)
        std = batch_view(self.std(tt), x)
        return -(x - self.center(y, tt) - s * (denoised - y)) / std ** 2

    def reverse_drift(self, x: torch.Tensor, y: torch.Tensor, denoised: torch.Tensor, t) -> torch.Tensor:
        """Drift of the reverse-time SDE, ``f (y - x) - g^2 score`` (Anderson 1982; Song et al. 2021 eq. 6); with a
        centre weight the forward drift is ``m' y + f (m y - x)``."""
        tt = as_float64(t)
        d = batch_view(self.f(tt), x) * (self.center(y, tt) - x) - batch_view(self.g(tt), x) ** 2 * self.score(
            x, y, denoised, t)
        return d if self.unit_center else d + batch_view(self.m_dot(tt), y) * y

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class EDM(SDE):
    """Karras et al. (2022) reference: ``s = 1``, ``sigma(t) = sigma_max * t`` (no drift toward y).

    With the Karras schedule and no churn, :class:`edm_se.samplers.EDMHeun` is Algorithm 1 of Karras et al.

    Args:
        sigma_max: sigma at t = 1 (in units of the compressed STFT).
    """

    def __init__(self, sigma_max: float = 1.0) -> None:
        if sigma_max <= 0:
            raise ValueError(f"sigma_max must be > 0, got {sigma_max}")
        self.sigma_max_ = float(sigma_max)

    def s(self, t):
        return torch.ones_like(as_float64(t))

    def sigma(self, t):
        return self.sigma_max_ * as_float64(t)

    def sigma_inv(self, sigma):
        return as_float64(sigma) / self.sigma_max_

    def f(self, t):
        return torch.zeros_like(as_float64(t))

    def g(self, t):
        return self.sigma_max_ * torch.sqrt(2 * as_float64(t))


class VE(SDE):
    """Variance-exploding SDE (Song et al. 2021, eq. 30): ``f = 0``, ``g = sigma_min r^t sqrt(2 ln r)``, ``r =
    sigma_max / sigma_min``; marginal ``sigma(t)^2 = sigma_min^2 (r^(2t) - 1)`` (exact from ``x0`` at t = 0, so
    sigma(0) = 0; Karras et al. Table 1 drops the -1). Centered on ``y`` by the signal model.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 1.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max_ = float(sigma_min), float(sigma_max)
        self._log_r = math.log(sigma_max / sigma_min)

    def s(self, t):
        return torch.ones_like(as_float64(t))

    def sigma(self, t):
        return self.sigma_min * torch.sqrt(torch.expm1(2 * self._log_r * as_float64(t)))

    def sigma_inv(self, sigma):
        return torch.log1p((as_float64(sigma) / self.sigma_min) ** 2) / (2 * self._log_r)

    def f(self, t):
        return torch.zeros_like(as_float64(t))

    def g(self, t):
        return self.sigma_min * torch.exp(self._log_r * as_float64(t)) * math.sqrt(2 * self._log_r)


class OUVP(SDE):
    """Ornstein-Uhlenbeck variance-preserving SDE toward ``y`` (SGMSE's OUVP; Song et al. 2021 VP with stiffness).

    ``beta(t) = beta_min + t (beta_max - beta_min)``, ``B(t) = int_0^t beta``, ``f = theta beta / 2``,
    ``g = sqrt(beta)``, hence ``s = exp(-theta B / 2)`` and ``sigma^2 = (exp(theta B) - 1) / theta``
    (``= B`` for ``theta = 0``: no drift toward y, a VE-like process).

    Args:
        beta_min, beta_max: linear beta schedule (Song et al.: 0.1, 20).
        theta: stiffness of the drift toward y (0 allowed; 1 is Song's VP).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, theta: float = 1.0) -> None:
        if beta_min <= 0 or beta_max < beta_min or theta < 0:
            raise ValueError(f"need 0 < beta_min <= beta_max and theta >= 0, got {beta_min}, {beta_max}, {theta}")
        self.beta_min, self.beta_max, self.theta = float(beta_min), float(beta_max), float(theta)

    def _B(self, t):
        t = as_float64(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2

    def _beta(self, t):
        return self.beta_min + as_float64(t) * (self.beta_max - self.beta_min)

    def s(self, t):
        return torch.exp(-0.5 * self.theta * self._B(t))

    def sigma(self, t):
        B = self._B(t)
        if self.theta == 0:
            return torch.sqrt(B)
        return torch.sqrt(torch.expm1(self.theta * B) / self.theta)

    def sigma_inv(self, sigma):
        sigma = as_float64(sigma)
        B = sigma ** 2 if self.theta == 0 else torch.log1p(self.theta * sigma ** 2) / self.theta
        d = self.beta_max - self.beta_min
        if d == 0:
            return B / self.beta_min
        return (torch.sqrt(self.beta_min ** 2 + 2 * d * B) - self.beta_min) / d

    def f(self, t):
        return 0.5 * self.theta * self._beta(t)

    def g(self, t):
        return torch.sqrt(self._beta(t))


class VP(OUVP):
    """Song et al. (2021) / Karras et al. Table 1 VP (``beta_min = 0.1``, ``beta_d = 19.9``) drifting toward ``y``:
    ``s = 1 / sqrt(1 + sigma^2)``, ``sigma = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)``. :class:`OUVP` with
    ``theta = 1``.
    """

    def __init__(self, beta_min: float = 0.1, beta_d: float = 19.9) -> None:
        super().__init__(beta_min=beta_min, beta_max=beta_min + beta_d, theta=1.0)


class OUVE(SDE):
    """SGMSE+'s Ornstein-Uhlenbeck variance-exploding SDE (Richter et al. 2023, eq. 3-5).

    ``f = theta``, ``g = sigma_min r^t sqrt(2 ln r)`` with ``r = sigma_max / sigma_min``; ``s = exp(-theta t)`` and
    ``sigma^2 = sigma_min^2 ln r / (theta + ln r) (exp(2 t (theta + ln r)) - 1)``, so that
    ``std^2 = sigma_min^2 (r^(2t) - exp(-2 theta t)) ln r / (theta + ln r)`` (SGMSE+ eq. 5).
    """

    t_eps = 0.03

    def __init__(self, theta: float = 1.5, sigma_min: float = 0.05, sigma_max: float = 0.5) -> None:
        if not 0 < sigma_min < sigma_max or theta < 0:
            raise ValueError(f"need 0 < sigma_min < sigma_max, theta >= 0; got {sigma_min}, {sigma_max}, {theta}")
        self.theta, self.sigma_min, self.sigma_max_ = float(theta), float(sigma_min), float(sigma_max)
        self._log_r = math.log(sigma_max / sigma_min)
        self._k = self.theta + self._log_r

    def s(self, t):
        return torch.exp(-self.theta * as_float64(t))

    def sigma(self, t):
        return self.sigma_min * torch.sqrt(self._log_r / self._k * torch.expm1(2 * self._k * as_float64(t)))

    def sigma_inv(self, sigma):
        return torch.log1p((as_float64(sigma) / self.sigma_min) ** 2 * self._k / self._log_r) / (2 * self._k)

    def f(self, t):
        return torch.full_like(as_float64(t), self.theta)

    def g(self, t):
        return self.sigma_min * torch.exp(self._log_r * as_float64(t)) * math.sqrt(2 * self._log_r)


class OUVEDecoupled(OUVE):
    """The seed paper's OUVE variant whose sigma does not depend on theta (Gonzalez et al. 2024, Sec. IV-B).

    ``s = exp(-theta t)`` (as :class:`OUVE`) and ``sigma(t)^2 = sigma_min^2 (r^(2t) - 1)`` (the VE noise level,
    ``r = sigma_max / sigma_min``), so ``g^2 = s^2 d(sigma^2)/dt = 2 ln r sigma_min^2 r^(2t) exp(-2 theta t)``.
    Changing ``theta`` changes only the drift toward y, not the noise level the network sees.
    """

    def sigma(self, t):
        return self.sigma_min * torch.sqrt(torch.expm1(2 * self._log_r * as_float64(t)))

    def sigma_inv(self, sigma):
        return torch.log1p((as_float64(sigma) / self.sigma_min) ** 2) / (2 * self._log_r)

    def g(self, t):
        t = as_float64(t)
        return (self.sigma_min * math.sqrt(2 * self._log_r)) * torch.exp((self._log_r - self.theta) * t)


class OUCosine(SDE):
    """OU drift toward ``y`` with a (shifted) cosine log-SNR noise schedule (Gonzalez et al. 2024; Nichol & Dhariwal
    2021 cosine schedule; Hoogeboom et al. 2023 shift).

    ``s = exp(-theta t)``; ``sigma(t) = sigma_shift * tan(a t)`` with ``a = atan(sigma_max / sigma_shift)``, i.e. the
    log-SNR ``-2 log tan(a t) - 2 log sigma_shift`` of the cosine schedule shifted by ``-2 log sigma_shift`` and
    truncated at ``sigma(1) = sigma_max``. ``g^2 = s^2 d(sigma^2)/dt = 2 s^2 sigma sigma_shift a / cos^2(a t)``.

    Args:
        theta: drift rate toward y (0 allowed: the seed paper's best choice).
        sigma_max: noise level at t = 1 (choose it well above the residual's spread, cpu-training-notes.md).
        sigma_shift: scale of the cosine schedule (its noise level at the schedule's mid-point t = pi / (4 a)).
    """

    def __init__(self, theta: float = 0.0, sigma_max: float = 1.5, sigma_shift: float = 0.1) -> None:
        if theta < 0 or sigma_max <= 0 or sigma_shift <= 0:
            raise ValueError(f"need theta >= 0, sigma_max > 0, sigma_shift > 0; got {theta}, {sigma_max}, "
                             f"{sigma_shift}")
        self.theta, self.sigma_max_, self.sigma_shift = float(theta), float(sigma_max), float(sigma_shift)
        self._a = math.atan(sigma_max / sigma_shift)

    def s(self, t):
        return torch.exp(-self.theta * as_float64(t))

    def sigma(self, t):
        return self.sigma_shift * torch.tan(self._a * as_float64(t))

    def sigma_inv(self, sigma):
        return torch.atan(as_float64(sigma) / self.sigma_shift) / self._a

    def f(self, t):
        return torch.full_like(as_float64(t), self.theta)

    def g(self, t):
        t = as_float64(t)
        return self.s(t) * torch.sqrt(2 * self.sigma(t) * self.sigma_shift * self._a / torch.cos(self._a * t) ** 2)


def _exp1(x: torch.Tensor) -> torch.Tensor:
    """Exponential integral E1(x) = int_x^inf exp(-u)/u du for x > 0 (float64): power series for x <= 2,
    continued fraction (Lentz, as in Numerical Recipes 6.3) above."""
    x = as_float64(x)
    out = torch.empty_like(x)
    small = x <= 2
    xs = x[small]
    if xs.numel():
        acc = torch.zeros_like(xs)
        term = torch.ones_like(xs)
        for n in range(1, 60):
            term = term * (-xs) / n
            acc = acc - term / n
        out[small] = -0.5772156649015329 - torch.log(xs) + acc
    xl = x[~small]
    if xl.numel():
        b = xl + 1.0
        c = torch.full_like(xl, 1e300)
        d = 1.0 / b
        h = d.clone()
        for i in range(1, 200):
            a = -float(i * i)
            b = b + 2.0
            d = 1.0 / (a * d + b)
            c = b + a / c
            h = h * c * d
        out[~small] = h * torch.exp(-xl)
    return out


class BBED(SDE):
    """Brownian bridge with exploding diffusion (Lay et al. 2023, eq. 6-9).

    ``dx = (y - x) / (1 - t) dt + c k^t dw`` for ``t in [0, t_max]``: ``s = 1 - t``, ``f = 1 / (1 - t)``,
    ``g = c k^t``. With ``a = 2 ln k``, ``sigma^2 = int_0^t c^2 k^(2u) / (1 - u)^2 du
    = c^2 [exp(a t) / (1 - t) - 1 - a exp(a) (E1(a (1 - t)) - E1(a))]`` and ``std^2 = (1 - t)^2 sigma^2`` — the
    closed form of Lay et al. eq. 9 written with the exponential integral E1 (= -Ei(-x)). ``sigma_inv`` is
    computed by bisection (no closed form).
    """

    t_eps = 0.03

    def __init__(self, k: float = 2.6, c: float = 0.51, t_max: float = 0.999) -> None:
        if k <= 1 or c <= 0 or not 0 < t_max < 1:
            raise ValueError(f"need k > 1, c > 0, 0 < t_max < 1; got {k}, {c}, {t_max}")
        self.k, self.c, self.t_max = float(k), float(c), float(t_max)
        self._a = 2 * math.log(k)
        self._e1a = float(_exp1(torch.tensor(self._a)))

    def s(self, t):
        return 1 - as_float64(t)

    def sigma(self, t):
        t = as_float64(t)
        a = self._a
        v = torch.exp(a * t) / (1 - t) - 1 - a * math.exp(a) * (_exp1(a * (1 - t)) - self._e1a)
        return self.c * torch.sqrt(v.clamp_min(0))

    def sigma_inv(self, sigma):
        sigma = as_float64(sigma)
        lo, hi = torch.zeros_like(sigma), torch.full_like(sigma, 1.0 - 1e-12)
        for _ in range(64):
            mid = (lo + hi) / 2
            below = self.sigma(mid) < sigma
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def f(self, t):
        return 1 / (1 - as_float64(t))

    def g(self, t):
        return self.c * torch.exp(0.5 * self._a * as_float64(t))


class SBVE(SDE):
    """Schrödinger bridge with a variance-exploding reference process (Jukić et al. 2024, "Schrödinger bridge for
    generative speech enhancement", Table 1 and eq. 9-11; sgmse's ``sbve``).

    The reference process is VE with ``f = 0``, ``g = sqrt(c) k^t``, so ``v(t) = int_0^t g^2 = c (k^(2t) - 1) /
    (2 ln k)``. Pinned at ``x0`` (t = 0) and ``y`` (t = 1), its marginal is Gaussian with mean ``(vbar / v1) x0 +
    (v / v1) y`` and variance ``v vbar / v1`` (``vbar = v1 - v``): a member of the signal model with

        s(t) = vbar(t) / v1 = (k^2 - k^(2t)) / (k^2 - 1),   sigma(t)^2 = v1 v(t) / vbar(t),

    and the bridge's forward SDE ``dx = f (y - x) dt + g dw`` with ``f = g^2 / vbar = 2 ln k k^(2t) / (k^2 -
    k^(2t))`` (the h-transform drift toward the end point ``y``). ``s(1) = 0`` and ``sigma(1) = inf``: the process
    ends exactly at ``y`` (``std(1) = 0``), so ``t_max < 1`` (default 0.999, as :class:`BBED`); sgmse integrates to
    ``t_eps = 1e-4``.

    Args:
        k: base of the exploding diffusion coefficient (> 1; paper: 2.6).
        c: scale of the diffusion coefficient (> 0; paper: 0.4).
        t_max: the final time used (< 1).
    """

    t_eps = 1e-4

    def __init__(self, k: float = 2.6, c: float = 0.4, t_max: float = 0.999) -> None:
        if k <= 1 or c <= 0 or not 0 < t_max < 1:
            raise ValueError(f"need k > 1, c > 0, 0 < t_max < 1; got {k}, {c}, {t_max}")
        self.k, self.c, self.t_max = float(k), float(c), float(t_max)
        self._log_k = math.log(k)
        self._scale = self.c / (2 * self._log_k)  # v(t) = scale (k^(2t) - 1)

    def v(self, t):
        """Variance ``c (k^(2t) - 1) / (2 ln k)`` of the VE reference process (sgmse's ``sigma_t**2``)."""
        return self._scale * torch.expm1(2 * self._log_k * as_float64(t))

    def v_bar(self, t):
        """``v(1) - v(t) = c (k^2 - k^(2t)) / (2 ln k)`` (sgmse's ``sigma_bart**2`` without its eps)."""
        t = as_float64(t)
        return self._scale * (self.k ** 2 - torch.exp(2 * self._log_k * t))

    def s(self, t):
        return self.v_bar(t) / (self._scale * (self.k ** 2 - 1))

    def sigma(self, t):
        return torch.sqrt(self._scale * (self.k ** 2 - 1) * self.v(t) / self.v_bar(t))

    def sigma_inv(self, sigma):
        # r = sigma^2 / v1 = (u - 1) / (k^2 - u) with u = k^(2t)
        r = as_float64(sigma) ** 2 / (self._scale * (self.k ** 2 - 1))
        return torch.log((1 + r * self.k ** 2) / (1 + r)) / (2 * self._log_k)

    def f(self, t):
        t = as_float64(t)
        u = torch.exp(2 * self._log_k * t)
        return 2 * self._log_k * u / (self.k ** 2 - u)

    def g(self, t):
        return math.sqrt(self.c) * torch.exp(self._log_k * as_float64(t))


class SBVP(SDE):
    """Schrödinger bridge with a variance-preserving reference process (Jukić et al. 2024, "Schrödinger bridge for
    generative speech enhancement", Table 1 and eq. 9-11; NeMo's ``SBNoiseScheduleVP``), the VP variant of
    :class:`SBVE`.

    The reference process is ``dx = -beta(t) / 2 x dt + sqrt(c beta(t)) dw`` with ``beta(t) = beta_0 + t (beta_1 -
    beta_0)``, so with ``B(t) = int_0^t beta = beta_0 t + (beta_1 - beta_0) t^2 / 2`` its scale is ``alpha(t) =
    exp(-B / 2)`` and its variance in units of the scale ``v(t) = int_0^t g^2 / alpha^2 = c (exp(B) - 1)`` (the
    paper's ``sigma_t^2``). Pinned at ``x0`` (t = 0) and ``y`` (t = 1), its marginal is (eq. 11)

        x_t = alpha vbar / v1 x0 + alpha v / (alpha_1 v1) y + alpha sqrt(v vbar / v1) noise,   vbar = v1 - v,

    whose weights of ``x0`` and ``y`` do not sum to one (the reference process shrinks the state on the way): in
    the signal model it has a centre weight,

        s(t) = alpha vbar / v1,   sigma(t)^2 = v1 v / vbar,   m(t) = alpha (vbar + v / alpha_1) / v1,

    ``m(0) = m(1) = 1``. ``sigma`` is :class:`SBVE`'s with the VP reference variance. The forward SDE is ``dx = [m' y
    - f (x - m y)] dt + g dw`` with ``f = beta / 2 + v' / vbar`` (the reference drift plus the h-transform's pull
    toward ``y``) and ``g = sqrt(c beta)``, the reference process's own. ``s(1) = 0``, so ``t_max < 1`` (default
    0.999, as :class:`SBVE`). :class:`edm_se.samplers.Posterior` is the bridge's SDE sampler here too (the exact
    posterior step, Jukić et al. eq. 19 with ``alpha``), :class:`edm_se.samplers.Euler` its ODE sampler.

    Args:
        beta_0: beta(0) (>= 0).
        beta_1: beta(1) (> beta_0).
        c: scale of the diffusion coefficient (> 0).
        t_max: the final time used (< 1).

    The defaults (``beta_0 = 0.01``, ``beta_1 = 20`` as Song et al.'s VP SDE, ``c = 0.4`` as :class:`SBVE`'s) are
    this lab's choice: the paper's values for its VP variant were not in the sources read here. They make the VP
    character plain: ``alpha(1) = 0.0067``, ``m`` falls to 0.16 near t = 0.7, and ``sigma(0.5) = 2.1`` against
    SBVE's 0.68 (``sigma(t_max) = 662`` against 23).

    Raises:
        ValueError: for parameters outside those ranges.
    """

    t_eps = 1e-4
    unit_center = False

    def __init__(self, beta_0: float = 0.01, beta_1: float = 20.0, c: float = 0.4, t_max: float = 0.999) -> None:
        if beta_0 < 0 or beta_1 <= beta_0 or c <= 0 or not 0 < t_max < 1:
            raise ValueError(f"need 0 <= beta_0 < beta_1, c > 0, 0 < t_max < 1; got {beta_0}, {beta_1}, {c}, {t_max}")
        self.beta_0, self.beta_1, self.c, self.t_max = float(beta_0), float(beta_1), float(c), float(t_max)
        self._b1 = float(self.B(1.0))  # B(1)
        self._v1 = self.c * math.expm1(self._b1)
        self._alpha_1 = math.exp(-0.5 * self._b1)

    def beta(self, t):
        """beta(t) = beta_0 + t (beta_1 - beta_0)."""
        return self.beta_0 + (self.beta_1 - self.beta_0) * as_float64(t)

    def B(self, t):
        """B(t) = int_0^t beta = beta_0 t + (beta_1 - beta_0) t^2 / 2."""
        t = as_float64(t)
        return t * (self.beta_0 + 0.5 * (self.beta_1 - self.beta_0) * t)

    def alpha(self, t):
        """Scale ``exp(-B(t) / 2)`` of the VP reference process (NeMo's ``alpha``)."""
        return torch.exp(-0.5 * self.B(t))

    def v(self, t):
        """Variance ``c (exp(B(t)) - 1)`` of the reference process in units of its scale (the paper's
        ``sigma_t^2``)."""
        return self.c * torch.expm1(self.B(t))

    def v_bar(self, t):
        """``v(1) - v(t) = c exp(B) (exp(B(1) - B) - 1)`` (the paper's ``sigma_bar_t^2``), without cancellation
        near t = 1."""
        b = self.B(t)
        return self.c * torch.exp(b) * torch.expm1(self._b1 - b)

    def s(self, t):
        return self.alpha(t) * self.v_bar(t) / self._v1

    def sigma(self, t):
        return torch.sqrt(self._v1 * self.v(t) / self.v_bar(t))

    def sigma_inv(self, sigma):
        # r = sigma^2 / v1 = v / vbar gives exp(B) - 1 = r (exp(B1) - 1) / (1 + r); then B(t) = B solved for t
        r = as_float64(sigma) ** 2 / self._v1
        b = torch.log1p(r * math.expm1(self._b1) / (1 + r))
        half_slope = 0.5 * (self.beta_1 - self.beta_0)
        # the root of half_slope t^2 + beta_0 t = b without cancellation; 0 at b = 0 also when beta_0 = 0
        return 2 * b / (self.beta_0 + torch.sqrt(self.beta_0 ** 2 + 4 * half_slope * b)).clamp_min(1e-300)

    def f(self, t):
        beta = self.beta(t)
        return 0.5 * beta + beta / torch.expm1(self._b1 - self.B(t))  # beta / 2 + v' / vbar, v' = c beta exp(B)

    def g(self, t):
        return torch.sqrt(self.c * self.beta(t))

    def m(self, t):
        return self.alpha(t) * (self.v_bar(t) + self.v(t) / self._alpha_1) / self._v1

    def m_dot(self, t):
        # d/dt of alpha (vbar + v / alpha_1) / v1 with alpha' = -beta alpha / 2, v' = -vbar' = c beta exp(B)
        beta, b = self.beta(t), self.B(t)
        v_dot = self.c * beta * torch.exp(b)
        return self.alpha(t) / self._v1 * (-0.5 * beta * (self.v_bar(t) + self.v(t) / self._alpha_1)
                                           + v_dot * (1 / self._alpha_1 - 1))


class FlowMatching(SDE):
    """Conditional flow matching between the clean and the noisy speech (FlowSE and its kin: Lee et al. 2025;
    Cross & Ragni 2025), a straight mean path with a linear noise schedule:

        x_t = (1 - t) x0 + t y + sigma_t noise,   sigma_t = (1 - t) sigma_min + t sigma_max,

    i.e. the signal model with ``s(t) = 1 - t`` and ``sigma(t) = sigma_t / (1 - t) = sigma_min + sigma_max t / (1 -
    t)``; ``f = 1 / (1 - t)``, ``g^2 = s^2 d(sigma^2)/dt = 2 sigma_max sigma(t)``. Its probability-flow ODE is the
    conditional flow ``dx/dt = y - x0 + sigma_t' noise`` with the denoiser's estimate of ``x0``: :class:`Euler` and
    :class:`EDMHeun` are its ODE samplers. ``sigma_min = 0`` (default) starts exactly at ``x0``; ``sigma_min > 0``
    (a time-independent variance when equal to ``sigma_max``, Cross & Ragni's ICFM) keeps ``sigma(0) = sigma_min``.
    ``s(1) = 0``, so ``t_max < 1`` (default 0.999, as :class:`BBED`).

    Args:
        sigma_max: noise std at y (t = 1), in units of the compressed STFT (> 0).
        sigma_min: noise std at x0 (t = 0), >= 0.
        t_max: the final time used (< 1).
    """

    def __init__(self, sigma_max: float = 0.5, sigma_min: float = 0.0, t_max: float = 0.999) -> None:
        if sigma_max <= 0 or sigma_min < 0 or not 0 < t_max < 1:
            raise ValueError(f"need sigma_max > 0, sigma_min >= 0, 0 < t_max < 1; got {sigma_max}, {sigma_min}, "
                             f"{t_max}")
        self.sigma_max_, self.sigma_min, self.t_max = float(sigma_max), float(sigma_min), float(t_max)

    def s(self, t):
        return 1 - as_float64(t)

    def sigma(self, t):
        t = as_float64(t)
        return self.sigma_min + self.sigma_max_ * t / (1 - t)

    def sigma_inv(self, sigma):
        q = (as_float64(sigma) - self.sigma_min) / self.sigma_max_
        return q / (1 + q)

    def f(self, t):
        return 1 / (1 - as_float64(t))

    def g(self, t):
        return torch.sqrt(2 * self.sigma_max_ * self.sigma(t))
