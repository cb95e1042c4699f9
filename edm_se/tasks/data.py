"""Downstream task data: spoken keywords and sentences with known labels, split by voice, mixed with corpus noise.

``edm-se data tasks`` (:func:`build_task_corpus`) writes ``out_dir/{keywords,sentences}/<voice>/*.flac`` (16 kHz mono)
and one ``manifest.csv`` (:data:`TASK_COLUMNS`) per task. Voices are never divided between splits, and the voices
of the enhancement test set never reach a training split:

========== ======================================= ========= ===================================================
voice      what                                    split     why
========== ======================================= ========= ===================================================
kal16      flite diphone voice (US male), variants train
joe        piper ``en_US-joe-medium`` (VITS),       train     optional: the ``tasks`` extra (``piper-tts``)
           variants
espeak     espeak-ng (formant synthesis): 6         train     speaker variety: 96 synthetic voices (vocal-tract
           English accents x 16 voice variants x 2            and pitch settings), none of them a test speaker
           tempi
rms        flite clunits voice (US male)           valid
slt, awb   flite voices built from CMU ARCTIC's    test      the enhancement test set holds real ARCTIC slt/awb
           slt / awb                                         recordings: these speakers are test-only everywhere
allison    Allison's recorded digits (Asterisk,    test      the enhancement test speaker; real speech
           keywords only)
========== ======================================= ========= ===================================================

Variants (training voices): flite's mean F0 and duration stretch, piper's length scale, each also resampled by a
pitch factor; a variant is a take of the same voice, so it stays in its voice's split.

Keywords: the ten digits (``KEYWORDS``, labels 0-9). Sentences: clauses of the first two chapters of *Alice's
Adventures in Wonderland* (public domain, shipped with Debian's ``flite`` documentation), split by sentence so that
no test text is a training text, for the CTC recogniser.

The synthesisers and the finishing of every clip live in :mod:`edm_se.tasks.voices`.

:class:`TaskMixingDataset` mixes a split's clips with the corpus's noise of the same split at SNRs in
``snr_db`` (0-25 dB as Milling et al. 2024) and returns the enhancer's ``clean`` / ``noisy`` pair plus the
``label`` (keywords) or ``text`` (sentences); :func:`make_task_test_set` writes fixed test mixtures at given SNRs.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf

from edm_se.data.datasets import MixingDataset
from edm_se.tasks.voices import SAMPLE_RATE, Flite, TaskDataError, _Espeak, _finish, _Piper  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

__all__ = ["KEYWORDS", "VOICES", "TASK_COLUMNS", "build_task_corpus", "read_task_manifest", "TaskMixingDataset",
           "make_task_test_set", "alice_sentences", "spoken_text", "Flite", "TaskDataError"]

KEYWORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TASK_COLUMNS = ("path", "split", "voice", "engine", "text", "label", "variant", "duration_s", "licence")
# voice -> (engine, engine voice name, split, licence)
VOICES = {
    "kal16": ("flite", "kal16", "train", "flite (BSD-style, CMU)"),
    "joe": ("piper", "joe", "train", "MIT (piper en_US-joe-medium)"),
    "espeak": ("espeak", "", "train", "GPL-3.0-or-later (espeak-ng, Debian)"),
    "rms": ("flite", "rms", "valid", "flite (BSD-style, CMU)"),
    "slt": ("flite", "slt", "test", "flite (BSD-style, CMU; voice from CMU ARCTIC slt)"),
    "awb": ("flite", "awb", "test", "flite (BSD-style, CMU; voice from CMU ARCTIC awb)"),
    "allison": ("recorded", "allison", "test", "CC-BY-SA-3.0 (Allison Smith, Asterisk)"),
}
# training variants: (flite mean F0 in Hz or piper length scale, duration stretch, pitch factor)
_FLITE_TRAIN = [(f0, st, pf) for f0 in (90, 105, 120, 140) for st in (0.9, 1.1) for pf in (0.94, 1.0, 1.06)]
_PIPER_TRAIN = [(ls, 1.0, pf) for ls in (0.8, 0.95, 1.1, 1.3) for pf in (0.92, 1.0, 1.08)]
_HELD_VARIANTS = [(None, 1.0, 1.0), (None, 0.9, 1.0), (None, 1.15, 1.0)]  # valid/test: the voice, 3 tempi
# espeak-ng voices "<accent>+<variant>"; a training variant is (index into _ESPEAK_VOICES, duration stretch, 1.0)
_ESPEAK_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
_ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt2", "klatt4",
                    "Andy", "Annie")
_ESPEAK_VOICES = [f"{a}+{v}" for a in _ESPEAK_ACCENTS for v in _ESPEAK_VARIANTS]
_ESPEAK_TRAIN = [(i, st, 1.0) for i in range(len(_ESPEAK_VOICES)) for st in (0.85, 1.15)]
_TRAIN_VARIANTS = {"flite": _FLITE_TRAIN, "piper": _PIPER_TRAIN, "espeak": _ESPEAK_TRAIN}


# ----------------------------------------------------------------------------------------------- text
def alice_sentences(text: str, max_words: int = 10, min_words: int = 3) -> list[str]:
    """Split prose into clauses of ``min_words``..``max_words`` words at sentence and clause punctuation
    (longer sentences are cut at commas or semicolons, then at ``max_words``)."""
    flat = re.sub(r"\s+", " ", text.replace("`", "'")).strip()
    out: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", flat):
        pieces = re.split(r"(?<=[,;:])\s+", sentence) if len(sentence.split()) > max_words else [sentence]
        for piece in pieces:
            words = piece.split()
            for i in range(0, len(words), max_words):
                chunk = words[i:i + max_words]
                if len(chunk) >= min_words:
                    out.append(" ".join(chunk))
    return out


def spoken_text(clause: str) -> str:
    """The transcript of what a synthesiser says for a clause of the book: its parentheses are prose, so they
    are removed and their words kept (the WER normaliser drops bracketed text as non-speech annotations, which
    would delete spoken words from the reference: ``"(though she very seldom followed it),"`` would have no words).

    Returns ``""`` for a clause without a letter or digit (``"* * * *"``): it is not a sentence to recognise.
    """
    if not re.search(r"[A-Za-z0-9]", clause):
        return ""
    text = re.sub(r"\s+", " ", re.sub(r"[()\[\]{}<>]", " ", clause)).strip()
    return re.sub(r"\s+([,.;:!?])", r"\1", text)


def _split_texts(texts: Sequence[str], seed: int = 0) -> dict[str, str]:
    """Assign each text to train (80%) / valid (10%) / test (10%) by a seeded shuffle."""
    order = list(dict.fromkeys(texts))
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    n = len(order)
    n_valid, n_test = max(1, n // 10), max(1, n // 10)
    return {t: ("test" if i < n_test else "valid" if i < n_test + n_valid else "train") for i, t in enumerate(order)}


def _allison_digits(fetcher) -> dict[str, Path]:
    root = fetcher.deb("asterisk-core-sounds-en-g722")
    base = root / "usr" / "share" / "asterisk" / "sounds" / "en_US_f_Allison" / "digits"
    files = {w: base / f"{i}.g722" for i, w in enumerate(KEYWORDS)}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise TaskDataError(f"Allison's digits missing: {missing[0]}")
    return files


def _write(path: Path, x: np.ndarray) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return round(len(x) / SAMPLE_RATE, 3)


def _write_manifest(path: Path, rows: list[dict]) -> None:
    from edm_se.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TASK_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: r["path"]):
        w.writerow({c: r.get(c, "") for c in TASK_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def build_task_corpus(out_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                      voices: Sequence[str] | None = None, max_sentences: int | None = None,
                      max_variants: int | None = None, tasks: Sequence[str] = ("keywords", "sentences"),
                      progress: bool = True, sentence_takes: int = 1) -> Path:
    """Synthesise (and, for Allison, convert) the keyword and sentence clips of every voice (idempotent).

    Args:
        out_dir: output directory (``keywords/manifest.csv``, ``sentences/manifest.csv``, ``build_info.json``).
        cache_dir: where Debian packages are fetched and extracted (default ``out_dir/.cache``).
        voices: voice names of :data:`VOICES` (None: all; ``joe`` is skipped with a warning when the ``tasks``
            extra is missing).
        max_sentences: cap on the sentences per voice (None: all of a split's sentences).
        max_variants: cap on the variants per training voice (None: all; the tests use a few).
        tasks: which of ``keywords`` / ``sentences`` to build (the other's manifest is left as it is).
        progress: show a tqdm bar.
        sentence_takes: takes of every training sentence per training voice, each with the next variant of the
            voice's cycle (1: one take, the variants cycling over the sentences; at most the voice's number of
            variants). Valid and test voices speak every sentence once.

    Returns:
        ``out_dir``.

    Raises:
        TaskDataError: an unknown voice, ``sentence_takes < 1``, or a failed synthesis; CorpusError from fetching.
    """
    from tqdm import tqdm

    from edm_se.atomic import atomic_write_text
    from edm_se.data.sources import decode_g722
    from edm_se.data.fetch import Fetcher

    out = Path(out_dir)
    if int(sentence_takes) < 1:
        raise TaskDataError(f"sentence_takes must be >= 1, got {sentence_takes}")
    names = list(VOICES) if voices is None else [str(v) for v in voices]
    if not tasks or any(t not in ("keywords", "sentences") for t in tasks):
        raise TaskDataError(f"tasks must be a non-empty subset of [keywords, sentences], got {list(tasks)}")
    unknown = [v for v in names if v not in VOICES]
    if unknown:
        raise TaskDataError(f"unknown voice(s) {unknown}; known: {sorted(VOICES)}")
    fetcher = Fetcher(Path(cache_dir) if cache_dir else out / ".cache")
    flite = Flite(fetcher)
    piper = None
    if "joe" in names:
        try:
            piper = _Piper()
        except TaskDataError as err:
            if voices is not None:
                raise
            log.warning("skipping voice joe: %s", err)
            names.remove("joe")
    espeak = _Espeak(fetcher) if "espeak" in names else None
    sentences = alice_sentences(flite.alice())
    text_split = _split_texts(sentences)
    spoken = {t: spoken_text(t) for t in sentences}  # the transcript of each clause ("" : left out)
    jobs: list[tuple[str, str, str, int, tuple]] = []  # (task, voice, text, label, variant)
    for voice in names:
        engine, _, split, _ = VOICES[voice]
        variants = _TRAIN_VARIANTS.get(engine, _FLITE_TRAIN) if split == "train" else _HELD_VARIANTS
        variants = variants[:max_variants] if max_variants else variants
        for label, word in enumerate(KEYWORDS if "keywords" in tasks else ()):
            for variant in (variants if engine != "recorded" else _HELD_VARIANTS[:1]):
                jobs.append(("keywords", voice, word, label, variant))
        if engine != "recorded" and "sentences" in tasks:
            texts = [t for t in sentences if text_split[t] == split][:max_sentences]
            variant_cycle = variants if split == "train" else _HELD_VARIANTS[:1]
            takes = min(int(sentence_takes), len(variant_cycle)) if split == "train" else 1
            for i, text in enumerate(texts):
                for k in range(takes):  # (skipped after the variant is assigned: the others keep theirs)
                    if spoken[text]:
                        jobs.append(("sentences", voice, text, -1, variant_cycle[(i * takes + k) % len(variant_cycle)]))
    allison = _allison_digits(fetcher) if "allison" in names else {}
    rows: dict[str, list[dict]] = {"keywords": [], "sentences": []}
    done = made = 0
    for task, voice, text, label, variant in tqdm(jobs, desc="task clips", unit="clip", disable=not progress):
        engine, engine_voice, split, licence = VOICES[voice]
        a, stretch, pitch = variant
        tag = "base" if a is None else f"{a:g}-{stretch:g}-{pitch:g}"
        if engine == "espeak":
            tag = f"{_ESPEAK_VOICES[a]}-{stretch:g}".replace("+", "_")
        stem = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:32]
        if task == "sentences":  # the text's hash keeps names unique where clauses share their start
            stem = f"{hash_text(text) % 10 ** 8:08d}_{stem}"
        rel = Path(task) / voice / f"{stem}__{tag}.flac"
        path = out / rel
        if path.exists():
            done += 1
            dur = round(sf.info(str(path)).frames / SAMPLE_RATE, 3)
        else:
            if engine == "recorded":
                x, sr = decode_g722(allison[text])
            elif engine == "piper":
                x, sr = piper.say(text, a if a is not None else 1.0)  # type: ignore[union-attr]
            elif engine == "espeak":
                x, sr = espeak.say(_ESPEAK_VOICES[a], text, stretch)  # type: ignore[union-attr]
            else:
                x, sr = flite.say(engine_voice, text, a, stretch)
            dur = _write(path, _finish(x, sr, pitch))
            made += 1
        rows[task].append({"path": rel.relative_to(task).as_posix(), "split": split, "voice": voice,
                           "engine": engine, "text": spoken[text] if task == "sentences" else text,
                           "label": label if task == "keywords" else "",
                           "variant": tag, "duration_s": dur, "licence": licence})
    for task, task_rows in rows.items():
        if task_rows:
            _write_manifest(out / task / "manifest.csv", task_rows)
    info = {"voices": names, "keywords": list(KEYWORDS), "sentences": len(sentences),
            "counts": {t: {s: sum(1 for r in rs if r["split"] == s) for s in ("train", "valid", "test")}
                       for t, rs in rows.items()},
            "package_versions": dict(sorted(fetcher.versions.items()))}
    atomic_write_text(out / "build_info.json", json.dumps(info, indent=2) + "\n")
    log.info("task corpus ready in %s (%d clips made, %d reused): %s", out, made, done, info["counts"])
    return out


def hash_text(text: str) -> int:
    import hashlib

    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)


# ----------------------------------------------------------------------------------------------- datasets
TASK_MANIFEST_COLUMNS = ("path", "split", "voice", "text", "label", "duration_s")


def read_task_manifest(path: str | os.PathLike, split: str | None = None) -> list[dict]:
    """Rows of a task ``manifest.csv`` (``label`` as int, -1 for sentences); ``split`` filters.

    Raises:
        TaskDataError: missing file, not a CSV with the columns :data:`TASK_MANIFEST_COLUMNS`, a value of
            ``label`` / ``duration_s`` that is not a number, or no rows of ``split``.
    """
    path = Path(path)
    if not path.exists():
        raise TaskDataError(f"{path}: task manifest not found (build it with `edm-se data tasks`)")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as err:
        raise TaskDataError(f"{path}: not a task manifest (a CSV file): {type(err).__name__}") from None
    missing = [c for c in TASK_MANIFEST_COLUMNS if c not in columns]
    if missing:
        raise TaskDataError(f"{path}: not a task manifest of `edm-se data tasks` (no column {', '.join(missing)})")
    for line, r in enumerate(rows, start=2):
        try:
            label = int(r["label"]) if str(r.get("label", "")).strip() not in ("", "-1") else -1
            r["duration_s"], r["label"] = float(r["duration_s"]), label
        except (TypeError, ValueError):
            raise TaskDataError(f"{path}: line {line}: label {r.get('label')!r} / duration_s {r.get('duration_s')!r}"
                                " must be numbers") from None
    if split is not None:
        rows = [r for r in rows if r["split"] == split]
        if not rows:
            raise TaskDataError(f"{path}: no rows of split {split!r}")
    return rows


class TaskMixingDataset(MixingDataset):
    """:class:`edm_se.data.MixingDataset` over a task manifest's clips of one split, plus their targets.

    Args:
        manifest: a task ``manifest.csv`` (``keywords`` or ``sentences``).
        split: ``train`` | ``valid`` | ``test``.
        noise: noise source of :class:`MixingDataset` (e.g. ``corpus:data_cache/corpus:train``; use the same split).
        target: ``"label"`` (keywords) or ``"text"`` (sentences).
        voices: keep only these voices (None: all of the split).
        **kwargs: the other :class:`MixingDataset` arguments (``snr_db``, ``segment_seconds``, ``seed``, ...).

    Items: ``clean``, ``noisy`` (L,) float32, ``name``, ``snr_db`` and ``label`` (int) or ``text`` (str).
    """

    def __init__(self, manifest: str | os.PathLike, split: str, noise: Any, target: str = "label",
                 voices: Sequence[str] | None = None, **kwargs: Any) -> None:
        if target not in ("label", "text"):
            raise ValueError(f"target must be 'label' or 'text', got {target!r}")
        rows = read_task_manifest(manifest, split)
        if voices is not None:
            rows = [r for r in rows if r["voice"] in set(voices)]
            if not rows:
                raise TaskDataError(f"{manifest}: no {split} rows of voices {list(voices)}")
        seg = kwargs.get("segment_seconds")
        if target == "text" and seg is not None:  # a crop would cut words off the transcript: whole clips only
            speed = kwargs.get("speed_perturb")  # the slowest factor lengthens a clip to duration / factor
            slowest = round(float(speed[0]) * 40) / 40 if speed is not None else 1.0
            longer = [r for r in rows if r["duration_s"] / slowest > float(seg)]
            rows = [r for r in rows if r["duration_s"] / slowest <= float(seg)]
            if longer:
                log.info("%s %s: %d clip(s) longer than segment_seconds=%g (at the slowest speed_perturb factor) "
                         "left out", manifest, split, len(longer), float(seg))
            if not rows:
                raise TaskDataError(f"{manifest}: no {split} clip fits segment_seconds={seg}")
        if target == "text":  # a transcript without words has no WER (asr.wer gives nan) and no CTC target
            from edm_se.asr import normalise_text

            has_words = [bool(normalise_text(r["text"])) for r in rows]
            empty = [r["path"] for r, w in zip(rows, has_words) if not w]
            rows = [r for r, w in zip(rows, has_words) if w]
            if empty:
                log.warning("%s %s: %d clip(s) whose transcript has no words left out (first: %s)", manifest,
                            split, len(empty), empty[0])
            if not rows:
                raise TaskDataError(f"{manifest}: no {split} clip has a transcript with words")
        root = Path(manifest).parent
        self.rows = rows
        self.target = target
        super().__init__([root / r["path"] for r in rows], noise, **kwargs)

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        row = self.rows[int(index) % len(self.rows)]
        item["name"] = f"{row['voice']}/{Path(row['path']).stem}#{int(index)}"
        if self.target == "label":
            item["label"] = int(row["label"])
        else:
            item["text"] = row["text"]
        return item


def make_task_test_set(manifest: str | os.PathLike, noise: Any, snrs_db: Sequence[float] = (0, 5, 10, 15, 20, 25),
                       split: str = "test", target: str = "label", seed: int = 4321,
                       segment_seconds: float | None = None, max_clips: int | None = None) -> list[dict]:
    """Fixed test mixtures: every clip of ``split`` (or ``max_clips`` of them, spread evenly over the split: the same
    clips at every SNR) at every SNR in ``snrs_db`` (noise drawn with ``seed``; a clip's mixture depends on its
    index alone, so a subset holds the very mixtures of the whole set).

    Returns:
        Items of :class:`TaskMixingDataset` with ``snr_db`` set exactly, in (SNR, clip) order.
    """
    out = []
    for k, snr in enumerate(snrs_db):
        ds = TaskMixingDataset(manifest, split, noise, target=target, snr_db=(float(snr), float(snr)),
                               segment_seconds=segment_seconds, seed=seed + 7919 * k, gain_db=None)
        n = len(ds.rows)
        keep = range(n) if max_clips is None or int(max_clips) >= n else sorted(
            set(np.linspace(0, n - 1, int(max_clips)).round().astype(int).tolist()))
        out += [ds[i] for i in keep]
    return out
