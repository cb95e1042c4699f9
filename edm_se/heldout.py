"""Is a test set held out of a model's training data? Checked on content, by audio fingerprint.

A score measured on audio the model trained on is not a result. The corpus and the built-in test set are split so
that nothing is shared (``tests/test_heldout.py``); this module checks any other test set against the data a given
model trained on, as the checkpoint records it:

* **What the model trained on** (:mod:`edm_se.trained_on`): the speech and noise sources of the checkpoint's
  ``train_config.data.train`` (a directory, a manifest, a list of files, ``builtin:<split>`` or
  ``corpus:<dir>:<split>``, resolved by :func:`edm_se.data.datasets.resolve_files`), plus, for a model fine-tuned
  from another (CRP, a task paradigm's ``enhancer_checkpoint``), that model's training data in turn.
* **What the test set holds**: each clean reference, and each mixture's noise as ``noisy - clean`` (exact for the
  additive mixtures of ``edm-se data testset``, VoiceBank-DEMAND and the built-in set; a delayed or reverberant
  noisy file gives a residual that matches nothing, so noise reuse is then not caught).
* **The check**: Haitsma-Kalker sub-fingerprints of both (:mod:`edm_se.data.fingerprint`: invariant to gain,
  robust to resampling, re-encoding and crops) and :func:`edm_se.data.fingerprint.find_matches_any_phase`: a test
  file that shares a stretch of audio (48 ms of identical 32-bit frames and a bit error rate <= 0.3 over the
  overlap) with a training file, at any of four frame phases (a short sound effect's votes depend on where its
  frames fall, :data:`edm_se.data.fingerprint.SHIFTS`), is a match. Training files' fingerprints are cached
  (:func:`cache_dir`; a corpus of ``edm-se data build`` brings its own), so only the first check against a set of
  files reads them (measured on 2 CPU cores: the corpus's train split, 3487 files, 158 min of audio, 112 s the
  first time, then 1.5-3.5 s a check).

``edm-se study`` runs it before any cell (``heldout_check=refuse|warn|off``, :mod:`edm_se.study_heldout`) and
records the outcome in every cell's provenance and in ``results.md``; ``edm-se heldout`` runs it alone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edm_se.trained_on import TrainingData, files_identity, resolve_listed, resolve_source

log = logging.getLogger(__name__)

MODES = ("refuse", "warn", "off")
HELD_OUT, OVERLAP, UNCHECKED = "held out", "overlap", "unchecked"


class HeldOutError(ValueError):
    """The test set shares audio with the model's training data (the message names a shared pair)."""


def cache_dir() -> Path:
    """Where training files' fingerprints are kept: ``$EDM_SE_CACHE/fingerprints``, else
    ``$XDG_CACHE_HOME/edm_se/fingerprints`` (default ``~/.cache/edm_se/fingerprints``)."""
    root = os.environ.get("EDM_SE_CACHE")
    if root:
        return Path(root).expanduser() / "fingerprints"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "edm_se" / "fingerprints"


