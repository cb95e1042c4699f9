"""Scoring enhanced audio against clean references: per-file scores, means with 95% CIs, per-SNR means and the
paired per-file improvement over the noisy input (the statistic that tells samplers apart on a small test set)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from edm_se.atomic import atomic_write_json
from edm_se.study_common import NOISY_FORMAT, read_json
from edm_se.testset import TestSet

log = logging.getLogger("edm_se.study")


def wanted_metrics(metrics: list[str], test_set: TestSet | None = None) -> list[str]:
    """``metrics`` minus those that cannot be computed here, each dropped with a warning: DNSMOS without
    ``speechmos``; WER metrics on a test set without transcripts. A WER metric whose ``asr`` extra is missing is an
    error (:class:`edm_se.asr.MissingExtra`, naming the extra), not a silent drop."""
    from edm_se import metrics as M

    out = []
    for m in metrics:
        if m.startswith("dnsmos") and not M._have_speechmos():
            log.warning("DNSMOS needs speechmos, librosa and onnxruntime (pip install 'edm_se[dnsmos]'): %s is "
                        "skipped", m)
            continue
        if m in M.WER_METRICS:
            from edm_se import asr

            asr.require("asr", *asr._PACKAGES[asr.WER_METRICS[m]], what=f"the metric {m}")
            if test_set is not None and not test_set.has_transcripts():
                log.warning("%s: the test set has no transcript for every file (manifest.csv column `transcript` "
                            "or txt/<name>.txt): %s is skipped", test_set.root, m)
                continue
        out.append(m)
    return out


def ref_words(test_set: TestSet) -> list[int] | None:
    """Reference word count of each file (the weights of the corpus-level WER), or None without transcripts."""
    if not test_set.has_transcripts():
        return None
    from edm_se.asr import reference_words

    return [reference_words(t or "") for t in test_set.transcripts or []]


def score(references: list[Any], estimates: list[Any], names: list[str], sample_rate: int,
          metrics: list[str], num_workers: int = 2, transcripts: list[str | None] | None = None,
          timings: dict | None = None) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """Per-file scores for ``metrics`` (see :func:`edm_se.metrics.score_pairs`; filter them first with
    :func:`wanted_metrics`).

    Args:
        references, estimates: 1-D float32 waveforms (numpy or torch) at ``sample_rate`` Hz, paired by position.
        names: file names, same order.
        metrics: metric names (``pesq``, ``estoi``, ``si_sdr``, ``dnsmos_ovrl``, ``wer_whisper``, ...).
        transcripts: reference transcripts, same order (for the WER metrics).
        timings: if given, filled with ``metrics_s`` and ``recognisers_s``: the seconds the workers spent on the
            signal metrics and on the recognisers, summed over files (CPU time in parallel workers, not wall time).

    Returns:
        ``({metric: [value per file]}, {recogniser: [hypothesis per file]})``.
    """
    import numpy as np

    from edm_se import metrics as M

    refs = [np.asarray(r.numpy() if hasattr(r, "numpy") else r, dtype=np.float32) for r in references]
    ests = [np.asarray(e.numpy() if hasattr(e, "numpy") else e, dtype=np.float32) for e in estimates]
    frame, _summary = M.score_pairs(refs, ests, sample_rate=sample_rate, names=names, metrics=tuple(metrics),
                                    num_workers=num_workers, progress=False, transcripts=transcripts)
    out: dict[str, list[float]] = {}
    for m in metrics:
        if m in frame.columns:
            out[m] = [float(v) for v in frame[m].tolist()]
    hyps = {c[4:]: [str(v) for v in frame[c].tolist()] for c in frame.columns if c.startswith("hyp_")}
    if timings is not None:
        timings.update(frame.attrs.get("seconds") or {})
    return out, hyps


def summarise(scores: dict[str, list[float]], snr_db: list[float | None],
              words: list[int] | None = None) -> tuple[dict, dict]:
    """Means with 95% CI half-widths, and per-SNR means, from per-file scores (:func:`edm_se.metrics.summary_stat`:
    the WER metrics are corpus-level WERs, weighted by the reference word counts ``words``)."""
    from edm_se.metrics import summary_stat

    summary = {}
    per_snr: dict[str, dict[str, float]] = {}
    for m, values in scores.items():
        summary[m] = summary_stat(m, values, words)
        groups: dict[float, list[int]] = {}
        for i, s in enumerate(snr_db):
            if s is not None:
                groups.setdefault(float(s), []).append(i)
        if groups:
            per_snr[m] = {f"{s:g}": summary_stat(m, [values[i] for i in idx],
                                                 None if words is None else [words[i] for i in idx])["mean"]
                          for s, idx in sorted(groups.items())}
    return summary, per_snr


def improvement(scores: dict[str, list[float]], noisy: dict | None, names: list[str],
                snr_db: list[float | None], words: list[int] | None = None) -> tuple[dict, dict]:
    """Paired per-file improvement over the noisy input: mean and 95% CI of ``score(enhanced) - score(noisy)``.

    Args:
        scores: per-file scores of the enhanced files, ``{metric: [value per name]}``.
        noisy: the output of :func:`noisy_reference` (its ``per_file`` scores), or None.
        names: the file names of ``scores``, same order.
        snr_db: SNR of each file (None where unknown).
        words: reference word counts (WER metrics: the difference of corpus-level WERs, negative = better).

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
    return summarise(deltas, snr_db, words)


