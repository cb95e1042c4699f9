"""Time-step grids for the reverse process.

A schedule maps ``(num_steps, sde, t_start)`` to a float64 tensor of ``num_steps + 1`` decreasing times
``t_0 = t_start * sde.t_max > t_1 > ... > t_{N-1} > t_N = 0``. The last step (to ``t = 0``) is taken by the samplers
as an Euler step in sigma, which returns the denoiser's clean estimate (Karras et al. 2022, Alg. 1, last step).
"""

from __future__ import annotations

import torch

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

    Args:
        sigma_min: smallest positive noise level (compressed-STFT units).
        sigma_max: largest noise level, or None (the SDE's at ``t_start``).
        rho: time-step exponent (7 in EDM).
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
        lo = min(self.sigma_min, hi)
        if n == 1:
            sigmas = torch.tensor([hi], dtype=torch.float64)
        else:
            i = torch.arange(n, dtype=torch.float64)
            sigmas = (hi ** (1 / self.rho) + i / (n - 1) * (lo ** (1 / self.rho) - hi ** (1 / self.rho))) ** self.rho
        ts = sde.sigma_inv(sigmas).clamp(max=t_start * sde.t_max)
        ts[0] = t_start * sde.t_max if self.sigma_max is None else ts[0]
        return torch.cat([ts, ts.new_zeros(1)])

    def __repr__(self) -> str:
        return f"Karras(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, rho={self.rho})"