@dataclasses.dataclass
class Report:
    """The outcome of :func:`check_test_set`.

    Attributes:
        status: ``"held out"`` (no shared audio found), ``"overlap"`` (``matches`` lists it) or ``"unchecked"``
            (``reason`` says why: training files not on this machine, none recorded).
        model: :attr:`TrainingData.model`.
        test_set: the test set's directory.
        test_files: number of test mixtures checked.
        training: ``[{"kind", "spec", "model", "files"}]``: each training source and how many files it resolved to
            (``files`` None where it could not be resolved).
        matches: ``[{"test", "mixture", "train", "kind", "test_start_s", "train_start_s", "seconds", "ber"}]``:
            ``test`` is ``clean/<name>`` or ``noise of <name>`` (noisy - clean) of test mixture ``<name>``, ``train``
            a training file of source ``kind``.
        reason: why the status is ``"unchecked"`` (or what was left out of a ``"held out"`` check).
        seconds: wall time of the check.
        noise_checked: whether the mixtures' noise (noisy - clean) was checked too (not without noisy files).
        items: what ``test_files`` counts (``"test mixtures"``; :func:`check_files`: ``"held-out files"``).
    """

    status: str
    model: str
    test_set: str
    test_files: int
    training: list[dict]
    matches: list[dict]
    reason: str | None = None
    seconds: float = 0.0
    noise_checked: bool = True
    items: str = "test mixtures"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Report:
        """A report from :meth:`as_dict` (keys it does not know are left out)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def line(self) -> str:
        """One line for logs and ``results.md``."""
        files = sum(t["files"] or 0 for t in self.training)
        if self.status == OVERLAP:
            m = self.matches[0]
            shared = len({x["mixture"] for x in self.matches})
            return (f"{shared} of {self.test_files} {self.items} share audio with the training data of {self.model} "
                    f"(e.g. {m['test']} = {m['train']}, {m['seconds']:.1f} s, bit error rate {m['ber']:.2f})")
        if self.status == HELD_OUT:
            what = ("clean speech, noisy - clean" if self.noise_checked else "clean speech") \
                if self.items == "test mixtures" else "speech and noise"
            text = (f"held out: no audio of the {self.test_files} {self.items} ({what}) is in the {files} training "
                    f"files of {self.model} (fingerprints)")
            return text + (f"; {self.reason}" if self.reason else "")
        return f"not checked against the training data of {self.model}: {self.reason}"


def record_line(record: Mapping, overlap_marker: str = "NOT HELD OUT: ") -> str:
    """One line for a stored outcome: a :meth:`Report.as_dict` (an overlap led by ``overlap_marker``), or the
    ``{"status", "reason"}`` of a check that did not run (``heldout_check=off``, no model named)."""
    if "test_files" not in record:
        return f"not checked ({record.get('reason') or record.get('status')})"
    line = Report.from_dict(record).line()
    return overlap_marker + line if record.get("status") == OVERLAP else line


def _cache_path(cache: Path | None | str) -> Path | None:
    """``cache`` as a directory: ``"default"`` is :func:`cache_dir`, None keeps no cache."""
    return cache_dir() if cache == "default" else (Path(cache) if cache is not None else None)


def _cache_of(spec: Any, path: Path, cache: Path | None) -> tuple[Path | None, str | None]:
    """(cache dir, key) of a training file: a corpus's own fingerprints (``<dir>/.cache/fingerprints``, keyed by the
    path in the corpus, written by ``edm-se data build``) for ``corpus:<dir>:<split>``, else ``cache``."""
    from edm_se.data.datasets import split_spec

    parts = split_spec(spec)
    if parts is not None and parts[0] == "corpus" and cache is not None:
        root = Path(parts[1])
        own = root / ".cache" / "fingerprints"
        if own.is_dir():  # only a corpus that has one: nothing is written into another directory
            try:
                return own, path.relative_to(root).as_posix()
            except ValueError:
                pass
    return cache, None


def _fingerprints(files: dict[str, tuple[str, Path | None, str | None]], progress: bool) -> dict:
    from edm_se.data.fingerprint import cached_fingerprint

    it: Any = files.items()
    if progress and len(files) > 50:
        from tqdm import tqdm

        it = tqdm(it, total=len(files), desc="fingerprinting training files", unit="file", leave=False,
                  delay=2.0)  # cached ones take milliseconds: no bar
    from edm_se.audio import AudioError

    out = {}
    for p, (_, cache, key) in it:
        try:
            out[p] = cached_fingerprint(p, cache, key)
        except AudioError as err:  # named as a training file: the test set is not at fault
            raise AudioError(f"{err} (a training file of the model, read by the held-out check; in a study or "
                             "evaluate, heldout_check=off skips the check)") from None
    return out


def _wave(x: Any) -> Any:
    """A test signal as a 16 kHz float array: a file (read and resampled) or a waveform already at 16 kHz."""
    import numpy as np

    from edm_se.audio import load_audio
    from edm_se.data.fingerprint import SAMPLE_RATE

    if isinstance(x, (str, os.PathLike)):
        return load_audio(x, sample_rate=SAMPLE_RATE).numpy()
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32).reshape(-1)


def _residual(clean: Any, noisy: Any) -> Any:
    """A mixture's noise: ``noisy - clean`` on their common length."""
    n = min(len(clean), len(noisy))
    return noisy[:n] - clean[:n]


