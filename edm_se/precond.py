"""Network preconditioning: how the denoiser's input, output, noise embedding and loss weight scale with sigma.

The denoiser of the residual (``edm_se.denoiser.Denoiser``) is

    D(x_tilde, y; sigma) = c_skip(sigma) x_tilde + c_out(sigma) F(c_in(sigma) x_tilde + c_shift(y, sigma), y, c_noise(sigma))

with ``x_tilde = (x_t - y) / s = (x0 - y) + sigma noise`` (Karras et al. 2022, eq. 7 and Table 1; Gonzalez et al.
2024, eq. 15, which adds ``c_shift``). ``D`` estimates the clean residual ``x0 - y``; the training loss is
``loss_weight(sigma) * |D - (x0 - y)|^2`` (Karras et al. eq. 8 with ``lambda(sigma)``).

Every coefficient takes ``sigma`` as a float64 tensor of shape (B,) (or a scalar) and returns the same shape;
``c_shift`` returns a tensor shaped like ``y``. A preconditioning that needs process time gets the SDE and uses
``sde.sigma_inv``. :class:`Hybrid` takes each term from a different preconditioning, so a study can change one term
at a time.
"""

from __future__ import annotations

import torch

from edm_se.sde import as_float64, batch_view

__all__ = ["Precond", "EDM", "EDMScaledShift", "SGMSE", "Hybrid"]


class Precond:
    """Interface. ``sde`` is the forward process (used by variants that need ``t = sde.sigma_inv(sigma)``)."""

    TERMS = ("c_skip", "c_out", "c_in", "c_noise", "c_shift", "loss_weight")

    def __init__(self, sde=None) -> None:
        self.sde = sde

    def c_skip(self, sigma):
        raise NotImplementedError

    def c_out(self, sigma):
        raise NotImplementedError

    def c_in(self, sigma):
        raise NotImplementedError

    def c_noise(self, sigma):
        raise NotImplementedError

    def c_shift(self, y: torch.Tensor, sigma) -> torch.Tensor:
        """Added to the network input ``c_in x_tilde``; shaped like ``y``. Default: 0."""
        return torch.zeros_like(y)

    def loss_weight(self, sigma):
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k != "sde")
        return f"{type(self).__name__}({params})"


class EDM(Precond):
    """Karras et al. (2022) Table 1, on the residual: ``c_skip = sd^2/(sigma^2+sd^2)``,
    ``c_out = sigma sd / sqrt(sigma^2+sd^2)``, ``c_in = 1/sqrt(sigma^2+sd^2)``, ``c_noise = ln(sigma)/4``,
    ``loss_weight = (sigma^2+sd^2)/(sigma sd)^2``; ``c_shift = 0`` (the network sees the noisy residual and ``y``).

    Args:
        sigma_data: RMS of the residual ``x0 - y``, ``sqrt(E|x0 - y|^2)`` per (complex) element, in compressed-STFT
            units. Noise is normalised the same way (``E|noise|^2 = 1``), so ``E|x_tilde|^2 = sigma_data^2 +
            sigma^2`` as in EDM.
    """

    def __init__(self, sde=None, sigma_data: float = 0.1) -> None:
        super().__init__(sde)
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.sigma_data = float(sigma_data)

    def c_skip(self, sigma):
        sigma = as_float64(sigma)
        return self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)

    def c_out(self, sigma):
        sigma = as_float64(sigma)
        return sigma * self.sigma_data / torch.sqrt(sigma ** 2 + self.sigma_data ** 2)

    def c_in(self, sigma):
        sigma = as_float64(sigma)
        return 1 / torch.sqrt(sigma ** 2 + self.sigma_data ** 2)

    def c_noise(self, sigma):
        return torch.log(as_float64(sigma)) / 4

    def loss_weight(self, sigma):
        sigma = as_float64(sigma)
        return (sigma ** 2 + self.sigma_data ** 2) / (sigma * self.sigma_data) ** 2


