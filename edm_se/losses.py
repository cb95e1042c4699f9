"""Denoising score-matching losses, one value per example.

``loss_i = w(sigma_i) * mean |D(x_tilde_i, y_i; sigma_i) - (x0_i - y_i)|^2`` with ``x_tilde = (x0 - y) + sigma noise``
(Karras et al. 2022, eq. 2 and 8; for the SGMSE preconditioning it equals SGMSE+'s ``|std score + z|^2``). The
mean runs over all elements of an example (complex: ``|.|^2`` of the complex difference). The caller reduces the
``(B,)`` values, so that a downstream task can re-weight examples (Milling et al. 2024, eq. 2-3).

Noise levels come from a :class:`NoiseLevel` distribution (EDM's log-normal in sigma, or uniform in t), mapped
between sigma and t with the SDE; the weight from a :class:`Weighting` (the preconditioning's ``lambda(sigma)`` by
default).
"""

from __future__ import annotations

import torch

from edm_se.noise import randn_like

__all__ = ["NoiseLevel", "LogNormalSigma", "UniformTime", "Weighting", "PrecondWeight", "ConstantWeight",
           "MinSNRWeight", "DenoisingLoss"]


class NoiseLevel:
    """Distribution of training times. ``sample(batch, sde, generator, device) -> t`` (float64, shape (B,))."""

    def sample(self, batch: int, sde, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        raise NotImplementedError


class LogNormalSigma(NoiseLevel):
    """EDM's ``ln sigma ~ N(p_mean, p_std^2)`` (Karras et al. 2022, Sec. 5), clipped to ``[sigma(t_eps), sigma(t_max)]``
    and mapped to ``t = sde.sigma_inv(sigma)``.

    Args:
        p_mean, p_std: mean and standard deviation of ``ln sigma``.
        t_eps: smallest time (None: ``sde.t_eps``).
    """

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2, t_eps: float | None = 1e-4) -> None:
        if p_std <= 0:
            raise ValueError(f"p_std must be > 0, got {p_std}")
        self.p_mean, self.p_std, self.t_eps = float(p_mean), float(p_std), t_eps

    def sample(self, batch, sde, generator=None, device=None):
        n = torch.randn(batch, dtype=torch.float64, device=device, generator=generator)
        sigma = torch.exp(self.p_mean + self.p_std * n)
        t_eps = sde.t_eps if self.t_eps is None else float(self.t_eps)
        lo = float(sde.sigma(torch.tensor(t_eps, dtype=torch.float64)))
        hi = float(sde.sigma(torch.tensor(sde.t_max, dtype=torch.float64)))
        return sde.sigma_inv(sigma.clamp(lo, hi).cpu()).clamp(t_eps, sde.t_max).to(sigma.device)


class UniformTime(NoiseLevel):
    """``t ~ U(t_eps, t_max)`` (SGMSE+, Richter et al. 2023: t_eps = 0.03).

    Args:
        t_eps: smallest time (None: ``sde.t_eps``).
    """

    def __init__(self, t_eps: float | None = 0.03) -> None:
        self.t_eps = t_eps

    def sample(self, batch, sde, generator=None, device=None):
        t_eps = sde.t_eps if self.t_eps is None else float(self.t_eps)
        u = torch.rand(batch, dtype=torch.float64, device=device, generator=generator)
        return t_eps + (sde.t_max - t_eps) * u


class Weighting:
    """Loss weight ``w(sigma)`` (float64, shape of ``sigma``); gets the denoiser's preconditioning."""

    def __call__(self, sigma: torch.Tensor, precond) -> torch.Tensor:
        raise NotImplementedError


class PrecondWeight(Weighting):
    """The preconditioning's ``loss_weight(sigma)`` (EDM: ``(sigma^2 + sd^2) / (sigma sd)^2``; SGMSE: ``1/sigma^2``)."""

    def __call__(self, sigma, precond):
        return precond.loss_weight(sigma)


