"""Compressed complex STFT used as the diffusion state (SGMSE+ representation).

Forward transform (Richter et al. 2023, "Speech Enhancement and Dereverberation with Diffusion-Based Generative
Models", IEEE/ACM TASLP, Sec. IV-B, amplitude compression of the complex STFT; also Welker et al. 2022):

    Z = beta * |X|^alpha * exp(i * angle(X)),        X = STFT(wave)

with ``alpha = 0.5`` and ``beta = 0.15``. The inverse undoes it exactly:
``X = |Z / beta|^(1/alpha) * exp(i * angle(Z))`` followed by ``torch.istft`` with the original ``length``.

STFT: ``n_fft = 510`` (so F = n_fft // 2 + 1 = 256 frequency bins), hop 128, periodic Hann window, ``center=True``
(reflect padding), giving T = 1 + L // hop frames for L samples.

Only ``torch`` is imported.
"""

from __future__ import annotations

import torch
from torch import nn


class SpecTransform(nn.Module):
    """Waveform <-> compressed complex STFT (no learnable parameters).

    Args:
        n_fft: FFT size in samples (F = n_fft // 2 + 1 bins; 510 -> 256).
        hop_length: hop in samples (128 = 8 ms at 16 kHz).
        alpha: magnitude compression exponent (SGMSE+: 0.5), must be > 0.
        beta: magnitude scale (SGMSE+: 0.15), must be > 0.

    Raises:
        ValueError: a non-positive parameter, or ``hop_length > n_fft``.
    """

    def __init__(self, n_fft: int = 510, hop_length: int = 128, alpha: float = 0.5, beta: float = 0.15):
        super().__init__()
        if int(n_fft) <= 0 or int(hop_length) <= 0 or int(hop_length) > int(n_fft):
            raise ValueError(f"need 0 < hop_length <= n_fft, got n_fft={n_fft}, hop_length={hop_length}")
        if not (float(alpha) > 0 and float(beta) > 0):
            raise ValueError(f"alpha and beta must be > 0, got alpha={alpha}, beta={beta}")
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.alpha = float(alpha)
        self.beta = float(beta)
        # periodic Hann (torch default periodic=True); a buffer so .to(device) moves it, not saved in state_dicts
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)

    @property
    def num_freqs(self) -> int:
        """F = n_fft // 2 + 1 frequency bins."""
        return self.n_fft // 2 + 1

    def num_frames(self, length: int) -> int:
        """T = 1 + length // hop_length frames for ``length`` samples (center=True)."""
        return 1 + int(length) // self.hop_length

    def _window(self, ref: torch.Tensor) -> torch.Tensor:
        return self.window.to(device=ref.device, dtype=ref.real.dtype if ref.is_complex() else ref.dtype)

    # Both maps scale X by a real factor of |X| instead of forming exp(i angle X): the same values (up to
    # rounding) without a complex exp and an atan2 per bin, a third of the fixed cost of a one-step enhancement.
    # |X| is clamped away from 0 where the factor has a negative power; there X = 0 and the product is 0.
    _TINY = 1e-30

    def compress(self, spec: torch.Tensor) -> torch.Tensor:
        """``beta * |X|^alpha * exp(i angle X)`` (SGMSE+ amplitude compression), computed as
        ``X * beta |X|^(alpha - 1)``; complex in, complex out."""
        return spec * (self.beta * spec.abs().clamp_min(self._TINY).pow(self.alpha - 1.0))

    def decompress(self, spec: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`compress`: ``|Z / beta|^(1/alpha) exp(i angle Z)``, computed as
        ``Z |Z|^(1/alpha - 1) / beta^(1/alpha)``."""
        inv = 1.0 / self.alpha
        return spec * (spec.abs().clamp_min(self._TINY).pow(inv - 1.0) / self.beta ** inv)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform -> compressed complex STFT.

        Args:
            wave: (L,) or (B, L) real float waveform (float64 is kept; other real dtypes become float32).
                L must exceed n_fft // 2 (reflect padding).

        Returns:
            (B, 1, F, T) complex64 (complex128 for float64 input), F = n_fft // 2 + 1, T = 1 + L // hop_length.

        Raises:
            ValueError: ``wave`` is complex or not 1-D/2-D.
        """
        if wave.is_complex() or wave.dim() not in (1, 2):
            raise ValueError(f"expected a real (L,) or (B, L) waveform, got {tuple(wave.shape)} {wave.dtype}")
        if wave.dtype != torch.float64:
            wave = wave.to(torch.float32)
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        spec = torch.stft(wave, n_fft=self.n_fft, hop_length=self.hop_length, window=self._window(wave),
                          center=True, pad_mode="reflect", return_complex=True)
        return self.compress(spec).unsqueeze(1)

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Compressed complex STFT -> waveform (exact inverse of :meth:`forward`).

        Args:
            spec: (B, 1, F, T) or (B, F, T) complex.
            length: number of output samples L (as given to :meth:`forward`).

        Returns:
            (B, L) float32 (float64 for complex128 input).

        Raises:
            ValueError: ``spec`` is not complex or has the wrong number of frequency bins.
        """
        if not spec.is_complex():
            raise ValueError(f"expected a complex spectrogram, got {spec.dtype}")
        if spec.dim() == 4:
            if spec.shape[1] != 1:
                raise ValueError(f"expected one channel (B, 1, F, T), got {tuple(spec.shape)}")
            spec = spec[:, 0]
        if spec.dim() != 3 or spec.shape[1] != self.num_freqs:
            raise ValueError(f"expected (B, 1, {self.num_freqs}, T), got {tuple(spec.shape)}")
        spec = self.decompress(spec)
        return torch.istft(spec, n_fft=self.n_fft, hop_length=self.hop_length, window=self._window(spec),
                           center=True, length=int(length))

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop_length={self.hop_length}, alpha={self.alpha}, beta={self.beta}"


def pad_frames(spec: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int]:
    """Zero-pad the last dim (frames) up to a multiple of ``multiple`` (for U-Nets that downsample).

    Args:
        spec: (..., T) tensor (e.g. (B, 1, F, T) complex64).
        multiple: positive int (a backbone's ``downsample_factor``).

    Returns:
        (padded (..., T_pad) with T_pad the smallest multiple >= T, T_orig = T).

    Raises:
        ValueError: ``multiple`` < 1.
    """
    if int(multiple) < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    num_frames = spec.shape[-1]
    extra = (-num_frames) % int(multiple)
    if extra:
        pad = spec.new_zeros(*spec.shape[:-1], extra)
        spec = torch.cat([spec, pad], dim=-1)
    return spec, num_frames


def crop_frames(spec: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Undo :func:`pad_frames`: keep the first ``num_frames`` frames of the last dim.

    Raises:
        ValueError: ``num_frames`` exceeds the frames present or is negative.
    """
    if not 0 <= int(num_frames) <= spec.shape[-1]:
        raise ValueError(f"cannot crop {spec.shape[-1]} frames to {num_frames}")
    return spec[..., : int(num_frames)]