class EDMScaledShift(EDM):
    """EDM with the shift-aware input of Gonzalez et al. (2024, eq. 15-16): ``c_shift = shift * c_in(sigma) * y``,
    so that with ``shift = 1`` the network input is ``c_in (x0 + sigma noise)`` — the unshifted process, scaled to
    unit variance — instead of the residual. Other terms as :class:`EDM`.
    """

    def __init__(self, sde=None, sigma_data: float = 0.1, shift: float = 1.0) -> None:
        super().__init__(sde, sigma_data)
        self.shift = float(shift)

    def c_shift(self, y, sigma):
        return self.shift * batch_view(self.c_in(sigma), y) * y


class SGMSE(Precond):
    """SGMSE+ (Richter et al. 2023) recast as a preconditioning: the network reads ``x_t = y + s x_tilde`` and ``y``
    at ``c_noise = ln t``; its output divided by ``t`` is minus the score (NCSN++ ``scale_by_sigma``), so by Tweedie
    ``D = x_tilde - s sigma^2 F / t``: ``c_skip = 1``, ``c_out = -s sigma^2 / t``, ``c_in = s``, ``c_shift = y``,
    ``loss_weight = 1 / sigma^2`` (equivalent to SGMSE+'s ``|std * score + z|^2``). Needs the SDE. On
    :class:`edm_se.sde.SBVP` the network reads its ``x_t = m(t) y + s x_tilde`` (``c_shift = m y``).
    """

    def __init__(self, sde=None) -> None:
        if sde is None:
            raise ValueError("the SGMSE preconditioning needs the SDE (t = sde.sigma_inv(sigma))")
        super().__init__(sde)

    def _t_of(self, sigma):
        return self.sde.sigma_inv(as_float64(sigma)).clamp_min(1e-12)

    def c_skip(self, sigma):
        return torch.ones_like(as_float64(sigma))

    def c_out(self, sigma):
        sigma = as_float64(sigma)
        t = self._t_of(sigma)
        return -self.sde.s(t) * sigma ** 2 / t

    def c_in(self, sigma):
        return self.sde.s(self._t_of(sigma))

    def c_noise(self, sigma):
        return torch.log(self._t_of(sigma))

    def c_shift(self, y, sigma):
        return y if self.sde.unit_center else self.sde.center(y, self._t_of(sigma))

    def loss_weight(self, sigma):
        return 1 / as_float64(sigma) ** 2


class Hybrid(Precond):
    """Take each term from a chosen preconditioning (e.g. SGMSE+'s ``c_noise`` with EDM's scalings).

    Args:
        sde: the SDE (passed to the parts).
        base: preconditioning (or a callable ``sde -> Precond``, as Hydra ``_partial_`` nodes are) for every term
            not overridden.
        c_skip, c_out, c_in, c_noise, c_shift, loss_weight: optional preconditioning (or ``sde -> Precond``) whose
            term replaces the base's.
    """

    def __init__(self, sde=None, base=None, c_skip=None, c_out=None, c_in=None, c_noise=None, c_shift=None,
                 loss_weight=None) -> None:
        super().__init__(sde)
        if base is None:
            raise ValueError("Hybrid needs a base preconditioning")
        parts = dict(c_skip=c_skip, c_out=c_out, c_in=c_in, c_noise=c_noise, c_shift=c_shift,
                     loss_weight=loss_weight)
        self.base = self._make(base)
        self.sources = {k: (self._make(v) if v is not None else self.base) for k, v in parts.items()}

    def _make(self, p):
        return p if isinstance(p, Precond) else p(sde=self.sde)

    def c_skip(self, sigma):
        return self.sources["c_skip"].c_skip(sigma)

    def c_out(self, sigma):
        return self.sources["c_out"].c_out(sigma)

    def c_in(self, sigma):
        return self.sources["c_in"].c_in(sigma)

    def c_noise(self, sigma):
        return self.sources["c_noise"].c_noise(sigma)

    def c_shift(self, y, sigma):
        return self.sources["c_shift"].c_shift(y, sigma)

    def loss_weight(self, sigma):
        return self.sources["loss_weight"].loss_weight(sigma)

    def __repr__(self) -> str:
        return f"Hybrid({ {k: type(v).__name__ for k, v in self.sources.items()} })"
