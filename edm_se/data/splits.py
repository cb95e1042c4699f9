"""Held-out splits of the corpus: whole recordings or speakers to train/valid/test (deterministic from a seed),
then the held-out checks on content: training files whose audio matches a held-out file (audio fingerprints,
:mod:`edm_se.data.fingerprint`) and held-out files of speakers who also speak in training are left out.
:func:`edm_se.data.corpus.build_corpus` runs them in that order; ``tests/test_heldout.py`` checks the result."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edm_se.data.sources import Source

log = logging.getLogger(__name__)

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""Target fractions of train/valid/test (by duration)."""
SPLITS = ("train", "valid", "test")


def split_groups(weights: Mapping[str, float], seed: int, salt: str = "",
                 fractions: Sequence[float] = SPLIT_FRACTIONS) -> dict[str, str]:
    """Assign whole groups (recordings, utterances or speakers) to train/valid/test, deterministically.

    Groups are shuffled with a RNG seeded from ``(seed, salt)`` and laid end to end by weight (duration); a group
    goes to the split whose fraction interval contains the middle of its span. With 3 groups or more every split
    of non-zero fraction gets at least one group (taken from the end of the first split that has two); a split of
    fraction 0 gets none.

    Args:
        weights: group id -> weight (e.g. seconds), > 0.
        seed: split seed; the same seed gives the same assignment.
        salt: extra seed text (the source name) so sources are shuffled independently.
        fractions: (train, valid, test) target fractions, summing to 1.

    Returns:
        group id -> ``"train"`` | ``"valid"`` | ``"test"``.
    """
    keys = sorted(weights)
    rng = random.Random(f"{int(seed)}:{salt}")
    rng.shuffle(keys)
    total = float(sum(max(float(weights[k]), 0.0) for k in keys)) or 1.0
    edges = np.cumsum(fractions)
    allowed = [s for s, f in zip(SPLITS, fractions) if f > 0]
    out: dict[str, str] = {}
    cum = 0.0
    for k in keys:
        w = max(float(weights[k]), 0.0)
        mid = (cum + w / 2.0) / total
        cum += w
        split = SPLITS[min(int(np.searchsorted(edges, mid, side="right")), 2)]
        if split not in allowed:  # rounding at an edge next to a zero fraction
            split = allowed[-1]
        out[k] = split
    if len(keys) >= 3:
        for split in reversed(allowed):
            if split not in out.values():
                for donor in allowed:
                    members = [k for k in keys if out[k] == donor]
                    if len(members) > 1:
                        out[members[-1]] = split
                        break
    return out


DOMINANT_SPEAKER = 0.1
"""A speaker holding more than this share of a ``split_by="speaker"`` source is kept in train."""


def assign_splits(rows: list[dict], seed: int, sources: Mapping[str, "Source"] | None = None) -> list[dict]:
    """Add a ``split`` to each manifest row (in place; returns ``rows``).

    Each source is split by its :attr:`Source.split_by` unit with its :attr:`Source.fractions` (rows of sources
    not in ``sources`` are split by recording, 80/10/10). For ``split_by="speaker"``, speakers holding more than
    :data:`DOMINANT_SPEAKER` of the source's duration go to train and the others are split so that the source as a
    whole is near its fractions; so a valid/test speaker is never a training speaker.
    """
    sources = sources or {}
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    for name, srows in by_source.items():
        src = sources.get(name)
        fractions = tuple(src.fractions) if src is not None else SPLIT_FRACTIONS
        by_speaker = src is not None and src.split_by == "speaker"
        if by_speaker:
            def group_of(r: dict) -> str:
                return "spk:" + (r.get("group") or r["speaker"])
        else:
            def group_of(r: dict) -> str:
                return r["recording"]
        weights: dict[str, float] = {}
        for r in srows:
            g = group_of(r)
            weights[g] = weights.get(g, 0.0) + float(r["duration_s"])
        total = sum(weights.values()) or 1.0
        pinned = {g for g, w in weights.items() if by_speaker and w > DOMINANT_SPEAKER * total
                  and fractions[0] > 0}
        rest = {g: w for g, w in weights.items() if g not in pinned}
        rest_total = sum(rest.values()) or 1.0
        if pinned:  # rescale so that the whole source is near its fractions
            held = [min(fractions[i] * total / rest_total, 1.0) for i in (1, 2)]
            if sum(held) > 1.0:
                held = [h / sum(held) for h in held]
            fr = (max(0.0, 1.0 - sum(held)), held[0], held[1])
            log.info("%s: %d dominant speaker(s) kept in train: %s", name, len(pinned),
                     ", ".join(sorted(g[4:] for g in pinned)))
        else:
            fr = fractions
        split_of = split_groups(rest, seed, salt=name, fractions=fr) if rest else {}
        split_of.update(dict.fromkeys(pinned, "train"))
        for r in srows:
            r["split"] = split_of[group_of(r)]
    return rows


