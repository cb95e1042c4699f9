"""Speech-enhancement metrics and parallel scoring of many (reference, estimate) pairs.

* :func:`pesq_wb`: wide-band PESQ (ITU-T P.862.2) with the ``pesq`` package, at 16 kHz (other rates are resampled
  with ``torchaudio.functional.resample``). Range about 1.04 .. 4.64.
* :func:`estoi`: extended STOI (Jensen & Taal 2016) with ``pystoi`` (``extended=True``). Range about 0 .. 1.
* :func:`si_sdr`: scale-invariant SDR in dB (Le Roux, Wisdom, Erdogan & Hershey 2019, "SDR - half-baked or well
  done?", ICASSP, eqs. 5-6), own numpy implementation on zero-mean signals.
* DNSMOS P.835 (Reddy et al. 2022) ``dnsmos_ovrl``, ``dnsmos_sig``, ``dnsmos_bak`` and DNSMOS P.808
  ``dnsmos_p808`` via the optional ``speechmos`` package (non-intrusive: only the estimate is used).
* ``wer_whisper``, ``wer_sphinx``: word error rate in percent (lower is better) of a downstream recogniser on the
  estimate against the reference *transcript* (:mod:`edm_se.asr`, optional ``asr`` extra). Summarised over files
  as the corpus-level WER (total errors / total reference words) with a bootstrap 95% CI (:func:`summary_stat`).
* :func:`score_pairs`: every metric for every pair in worker processes (spawn context) with a tqdm bar, plus a
  summary of means and 95% confidence-interval half-widths (Student t; bootstrap for WER).

All metric functions take 1-D float numpy arrays (torch tensors are converted) of equal length.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

PESQ_SAMPLE_RATE = 16000
DNSMOS_METRICS = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")
WER_METRICS = ("wer_whisper", "wer_sphinx")
#: Every metric name :func:`score_pairs` knows.
KNOWN_METRICS = ("pesq", "estoi", "si_sdr") + DNSMOS_METRICS + WER_METRICS
DEFAULT_METRICS = ("pesq", "estoi", "si_sdr")
#: Metrics for which a lower value is better (the rest: higher is better).
LOWER_IS_BETTER = frozenset(WER_METRICS)


def _as_1d(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D waveform, got shape {arr.shape}")
    return arr


def _pair(ref: Any, est: Any) -> tuple[np.ndarray, np.ndarray]:
    ref, est = _as_1d(ref, "ref"), _as_1d(est, "est")
    if ref.shape != est.shape:
        raise ValueError(f"ref and est must have the same length, got {ref.size} and {est.size} samples")
    if not (np.isfinite(ref).all() and np.isfinite(est).all()):
        raise ValueError("ref and est must be finite (no NaN/Inf)")
    return ref, est


def _resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    if int(orig) == int(new) > 0:
        # no import of edm_se.audio (torch) when there is nothing to resample: a scoring worker process then starts
        # without PyTorch, about 3 s sooner on 2 cores (benchmarks/scoring_pool.py)
        return x
    from edm_se.audio import resample

    return resample(x, orig, new)


def pesq_wb(ref: Any, est: Any, sample_rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2) of ``est`` against ``ref``.

    Args:
        ref: (L,) clean reference, float, full scale 1.0.
        est: (L,) estimate, same length.
        sample_rate: rate of both in Hz; anything but 16000 is resampled to 16 kHz first.

    Returns:
        MOS-LQO score (about 1.04 .. 4.64); NaN, with a logged warning, when PESQ finds no utterance in ``ref``.

    Raises:
        ValueError: shapes differ / not 1-D / non-finite input, or ``est`` is all zeros (the ``pesq`` package
            fails on it with "cannot convert float NaN to integer"; a nearly silent estimate scores about 1.02).
        pesq.PesqError: other PESQ failures (e.g. a signal too short).
    """
    from pesq import NoUtterancesError, pesq

    ref, est = _pair(ref, est)
    if not np.any(est):
        raise ValueError("pesq: the estimate is silent (all samples zero); PESQ is undefined for it")
    ref = _resample(ref, sample_rate, PESQ_SAMPLE_RATE)
    est = _resample(est, sample_rate, PESQ_SAMPLE_RATE)
    try:
        return float(pesq(PESQ_SAMPLE_RATE, ref, est, "wb"))
    except NoUtterancesError:
        log.warning("PESQ found no utterances in the reference; returning NaN")
        return float("nan")


