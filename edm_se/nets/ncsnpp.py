"""NCSN++ (Song et al. 2021) as used by SGMSE+ (Richter et al. 2023), written with native PyTorch ops.

Architecture (the settings of SGMSE+'s backbone, ``sgmse/backbones/ncsnpp.py`` in github.com/sp-uhh/sgmse, which
derives from github.com/yang-song/score_sde_pytorch ``models/ncsnpp.py``):

* Gaussian Fourier embedding of the noise input (scale 16) + 2-layer MLP to ``4 nf`` channels ("conditional").
* BigGAN-style residual blocks (``ResnetBlockBigGANpp``): GN -> SiLU -> [FIR up/down] -> 3x3 conv -> + Dense(temb)
  -> GN -> SiLU -> dropout -> 3x3 conv (``init_scale``), skip 1x1 conv when shape changes; ``skip_rescale``
  divides the sum by sqrt(2).
* FIR resampling with kernel [1, 3, 3, 1] (``upfirdn2d``, here implemented with zero insertion, padding and a
  depthwise ``conv2d``; no custom CUDA kernel).
* ``progressive_input='input_skip'``: the input is FIR-downsampled alongside the encoder and added (``combine='sum'``)
  to each downsampled feature map through a 1x1 conv.
* ``progressive='output_skip'``: every decoder level emits a GN -> SiLU -> 3x3 conv prediction with ``in_channels``
  channels, summed with the FIR-upsampled prediction from the level below; a final 1x1 conv maps
  ``in_channels -> out_channels`` (SGMSE+'s ``output_layer``).
* Self-attention (DDPM ``AttnBlockpp``) at ``attn_resolutions`` and in the middle.

Differences from the SGMSE+ code, on purpose:

* No ``scale_by_sigma``: SGMSE+ divides the network output by ``t`` (``used_sigmas = t``). Here the backbone returns
  the raw output; the preconditioning's ``c_out = -s * sigma^2 / t`` (edm_se.precond) carries that factor.
* ``c_noise`` is taken as given: SGMSE+ computes ``log(t)`` inside the net, here the preconditioning passes
  ``c_noise = log(t)`` (or ``log(sigma)/4``) already.
* Complex <-> channel packing is done by the Denoiser; the net sees real channels [Re x, Im x, Re y, Im y].
* The levels that get attention are fixed at construction from ``image_size`` (SGMSE+ checks the runtime height
  ``h.shape[-2]``, which only agrees for F = image_size = 256); so an input with another F runs the same network.
* The Fourier frequencies are a buffer (SGMSE+ stores them as a frozen ``nn.Parameter``: +nf entries in its count).

Parameter counts (in=4, out=2): ``conf/net/ncsnpp.yaml`` 65.6M (SGMSE+), ``conf/net/ncsnpp_m.yaml`` 27.8M (NCSN++M).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from edm_se.nets.layers import GaussianFourierEmbedding, check_input


# ----------------------------------------------------------------------------------------------------------------
# FIR resampling (StyleGAN2 upfirdn2d, native ops)


def _fir_kernel_2d(kernel: Sequence[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel ``outer(k, k) / sum(k)^2`` as a float32 (K, K) tensor."""
    k = torch.tensor([float(v) for v in kernel], dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter and downsample, per channel.

    Same semantics as StyleGAN2's / score_sde's ``upfirdn2d`` (true convolution: the kernel is flipped), with the
    same padding on both spatial axes.

    Args:
        x: (B, C, H, W) float tensor.
        kernel: (K, K) float FIR kernel.
        up: integer upsampling factor.
        down: integer downsampling factor.
        pad: (before, after) padding applied to H and W after upsampling (non-negative).

    Returns:
        (B, C, (H * up + pad0 + pad1 - K) // down + 1, same for W) tensor.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel.flip(0, 1).to(dtype=x.dtype, device=x.device)
    weight = weight[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def fir_upsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR upsampling by ``factor`` (score_sde ``upsample_2d``): (B, C, H, W) -> (B, C, H*factor, W*factor)."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel * factor ** 2, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def fir_downsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR downsampling by ``factor`` (score_sde ``downsample_2d``): (B, C, H, W) -> (B, C, H/factor, W/factor)."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


# ----------------------------------------------------------------------------------------------------------------
# Initialisation (score_sde ``default_init``: variance scaling, fan_avg, uniform)


def _variance_scaling_(weight: torch.Tensor, scale: float) -> None:
    """In-place uniform variance-scaling init (fan_avg); ``scale == 0`` means 1e-10 as in score_sde."""
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.ndim > 2 else 1
    fan_in = weight.shape[1] * receptive
    fan_out = weight.shape[0] * receptive
    variance = scale / ((fan_in + fan_out) / 2.0)
    bound = math.sqrt(3.0 * variance)
    with torch.no_grad():
        weight.uniform_(-bound, bound)


def _conv(in_ch: int, out_ch: int, kernel_size: int, init_scale: float = 1.0) -> nn.Conv2d:
    """Conv2d ('same' padding, bias) with score_sde's init (zero bias)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
    _variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def _linear(in_features: int, out_features: int, init_scale: float = 1.0) -> nn.Linear:
    """Linear layer with score_sde's init (zero bias)."""
    layer = nn.Linear(in_features, out_features)
    _variance_scaling_(layer.weight, init_scale)
    nn.init.zeros_(layer.bias)
    return layer


def _gn(channels: int) -> nn.GroupNorm:
    """GroupNorm with ``min(channels // 4, 32)`` groups, eps 1e-6 (score_sde)."""
    return nn.GroupNorm(min(channels // 4, 32), channels, eps=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Blocks


class BigGANResBlock(nn.Module):
    """BigGAN-style residual block with optional FIR up/downsampling (score_sde ``ResnetBlockBigGANpp``).

    Args:
        in_ch: input channels.
        out_ch: output channels (``None``: same as input).
        temb_dim: noise-embedding width.
        up: upsample x2 (FIR) inside the block.
        down: downsample x2 (FIR) inside the block.
        fir_kernel: (K, K) FIR kernel (a buffer shared by reference is fine).
        dropout: dropout probability.
        skip_rescale: divide the residual sum by sqrt(2).
        init_scale: init scale of the second conv (0 -> ~zero, as in SGMSE+).
    """

    def __init__(self, in_ch: int, out_ch: int | None, temb_dim: int, up: bool, down: bool, fir_kernel: torch.Tensor,
                 dropout: float, skip_rescale: bool, init_scale: float) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.up, self.down, self.skip_rescale = up, down, skip_rescale
        self.register_buffer("fir_kernel", fir_kernel.clone(), persistent=False)
        self.norm0 = _gn(in_ch)
        self.conv0 = _conv(in_ch, out_ch, 3)
        self.dense = _linear(temb_dim, out_ch)
        self.norm1 = _gn(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _conv(out_ch, out_ch, 3, init_scale=init_scale)
        self.skip = _conv(in_ch, out_ch, 1) if (in_ch != out_ch or up or down) else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """(B, in_ch, H, W), (B, temb_dim) -> (B, out_ch, H', W') with H' = 2H (up), H/2 (down) or H."""
        h = F.silu(self.norm0(x))
        if self.up:
            h = fir_upsample_2d(h, self.fir_kernel)
            x = fir_upsample_2d(x, self.fir_kernel)
        elif self.down:
            h = fir_downsample_2d(h, self.fir_kernel)
            x = fir_downsample_2d(x, self.fir_kernel)
        h = self.conv0(h)
        h = h + self.dense(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        if self.skip is not None:
            x = self.skip(x)
        out = x + h
        return out / math.sqrt(2.0) if self.skip_rescale else out


class AttnBlock(nn.Module):
    """Single-head self-attention over all (H, W) positions (score_sde ``AttnBlockpp``, DDPM).

    Args:
        channels: feature channels.
        skip_rescale: divide the residual sum by sqrt(2).
        init_scale: init scale of the output projection (0 -> ~zero, as in SGMSE+).
    """

    def __init__(self, channels: int, skip_rescale: bool, init_scale: float) -> None:
        super().__init__()
        self.norm = _gn(channels)
        self.q = _conv(channels, channels, 1)
        self.k = _conv(channels, channels, 1)
        self.v = _conv(channels, channels, 1)
        self.proj = _conv(channels, channels, 1, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        hn = self.norm(x)
        q = self.q(hn).reshape(b, 1, c, h * w).transpose(-1, -2)
        k = self.k(hn).reshape(b, 1, c, h * w).transpose(-1, -2)
        v = self.v(hn).reshape(b, 1, c, h * w).transpose(-1, -2)
        a = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        a = a.transpose(-1, -2).reshape(b, c, h, w)
        out = x + self.proj(a)
        return out / math.sqrt(2.0) if self.skip_rescale else out


# ----------------------------------------------------------------------------------------------------------------
# Network


class NCSNpp(nn.Module):
    """NCSN++ score network (SGMSE+ configuration by default).

    Attributes:
        downsample_factor: ``2 ** (len(ch_mult) - 1)``; F and T must be multiples of it (64 for SGMSE+'s net).

    Args:
        in_channels: input channels (4 = [Re x, Im x, Re y, Im y]); also the channels of the output pyramid.
        out_channels: output channels (2 = [Re, Im]).
        nf: base channel count.
        ch_mult: channel multiplier per resolution level.
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
        attn_resolutions: feature heights (with input height ``image_size``) whose levels get self-attention.
        image_size: nominal input height used only to place attention (256 = F for n_fft 510).
        fir_kernel: FIR resampling kernel (1-D taps).
        fourier_scale: std of the Gaussian Fourier frequencies.
        dropout: dropout probability in residual blocks.
        skip_rescale: divide residual sums by sqrt(2).
        init_scale: init scale of the last conv of each residual / attention block and of the output-pyramid convs
            (0 -> variance scale 1e-10, i.e. practically zero, as in SGMSE+).
        output_bias_times_t: multiply ``output_layer``'s bias by ``t = exp(c_noise)``. SGMSE+ divides by ``t``
            *before* its output layer, so its bias is not divided by ``t``; with ``precond=sgmse`` (``c_noise =
            ln t``, ``c_out`` carrying ``1 / t``) this reproduces an imported SGMSE+ network exactly
            (:mod:`edm_se.sgmse_import` sets it). False (default): a plain output layer.

    Only SGMSE+'s choices are implemented (BigGAN blocks, FIR resampling, ``output_skip`` / ``input_skip`` with
    ``sum``, Fourier embedding, conditional); there are no switches for the alternatives.
    """

    def __init__(self, in_channels: int = 4, out_channels: int = 2, nf: int = 128,
                 ch_mult: Sequence[int] = (1, 1, 2, 2, 2, 2, 2), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), image_size: int = 256,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), fourier_scale: float = 16.0, dropout: float = 0.0,
                 skip_rescale: bool = True, init_scale: float = 0.0, output_bias_times_t: bool = False) -> None:
        super().__init__()
        self.output_bias_times_t = bool(output_bias_times_t)
        ch_mult = [int(m) for m in ch_mult]
        attn_resolutions = [int(r) for r in attn_resolutions]
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_levels = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.downsample_factor = 2 ** (self.num_levels - 1)
        kernel = _fir_kernel_2d(fir_kernel)
        self.register_buffer("fir_kernel", kernel, persistent=False)
        temb_dim = 4 * nf

        self.embed = GaussianFourierEmbedding(nf, scale=fourier_scale)
        self.embed_fc0 = _linear(2 * nf, temb_dim)
        self.embed_fc1 = _linear(temb_dim, temb_dim)

        def resblock(in_ch: int, out_ch: int | None = None, up: bool = False, down: bool = False) -> BigGANResBlock:
            return BigGANResBlock(in_ch, out_ch, temb_dim, up, down, kernel, dropout, skip_rescale, init_scale)

        def attn(ch: int) -> AttnBlock:
            return AttnBlock(ch, skip_rescale, init_scale)

        self.level_has_attn = [image_size // 2 ** i in attn_resolutions for i in range(self.num_levels)]

        # Encoder
        self.conv_in = _conv(in_channels, nf, 3)
        skip_ch = [nf]
        in_ch = nf
        self.enc_blocks = nn.ModuleList()
        self.enc_attn = nn.ModuleList()
        self.enc_down = nn.ModuleList()
        self.enc_combine = nn.ModuleList()
        for level, mult in enumerate(ch_mult):
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(resblock(in_ch, nf * mult))
                in_ch = nf * mult
                attns.append(attn(in_ch) if self.level_has_attn[level] else nn.Identity())
                skip_ch.append(in_ch)
            self.enc_blocks.append(blocks)
            self.enc_attn.append(attns)
            if level != self.num_levels - 1:
                self.enc_down.append(resblock(in_ch, down=True))
                self.enc_combine.append(_conv(in_channels, in_ch, 1))  # input_skip, combine 'sum'
                skip_ch.append(in_ch)

        # Middle
        self.mid_block0 = resblock(in_ch)
        self.mid_attn = attn(in_ch)
        self.mid_block1 = resblock(in_ch)

        # Decoder
        self.dec_blocks = nn.ModuleList()
        self.dec_attn = nn.ModuleList()
        self.dec_out_norm = nn.ModuleList()
        self.dec_out_conv = nn.ModuleList()
        self.dec_up = nn.ModuleList()
        for level in reversed(range(self.num_levels)):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(resblock(in_ch + skip_ch.pop(), nf * ch_mult[level]))
                in_ch = nf * ch_mult[level]
            self.dec_blocks.append(blocks)
            self.dec_attn.append(attn(in_ch) if self.level_has_attn[level] else nn.Identity())
            self.dec_out_norm.append(_gn(in_ch))  # output_skip pyramid
            self.dec_out_conv.append(_conv(in_ch, in_channels, 3, init_scale=init_scale))
            if level != 0:
                self.dec_up.append(resblock(in_ch, up=True))
        assert not skip_ch
        self.output_layer = nn.Conv2d(in_channels, out_channels, 1)  # SGMSE+'s output_layer (PyTorch default init)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """Evaluate the network (no division by sigma / t: see module docstring).

        Args:
            x: (B, in_channels, F, T) float32; F and T multiples of ``downsample_factor``.
            c_noise: (B,) float32 noise input (SGMSE+: ``log(t)``; EDM: ``log(sigma) / 4``).

        Returns:
            (B, out_channels, F, T) float32.

        Raises:
            ValueError: bad shapes (see :func:`edm_se.nets.layers.check_input`).
        """
        c_noise = check_input(x, c_noise, self.in_channels, self.downsample_factor, type(self).__name__)
        temb = self.embed_fc1(F.silu(self.embed_fc0(self.embed(c_noise))))

        input_pyramid = x
        h = self.conv_in(x)
        hs = [h]
        for level in range(self.num_levels):
            for block, att in zip(self.enc_blocks[level], self.enc_attn[level]):
                h = att(block(h, temb))
                hs.append(h)
            if level != self.num_levels - 1:
                h = self.enc_down[level](h, temb)
                input_pyramid = fir_downsample_2d(input_pyramid, self.fir_kernel)
                h = h + self.enc_combine[level](input_pyramid)
                hs.append(h)

        h = self.mid_block1(self.mid_attn(self.mid_block0(h, temb)), temb)

        pyramid = None
        for i, level in enumerate(reversed(range(self.num_levels))):
            for block in self.dec_blocks[i]:
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
            h = self.dec_attn[i](h)
            pyramid_h = self.dec_out_conv[i](F.silu(self.dec_out_norm[i](h)))
            pyramid = pyramid_h if pyramid is None else fir_upsample_2d(pyramid, self.fir_kernel) + pyramid_h
            if level != 0:
                h = self.dec_up[i](h, temb)
        if self.output_bias_times_t:
            bias = self.output_layer.bias[None, :, None, None] * torch.exp(c_noise)[:, None, None, None]
            return F.conv2d(pyramid, self.output_layer.weight) + bias
        return self.output_layer(pyramid)