def evaluate_point(model: Any, test_set: TestSet, sampler: dict, *, t_start: float, seed: int,
                   metrics: list[str], keep: list[str], audio_dir: Path, num_workers: int = 2,
                   progress: bool = False, noisy_ref: dict | None = None, oa_weight: float = 0.0) -> dict:
    """Enhance every noisy file of ``test_set`` with ``sampler`` and score it against the clean references.

    Args:
        model: :class:`edm_se.model.EnhancementModel`.
        sampler: a resolved sampler config node (``conf/sampler/*.yaml`` with overrides).
        t_start: process time the reverse process starts from.
        seed: sampler noise seed (the same for every file and cell: paired comparisons).
        oa_weight: observation adding, ``(1 - w) * enhanced + w * noisy`` (0: off; scored and kept as written).
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
    refs, ests, wall, audio_s, nfe, io_s = [], [], 0.0, 0.0, 0, 0.0
    kept = []
    for name in tqdm(test_set.names, desc="enhance", disable=not progress, dynamic_ncols=True):
        t_io = time.perf_counter()
        noisy = load_audio(test_set.noisy(name), sample_rate=sr)
        clean = load_audio(test_set.clean(name), sample_rate=sr)
        io_s += time.perf_counter() - t_io
        res = model.enhance(noisy, sr, sampler=smp, t_start=float(t_start), seed=int(seed), oa_weight=oa_weight)
        n = min(clean.shape[-1], res.waveform.shape[-1])
        refs.append(clean[:n])
        ests.append(res.waveform[:n])
        wall += res.seconds
        audio_s += noisy.shape[-1] / sr
        nfe = max(nfe, int(res.nfe))
        if name in keep:
            t_io = time.perf_counter()
            dest = audio_dir / Path(name).with_suffix(".flac")
            save_audio(dest, res.waveform, sr)
            kept.append(dest)
            io_s += time.perf_counter() - t_io
    return score_point(refs, ests, test_set, metrics, sr, num_workers=num_workers, noisy_ref=noisy_ref,
                       extra={"nfe": nfe, "wall_s": wall, "audio_s": audio_s, "rtf": wall / max(audio_s, 1e-9),
                              "io_s": io_s, "audio": [str(p) for p in kept]})


def score_point(refs: list[Any], ests: list[Any], test_set: TestSet, metrics: list[str], sample_rate: int, *,
                num_workers: int = 2,
                noisy_ref: dict | None = None, extra: dict | None = None) -> dict:
    """Score one system's outputs on ``test_set``: summary, per-SNR means, paired improvement over the noisy input
    (when ``noisy_ref`` is given), per-file scores and the recognisers' hypotheses (``per_file["hyp_<name>"]``).

    The scoring step :func:`evaluate_point` (diffusion cells), :func:`noisy_reference` and :func:`peer_reference`
    share; ``extra`` keys (``nfe``, ``rtf``, ...) are added to the point, and ``score_s`` is the wall time of
    scoring (metrics and recognisers, in the worker pool).
    """
    words = ref_words(test_set)
    t0 = time.perf_counter()
    timings: dict = {}
    scores, hyps = score(refs, ests, test_set.names, sample_rate, metrics, num_workers=num_workers,
                         transcripts=test_set.transcripts, timings=timings)
    score_s = time.perf_counter() - t0
    summary, per_snr = summarise(scores, test_set.snr_db, words)
    delta, delta_per_snr = improvement(scores, noisy_ref, test_set.names, test_set.snr_db, words)
    return {**(extra or {}), "n": len(test_set.names), "score_s": score_s, "score_cpu_s": timings,
            "metrics": summary, "per_snr": per_snr,
            "improvement": delta, "improvement_per_snr": delta_per_snr,
            "per_file": {"names": list(test_set.names), **scores, **{f"hyp_{k}": v for k, v in hyps.items()},
                         **({"ref_words": list(words)} if words is not None else {})}}


def _load_pairs(test_set: TestSet, sample_rate: int) -> tuple[list[Any], list[Any]]:
    from edm_se.audio import load_audio

    refs, noisies = [], []
    for name in test_set.names:
        clean = load_audio(test_set.clean(name), sample_rate=sample_rate)
        noisy = load_audio(test_set.noisy(name), sample_rate=sample_rate)
        n = min(clean.shape[-1], noisy.shape[-1])
        refs.append(clean[:n])
        noisies.append(noisy[:n])
    return refs, noisies


def noisy_reference(test_set: TestSet, sweep_dir: Path, metrics: list[str], sample_rate: int, keep: list[str],
                    num_workers: int = 2) -> dict:
    """Score the noisy input against the clean reference once per study (cached in ``noisy_metrics.json``, keyed
    by the test set's content hash; ``per_file`` holds the per-file scores that paired improvements need, and the
    recognisers' transcripts of the noisy files).

    With WER metrics, also transcribes the clean references: ``clean`` holds their WER (the floor a perfect
    enhancer reaches), cached in the same file, so unchanged audio is transcribed once per test set.

    Also copies the kept files' clean and noisy audio to ``sweep_dir/audio/{clean,noisy}/`` for the spectrograms.
    """
    from edm_se.audio import save_audio
    from edm_se.metrics import WER_METRICS

    path = sweep_dir / "noisy_metrics.json"
    ident = {**test_set.identity(), "metrics": list(metrics), "sample_rate": sample_rate}
    cached = read_json(path)
    if cached and cached.get("format") == NOISY_FORMAT and cached.get("test_set") == ident:
        return cached
    log.info("scoring the noisy input%s on %d files (cached in %s)", " and the clean references' WER"
             if any(m in WER_METRICS for m in metrics) else "", len(test_set.names), path)
    refs, noisies = _load_pairs(test_set, sample_rate)
    for name, clean, noisy in zip(test_set.names, refs, noisies):
        if name in keep:
            save_audio(sweep_dir / "audio" / "clean" / Path(name).with_suffix(".flac"), clean, sample_rate)
            save_audio(sweep_dir / "audio" / "noisy" / Path(name).with_suffix(".flac"), noisy, sample_rate)
    out = {"format": NOISY_FORMAT, "test_set": ident,
           **score_point(refs, noisies, test_set, metrics, sample_rate, num_workers=num_workers)}
    wer = [m for m in metrics if m in WER_METRICS]
    if wer:
        out["clean"] = score_point(refs, refs, test_set, wer, sample_rate, num_workers=num_workers, noisy_ref=out)
    atomic_write_json(path, out)
    return out


def peer_reference(peer: str, test_set: TestSet, sweep_dir: Path, metrics: list[str], sample_rate: int,
                   keep: list[str], num_workers: int = 2, noisy_ref: dict | None = None) -> dict:
    """Enhance ``test_set`` with the pretrained peer ``peer`` (:mod:`edm_se.enhancers`) and score it, once per test
    set: cached in ``sweep_dir/peers/<peer>.json`` keyed by the test set's content hash, the metrics and the peer's
    package version. Kept files' audio goes to ``sweep_dir/peers/<peer>/``.

    Returns:
        A point (as :func:`score_point`) with ``peer``, ``label``, ``version``, ``rtf``, ``wall_s``, ``audio_s``.

    Raises:
        edm_se.asr.MissingExtra: the peer's package is not installed.
    """
    from edm_se.audio import save_audio
    from edm_se.enhancers import make_peer, peer_version, timed_enhance

    enhancer = make_peer(peer)
    version = peer_version(peer)
    path = sweep_dir / "peers" / f"{peer}.json"
    ident = {**test_set.identity(), "metrics": list(metrics), "sample_rate": sample_rate, "peer": peer,
             "version": version}
    cached = read_json(path)
    if cached and cached.get("format") == NOISY_FORMAT and cached.get("test_set") == ident:
        return cached
    log.info("scoring peer %s (%s %s) on %d files (cached in %s)", peer, enhancer.label, version,
             len(test_set.names), path)
    refs, noisies = _load_pairs(test_set, sample_rate)
    ests, wall, audio_s, kept = [], 0.0, 0.0, []
    for name, noisy in zip(test_set.names, noisies):
        y, seconds = timed_enhance(enhancer, noisy.numpy(), sample_rate)
        ests.append(y)
        wall += seconds
        audio_s += len(y) / sample_rate
        if name in keep:
            dest = sweep_dir / "peers" / peer / Path(name).with_suffix(".flac")
            save_audio(dest, y, sample_rate)
            kept.append(str(dest))
    point = score_point(refs, ests, test_set, metrics, sample_rate, num_workers=num_workers, noisy_ref=noisy_ref,
                        extra={"peer": peer, "label": enhancer.label, "version": version, "wall_s": wall,
                               "audio_s": audio_s, "rtf": wall / max(audio_s, 1e-9), "audio": kept})
    out = {"format": NOISY_FORMAT, "test_set": ident, **point}
    atomic_write_json(path, out)
    return out