def estoi(ref: Any, est: Any, sample_rate: int) -> float:
    """Extended STOI (Jensen & Taal 2016) of ``est`` against ``ref`` with ``pystoi`` (resamples to 10 kHz itself).

    Args:
        ref, est: (L,) float waveforms of equal length at ``sample_rate`` Hz.

    Returns:
        ESTOI in about [0, 1] (higher is more intelligible).

    Raises:
        ValueError: shapes differ / not 1-D / non-finite input.
    """
    from pystoi import stoi

    ref, est = _pair(ref, est)
    return float(stoi(ref, est, int(sample_rate), extended=True))


def si_sdr(ref: Any, est: Any) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019, eqs. 5-6).

    Both signals are made zero-mean; ``target = (<est, ref> / ||ref||^2) ref``, ``e = est - target``,
    ``SI-SDR = 10 log10(||target||^2 / ||e||^2)``. Invariant to rescaling ``est``.

    Args:
        ref, est: (L,) float waveforms of equal length (computed in float64).

    Returns:
        SI-SDR in dB (+inf for a perfect scaled copy, -inf for an estimate orthogonal to ``ref``).

    Raises:
        ValueError: shapes differ / not 1-D / non-finite input, or ``ref`` or ``est`` is constant (zero energy:
            an all-zero estimate was scored +inf, as if perfect).
    """
    ref, est = _pair(ref, est)
    ref = ref - ref.mean()
    est = est - est.mean()
    ref_energy = float(np.dot(ref, ref))
    if ref_energy <= 0.0:
        raise ValueError("si_sdr: the reference has zero energy (after removing its mean)")
    if not np.any(est):  # target and residual both vanish: 0/0, which the den == 0 test below called +inf
        raise ValueError("si_sdr: the estimate has zero energy (after removing its mean); SI-SDR is undefined")
    scale = float(np.dot(est, ref)) / ref_energy
    target = scale * ref
    residual = est - target
    num, den = float(np.dot(target, target)), float(np.dot(residual, residual))
    if den == 0.0:
        return float("inf")
    if num == 0.0:
        return float("-inf")
    return 10.0 * math.log10(num / den)


#: What ``speechmos`` imports without declaring it (its wheel lists no dependency): the ``dnsmos`` extra adds them.
DNSMOS_MODULES = ("speechmos", "librosa", "onnxruntime", "requests")


def _have_speechmos() -> bool:
    """Whether DNSMOS can run: ``speechmos`` and the packages it imports (:data:`DNSMOS_MODULES`)."""
    from edm_se.asr import MissingExtra

    try:
        _require_dnsmos()
    except MissingExtra:
        return False
    return True


def _require_dnsmos() -> None:
    """Raise :class:`edm_se.asr.MissingExtra` (an ImportError) naming the missing DNSMOS packages and the extra."""
    from edm_se.asr import require

    require("dnsmos", *DNSMOS_MODULES, what="DNSMOS")


def dnsmos(est: Any, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 and P.808 scores of ``est`` (non-intrusive) via ``speechmos``, resampled to 16 kHz.

    Returns:
        ``{"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}`` MOS values (1 .. 5): the P.835 overall,
        speech-signal and background scores, and the P.808 overall MOS of the same call.

    Raises:
        edm_se.asr.MissingExtra (an ImportError): ``speechmos`` or a package it imports is missing (``pip install
            'edm_se[dnsmos]'``).
    """
    _require_dnsmos()
    from speechmos import dnsmos as _dnsmos

    est = _resample(_as_1d(est, "est"), sample_rate, PESQ_SAMPLE_RATE)
    peak = float(np.max(np.abs(est))) if est.size else 0.0
    if peak > 1.0:  # speechmos requires samples in [-1, 1]
        est = est / peak
    out = _dnsmos.run(est.astype(np.float32), sr=PESQ_SAMPLE_RATE)
    return {"dnsmos_ovrl": float(out["ovrl_mos"]), "dnsmos_sig": float(out["sig_mos"]),
            "dnsmos_bak": float(out["bak_mos"]), "dnsmos_p808": float(out["p808_mos"])}


