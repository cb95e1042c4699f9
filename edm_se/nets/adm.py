"""ADM-style U-Net (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs"; EDM's ``DhariwalUNet``), native PyTorch.

Layout (as ``DhariwalUNet`` in github.com/NVlabs/edm ``training/networks.py``, Karras et al. 2022):

* Noise embedding: sinusoidal positional features of ``c_noise`` (``model_channels`` wide) -> Linear -> SiLU ->
  Linear to ``emb_channels = model_channels * channel_mult_emb``; SiLU applied before each block's affine layer.
* Residual blocks with adaptive group normalisation (``adaptive_scale``): ``h = GN(conv(SiLU(GN(x))))``,
  ``h = SiLU(h * (1 + scale) + shift)`` with (scale, shift) = Linear(emb), dropout, 3x3 conv (zero-initialised),
  skip = identity or 1x1 conv; down/up-sampling inside the block by 2x2 average pooling / nearest-neighbour.
* Multi-head self-attention (``channels_per_head`` channels per head) after the blocks of the levels whose feature
  height is in ``attn_resolutions`` (heights for an input of height ``image_size``), and in the middle.
* Encoder: 3x3 conv in; per level (a down block first for level > 0) then ``num_blocks`` blocks.
  Decoder: middle (2 blocks, the first with attention); per level an up block (level < max) then ``num_blocks + 1``
  blocks on [h, skip] concatenations. Output: GN -> SiLU -> 3x3 conv (zero-initialised).

The seed paper's exact ADM configuration could not be pinned from public sources; ``conf/net/adm.yaml`` chooses
EDM's ``DhariwalUNet`` channel multipliers ``[1, 2, 3, 4]`` with ``model_channels=64``, ``num_blocks=1`` and
attention only in the middle (``attn_resolutions=[]``): 16,613,378 parameters with 4 in / 2 out channels, within
0.1% of the published 16.6M. (A scan of model_channels in {64, 96, 128}, several multiplier lists, 1-3 blocks and
attention at heights {32, 16} / {16} / {16, 8} found only this family, and ``96, [1, 2, 2, 2], 1 block`` at 16.70M,
within 1% of 16.6M.)
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from edm_se.nets.layers import PositionalEmbedding, check_input


def _gn(channels: int, num_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with ``min(num_groups, channels // 4)`` groups, eps 1e-5 (EDM ``GroupNorm``)."""
    return nn.GroupNorm(max(1, min(num_groups, channels // 4)), channels, eps=1e-5)


def _zero(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place (EDM ``init_zero``) and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ADMBlock(nn.Module):
    """ADM / EDM ``UNetBlock`` with adaptive scale-shift norm and optional attention.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        emb_channels: noise-embedding width.
        up: nearest-neighbour x2 upsampling inside the block.
        down: 2x2 average-pool downsampling inside the block.
        attention: add a multi-head self-attention layer after the residual.
        channels_per_head: attention head width.
        dropout: dropout probability.
        zero_init: zero-initialise the last conv and the attention projection (EDM ``init_zero``).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, up: bool = False, down: bool = False,
                 attention: bool = False, channels_per_head: int = 64, dropout: float = 0.0,
                 zero_init: bool = True) -> None:
        super().__init__()
        self.up, self.down = up, down
        self.norm0 = _gn(in_channels)
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.affine = nn.Linear(emb_channels, 2 * out_channels)
        self.norm1 = _gn(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.num_heads = max(1, out_channels // channels_per_head) if attention else 0
        if attention:
            self.norm2 = _gn(out_channels)
            self.qkv = nn.Conv2d(out_channels, 3 * out_channels, 1)
            self.proj = nn.Conv2d(out_channels, out_channels, 1)
        if zero_init:
            _zero(self.conv1)
            if attention:
                _zero(self.proj)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W), (B, emb_channels) -> (B, out_channels, H', W'); H' = 2H, H/2 or H."""
        h = self.conv0(self._resample(F.silu(self.norm0(x))))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        x = self._resample(x)
        if self.skip is not None:
            x = self.skip(x)
        x = x + h
        if self.num_heads:
            b, c, hh, ww = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(b, 3, self.num_heads, c // self.num_heads, hh * ww).unbind(1)
            a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
            x = x + self.proj(a.transpose(-1, -2).reshape(b, c, hh, ww))
        return x


class ADMUNet(nn.Module):
    """ADM U-Net backbone (EDM ``DhariwalUNet`` layout, no class conditioning).

    Attributes:
        downsample_factor: ``2 ** (len(channel_mult) - 1)``; F and T must be multiples of it.

    Args:
        in_channels: input channels (4 = [Re x, Im x, Re y, Im y]).
        out_channels: output channels (2 = [Re, Im]).
        model_channels: base channel count.
        channel_mult: per-level channel multipliers.
        channel_mult_emb: embedding width multiplier (``emb_channels = model_channels * channel_mult_emb``).
        num_blocks: residual blocks per level in the encoder (decoder: one more).
        attn_resolutions: feature heights (for input height ``image_size``) whose levels get attention.
        image_size: nominal input height used only to place attention (256 = F for n_fft 510).
        channels_per_head: attention head width.
        dropout: dropout probability.
        noise_input_scale: multiplies ``c_noise`` before the positional embedding. 1 as in EDM (which feeds
            ``log(sigma) / 4`` unscaled to ``DhariwalUNet``); ADM's discrete-time models fed timestep indices
            0..999, i.e. a scale of ~1000 relative to ``t`` in [0, 1].
        zero_init: zero-initialise the output conv and each block's last conv / attention projection (EDM). With
            ``zero_init=True`` a freshly built net outputs exactly 0 for every input.
    """

    def __init__(self, in_channels: int = 4, out_channels: int = 2, model_channels: int = 64,
                 channel_mult: Sequence[int] = (1, 2, 3, 4), channel_mult_emb: int = 4, num_blocks: int = 1,
                 attn_resolutions: Sequence[int] = (), image_size: int = 256, channels_per_head: int = 64,
                 dropout: float = 0.1, noise_input_scale: float = 1.0, zero_init: bool = True) -> None:
        super().__init__()
        channel_mult = [int(m) for m in channel_mult]
        attn_resolutions = [int(r) for r in attn_resolutions]
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_levels = len(channel_mult)
        self.downsample_factor = 2 ** (self.num_levels - 1)
        emb_channels = model_channels * channel_mult_emb

        self.map_noise = PositionalEmbedding(model_channels, input_scale=noise_input_scale)
        self.map_layer0 = nn.Linear(model_channels, emb_channels)
        self.map_layer1 = nn.Linear(emb_channels, emb_channels)

        def block(cin: int, cout: int, **kw: bool) -> ADMBlock:
            return ADMBlock(cin, cout, emb_channels, channels_per_head=channels_per_head, dropout=dropout,
                            zero_init=zero_init, **kw)

        self.enc = nn.ModuleList()
        self.conv_in = nn.Conv2d(in_channels, model_channels, 3, padding=1)
        cout = model_channels
        skips = [cout]
        for level, mult in enumerate(channel_mult):
            res = image_size >> level
            if level > 0:
                self.enc.append(block(cout, cout, down=True))
                skips.append(cout)
            for _ in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc.append(block(cin, cout, attention=res in attn_resolutions))
                skips.append(cout)

        self.dec = nn.ModuleList()
        self.dec_takes_skip = []
        for level in reversed(range(self.num_levels)):
            mult = channel_mult[level]
            res = image_size >> level
            if level == self.num_levels - 1:
                self.dec.append(block(cout, cout, attention=True))
                self.dec.append(block(cout, cout))
                self.dec_takes_skip += [False, False]
            else:
                self.dec.append(block(cout, cout, up=True))
                self.dec_takes_skip.append(False)
            for _ in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec.append(block(cin, cout, attention=res in attn_resolutions))
                self.dec_takes_skip.append(True)
        assert not skips
        self.out_norm = _gn(cout)
        self.out_conv = nn.Conv2d(cout, out_channels, 3, padding=1)
        if zero_init:
            _zero(self.out_conv)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """Evaluate the network.

        Args:
            x: (B, in_channels, F, T) float32; F and T multiples of ``downsample_factor``.
            c_noise: (B,) float32 noise input (e.g. ``log(sigma) / 4``).

        Returns:
            (B, out_channels, F, T) float32.

        Raises:
            ValueError: bad shapes (see :func:`edm_se.nets.layers.check_input`).
        """
        c_noise = check_input(x, c_noise, self.in_channels, self.downsample_factor, type(self).__name__)
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(self.map_noise(c_noise)))))
        h = self.conv_in(x)
        skips = [h]
        for blk in self.enc:
            h = blk(h, emb)
            skips.append(h)
        for blk, takes_skip in zip(self.dec, self.dec_takes_skip):
            if takes_skip:
                h = torch.cat([h, skips.pop()], dim=1)
            h = blk(h, emb)
        return self.out_conv(F.silu(self.out_norm(h)))