def drop_train_copies(rows: list[dict], root: Path, cache_dir: Path | None = None, memo: dict | None = None
                      ) -> tuple[list[dict], list[dict]]:
    """Leave out of train every row whose audio matches a valid or test row's audio (by fingerprint).

    Catches the same sound under another name or in another package (MegaGlest tilesets share recordings), in
    another crop or at another level (:mod:`edm_se.data.fingerprint`). The held-out copy is kept; training loses
    the duplicate.

    Args:
        rows: manifest rows with ``split`` (paths relative to ``root``).
        root: the corpus directory.
        cache_dir: where fingerprints are cached (keyed by path, size and mtime); None: no cache.
        memo: path -> fingerprint already loaded, filled in (:func:`fingerprint_rows`).

    Returns:
        (kept rows, dropped rows); each dropped row gets ``matched`` (the held-out path it matched).
    """
    from edm_se.data.fingerprint import find_matches

    prints = fingerprint_rows(rows, root, cache_dir, memo)
    train = {r["path"]: prints[r["path"]] for r in rows if r["split"] == "train"}
    held = {r["path"]: prints[r["path"]] for r in rows if r["split"] != "train"}
    matched: dict[str, str] = {}
    for m in find_matches(train, held):
        matched.setdefault(m.a, m.b)
    kept, dropped = [], []
    for r in rows:
        if r["path"] in matched:
            dropped.append({**r, "matched": matched[r["path"]]})
        else:
            kept.append(r)
    for r in dropped:
        log.info("left out of train: %s (same audio as held-out %s)", r["path"], r["matched"])
    return kept, dropped


NEAR_COPY_MAX_BER = 0.32
"""The bit error rate up to which :func:`drop_heldout_near_copies` calls a held-out file a near copy of a training
file: 0.02 above the held-out check's 0.30 (:func:`edm_se.data.fingerprint.find_matches`), a guard band, because a
test mixture's noise is a crop of the file at any sample and the rate moves by up to 0.02 with the crop (MegaGlest's
``daemon_attack13`` against ``swordman_attack4``: 0.300-0.312 file against file, 0.29 inside a test mixture)."""