def _score_one(job: tuple) -> dict[str, Any]:
    """All wanted metrics for one pair (runs in a worker process). WER metrics add ``hyp_<recogniser>``."""
    ref, est, sample_rate, metrics, transcript = job
    row: dict[str, Any] = {}
    t0 = time.perf_counter()
    if "pesq" in metrics:
        row["pesq"] = pesq_wb(ref, est, sample_rate)
    if "estoi" in metrics:
        row["estoi"] = estoi(ref, est, sample_rate)
    if "si_sdr" in metrics:
        row["si_sdr"] = si_sdr(ref, est)
    if any(m in metrics for m in DNSMOS_METRICS):
        scores = dnsmos(est, sample_rate)
        row.update({m: scores[m] for m in DNSMOS_METRICS if m in metrics})
    t1 = time.perf_counter()
    for m in metrics:
        if m in WER_METRICS:
            from edm_se import asr

            name = asr.WER_METRICS[m]
            hyp = asr.transcribe(name, est, sample_rate)
            row[m] = asr.word_errors(transcript or "", hyp).wer
            row[f"hyp_{name}"] = hyp
    row["time_metrics_s"], row["time_recognisers_s"] = t1 - t0, time.perf_counter() - t1
    return row


def summary_stat(metric: str, values: Sequence[float], ref_words: Sequence[float] | None = None) -> dict[str, float]:
    """The summary of one metric over files: ``{"mean", "ci95", "n"}``.

    PESQ, ESTOI, SI-SDR, DNSMOS: :func:`mean_ci95`. WER metrics with ``ref_words`` (reference word count per file):
    the corpus-level WER, i.e. the mean weighted by reference length, with a bootstrap 95% CI
    (:func:`edm_se.asr.weighted_mean_ci95`); for per-file WER *differences* this is the difference of corpus WERs.
    """
    if metric in WER_METRICS and ref_words is not None:
        from edm_se.asr import weighted_mean_ci95

        return weighted_mean_ci95(values, ref_words)
    return mean_ci95(values)


@contextlib.contextmanager
def _spawn_start_method():
    """Make ``spawn`` the process-wide start method while a spawn pool starts its workers, when it is one that a
    fresh interpreter does not know. A spawned child re-applies its parent's global start method before anything
    else; inside a joblib/loky worker (``hydra/launcher=joblib``) that is ``loky``, and every child died with
    ``ValueError: cannot find context for 'loky'`` (a BrokenProcessPool in every cell). The method is restored
    afterwards."""
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True)
    if method is None or method in ("spawn", "fork", "forkserver"):
        yield
        return
    multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(method, force=True)


def _job_key(job: tuple) -> str:
    """SHA-256 of everything that makes a pair's scores: both waveforms, the rate, the metrics, the transcript."""
    import hashlib

    ref, est, sample_rate, metrics, transcript = job
    h = hashlib.sha256()
    for part in (ref, est):
        h.update(np.ascontiguousarray(part, dtype=np.float32).tobytes())
        h.update(b"|")
    h.update(json.dumps([int(sample_rate), list(metrics), transcript]).encode("utf-8"))
    return h.hexdigest()


