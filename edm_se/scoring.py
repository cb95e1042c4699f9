"""Scoring enhanced audio against clean references: per-file scores, means with 95% CIs, per-SNR means and the
paired per-file improvement over the noisy input (the statistic that tells samplers apart on a small test set)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edm_se.atomic import atomic_write_json
from edm_se.study_common import NOISY_FORMAT, read_json
from edm_se.testset import TestSet

log = logging.getLogger("edm_se.study")


def score(references: list[Any], estimates: list[Any], names: list[str], sample_rate: int,
          metrics: list[str], num_workers: int = 2) -> dict[str, list[float]]:
    """Per-file scores ``{metric: [value per file]}`` for ``metrics`` (see :func:`edm_se.metrics.score_pairs`).

    Args:
        references, estimates: 1-D float32 waveforms (numpy or torch) at ``sample_rate`` Hz, paired by position.
        names: file names, same order.
        metrics: metric names (``pesq``, ``estoi``, ``si_sdr``, ``dnsmos_ovrl``, ...). DNSMOS metrics are dropped
            with a warning when ``speechmos`` is not installed.
    """
    import numpy as np

    from edm_se import metrics as M

    refs = [np.asarray(r.numpy() if hasattr(r, "numpy") else r, dtype=np.float32) for r in references]
    ests = [np.asarray(e.numpy() if hasattr(e, "numpy") else e, dtype=np.float32) for e in estimates]
    wanted = [m for m in metrics if not m.startswith("dnsmos") or M._have_speechmos()]
    if len(wanted) < len(metrics):
        log.warning("speechmos is not installed (pip install 'edm_se[dnsmos]'): DNSMOS is skipped")
    frame, _summary = M.score_pairs(refs, ests, sample_rate=sample_rate, names=names, metrics=tuple(wanted),
                                    num_workers=num_workers, progress=False)
    out: dict[str, list[float]] = {}
    for m in wanted:
        if m in frame.columns:
            out[m] = [float(v) for v in frame[m].tolist()]
    return out


def summarise(scores: dict[str, list[float]], snr_db: list[float | None]) -> tuple[dict, dict]:
    """Means with 95% CI half-widths, and per-SNR means, from per-file scores."""
    from edm_se.metrics import mean_ci95

    summary = {}
    per_snr: dict[str, dict[str, float]] = {}
    for m, values in scores.items():
        summary[m] = mean_ci95(values)
        groups: dict[float, list[float]] = {}
        for v, s in zip(values, snr_db):
            if s is not None:
                groups.setdefault(float(s), []).append(v)
        if groups:
            per_snr[m] = {f"{s:g}": mean_ci95(vs)["mean"] for s, vs in sorted(groups.items())}
    return summary, per_snr



def improvement(scores: dict[str, list[float]], noisy: dict | None, names: list[str],
                snr_db: list[float | None]) -> tuple[dict, dict]:
    """Paired per-file improvement over the noisy input: mean and 95% CI of ``score(enhanced) - score(noisy)``.

    Args:
        scores: per-file scores of the enhanced files, ``{metric: [value per name]}``.
        noisy: the output of :func:`noisy_reference` (its ``per_file`` scores), or None.
        names: the file names of ``scores``, same order.
        snr_db: SNR of each file (None where unknown).

    Returns:
        ``({metric: {"mean", "ci95", "n"}}, {metric: {snr_db: mean}})``; empty when ``noisy`` lacks per-file
        scores for these names (an old cache). The CI of a paired difference is much narrower than the CIs of the
        two means when the files vary more than the systems do, which is why it tells samplers apart.
    """
    per_file = (noisy or {}).get("per_file") or {}
    index = {n: i for i, n in enumerate(per_file.get("names") or [])}
    if not index or any(n not in index for n in names):
        return {}, {}
    deltas = {}
    for m, values in scores.items():
        ref = per_file.get(m)
        if ref is None:
            continue
        deltas[m] = [float(v) - float(ref[index[n]]) for v, n in zip(values, names)]
    return summarise(deltas, snr_db)


def evaluate_point(model: Any, test_set: TestSet, sampler: dict, *, t_start: float, seed: int,
                   metrics: list[str], keep: list[str], audio_dir: Path, num_workers: int = 2,
                   progress: bool = False, noisy_ref: dict | None = None) -> dict:
    """Enhance every noisy file of ``test_set`` with ``sampler`` and score it against the clean references.

    Args:
        model: :class:`edm_se.model.EnhancementModel`.
        sampler: a resolved sampler config node (``conf/sampler/*.yaml`` with overrides).
        t_start: process time the reverse process starts from.
        seed: sampler noise seed (the same for every file and cell: paired comparisons).
        keep: names of files whose enhanced audio is written to ``audio_dir``.
        noisy_ref: :func:`noisy_reference` of the same test set: adds the paired ``improvement`` (and its per-SNR
            means, ``improvement_per_snr``).

    Returns:
        A point dict (see :mod:`edm_se.study`) without the labels ``sampler``/``sde``/... that the caller adds.
    """
    from tqdm import tqdm

    from edm_se.audio import load_audio, save_audio

    steps = sampler.get("num_steps")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"sampler num_steps must be >= 1, got {steps}")
    if not 0.0 < float(t_start) <= 1.0:
        raise ValueError(f"t_start must be in (0, 1], got {t_start}")
    sr = model.sample_rate
    smp = model.make_sampler(sampler)
    refs, ests, wall, audio_s, nfe = [], [], 0.0, 0.0, 0
    kept = []
    for name in tqdm(test_set.names, desc="enhance", disable=not progress, dynamic_ncols=True):
        noisy = load_audio(test_set.noisy(name), sample_rate=sr)
        clean = load_audio(test_set.clean(name), sample_rate=sr)
        res = model.enhance(noisy, sr, sampler=smp, t_start=float(t_start), seed=int(seed))
        n = min(clean.shape[-1], res.waveform.shape[-1])
        refs.append(clean[:n])
        ests.append(res.waveform[:n])
        wall += res.seconds
        audio_s += noisy.shape[-1] / sr
        nfe = max(nfe, int(res.nfe))
        if name in keep:
            dest = audio_dir / Path(name).with_suffix(".flac")
            save_audio(dest, res.waveform, sr)
            kept.append(dest)
    scores = score(refs, ests, test_set.names, sr, metrics, num_workers=num_workers)
    summary, per_snr = summarise(scores, test_set.snr_db)
    delta, delta_per_snr = improvement(scores, noisy_ref, test_set.names, test_set.snr_db)
    return {"nfe": nfe, "n": len(test_set.names), "wall_s": wall, "audio_s": audio_s,
            "rtf": wall / max(audio_s, 1e-9), "metrics": summary, "per_snr": per_snr,
            "improvement": delta, "improvement_per_snr": delta_per_snr,
            "per_file": {"names": list(test_set.names), **scores}, "audio": [str(p) for p in kept]}


def noisy_reference(test_set: TestSet, sweep_dir: Path, metrics: list[str], sample_rate: int, keep: list[str],
                    num_workers: int = 2) -> dict:
    """Score the noisy input against the clean reference once per study (cached in ``noisy_metrics.json``, keyed
    by the test set's content hash; ``per_file`` holds the per-file scores that paired improvements need).

    Also copies the kept files' clean and noisy audio to ``sweep_dir/audio/{clean,noisy}/`` for the spectrograms.
    """
    from edm_se.audio import load_audio, save_audio

    path = sweep_dir / "noisy_metrics.json"
    ident = {**test_set.identity(), "metrics": list(metrics), "sample_rate": sample_rate}
    cached = read_json(path)
    if cached and cached.get("format") == NOISY_FORMAT and cached.get("test_set") == ident:
        return cached
    refs, noisies = [], []
    for name in test_set.names:
        clean = load_audio(test_set.clean(name), sample_rate=sample_rate)
        noisy = load_audio(test_set.noisy(name), sample_rate=sample_rate)
        n = min(clean.shape[-1], noisy.shape[-1])
        refs.append(clean[:n])
        noisies.append(noisy[:n])
        if name in keep:
            save_audio(sweep_dir / "audio" / "clean" / Path(name).with_suffix(".flac"), clean, sample_rate)
            save_audio(sweep_dir / "audio" / "noisy" / Path(name).with_suffix(".flac"), noisy, sample_rate)
    scores = score(refs, noisies, test_set.names, sample_rate, metrics, num_workers=num_workers)
    summary, per_snr = summarise(scores, test_set.snr_db)
    out = {"format": NOISY_FORMAT, "test_set": ident, "metrics": summary, "per_snr": per_snr,
           "n": len(test_set.names), "per_file": {"names": list(test_set.names), **scores}}
    atomic_write_json(path, out)
    return out