def drop_heldout_near_copies(rows: list[dict], root: Path, cache_dir: Path | None = None,
                             trained: Iterable[str] = (), max_ber: float = NEAR_COPY_MAX_BER,
                             memo: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Leave out of valid/test every row whose audio matches a training file at any frame phase.

    Runs after :func:`drop_train_copies`, which compares the files at one phase and leaves out the *training* copy.
    A near-copy of a short sound effect can stay under that rule's 12-vote line at one phase and cross it at another
    (:data:`edm_se.data.fingerprint.SHIFTS`), so a test mixture, whose noise is cropped at any sample, could still
    share it with training. Here each held-out file is matched at every phase of
    :data:`~edm_se.data.fingerprint.SHIFTS` (:func:`~edm_se.data.fingerprint.find_matches_any_phase`: the other
    phases are fingerprinted for the pairs that offset 0 makes candidates), up to a bit error rate of ``max_ber``,
    and the *held-out* copy leaves: the training split stays what the bundled model trained on.

    Args:
        rows: manifest rows with ``split`` (paths relative to ``root``).
        root: the corpus directory.
        cache_dir: where fingerprints are cached; None: no cache.
        trained: paths (relative to ``root``) of further files a model trained on that are not in ``rows``' train
            split (the bundled model's files that :func:`drop_train_copies` left out later).
        max_ber: the match rule's bit error rate (:data:`NEAR_COPY_MAX_BER`).
        memo: path -> fingerprint at offset 0 already loaded (by :func:`drop_train_copies`), filled in.

    Returns:
        (kept rows, dropped rows); each dropped row gets ``matched``
        (``"<training path> (near copy, BER <x>)"``).
    """
    from edm_se.data.fingerprint import SHIFTS, cached_fingerprints, find_matches_any_phase

    train_rows = [r for r in rows if r["split"] == "train"] + [{"path": p} for p in trained]
    train = fingerprint_rows(train_rows, root, cache_dir, memo)
    held = fingerprint_rows([r for r in rows if r["split"] != "train"], root, cache_dir, memo)

    def shifted(path: str) -> tuple:
        return cached_fingerprints(Path(root) / path, cache_dir, key=path, shifts=SHIFTS[1:])

    matched: dict[str, str] = {}
    for m in find_matches_any_phase(held, train, shifted, max_ber=max_ber):
        matched.setdefault(m.a, f"{m.b} (near copy, BER {m.ber:.2f})")
    kept, dropped = [], []
    for r in rows:
        if r["split"] != "train" and r["path"] in matched:
            dropped.append({**r, "matched": matched[r["path"]]})
        else:
            kept.append(r)
    for r in dropped:
        log.info("left out of %s: %s (%s)", r["split"], r["path"], r["matched"])
    return kept, dropped


def drop_heldout_shared_speakers(rows: list[dict], by_speaker: Iterable[str] | None = None
                                 ) -> tuple[list[dict], list[dict]]:
    """Leave out every valid/test speech row whose speaker (within its source) also has training rows.

    Runs after :func:`drop_train_copies`, so that the training split is what it would be without this step; it
    catches a speaker whose roles were split apart (a recurring fillets-ng character in two levels).

    Args:
        rows: manifest rows with ``split``.
        by_speaker: the sources split by speaker (``Source.split_by == "speaker"``), the only ones checked; None
            checks every source.

    Returns:
        (kept rows, dropped rows); each dropped row gets ``matched`` = ``"speaker <id> in train"``.
    """
    checked = None if by_speaker is None else set(by_speaker)
    trained = {(r["source"], r["speaker"]) for r in rows if r["split"] == "train" and r.get("speaker")}
    kept, dropped = [], []
    for r in rows:
        if (r["split"] != "train" and r.get("speaker") and (r["source"], r["speaker"]) in trained
                and (checked is None or r["source"] in checked)):
            dropped.append({**r, "matched": f"speaker {r['speaker']} in train"})
        else:
            kept.append(r)
    if dropped:
        log.info("left out of valid/test: %d file(s) of speakers who also have training files (%s)", len(dropped),
                 ", ".join(sorted({f"{r['source']}:{r['speaker']}" for r in dropped})))
    return kept, dropped


def fingerprint_rows(rows: Sequence[Mapping[str, object]], root: Path, cache_dir: Path | None = None,
                     memo: dict | None = None) -> dict:
    """Fingerprints (:func:`edm_se.data.fingerprint.fingerprint`) of the files of ``rows`` (read at the
    fingerprint's rate, :data:`edm_se.data.fingerprint.SAMPLE_RATE`), cached on disk under their path relative to
    ``root`` (:func:`edm_se.data.fingerprint.cached_fingerprint`), so a moved corpus keeps its cache.

    Args:
        memo: path -> fingerprint already loaded in this process (one corpus build loads each file once, not once per
            step); the new ones are added to it. None: none kept.

    Returns:
        row path -> :class:`edm_se.data.fingerprint.Fingerprint`.
    """
    from edm_se.data.fingerprint import cached_fingerprint

    memo = {} if memo is None else memo
    for r in rows:
        path = str(r["path"])
        if path not in memo:
            memo[path] = cached_fingerprint(Path(root) / path, cache_dir, key=path)
    return {str(r["path"]): memo[str(r["path"])] for r in rows}
