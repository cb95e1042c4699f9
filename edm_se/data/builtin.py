"""Access to the small corpus shipped inside the package (``edm_se/data/builtin/``).

The corpus is built by ``python -m edm_se.data.make_builtin`` (see that module for sources and splits); its
``manifest.csv`` has the columns ``path, kind, split, source, speaker, duration_s, transcript, licence`` with
``path`` relative to :func:`builtin_root`, ``kind`` in ``speech|noise|rir`` and ``split`` in ``train|valid|test``.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

KINDS = ("speech", "noise", "rir")
SPLITS = ("train", "valid", "test")
MANIFEST_FIELDS = ("path", "kind", "split", "source", "speaker", "duration_s", "transcript", "licence")


def builtin_root() -> Path:
    """Directory of the shipped corpus, ``edm_se/data/builtin/``."""
    return Path(__file__).resolve().parent / "builtin"


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a corpus ``manifest.csv`` as dicts (``duration_s`` converted to float).

    Raises:
        edm_se.audio.AudioError: the file is missing or lacks the ``path``, ``kind`` or ``split`` column.
    """
    from edm_se.audio import AudioError

    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "manifest not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "kind", "split"} - set(reader.fieldnames or ())
        if missing:
            raise AudioError(path, f"manifest lacks column(s) {', '.join(sorted(missing))}")
        rows = []
        for row in reader:
            if row.get("duration_s") not in (None, ""):
                row["duration_s"] = float(row["duration_s"])
            rows.append(row)
    return rows


@lru_cache(maxsize=1)
def _builtin_rows() -> tuple[dict, ...]:
    return tuple(read_manifest(builtin_root() / "manifest.csv"))


def builtin_manifest() -> list[dict]:
    """Rows of ``edm_se/data/builtin/manifest.csv`` (fresh copies; ``duration_s`` is a float in seconds)."""
    return [dict(r) for r in _builtin_rows()]


def manifest_files(manifest: str | Path, kind: str, split: str) -> list[Path]:
    """Absolute paths of the ``kind``/``split`` rows of a manifest (paths are relative to its directory).

    Raises:
        edm_se.audio.AudioError: unknown kind/split, or no file matches.
    """
    from edm_se.audio import AudioError

    manifest = Path(manifest)
    if kind not in KINDS:
        raise AudioError(manifest, f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    if split not in SPLITS:
        raise AudioError(manifest, f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    rows = _builtin_rows() if manifest.resolve() == (builtin_root() / "manifest.csv") else read_manifest(manifest)
    files = [manifest.parent / r["path"] for r in rows if r["kind"] == kind and r["split"] == split]
    if not files:
        raise AudioError(manifest, f"no {kind} files in split {split!r}")
    return files


def builtin_files(kind: str, split: str) -> list[Path]:
    """Absolute paths of the shipped ``kind`` (speech|noise|rir) files of ``split`` (train|valid|test).

    Raises:
        edm_se.audio.AudioError: unknown kind/split or no such files (the corpus ships no RIRs).
    """
    return manifest_files(builtin_root() / "manifest.csv", kind, split)


def builtin_test_set() -> Path:
    """The shipped fixed test set: a directory with ``clean/``, ``noisy/`` (same FLAC names, 16 kHz) and
    ``manifest.csv`` (``name, snr_db, speech, noise, ...``); TEST speech x TEST noise at 0, 5, 10, 15, 20 dB.

    Raises:
        edm_se.audio.AudioError: the test set is missing (corpus not built).
    """
    from edm_se.audio import AudioError

    path = builtin_root() / "testset"
    if not (path / "manifest.csv").is_file():
        raise AudioError(path, "built-in test set missing; run python -m edm_se.data.make_builtin")
    return path