def _test_fingerprints(pairs: list[tuple[str, Any, Any]], clean_label: str) -> tuple[dict, dict, Any]:
    """(``<clean_label>/<name>`` and ``noise of <name>`` (noisy - clean on the common length) -> fingerprint,
    the same keys -> ``name``, key -> its fingerprints at the other frame phases (computed on demand, for
    :func:`edm_se.data.fingerprint.find_matches_any_phase`))."""
    from edm_se.data.fingerprint import SAMPLE_RATE, SHIFTS, fingerprint, fingerprints_shifted

    prints, mixture, source = {}, {}, {}
    for name, clean_src, noisy_src in pairs:
        clean = _wave(clean_src)
        key = f"{clean_label}/{name}"
        prints[key], mixture[key], source[key] = fingerprint(clean, SAMPLE_RATE), name, (clean_src, None)
        if noisy_src is not None:
            key = f"noise of {name}"
            prints[key] = fingerprint(_residual(clean, _wave(noisy_src)), SAMPLE_RATE)
            mixture[key], source[key] = name, (clean_src, noisy_src)

    def shifted(key: str) -> tuple:  # the test signal again (read anew: only candidates get here)
        clean_src, noisy_src = source[key]
        x = _wave(clean_src)
        return fingerprints_shifted(x if noisy_src is None else _residual(x, _wave(noisy_src)), SAMPLE_RATE,
                                    SHIFTS[1:])

    return prints, mixture, shifted


def _source_files(kind: str, spec: Any, model: str, data: TrainingData) -> tuple[Any, list[Path], str | None]:
    """(the spec as resolved, the training files of one source that are here, what is missing of them or None):
    the model's own list of its files when it has one (:attr:`TrainingData.listed`), else the spec resolved.

    Raises:
        edm_se.audio.AudioError: none of the source's files is here.
    """
    from edm_se.audio import AudioError

    listed = data.listed.get((kind, model))
    if listed is not None:
        root, found, absent = resolve_listed(listed[0], listed[1], data.bases)
        note = f"{absent} of the {len(listed[1])} {kind} files listed in {listed[2]} are not in {root}" if absent \
            else None
        return f"corpus:{root}:train", found, note  # (corpus:...: the corpus's own fingerprint cache)
    resolved, found = resolve_source(spec, kind, data.bases)
    there = [p for p in found if Path(p).is_file()]  # a list of files names what it names
    if len(there) == len(found):
        return resolved, found, None
    gone = [p for p in found if p not in set(there)]
    if not there:
        raise AudioError(gone[0], f"not found (none of the {len(gone)} {kind} files is here)")
    return resolved, there, f"{len(gone)} {kind} file(s) of {model} are gone (e.g. {gone[0]})"


def check_test_set(test_set: Any, data: TrainingData, cache: Path | None | str = "default",
                   progress: bool = True) -> Report:
    """Check a test set against a model's training data by audio fingerprint (:func:`check_pairs` of its clean and
    noisy files).

    Args:
        test_set: an :class:`edm_se.testset.TestSet` (its clean and noisy files must be readable:
            :meth:`~edm_se.testset.TestSet.check_audio`).
        data, cache, progress: as for :func:`check_pairs`.
    """
    pairs = [(name, test_set.clean(name), test_set.noisy(name)) for name in test_set.names]
    return check_pairs(pairs, str(test_set.root), data, clean_label=test_set.clean_dir, cache=cache,
                       progress=progress)


def check_pairs(pairs: list[tuple[str, Any, Any]], where: str, data: TrainingData,
                clean_label: str = "clean", cache: Path | None | str = "default", progress: bool = True) -> Report:
    """Check test mixtures against a model's training data by audio fingerprint.

    Args:
        pairs: ``(name, clean, noisy or None)`` per test mixture, each an audio file or a waveform (array or tensor,
            (L,), at 16 kHz); without a noisy one only the clean reference is checked
            (:attr:`Report.noise_checked`).
        where: the test set's directory (the report's ``test_set``).
        data: what the model trained on (:func:`checkpoint_training_data`).
        clean_label: how clean files are named in the matches (``<clean_label>/<name>``).
        cache: where training fingerprints are kept; ``"default"``: :func:`cache_dir`; None: not kept.
        progress: a tqdm bar while training files are fingerprinted (more than 50, after 2 s).

    Returns:
        :class:`Report`. Status ``"unchecked"`` when the training data is not recorded or no source resolves on
        this machine (e.g. ``corpus:data_cache/corpus:train`` with no corpus built there or where training ran).

    Raises:
        edm_se.audio.AudioError: a test file or a training file cannot be read.
    """
    started = time.time()
    side = _training_side(data, cache)
    report = Report(UNCHECKED, data.model, str(where), len(pairs), side.training, [],
                    noise_checked=all(p[2] is not None for p in pairs))
    if side.unchecked:
        report.reason, report.seconds = side.unchecked, round(time.time() - started, 3)
        return report
    test, mixture, shifted = _test_fingerprints(pairs, clean_label)
    return _matched(report, test, mixture, shifted, side, progress, started)


