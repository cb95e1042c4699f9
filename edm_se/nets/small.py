"""A small 2-D U-Net for CPU training (the demo / test backbone).

Same family as the paper nets (NCSN++ / ADM: residual blocks, GroupNorm, SiLU, noise-conditioned feature
modulation, U-Net skip connections), sized for a 2-core CPU:

* Frequency (and optionally time) bins are folded into channels at the input with a pixel-unshuffle-like reshape
  and unfolded at the output. On 2 CPU cores this cut the training step time ~2.5x at equal parameter count
  (project note ``cpu-training-notes.md``): the convolutions then run on a smaller grid with more channels.
* The noise input ``c_noise`` is embedded with Gaussian Fourier features + a 2-layer MLP and modulates every
  residual block with FiLM / AdaGN (``h = GN(h) * (1 + scale) + shift``; Dhariwal & Nichol 2021, Sec. 3,
  "adaptive group normalization"; Perez et al. 2018, FiLM).
* No attention, no zero-initialised layers (so every parameter receives gradient from the first step).

Conditioning on the noisy speech ``y`` is done outside, by channel concatenation in the Denoiser.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from edm_se.nets.layers import GaussianFourierEmbedding, check_input


def _group_norm(num_channels: int, num_groups: int) -> nn.GroupNorm:
    """GroupNorm with at most ``num_groups`` groups that divide ``num_channels``."""
    groups = math.gcd(num_channels, num_groups)
    return nn.GroupNorm(groups, num_channels, eps=1e-6)


class FiLMResBlock(nn.Module):
    """Residual block with AdaGN / FiLM noise conditioning.

    ``h = conv(SiLU(GN(x)));  h = GN(h) * (1 + scale(emb)) + shift(emb);  h = conv(dropout(SiLU(h)));``
    ``out = (skip(x) + h) / sqrt(2)``.

    Source: Dhariwal & Nichol 2021 (ADM ``ResBlock`` with ``use_scale_shift_norm``); Song et al. 2021 (skip_rescale).

    Args:
        in_channels: input channels.
        out_channels: output channels (a 1x1 conv maps the skip path when they differ).
        emb_channels: width of the noise embedding.
        num_groups: GroupNorm groups (reduced to a divisor of the channel count).
        dropout: dropout probability before the second conv.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, num_groups: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels, num_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_channels, 2 * out_channels)
        self.norm2 = _group_norm(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply.

        Args:
            x: (B, in_channels, H, W) float32.
            emb: (B, emb_channels) float32 (already passed through SiLU).

        Returns:
            (B, out_channels, H, W) float32.
        """
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return (self.skip(x) + h) * (1 / math.sqrt(2))


class SmallUNet(nn.Module):
    """Small noise-conditioned U-Net with frequency/time folding, for CPU training.

    Layout: fold ``(F, T)`` by ``(fold_f, fold_t)`` into channels -> 3x3 conv -> per level ``num_res_blocks``
    FiLM residual blocks (skip saved), stride-2 conv downsampling between levels -> middle block -> mirrored decoder
    (skip concatenated, residual block, nearest-neighbour x2 + 3x3 conv upsampling) -> GN, SiLU, 3x3 conv -> unfold.

    Attributes:
        downsample_factor: ``lcm(fold_f, fold_t) * 2 ** (len(channels) - 1)``; F and T must be multiples of it.

    Args:
        in_channels: input channels C_in (4 = [Re x, Im x, Re y, Im y]).
        out_channels: output channels C_out (2 = [Re, Im]).
        channels: feature channels per resolution level (len(channels) - 1 downsamplings).
        num_res_blocks: residual blocks per level in the encoder and in the decoder.
        fold_f: frequency bins folded into channels at the input (1 = no folding).
        fold_t: time frames folded into channels at the input.
        emb_channels: width of the noise embedding MLP.
        fourier_scale: std of the Gaussian Fourier frequencies (16 as in EDM / NCSN++).
        num_groups: GroupNorm groups.
        dropout: dropout probability inside residual blocks.
    """

    def __init__(self, in_channels: int = 4, out_channels: int = 2, channels: Sequence[int] = (32, 64, 96),
                 num_res_blocks: int = 1, fold_f: int = 2, fold_t: int = 2, emb_channels: int = 128,
                 fourier_scale: float = 16.0, num_groups: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"SmallUNet: channels must be a non-empty list of positive ints, got {channels}")
        if fold_f < 1 or fold_t < 1 or num_res_blocks < 1:
            raise ValueError("SmallUNet: fold_f, fold_t and num_res_blocks must be >= 1")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.fold_f = fold_f
        self.fold_t = fold_t
        self.downsample_factor = math.lcm(fold_f, fold_t) * 2 ** (len(channels) - 1)
        fold = fold_f * fold_t

        self.embed = GaussianFourierEmbedding(emb_channels // 2, scale=fourier_scale)
        self.embed_mlp = nn.Sequential(nn.Linear(2 * (emb_channels // 2), emb_channels), nn.SiLU(),
                                       nn.Linear(emb_channels, emb_channels))

        def block(cin: int, cout: int) -> FiLMResBlock:
            return FiLMResBlock(cin, cout, emb_channels, num_groups, dropout)

        self.conv_in = nn.Conv2d(in_channels * fold, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_channels = []
        cur = channels[0]
        for level, ch in enumerate(channels):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(block(cur, ch))
                cur = ch
                skip_channels.append(cur)
            self.down_blocks.append(blocks)
            if level < len(channels) - 1:
                self.downsamplers.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
        self.mid = block(cur, cur)
        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level in reversed(range(len(channels))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(block(cur + skip_channels.pop(), channels[level]))
                cur = channels[level]
            self.up_blocks.append(blocks)
            if level > 0:
                self.upsamplers.append(nn.Conv2d(cur, cur, 3, padding=1))
        self.norm_out = _group_norm(cur, num_groups)
        self.conv_out = nn.Conv2d(cur, out_channels * fold, 3, padding=1)

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) -> (B, C * fold_f * fold_t, F / fold_f, T / fold_t)."""
        b, c, n_freq, n_time = x.shape
        x = x.reshape(b, c, n_freq // self.fold_f, self.fold_f, n_time // self.fold_t, self.fold_t)
        x = x.permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * self.fold_f * self.fold_t, n_freq // self.fold_f, n_time // self.fold_t)

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_fold`."""
        b, cf, n_freq, n_time = x.shape
        c = cf // (self.fold_f * self.fold_t)
        x = x.reshape(b, c, self.fold_f, self.fold_t, n_freq, n_time).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c, n_freq * self.fold_f, n_time * self.fold_t)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """Predict the backbone output.

        Args:
            x: (B, in_channels, F, T) float32; F and T multiples of ``downsample_factor``.
            c_noise: (B,) float32 preconditioned noise input (e.g. ``log(sigma) / 4``).

        Returns:
            (B, out_channels, F, T) float32.

        Raises:
            ValueError: bad shapes (see :func:`edm_se.nets.layers.check_input`).
        """
        c_noise = check_input(x, c_noise, self.in_channels, self.downsample_factor, type(self).__name__)
        emb = F.silu(self.embed_mlp(self.embed(c_noise)))
        h = self.conv_in(self._fold(x))
        skips = []
        for level, blocks in enumerate(self.down_blocks):
            for blk in blocks:
                h = blk(h, emb)
                skips.append(h)
            if level < len(self.downsamplers):
                h = self.downsamplers[level](h)
        h = self.mid(h, emb)
        for i, blocks in enumerate(self.up_blocks):
            for blk in blocks:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsamplers):
                h = self.upsamplers[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.conv_out(F.silu(self.norm_out(h)))
        return self._unfold(h)
