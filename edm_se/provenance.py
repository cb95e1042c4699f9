"""Where a number came from: content hashes of checkpoints and test sets, the package version and git commit.

A study cell or an evaluation records :func:`checkpoint_identity` and :func:`test_set_identity`, so that a
retrained checkpoint at the same path, a new bundled model or a changed test set is recognised as such (the cell
re-runs) instead of reporting stale numbers; :func:`run_info` adds the edm_se version and the git commit.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), cached per process by (path, size, mtime).

    Raises:
        OSError: the file cannot be read.
    """
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    digest = _HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = _HASHES[key] = h.hexdigest()
    return digest


def checkpoint_identity(path: str | os.PathLike) -> dict:
    """``{"path", "sha256", "step"}`` of a checkpoint file (``step`` from the checkpoint, None when absent).

    Raises:
        edm_se.checkpoint.CheckpointError: not a readable edm_se checkpoint.
    """
    from edm_se.checkpoint import load_checkpoint

    p = Path(path).expanduser().resolve()
    ckpt = load_checkpoint(p, task_ok=True)
    step = ckpt.get("step")
    return {"path": str(p), "sha256": file_sha256(p), "step": None if step is None else int(step)}


def files_sha256(root: str | os.PathLike, names: Iterable[str]) -> str:
    """One SHA-256 over ``(name, sha256 of root/name)`` pairs in the given order: a directory's content identity."""
    return named_files_sha256((name, Path(root) / name) for name in names)


def named_files_sha256(items: Iterable[tuple[str, str | os.PathLike]]) -> str:
    """One SHA-256 over ``(name, sha256 of path)`` pairs in the given order (names need not be file names)."""
    h = hashlib.sha256()
    for name, path in items:
        h.update(f"{name}\0{file_sha256(path)}\n".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The git commit of the edm_se source tree (with ``+dirty`` when it has uncommitted changes), or None."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_info() -> dict:
    """``{"edm_se_version", "git_commit", "torch_version"}`` for result files."""
    import torch

    from edm_se import __version__

    return {"edm_se_version": __version__, "git_commit": git_commit(), "torch_version": torch.__version__}