def _read_scores(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{key: row}`` of a resume log (a missing file is empty; a torn last line is skipped)."""
    out: dict[str, dict[str, Any]] = {}
    try:
        text = open(path, encoding="utf-8").read()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            out[str(entry["key"])] = dict(entry["row"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


# Thread pools of the native libraries a scoring worker loads (numpy's and scipy's OpenBLAS, MKL, OpenMP). Each worker
# scores one file at a time; two workers on 2 cores, each with a 2-thread OpenBLAS, took 2.4x the CPU time per file of
# one single-threaded process (the threads spin while they wait for a core; benchmarks/scoring_pool.py).
_WORKER_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_children():
    """Set the thread-count variables of :data:`_WORKER_THREAD_VARS` to 1 (where unset) while a pool starts its
    workers: a library reads them once, when it is loaded, and a spawned worker has loaded numpy before its
    initializer runs, so the worker must be started with them. The parent's environment is restored afterwards."""
    added = [v for v in _WORKER_THREAD_VARS if v not in os.environ]
    os.environ.update({v: "1" for v in added})
    try:
        yield
    finally:
        for v in added:
            os.environ.pop(v, None)


def _worker_init() -> None:
    logging.basicConfig(level=logging.WARNING)


@contextlib.contextmanager
def spawn_pool(workers: int, initializer: Callable[[], None] | None = None):
    """A process pool of ``workers`` spawned processes (fresh interpreters), started with one thread per native
    library (:func:`_single_threaded_children`; PyTorch's own count is set with ``torch.set_num_threads``), whatever
    the global start method (:func:`_spawn_start_method`). Used for scoring (:func:`scoring_pool`) and for the
    paradigms study's cells (:mod:`edm_se.tasks.launcher`)."""
    import multiprocessing

    with _spawn_start_method(), _single_threaded_children(), ProcessPoolExecutor(
            max_workers=int(workers), mp_context=multiprocessing.get_context("spawn"),
            initializer=initializer) as pool:
        yield pool


@contextlib.contextmanager
def scoring_pool(workers: int):
    """The pool :func:`score_pairs` scores in: :func:`spawn_pool` with warnings-only logging in the workers.
    ``benchmarks/scoring_pool.py`` times its start."""
    with spawn_pool(workers, _worker_init) as pool:
        yield pool


def mean_ci95(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% confidence-interval half-width (Student t, ``n - 1`` dof) of the finite ``values``.

    Returns:
        ``{"mean", "ci95", "n"}``; ``n`` counts finite values; ``mean`` is NaN when n = 0 and ``ci95`` NaN when
        n < 2.
    """
    from scipy import stats

    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    mean = float(arr.mean()) if n else float("nan")
    if n >= 2:
        sem = float(arr.std(ddof=1)) / math.sqrt(n)
        ci95 = float(stats.t.ppf(0.975, n - 1)) * sem
    else:
        ci95 = float("nan")
    return {"mean": mean, "ci95": ci95, "n": n}


def score_pairs(references: Sequence[Any], estimates: Sequence[Any], sample_rate: int = 16000,
                names: Sequence[str] | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
                num_workers: int = 2, progress: bool = True,
                transcripts: Sequence[str | None] | None = None,
                resume_log: str | os.PathLike | None = None) -> tuple[Any, dict[str, dict[str, float]]]:
    """Score every (reference, estimate) pair, in parallel worker processes.

    Args:
        references, estimates: sequences of 1-D float waveforms (numpy or torch), paired by position; each pair
            has equal length.
        sample_rate: rate of all waveforms in Hz.
        names: one name per pair (default ``"0", "1", ...``).
        metrics: subset of :data:`KNOWN_METRICS`.
        num_workers: worker processes (spawn context); ``<= 1`` scores in this process. Each worker loads a
            recogniser once (one CPU thread each).
        progress: show a tqdm progress bar.
        transcripts: the reference text of each pair; required by the WER metrics.
        resume_log: a JSONL file that keeps each pair's scores as they come, keyed by the SHA-256 of everything
            that makes them (both waveforms, the rate, the metrics, the transcript): a call interrupted midway
            resumes from it, scoring only the pairs it lacks. None: nothing is kept.

    Returns:
        (DataFrame with a ``name`` column, one column per metric and, for each WER metric, ``hyp_<recogniser>``
        (the hypothesis) and ``ref_words``, in input order; summary ``{metric: {"mean", "ci95", "n"}}`` over the
        finite values, see :func:`summary_stat`). ``frame.attrs["seconds"]`` holds ``metrics_s`` and
        ``recognisers_s``: the time spent on the signal metrics and on the recognisers, summed over files.

    Raises:
        ValueError: unknown metric, a metric named twice, sequences of different lengths, a malformed pair, or a
            WER metric without a transcript for every pair.
        ImportError: a DNSMOS metric is asked for and ``speechmos`` is not installed, or a WER metric and the
            ``asr`` extra is missing (:class:`edm_se.asr.MissingExtra`, naming the extra).
    """
    import pandas as pd
    from tqdm import tqdm

    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(KNOWN_METRICS)}")
    if len(set(metrics)) < len(metrics):
        raise ValueError(f"metrics {list(metrics)}: each metric may be named once")
    if any(m in DNSMOS_METRICS for m in metrics):
        _require_dnsmos()
    wer = [m for m in metrics if m in WER_METRICS]
    if wer:
        from edm_se import asr

        for m in wer:
            asr.require("asr", *asr._PACKAGES[asr.WER_METRICS[m]], what=f"the metric {m}")
        if transcripts is None or len(transcripts) != len(references) or any(not t for t in transcripts):
            raise ValueError(f"{', '.join(wer)} need(s) a reference transcript for every file "
                             "(a `transcript` column in the test set's manifest.csv, or txt/<name>.txt files)")
    if len(references) != len(estimates):
        raise ValueError(f"{len(references)} references but {len(estimates)} estimates")
    names = [str(i) for i in range(len(references))] if names is None else [str(n) for n in names]
    if len(names) != len(references):
        raise ValueError(f"{len(names)} names for {len(references)} pairs")
    jobs = []
    texts = list(transcripts) if transcripts is not None else [None] * len(references)
    for name, ref, est, text in zip(names, references, estimates, texts):
        try:
            ref, est = _pair(ref, est)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        # before any worker's time (a worker's error would not name the file): the metrics' own refusals
        if not np.any(est) and any(m in ("pesq", "si_sdr") for m in metrics):
            raise ValueError(f"{name}: the estimate is silent (all samples zero); PESQ and SI-SDR are undefined "
                             "for it")
        if "si_sdr" in metrics and np.ptp(est) == 0:
            raise ValueError(f"{name}: the estimate is constant; SI-SDR is undefined for it")
        jobs.append((ref.astype(np.float32), est.astype(np.float32), int(sample_rate), metrics, text))

    keys = [_job_key(job) for job in jobs] if resume_log is not None else None
    kept = _read_scores(resume_log) if resume_log is not None else {}
    rows: list[dict[str, Any] | None] = [kept.get(k) for k in keys] if keys is not None else [None] * len(jobs)
    todo = [i for i, row in enumerate(rows) if row is None]
    if len(todo) < len(jobs):
        log.info("resumed: %d of %d pair(s) were scored by an interrupted run (%s)", len(jobs) - len(todo),
                 len(jobs), resume_log)
    log_fh = open(resume_log, "a+", encoding="utf-8") if resume_log is not None else None
    if log_fh is not None and log_fh.tell() > 0:
        log_fh.seek(log_fh.tell() - 1)
        if log_fh.read(1) != "\n":  # a torn last line (an interrupted write): end it, so the next entry stands alone
            log_fh.write("\n")

    def done(i: int, row: dict[str, Any]) -> None:
        rows[i] = row
        if log_fh is not None:
            log_fh.write(json.dumps({"key": keys[i], "row": row}) + "\n")
            log_fh.flush()
        bar.update(1)

    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="scoring", unit="file", disable=not progress)
    try:
        if num_workers <= 1 or len(todo) <= 1:
            for i in todo:
                done(i, _score_one(jobs[i]))
        else:
            workers = min(int(num_workers), len(todo))
            with scoring_pool(workers) as pool:
                results = pool.map(_score_one, [jobs[i] for i in todo],
                                   chunksize=max(1, len(todo) // (4 * workers)))
                for i, row in zip(todo, results):
                    done(i, row)
    finally:
        bar.close()
        if log_fh is not None:
            log_fh.close()

    extra: list[str] = []
    words = None
    if wer:
        from edm_se import asr

        extra = [f"hyp_{asr.WER_METRICS[m]}" for m in wer] + ["ref_words"]
        words = [asr.reference_words(t or "") for t in texts]
        rows = [{**r, "ref_words": w} for r, w in zip(rows, words)]
    frame = pd.DataFrame([{"name": n, **r} for n, r in zip(names, rows)], columns=["name", *metrics, *extra])
    # seconds the workers spent on the signal metrics and on the recognisers, summed over files (CPU, not wall)
    frame.attrs["seconds"] = {"metrics_s": float(sum(r["time_metrics_s"] for r in rows)),
                              "recognisers_s": float(sum(r["time_recognisers_s"] for r in rows))}
    summary = {m: summary_stat(m, frame[m].to_numpy(dtype=np.float64), words) for m in metrics}
    return frame, summary
