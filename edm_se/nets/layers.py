"""Shared building blocks for the backbones: noise embeddings and shape checks.

Every backbone in :mod:`edm_se.nets` maps ``x: (B, C_in, F, T) float32`` and ``c_noise: (B,) float32`` to
``(B, C_out, F, T) float32``. ``c_noise`` is the preconditioning's noise input (e.g. ``log(sigma) / 4`` for EDM,
``log(t)`` for SGMSE+); the nets only embed it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of a scalar noise input.

    ``emb = [sin(2 pi w c), cos(2 pi w c)]`` with fixed ``w ~ N(0, scale^2)`` (a buffer, not trained).

    Source: Tancik et al. 2020; Song et al. 2021 (score SDE, NCSN++ ``GaussianFourierProjection``); Karras et al.
    2022 (EDM ``FourierEmbedding``, scale 16).

    Args:
        embedding_size: number of frequencies; the output has ``2 * embedding_size`` features.
        scale: standard deviation of the frequencies.
        seed: seed of the private generator that draws the frequencies (so two nets built with the same
            arguments share the embedding, independently of the global RNG).
    """

    def __init__(self, embedding_size: int, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("W", torch.randn(embedding_size, generator=generator) * scale)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        """Embed.

        Args:
            c_noise: (B,) float32 noise input.

        Returns:
            (B, 2 * embedding_size) float32 features.
        """
        proj = c_noise[:, None].to(self.W.dtype) * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=1)


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding of a scalar (DDPM / ADM ``timestep_embedding``).

    ``emb = [cos(c * f_k), sin(c * f_k)]``, ``f_k = (1 / max_positions)^(k / half)``, ``k = 0..half-1``.

    Source: Vaswani et al. 2017; Ho et al. 2020; Dhariwal & Nichol 2021; EDM ``PositionalEmbedding``.

    Args:
        num_channels: output features (even).
        max_positions: the period scale (10000).
        input_scale: multiplies ``c_noise`` first (EDM feeds ``log(sigma) / 4`` with scale 1; ADM fed timestep
            indices 0..999).
    """

    def __init__(self, num_channels: int, max_positions: int = 10000, input_scale: float = 1.0) -> None:
        super().__init__()
        if num_channels % 2:
            raise ValueError(f"PositionalEmbedding needs an even num_channels, got {num_channels}")
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.input_scale = input_scale

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        """Embed.

        Args:
            c_noise: (B,) float32 noise input.

        Returns:
            (B, num_channels) float32 features.
        """
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=c_noise.device) / half
        freqs = (1.0 / self.max_positions) ** freqs
        arg = (c_noise.float() * self.input_scale)[:, None] * freqs[None, :]
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


def check_input(x: torch.Tensor, c_noise: torch.Tensor, in_channels: int, downsample_factor: int,
                name: str) -> torch.Tensor:
    """Validate a backbone's inputs and return ``c_noise`` as a (B,) float32 tensor.

    Args:
        x: expected (B, in_channels, F, T) floating tensor.
        c_noise: expected (B,) tensor; a 0-d tensor is broadcast to (B,).
        in_channels: channels the net was built for.
        downsample_factor: F and T must be multiples of it.
        name: class name used in messages.

    Returns:
        (B,) float32 ``c_noise`` on ``x``'s device.

    Raises:
        ValueError: wrong rank / channels / batch of ``c_noise``, or F, T not multiples of ``downsample_factor``.
    """
    if x.ndim != 4:
        raise ValueError(f"{name}: expected x of shape (B, C, F, T), got {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{name}: expected {in_channels} input channels, got {x.shape[1]}")
    n_freq, n_time = x.shape[-2:]
    if n_freq % downsample_factor or n_time % downsample_factor:
        raise ValueError(
            f"{name}: F={n_freq} and T={n_time} must both be multiples of downsample_factor="
            f"{downsample_factor}; pad the input (e.g. SpecTransform.pad_frames) first")
    if c_noise.ndim == 0:
        c_noise = c_noise.expand(x.shape[0])
    if c_noise.ndim != 1 or c_noise.shape[0] != x.shape[0]:
        raise ValueError(f"{name}: expected c_noise of shape ({x.shape[0]},), got {tuple(c_noise.shape)}")
    return c_noise.to(device=x.device, dtype=torch.float32)
