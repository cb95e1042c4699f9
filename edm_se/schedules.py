"""Time-step grids for the reverse process.

A schedule maps ``(num_steps, sde, t_start)`` to a float64 tensor of ``num_steps + 1`` decreasing times
``t_0 = t_start * sde.t_max > t_1 > ... > t_{N-1} > t_N = 0``. The last step (to ``t = 0``) is taken by the samplers
as an Euler step in sigma, which returns the denoiser's clean estimate (Karras et al. 2022, Alg. 1, last step).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("edm_se.schedules")
_NOTICED: set = set()

__all__ = ["Schedule", "Uniform", "Karras"]


class Schedule:
    def __call__(self, num_steps: int, sde, t_start: float = 1.0) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def _check(num_steps: int, t_start: float) -> None:
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if not 0 < t_start <= 1:
            raise ValueError(f"t_start must be in (0, 1], got {t_start}")


class Uniform(Schedule):
    """Uniform in t from ``t_start * t_max`` down to ``t_min`` (SGMSE+ and the seed paper), then 0.

    Args:
        t_min: smallest positive time (SGMSE+: 0.03). ``None`` uses ``sde.t_eps``.
    """

    def __init__(self, t_min: float | None = None) -> None:
        self.t_min = None if t_min is None else float(t_min)

    def __call__(self, num_steps: int, sde, t_start: float = 1.0) -> torch.Tensor:
        self._check(num_steps, t_start)
        t_hi = t_start * sde.t_max
        t_lo = min(self.t_min if self.t_min is not None else sde.t_eps, t_hi)
        ts = torch.linspace(t_hi, t_lo, int(num_steps), dtype=torch.float64)
        return torch.cat([ts, ts.new_zeros(1)])

    def __repr__(self) -> str:
        return f"Uniform(t_min={self.t_min})"


class Karras(Schedule):
    """Karras et al. (2022) eq. 5: ``sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    mapped to times with ``sde.sigma_inv``; ``sigma_max`` defaults to ``sde.sigma(t_start * t_max)``.

    No grid repeats a noise level. A grid that starts below the SDE's largest level (``t_start < 1`` or a smaller
    ``sigma_max``) is the full grid scaled to its start: it ends at ``min(sigma_min, sigma_top * sigma_min /
    sigma(t_max))``, keeping the full grid's ratio (e.g. 0.3 / 2.5 = 0.12), instead of collapsing onto one level
    when ``sigma_min >= sigma_top`` (e.g. the default ``sigma_min = 0.3`` with ``t_start <= 0.8`` on the bundled
    model, which used to give 8 identical times); a notice is logged once per setting.

    Args:
        sigma_min: smallest positive noise level (compressed-STFT units).
        sigma_max: largest noise level, or None (the SDE's at ``t_start``).
        rho: time-step exponent (7 in EDM).

    Raises:
        ValueError: (when called) a grid whose times are not strictly decreasing, e.g. an SDE whose
            ``sigma_inv`` cannot separate the levels.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float | None = None, rho: float = 7.0) -> None:
        if sigma_min <= 0 or rho <= 0:
            raise ValueError(f"need sigma_min > 0 and rho > 0, got {sigma_min}, {rho}")
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), sigma_max, float(rho)

    def __call__(self, num_steps: int, sde, t_start: float = 1.0) -> torch.Tensor:
        self._check(num_steps, t_start)
        n = int(num_steps)
        s_top = float(sde.sigma(torch.tensor(t_start * sde.t_max, dtype=torch.float64)))
        hi = s_top if self.sigma_max is None else min(float(self.sigma_max), s_top)
        lo = self.sigma_min
        if n > 1:
            s_full = float(sde.sigma(torch.tensor(sde.t_max, dtype=torch.float64)))
            if self.sigma_max is not None:
                s_full = min(float(self.sigma_max), s_full)
            if self.sigma_min >= s_full:
                raise ValueError(f"Karras schedule: sigma_min={self.sigma_min:g} must be below the largest noise "
                                 f"level {s_full:.4g} for num_steps > 1")
            lo = min(self.sigma_min, hi * self.sigma_min / s_full)
            key = (round(hi, 6), self.sigma_min)
            if lo < self.sigma_min and key not in _NOTICED:
                _NOTICED.add(key)
                log.info("Karras schedule: starting at sigma=%.4g (t_start=%g) below sigma(t_max)=%.4g, the grid "
                         "ends at %.4g instead of sigma_min=%g (the full grid scaled)", hi, t_start, s_full, lo,
                         self.sigma_min)
        if n == 1:
            sigmas = torch.tensor([hi], dtype=torch.float64)
        else:
            i = torch.arange(n, dtype=torch.float64)
            sigmas = (hi ** (1 / self.rho) + i / (n - 1) * (lo ** (1 / self.rho) - hi ** (1 / self.rho))) ** self.rho
        ts = sde.sigma_inv(sigmas).clamp(max=t_start * sde.t_max)
        ts[0] = t_start * sde.t_max if self.sigma_max is None else ts[0]
        out = torch.cat([ts, ts.new_zeros(1)])
        if not bool(torch.all(out[1:] < out[:-1])):
            raise ValueError(f"Karras schedule: the {n}-step grid repeats a time (t = {out.tolist()}); lower "
                             "sigma_min or the number of steps")
        return out

    def __repr__(self) -> str:
        return f"Karras(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, rho={self.rho})"
