"""Scoring a downstream task model behind an optional front end, per SNR, with 95% confidence intervals.

Keyword accuracy gets Wilson's score interval (a proportion); the CTC recogniser's corpus WER a bootstrap interval
over files (:func:`edm_se.asr.weighted_mean_ci95`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from edm_se.tasks.models import TaskModel

__all__ = ["wilson_ci95", "evaluate_task", "enhance_items", "evaluate_recogniser", "wer_summary"]


# the scoring method's version, stored in every cached score of the paradigms study: a cached score of another
# version is computed again. 2: batches of one clip length only (1 zero-padded the batch to its longest clip).
SCORING_VERSION = 2


def wilson_ci95(successes: int, n: int) -> dict[str, float]:
    """Proportion ``successes / n`` in percent with the half-width of Wilson's 95% score interval (Wilson 1927),
    reported around the proportion (the larger of the two sides). ``{"mean", "ci95", "n"}``; NaN for n = 0."""
    if n <= 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    z = 1.959963984540054
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = centre - half, centre + half
    return {"mean": 100.0 * p, "ci95": 100.0 * max(p - lo, hi - p), "n": int(n)}


def enhance_items(items: Sequence[dict], front_end: Any, sample_rate: int = 16000) -> list[np.ndarray]:
    """The noisy waveforms of ``items`` through ``front_end`` (an :class:`edm_se.enhancers.Enhancer`), or as they
    are when it is None, or the clean references when it is ``"clean"``."""
    out = []
    for it in items:
        if front_end == "clean":
            out.append(np.asarray(it["clean"], dtype=np.float32))
        elif front_end is None:
            out.append(np.asarray(it["noisy"], dtype=np.float32))
        else:
            out.append(np.asarray(front_end.enhance(np.asarray(it["noisy"], dtype=np.float32), sample_rate),
                                  dtype=np.float32))
    return out


@torch.no_grad()
def evaluate_task(task: TaskModel, items: Sequence[dict], waves: Sequence[np.ndarray] | None = None,
                  batch_size: int = 16) -> dict:
    """Score ``task`` on ``items`` (from :func:`edm_se.tasks.data.make_task_test_set`).

    Args:
        task: a trained task model (set to eval mode here).
        items: test items with ``snr_db`` and ``label`` or ``text``.
        waves: the inputs to score (e.g. a front end's output, :func:`enhance_items`); None: the noisy mixtures.
        batch_size: examples per forward pass; a batch holds waveforms of one length only (no padding), so every
            prediction equals that of the clip alone.

    Returns:
        ``{"metric": "accuracy" | "wer", "overall": {mean, ci95, n}, "per_snr": {snr: {...}}, "per_file":
        [{name, snr_db, target, prediction, correct | errors}]}``.
    """
    from edm_se.asr import word_errors

    task.eval()
    waves = [np.asarray(it["noisy"], np.float32) for it in items] if waves is None else list(waves)
    if len(waves) != len(items):
        raise ValueError(f"{len(waves)} waveforms for {len(items)} items")
    # batches hold waveforms of one length only: zero padding would change a clip's prediction (instance norm and
    # pooling over time, the CTC model's GRU), so that it would depend on which clips share its batch
    predictions: list[Any] = [None] * len(waves)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        by_length.setdefault(len(w), []).append(i)
    for idx in by_length.values():
        for j in range(0, len(idx), batch_size):
            chunk = idx[j:j + batch_size]
            for i, pred in zip(chunk, task.predict(task(torch.tensor(np.stack([waves[i] for i in chunk]))))):
                predictions[i] = pred
    keyword = "label" in items[0]
    rows = []
    for it, pred in zip(items, predictions):
        row = {"name": it.get("name", ""), "snr_db": float(it["snr_db"])}
        if keyword:
            row.update(target=int(it["label"]), prediction=int(pred), correct=int(int(pred) == int(it["label"])))
        else:
            e = word_errors(it["text"], pred)
            row.update(target=it["text"], prediction=pred, errors=e.errors, words=e.reference_words)
        rows.append(row)

    def summary(sel: list[dict]) -> dict:
        return wilson_ci95(sum(r["correct"] for r in sel), len(sel)) if keyword else wer_summary(sel)

    return _per_snr("accuracy" if keyword else "wer", rows, summary)


def wer_summary(rows: Sequence[dict]) -> dict[str, float]:
    """Corpus WER (%) of rows ``{target, prediction, errors, words}`` with the bootstrap 95% half-width over files
    (:func:`edm_se.asr.weighted_mean_ci95`, weighted by reference words): ``{"mean", "ci95", "n"}``."""
    from edm_se.asr import corpus_wer, reference_words, weighted_mean_ci95

    refs = [r["target"] for r in rows]
    ci = weighted_mean_ci95([100.0 * r["errors"] / max(r["words"], 1) for r in rows],
                            [reference_words(t) for t in refs])
    return {"mean": corpus_wer(refs, [r["prediction"] for r in rows]), "ci95": ci["ci95"], "n": len(rows)}


def _per_snr(metric: str, rows: list[dict], summary) -> dict:
    snrs = sorted({r["snr_db"] for r in rows})
    return {"metric": metric, "overall": summary(rows),
            "per_snr": {f"{s:g}": summary([r for r in rows if r["snr_db"] == s]) for s in snrs}, "per_file": rows}


def evaluate_recogniser(recogniser: str, items: Sequence[dict], waves: Sequence[np.ndarray],
                        sample_rate: int = 16000, **options: Any) -> dict:
    """WER of a frozen black-box recogniser (``whisper`` / ``sphinx``, :func:`edm_se.asr.transcribe`) on ``waves``
    against the items' transcripts: the dict of :func:`evaluate_task` with ``metric = "wer_<recogniser>"``."""
    from tqdm.auto import tqdm

    from edm_se.asr import transcribe, word_errors

    rows = []
    for it, w in tqdm(list(zip(items, waves)), desc=f"{recogniser} WER", unit="file", leave=False):
        hyp = transcribe(recogniser, w, sample_rate, **options)
        e = word_errors(it["text"], hyp)
        rows.append({"name": it.get("name", ""), "snr_db": float(it["snr_db"]), "target": it["text"],
                     "prediction": hyp, "errors": e.errors, "words": e.reference_words})
    return _per_snr(f"wer_{recogniser}", rows, wer_summary)

