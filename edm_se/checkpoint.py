"""Checkpoints: atomic writes, clear one-line errors for missing, corrupt or mismatched files.

A checkpoint is a ``torch.save`` dict with only tensors and plain Python values (loadable with
``weights_only=True``)::

    {"format": "edm_se/1", "config": {...resolved model config...}, "step": int,
     "ema": {state_dict of the EMA denoiser}, "model": {...}, "optimizer": {...}, "rng": {...},
     "train_config": {...the composed training config...}, "info": {"train_cwd": str}, ...}

``info.train_cwd`` is the directory training ran in: what the relative data paths of ``train_config`` are relative
to (the held-out check, :mod:`edm_se.heldout`, resolves them there). The bundled default checkpoint keeps only
``format``, ``config``, ``train_config``, ``step``, ``ema`` and ``info``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "edm_se/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupt or does not match its configuration (one-line message)."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` to a temporary file beside ``path``, then rename it into place.

    An interrupted write never leaves a truncated file at ``path``.
    """
    from edm_se.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def require_torch_file(path: str | os.PathLike) -> None:
    """Refuse a file that cannot be a ``torch.save`` file before ``torch.load`` reads it (its errors for such files
    are cryptic: ``KeyError: '101'`` for a text file). A torch file is a zip archive (``PK\\x03\\x04``, PyTorch
    >= 1.6) or a pickle (protocol byte ``\\x80``, the legacy format).

    Raises:
        CheckpointError: the file starts with neither, naming what it starts with.
    """
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle; it starts "
                              f"with {head!r})")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    task_ok: bool = False) -> dict[str, Any]:
    """Load and validate an edm_se checkpoint.

    Args:
        path: file written by :func:`atomic_torch_save` through the trainer.
        map_location: device for the tensors.
        task_ok: also accept a downstream task model's checkpoint (``kind: task``, written by
            :func:`edm_se.tasks.checkpoint.save_task_model`); otherwise it is refused as not an enhancer's.

    Returns:
        The checkpoint dict (see the module docstring).

    Raises:
        CheckpointError: the file is missing, not a torch file, corrupt, not an edm_se checkpoint, or a task
            model's checkpoint where ``task_ok`` is False.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():  # a trainer's run directory keeps its checkpoints in checkpoints/: name the ones there
        found = [c for d in (path / "checkpoints", path) for c in (d / "best.pt", d / "last.pt") if c.is_file()]
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file ("
                              + (f"here: {' or '.join(str(c) for c in found)}" if found else
                                 f"e.g. {path}/checkpoints/last.pt of a training run") + ")")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    require_torch_file(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an edm_se checkpoint (no '{FORMAT}' format tag)")
    task = ckpt.get("kind") == "task"  # a downstream model (edm_se.tasks.checkpoint), not a training run
    if task and not task_ok:
        raise CheckpointError(f"{path}: is a task model's checkpoint (M5 / CTC), not an enhancer's")
    for key in (("task_config", "state") if task else ("config", "ema")):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks its '{key}' entry")
    return ckpt
