"""What a resumed (or reused, finished) training run must share with the config asking for it.

A run resumes only with the training config its checkpoint was written with: every key but those of
:data:`RESUME_IGNORED` (where and how fast it runs). The checkpoints it starts from (:data:`INPUT_CHECKPOINT_KEYS`:
the enhancer a fine-tuning run starts from, the task model a joint cell starts from) are compared by content, not by
path, so a study moved to another checkout or machine still resumes, while another file at the same path does not.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from edm_se.checkpoint import CheckpointError
from edm_se.config import config_diff, to_container
from edm_se.validate import config_value

log = logging.getLogger("edm_se.train")

# Keys that may change when a run is resumed: where and how fast it runs, not what it trains.
RESUME_IGNORED = ("run_dir", "resume", "device", "trainer.threads", "trainer.num_workers", "trainer.progress",
                  "trainer.tensorboard", "trainer.log_every", "trainer.ckpt_every")
#: config keys naming a checkpoint file the run starts from; compared by SHA-256 (kept in the run's checkpoints,
#: ``info.input_checkpoints``), not by path
INPUT_CHECKPOINT_KEYS = ("paradigm.enhancer_checkpoint", "paradigm.task_checkpoint")
#: a run without ``paradigm`` (written before paradigms existed) was a denoising run
DEFAULT_PARADIGM = {"_target_": "edm_se.tasks.paradigms.Denoising"}


def input_checkpoints(cfg: DictConfig | dict) -> dict[str, str]:
    """SHA-256 of each checkpoint file the run starts from: ``{key: sha256}`` for the keys of
    :data:`INPUT_CHECKPOINT_KEYS` set to an existing file (a missing file is the paradigm's error to raise)."""
    from edm_se.provenance import file_sha256

    full = to_container(cfg)
    out = {}
    for key in INPUT_CHECKPOINT_KEYS:
        path = config_value(full, key, None)
        if isinstance(path, str) and path and Path(path).is_file():
            out[key] = file_sha256(path)
    return out


def _same_input(key: str, old: Any, new: Any, recorded: dict[str, str]) -> bool:
    """Whether input checkpoint ``key``, path ``old`` then and ``new`` now, is the same content: by the SHA-256
    recorded when the run started, else (runs from before it was recorded) by the old file while it is there; when
    neither can tell, a change of path is taken as a move, with a warning."""
    from edm_se.provenance import file_sha256

    if old == new and (key not in recorded or not (isinstance(new, str) and Path(new).is_file())):
        return True  # nothing more to know (a missing file is the paradigm's error to raise)
    if not (isinstance(old, str) and old and isinstance(new, str) and Path(new).is_file()):
        return False
    if key in recorded:
        return file_sha256(new) == recorded[key]
    if Path(old).is_file():
        return file_sha256(old) == file_sha256(new)
    log.warning("%s: %s then, %s now; the old file is gone and the checkpoint predates recording its content "
                "(info.input_checkpoints), so the change of path is taken as a move", key, old, new)
    return True


def refuse_changed_config(last: Path, ckpt: dict, cfg: DictConfig) -> list[str]:
    """The training-config keys that differ between checkpoint ``ckpt`` (read from ``last``) and ``cfg``, ignoring
    :data:`RESUME_IGNORED` (where and how a run executes, not what it trains) and comparing the checkpoints of
    :data:`INPUT_CHECKPOINT_KEYS` by content. A checkpoint without a stored ``train_config`` (an imported one)
    differs nowhere.

    Returns:
        The changed dotted keys in :func:`edm_se.config.config_diff`'s order; empty: the same config.

    Raises:
        CheckpointError: some key changed and ``cfg.resume`` is not ``force`` (one line naming ``last`` and up to
            eight keys).
    """
    stored = ckpt.get("train_config")
    if not isinstance(stored, dict):
        return []
    stored = {"paradigm": DEFAULT_PARADIGM, **stored}  # runs from before paradigms were denoising runs
    full = to_container(cfg)
    recorded = (ckpt.get("info") or {}).get("input_checkpoints") or {}
    inputs_changed = {k for k in INPUT_CHECKPOINT_KEYS if not _same_input(
        k, config_value(stored, k, None), config_value(full, k, None), recorded)}
    changed = sorted({k for k in config_diff(stored, full, RESUME_IGNORED) if k not in INPUT_CHECKPOINT_KEYS}
                     | inputs_changed)
    if changed and str(cfg.get("resume")) != "force":
        shown = ", ".join(changed[:8]) + (f" (+{len(changed) - 8} more)" if len(changed) > 8 else "")
        raise CheckpointError(f"{last}: was trained with another config (changed: {shown}); resume with "
                              "the same settings, choose another run_dir, or pass resume=force")
    return changed
