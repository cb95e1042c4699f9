"""Post-processing of an enhanced waveform: observation adding (OA).

A single-channel enhancer's errors split into residual noise and *artifacts*: error that is no linear combination of
the speech and the noise. Artifacts hurt a speech recogniser far more than residual noise does (Iwamoto et al.,
*How bad are artifacts?: Analyzing the impact of speech enhancement errors on ASR*, Interspeech 2022; Ochiai et al.,
*Rethinking processing distortions*, IEEE/ACM TASLP 2024). Adding the observed noisy signal back to the enhanced one
raises the signal-to-artifact ratio monotonically (the papers' result, under a mild condition) at the cost of
letting some noise back in. edm_se writes it as the interpolation

    x_OA = (1 - w) * x_enh + w * y,    w in [0, 1]  (``oa_weight``)

so that ``w = 0`` is the enhancer's output and ``w = 1`` the noisy input. The papers' form ``x_enh + a * y`` is the
same signal up to the gain ``1 + a`` (``w = a / (1 + a)``), which SI-SDR, PESQ's level alignment, ESTOI and a
recogniser's normalised features do not see.
"""

from __future__ import annotations

import math

import torch


def check_oa_weight(weight: float) -> float:
    """``weight`` as a float, checked to lie in [0, 1].

    Raises:
        ValueError: not a finite number in [0, 1] (the message names ``oa_weight``).
    """
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"oa_weight must be a number in [0, 1], got {weight!r}") from None
    if not math.isfinite(w) or not 0.0 <= w <= 1.0:
        raise ValueError(f"oa_weight must be in [0, 1] (0: the enhanced signal, 1: the noisy input), got {weight!r}")
    return w


def observation_adding(enhanced: torch.Tensor, noisy: torch.Tensor, weight: float) -> torch.Tensor:
    """Observation adding: ``(1 - weight) * enhanced + weight * noisy`` (module docstring; Iwamoto et al. 2022).

    Args:
        enhanced: (L,) or (B, L) float waveform, the enhancer's output.
        noisy: the observed noisy waveform it was enhanced from, same shape, same sample rate and time alignment.
        weight: ``w`` in [0, 1]. ``0`` returns ``enhanced`` itself (the same tensor, untouched) and ``1`` a copy of
            ``noisy`` in ``enhanced``'s dtype.

    Returns:
        A tensor of ``enhanced``'s shape and dtype.

    Raises:
        ValueError: ``weight`` outside [0, 1], or shapes that differ.
    """
    w = check_oa_weight(weight)
    if tuple(enhanced.shape) != tuple(noisy.shape):
        raise ValueError(f"observation adding needs the enhanced and the noisy signal aligned sample by sample, got "
                         f"shapes {tuple(enhanced.shape)} and {tuple(noisy.shape)}")
    if w == 0.0:
        return enhanced
    noisy = noisy.to(device=enhanced.device, dtype=enhanced.dtype)
    return torch.lerp(enhanced, noisy, w)
