"""The optimisation schedule of a training run: the learning-rate factor per step and the EMA of the weights."""

from __future__ import annotations

import math

import torch

__all__ = ["ema_with_warmup", "lr_lambda"]


def ema_with_warmup(decay: float):
    """EMA update (for ``torch.optim.swa_utils.AveragedModel(multi_avg_fn=...)``) with the usual warm-up: the decay
    at the n-th update is ``min(decay, (1 + n) / (10 + n))``, so the random initial weights do not linger (with a
    fixed 0.999 they still make up 0.999^1500 = 22% of the average after 1500 steps). ``n`` is
    ``AveragedModel.n_averaged``, saved in checkpoints, so resuming is exact."""

    @torch.no_grad()
    def update(ema_params, current_params, num_averaged):
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, current_params, 1.0 - d)

    return update


def lr_lambda(warmup_steps: int, max_steps: int, schedule: str):
    """LR factor per step (for ``torch.optim.lr_scheduler.LambdaLR``): linear warm-up ``(step + 1) /
    warmup_steps``, then constant 1 or a cosine from 1 down to 0.1 at ``max_steps`` (``0.1 + 0.45 (1 + cos(pi
    progress))``).

    Raises:
        ValueError: ``schedule`` is not ``cosine`` or ``constant``.
    """
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown lr_schedule {schedule!r} (cosine | constant)")

    def fn(step: int) -> float:
        w = 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
        if schedule == "cosine" and max_steps > warmup_steps:
            progress = min(1.0, max(0.0, (step - warmup_steps) / (max_steps - warmup_steps)))
            return w * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        return w

    return fn