def _matched(report: Report, test: dict, mixture: dict, shifted: Any, side: _Side, progress: bool,
             started: float) -> Report:
    """``report`` with the matches of ``test`` (key -> fingerprint; ``mixture``: key -> the test item it belongs
    to; ``shifted``: key -> its fingerprints at the other frame phases) against the training files of ``side``, at
    any frame phase (:func:`edm_se.data.fingerprint.find_matches_any_phase`), its status, notes and wall time."""
    from edm_se.data.fingerprint import HOP, SAMPLE_RATE, find_matches_any_phase

    train = _fingerprints(side.files, progress)
    report.matches = [{"test": m.a, "mixture": mixture[m.a], "train": m.b, "kind": side.files[m.b][0],
                       "test_start_s": round(m.start_a * HOP / SAMPLE_RATE, 3),
                       "train_start_s": round(m.start_b * HOP / SAMPLE_RATE, 3),
                       "seconds": round(m.seconds, 3), "ber": m.ber}
                      for m in find_matches_any_phase(test, train, shifted)]
    report.status = OVERLAP if report.matches else HELD_OUT
    report.reason, report.seconds = side.notes, round(time.time() - started, 3)
    return report


def check_files(held: list[tuple[str, Any]], where: str, data: TrainingData, cache: Path | None | str = "default",
                progress: bool = True) -> Report:
    """Held-out *source* files (a validation split's speech and noise, before they are mixed) against training data,
    file against file: the rule of the corpus's own checks (:func:`edm_se.data.splits.drop_train_copies`, at any
    frame phase as :func:`edm_se.data.splits.drop_heldout_near_copies`, at its bit error rate of 0.30).

    Args:
        held: ``(kind, spec)`` per held-out source (``kind`` names it in the matches: ``<kind> <path>``).
        where: what they are (the report's ``test_set``), e.g. ``data.valid``.
        data, cache, progress: as for :func:`check_pairs`.

    Returns:
        :class:`Report` (``test_files``: the held-out files; ``mixture``: the held-out file of each match).

    Raises:
        edm_se.audio.AudioError: a held-out source does not resolve, or a file cannot be read.
    """
    from edm_se.data.fingerprint import SHIFTS, cached_fingerprint, cached_fingerprints

    started = time.time()
    side = _training_side(data, cache)
    cache_path = _cache_path(cache)
    files = {f"{kind} {p}": (p, *_cache_of(spec, Path(p), cache_path))
             for kind, spec in held for p in resolve_source(spec, kind, [])[1]}
    report = Report(UNCHECKED, data.model, str(where), len(files), side.training, [], noise_checked=False,
                    items="held-out files")
    if side.unchecked:
        report.reason, report.seconds = side.unchecked, round(time.time() - started, 3)
        return report
    prints = {k: cached_fingerprint(p, c, key) for k, (p, c, key) in files.items()}

    def shifted(k: str) -> tuple:
        p, c, key = files[k]
        return cached_fingerprints(p, c, key, shifts=SHIFTS[1:])

    return _matched(report, prints, {k: k for k in prints}, shifted, side, progress, started)


@dataclasses.dataclass
class _Side:
    """The training side of a check: per-source entries of the report, the files (path -> (kind, cache dir, cache
    key)), why nothing can be checked (``unchecked``) or what was left out (``notes``)."""

    training: list[dict]
    files: dict[str, tuple[str, Path | None, str | None]]
    unchecked: str | None
    notes: str | None


