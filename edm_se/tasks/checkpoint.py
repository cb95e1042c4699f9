"""Saving and loading downstream task models (same atomic format as enhancer checkpoints).

A task checkpoint is ``{"format", "kind": "task", "task_config": {"name", ...}, "state": state_dict, "info"}``.
A training run's ``checkpoints/last.pt`` of a task paradigm also holds its task model (under ``paradigm.state``),
and :func:`load_task_model` reads either.
"""

from __future__ import annotations

import os
from pathlib import Path

from edm_se.checkpoint import FORMAT, CheckpointError, atomic_torch_save, load_checkpoint
from edm_se.tasks.models import TaskModel, build_task_model

__all__ = ["save_task_model", "load_task_model"]


def save_task_model(model: TaskModel, path: str | os.PathLike, info: dict | None = None) -> Path:
    """Write ``model`` (its config and weights) to ``path`` atomically; returns the path."""
    name = next(k for k, v in _kinds().items() if isinstance(model, v))
    return atomic_torch_save({"format": FORMAT, "kind": "task", "task_config": {"name": name, **model.config()},
                              "state": model.state_dict(), "info": dict(info or {})}, Path(path))


def load_task_model(path: str | os.PathLike, device: str = "cpu") -> TaskModel:
    """Load a task model from a task checkpoint or from a task paradigm's training checkpoint (eval mode).

    Raises:
        CheckpointError: missing/corrupt file, no task model in it, or weights that do not fit its config.
    """
    path = Path(path)
    ckpt = load_checkpoint(path, map_location=device, task_ok=True)
    if ckpt.get("kind") == "task":
        config, state = ckpt["task_config"], ckpt["state"]
    else:
        para = (ckpt.get("paradigm") or {}).get("state") or {}
        if "task" not in para:
            raise CheckpointError(f"{path}: holds no task model (not a task checkpoint or a task paradigm's run)")
        config, state = para["task_config"], para["task"]
    config = dict(config)
    try:
        model = build_task_model(str(config.pop("name")), **config)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: task weights do not fit their config ({str(err).splitlines()[0][:120]})") \
            from None
    return model.to(device).eval()


def _kinds() -> dict:
    from edm_se.tasks.models import TASK_KINDS

    return TASK_KINDS
