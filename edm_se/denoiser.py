"""The preconditioned denoiser: wraps any backbone and exposes the residual denoiser, the clean estimate and the score.

``D(x_tilde, y; sigma) = c_skip x_tilde + c_out F(c_in x_tilde + c_shift(y), y, c_noise)`` (Karras et al. 2022,
eq. 7; Gonzalez et al. 2024, eq. 15). ``D`` estimates ``E[x0 - y | x_tilde]``, the clean residual.

Complex <-> real packing lives here: for complex input of shape (B, 1, F, T) the backbone receives the 4 real
channels ``[Re(c_in x + c_shift), Im(...), Re y, Im y]`` and returns 2 channels (real, imaginary part of ``F``); for
real input (B, C, ...) it receives ``[c_in x + c_shift, y]`` (2C channels) and returns C channels. Samplers and
losses talk only to this module.
"""

from __future__ import annotations

import torch
from torch import nn

from edm_se.sde import batch_view

__all__ = ["Denoiser"]


class Denoiser(nn.Module):
    """Preconditioned residual denoiser.

    Args:
        net: backbone ``forward(x: (B, C_in, F, T) float32, c_noise: (B,) float32) -> (B, C_out, F, T)``.
        precond: an :class:`edm_se.precond.Precond`.
    """

    def __init__(self, net: nn.Module, precond) -> None:
        super().__init__()
        self.net = net
        self.precond = precond

    def forward(self, x_tilde: torch.Tensor, y: torch.Tensor, sigma) -> torch.Tensor:
        """Estimate the clean residual ``x0 - y``.

        Args:
            x_tilde: (B, 1, F, T) complex (or real (B, C, ...)): ``(x_t - y) / s(t)``.
            y: noisy conditioner, same shape and kind as ``x_tilde``.
            sigma: noise level(s), float scalar or (B,) tensor, > 0.

        Returns:
            ``D``, same shape and dtype as ``x_tilde``.
        """
        if x_tilde.shape != y.shape:
            raise ValueError(f"x_tilde {tuple(x_tilde.shape)} and y {tuple(y.shape)} differ in shape")
        batch = x_tilde.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x_tilde.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(batch)
        p = self.precond
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        net_in = batch_view(p.c_in(sigma), x_tilde) * x_tilde + p.c_shift(y, sigma).to(x_tilde.dtype)
        c_noise = torch.as_tensor(p.c_noise(sigma), device=x_tilde.device).to(dtype).reshape(batch)
        if x_tilde.is_complex():
            packed = torch.cat([net_in.real, net_in.imag, y.real.to(net_in.real.dtype), y.imag.to(net_in.real.dtype)],
                               dim=1).to(dtype)
            out = self.net(packed, c_noise)
            f_out = torch.complex(out[:, 0:1].to(x_tilde.real.dtype), out[:, 1:2].to(x_tilde.real.dtype))
        else:
            packed = torch.cat([net_in, y.to(net_in.dtype)], dim=1).to(dtype)
            f_out = self.net(packed, c_noise).to(x_tilde.dtype)
        return batch_view(p.c_skip(sigma), x_tilde) * x_tilde + batch_view(p.c_out(sigma), x_tilde) * f_out

    def denoise(self, x_t: torch.Tensor, y: torch.Tensor, t, sde) -> torch.Tensor:
        """Absolute clean estimate ``x0_hat = y + D((x_t - m y) / s(t), y; sigma(t))`` (``m = 1`` but for
        :class:`edm_se.sde.SBVP`); ``t`` scalar or (B,)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        s = batch_view(sde.s(t), x_t)
        return y + self(((x_t - sde.center(y, t)) / s), y, sde.sigma(t))

    def score(self, x_t: torch.Tensor, y: torch.Tensor, t, sde) -> torch.Tensor:
        """Score ``grad log p_t(x_t | y) = -(x_t - m y - s (x0_hat - y)) / std^2`` (Karras et al. eq. 3)."""
        return sde.score(x_t, y, self.denoise(x_t, y, t, sde), t)

    def loss_weight(self, sigma) -> torch.Tensor:
        """The preconditioning's ``lambda(sigma)`` (float64, shape of ``sigma``)."""
        return self.precond.loss_weight(sigma)