def _training_side(data: TrainingData, cache: Path | None | str) -> _Side:
    from edm_se.audio import AudioError

    cache_path = _cache_path(cache)
    training: list[dict] = []
    files: dict[str, tuple[str, Path | None, str | None]] = {}
    missing: dict[tuple[str, str], list[str]] = {}  # (spec, why) -> kinds
    differ: list[str] = []  # sources whose files here are not those the checkpoint recorded
    for kind, spec, model in data.sources:
        listed = data.listed.get((kind, model))
        try:
            resolved, found, note = _source_files(kind, spec, model, data)
        except AudioError as err:
            training.append({"kind": kind, "spec": spec, "model": model, "files": None})
            why = str(err).strip().splitlines()[0]
            owner = "" if model == data.model else f" of {model}"
            missing.setdefault((f"{spec}{owner}", why), []).append(kind)
            continue
        differ += [note] if note else []
        entry = {"kind": kind, "spec": spec, "model": model, "files": len(found),
                 **({"resolved": resolved} if resolved != spec else {}),
                 **({"listed_in": listed[2]} if listed is not None else {})}
        recorded = data.recorded.get((kind, model))
        if recorded is not None:  # are these the files the model trained on?
            entry["as_recorded"] = files_identity(found)["sha256"] == recorded.get("sha256")
            if not entry["as_recorded"]:
                differ.append(f"{kind} {spec} ({len(found)} files here, {recorded.get('files')} when {model} "
                              "trained)")
        training.append(entry)
        for p in found:
            files.setdefault(str(p), (kind, *_cache_of(resolved, Path(p), cache_path)))
    missing_text = "; ".join(f"{' and '.join(kinds)} {spec} ({why})" for (spec, why), kinds in missing.items())
    if not data.sources or (missing and not files):
        return _Side(training, files, data.unknown or (f"its training data is not on this machine: {missing_text}"
                                                       if missing else f"{data.model} records no training source"),
                     None)
    left_out = [*([missing_text] if missing else []), *([data.unknown] if data.unknown else [])]
    notes = []
    if left_out:  # partly checked: what is missing stays in the report
        notes.append("not checked against " + "; ".join(left_out))
    if differ:
        notes.append("the training files found here are not those the model trained on: " + "; ".join(differ))
    return _Side(training, files, None, "; ".join(notes) or None)


def write_held_out_subset(test_set: Any, report: Report, out_dir: Path, ckpt: Path | None = None) -> str:
    """Write the mixtures of ``test_set`` that ``report`` found held out as a test set of their own
    (:func:`edm_se.testset.write_subset`), with ``subset.json`` naming the set it came from (its SHA-256), the model,
    the mixtures left out and the check; returns a one-line account.

    Raises:
        HeldOutError: the check could not run (``unchecked``: nothing is known to be held out) or no mixture is
            held out; nothing is written.
        FileExistsError: ``out_dir`` exists.
    """
    from edm_se.testset import write_subset

    if report.status == UNCHECKED:
        raise HeldOutError(f"held_out_subset={out_dir}: not written, nothing was checked ({report.reason})")
    shared = {m["mixture"] for m in report.matches}
    kept = [n for n in test_set.names if n not in shared]
    if not kept:
        raise HeldOutError(f"held_out_subset={out_dir}: not written, every one of the {len(test_set.names)} "
                           f"mixtures shares audio with the training data of {report.model}")
    source = test_set.identity()
    note = {"format": "edm_se.held_out_subset/1", "from": {k: source[k] for k in ("root", "n", "sha256")},
            "checkpoint": None if ckpt is None else str(ckpt), "kept": len(kept), "left_out": sorted(shared),
            "check": report.as_dict()}
    write_subset(test_set, kept, out_dir, note)
    return (f"wrote {out_dir}: the {len(kept)} of {len(test_set.names)} mixtures held out of the training data of "
            f"{report.model}" + (f"; {len(shared)} left out (listed in subset.json)" if shared else ""))


def enforce(report: Report, mode: str, key: str = "test_set") -> None:
    """Act on a report as ``heldout_check=mode`` says: ``refuse`` raises on an overlap, ``warn`` logs it;
    an unchecked test set is a warning in both.

    Raises:
        HeldOutError: an overlap and ``mode == "refuse"`` (one line: the shared pair and how to go on).
        ValueError: an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"heldout_check must be one of {', '.join(MODES)}, got {mode!r}")
    if report.status == OVERLAP and mode == "refuse":
        subset = (f": `edm-se heldout test_set={report.test_set} [ckpt=...] held_out_subset=DIR` writes this one's "
                  "held-out mixtures") if key == "test_set" else ""  # (a test set directory, not in-memory mixtures)
        raise HeldOutError(f"{key}={report.test_set}: {report.line()}; scores on it would measure training data "
                           f"(use a held-out test set{subset}; or heldout_check=warn to score it anyway, marked as "
                           "overlapping)")
    if report.status == OVERLAP:
        log.warning("%s=%s: %s; its scores measure training data", key, report.test_set, report.line())
    elif report.status == UNCHECKED:
        log.warning("%s=%s: %s", key, report.test_set, report.line())
    else:
        log.info("%s=%s: %s (%.1f s)", key, report.test_set, report.line(), report.seconds)