class ConstantWeight(Weighting):
    """``w = value`` for every sigma (plain residual regression, ``lambda = 1``)."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = float(value)

    def __call__(self, sigma, precond):
        return torch.full_like(torch.as_tensor(sigma, dtype=torch.float64), self.value)


class MinSNRWeight(Weighting):
    """Min-SNR-gamma (Hang et al. 2023) on top of the preconditioning: ``lambda(sigma) * min(SNR, gamma) / SNR`` with
    ``SNR = sigma_data^2 / sigma^2``; needs a preconditioning with ``sigma_data``."""

    def __init__(self, gamma: float = 5.0) -> None:
        self.gamma = float(gamma)

    def __call__(self, sigma, precond):
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        snr = precond.sigma_data ** 2 / sigma ** 2
        return precond.loss_weight(sigma) * torch.clamp(snr, max=self.gamma) / snr


class DenoisingLoss:
    """Per-example denoising score-matching loss.

    Args:
        noise_level: :class:`NoiseLevel` (default log-normal in sigma).
        weighting: :class:`Weighting` (default the preconditioning's).
        prior_fraction: fraction of examples trained at ``t_max`` with the residual removed from the input
            (``x_tilde = sigma_max noise``), i.e. exactly what sampling from the prior ``y + std noise`` shows the
            network (cpu-training-notes.md, "prior mismatch"). 0 is the plain loss.

    Call: ``loss(denoiser, sde, x0, y, generator=None) -> (B,)`` float32, with ``x0, y`` (B, 1, F, T) complex (or
    real). ``denoiser`` may be wrapped (DDP): only its ``forward`` is called; the preconditioning is read from the
    unwrapped module's ``precond``.
    """

    def __init__(self, noise_level: NoiseLevel | None = None, weighting: Weighting | None = None,
                 prior_fraction: float = 0.0) -> None:
        if not 0 <= prior_fraction <= 1:
            raise ValueError(f"prior_fraction must be in [0, 1], got {prior_fraction}")
        self.noise_level = noise_level if noise_level is not None else LogNormalSigma()
        self.weighting = weighting if weighting is not None else PrecondWeight()
        self.prior_fraction = float(prior_fraction)

    def __call__(self, denoiser, sde, x0: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None, return_estimate: bool = False):
        """Per-example loss (B,); with ``return_estimate`` also the clean estimate ``y + D`` at the sampled noise
        level (same shape as ``x0``, differentiable), the enhancer's one-step output that task paradigms can use."""
        if x0.shape != y.shape:
            raise ValueError(f"x0 {tuple(x0.shape)} and y {tuple(y.shape)} differ in shape")
        batch = x0.shape[0]
        gen_device = generator.device if generator is not None else x0.device
        t = self.noise_level.sample(batch, sde, generator, device=gen_device).to(x0.device)
        keep = torch.ones(batch, dtype=x0.real.dtype, device=x0.device)
        if self.prior_fraction > 0:
            u = torch.rand(batch, dtype=torch.float64, device=gen_device, generator=generator).to(x0.device)
            at_prior = u < self.prior_fraction
            t = torch.where(at_prior, torch.full_like(t, sde.t_max), t)
            keep = (~at_prior).to(keep.dtype)
        sigma = sde.sigma(t.cpu()).to(x0.device)
        noise = randn_like(x0, generator) if generator is None or generator.device == x0.device else \
            randn_like(x0.cpu(), generator).to(x0.device)
        shape = (batch, *([1] * (x0.ndim - 1)))
        target = x0 - y
        x_tilde = keep.reshape(shape) * target + sigma.to(keep.dtype).reshape(shape) * noise
        denoised = denoiser(x_tilde, y, sigma)
        err = (denoised - target).abs() ** 2
        per_example = err.reshape(batch, -1).mean(dim=1)
        inner = getattr(denoiser, "module", denoiser)
        weight = self.weighting(sigma, inner.precond).to(per_example.device, per_example.dtype)
        if return_estimate:
            return weight * per_example, y + denoised
        return weight * per_example

    def __repr__(self) -> str:
        return (f"DenoisingLoss(noise_level={type(self.noise_level).__name__}, "
                f"weighting={type(self.weighting).__name__}, prior_fraction={self.prior_fraction})")
