"""Score a directory of enhanced files against clean references (``edm-se evaluate``).

Files are matched by their path relative to each directory, ignoring the audio suffix (``a/b.flac`` in the
estimates matches ``a/b.wav`` in the references). Scores come from :func:`edm_se.metrics.score_pairs` (worker
processes); with a ``noisy`` directory the noisy inputs are scored too and per-file improvements
(``delta_<metric> = <metric> - noisy_<metric>``) are added.

Outputs, written atomically (temporary file + ``os.replace``) into ``output_dir``:

* ``metrics.csv``: one row per file: ``name, <metric>...`` [``, noisy_<metric>..., delta_<metric>...``].
* ``summary.json``: the dict returned by :func:`evaluate_dirs` (NaN written as ``null``).

While it scores, ``output_dir/.evaluate_scores.jsonl`` keeps each pair's scores as they come (keyed by the content
of both waveforms, the metrics and the transcript): an interrupted run resumes from it, scoring only what it lacks,
and it is removed once ``metrics.csv`` and ``summary.json`` are written.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

from edm_se.atomic import atomic_write_json, atomic_write_text
from edm_se.audio import AUDIO_SUFFIXES, MAX_LENGTH_MISMATCH, AudioError, lengths_too_different

log = logging.getLogger(__name__)

SUMMARY_FORMAT = "edm_se.evaluate/1"
RESUME_LOG = ".evaluate_scores.jsonl"


def _audio_files(root: Path, what: str) -> dict[str, Path]:
    """``{relative path without suffix: file}`` for every audio file under ``root``; in an ``edm-se enhance``
    output directory (one with ``enhance.json``) its per-call ``estimates/`` are not among them."""
    if not root.exists():
        raise AudioError(root, f"{what} directory does not exist")
    if not root.is_dir():
        raise AudioError(root, f"{what} path is not a directory")
    from edm_se.enhance_record import MANIFEST

    skip = root / "estimates" if (root / MANIFEST).is_file() else None
    found: dict[str, Path] = {}
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.suffix.lower() not in AUDIO_SUFFIXES or f.name.startswith("."):
            continue
        if skip is not None and f.is_relative_to(skip):
            continue
        key = f.relative_to(root).with_suffix("").as_posix()
        if key in found:
            raise AudioError(f, f"ambiguous: {found[key].name} has the same name with another suffix")
        found[key] = f
    if not found:
        raise AudioError(root, f"{what} directory holds no audio file ({', '.join(AUDIO_SUFFIXES)})")
    return found


def check_held_out(estimates: str | os.PathLike, references: str | os.PathLike,
                   noisy: str | os.PathLike | None = None, ckpt: str | os.PathLike | None = None,
                   mode: str = "refuse", progress: bool = True) -> dict:
    """The references (and the noise of each ``noisy - reference``) against the training data of the model that
    made the estimates (:mod:`edm_se.heldout`).

    The model is ``ckpt``; without it, the bundled model when the estimates' ``enhance.json`` records its SHA-256,
    else none (not checked). A ``ckpt`` that is not the model ``enhance.json`` records is refused.

    Returns:
        ``provenance.held_out`` of the summary: :meth:`edm_se.heldout.Report.as_dict` (with ``checkpoint``), or
        ``{"status": "off" | "unchecked", "reason"}`` when no model is named or ``mode == "off"``.

    Raises:
        edm_se.heldout.HeldOutError: shared audio and ``mode == "refuse"``.
        edm_se.checkpoint.CheckpointError: ``ckpt`` is unreadable, or not the model that made the estimates.
        edm_se.audio.AudioError: a directory or file cannot be read.
    """
    from edm_se.checkpoint import CheckpointError
    from edm_se.enhance_record import recorded_config
    from edm_se.heldout import UNCHECKED, check_pairs, enforce
    from edm_se.trained_on import checkpoint_training_data
    from edm_se.model import default_checkpoint_path
    from edm_se.provenance import file_sha256

    if mode == "off":
        return {"status": "off", "reason": "heldout_check=off"}
    recorded = (recorded_config(estimates) or {}).get("checkpoint_sha256")
    loaded = None
    if ckpt is not None:
        from edm_se.checkpoint import load_checkpoint

        path = Path(ckpt).expanduser()
        loaded = load_checkpoint(path)  # a missing or unreadable file, named
        if recorded and file_sha256(path) != recorded:
            raise CheckpointError(f"ckpt={ckpt}: not the model that made {estimates} (its enhance.json records "
                                  f"checkpoint SHA-256 {recorded[:12]}...)")
    elif recorded and recorded == file_sha256(default_checkpoint_path()):
        path = default_checkpoint_path()
    else:
        reason = ("name the model that made the estimates with ckpt=PATH" if not recorded else
                  "the estimates' enhance.json records a checkpoint other than the bundled one; name it with "
                  "ckpt=PATH")
        log.warning("references=%s: not checked against any model's training data: %s", references, reason)
        return {"status": UNCHECKED, "reason": reason}
    refs = _audio_files(Path(references), "references")
    noisy_files = _audio_files(Path(noisy), "noisy") if noisy is not None else {}
    pairs = [(k, f, noisy_files.get(k)) for k, f in refs.items()]
    report = check_pairs(pairs, str(references), checkpoint_training_data(path, loaded=loaded),
                         clean_label=Path(references).name, progress=progress)
    enforce(report, mode, key="references")
    return {**report.as_dict(), "checkpoint": str(path)}


def evaluate_dirs(estimates: str | os.PathLike, references: str | os.PathLike,
                  noisy: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None,
                  num_workers: int = 2, metrics: Sequence[str] | None = None, sample_rate: int = 16000,
                  progress: bool = True, transcripts: str | os.PathLike | None = None,
                  partial: bool = False, max_length_mismatch: float | None = MAX_LENGTH_MISMATCH,
                  held_out: dict | None = None) -> dict[str, Any]:
    """Score every estimate against its reference (and the noisy input, if given); write CSV + JSON.

    Args:
        estimates: directory of enhanced files.
        references: directory of clean references (matched by relative path, suffix ignored).
        noisy: optional directory of noisy inputs (same names): adds ``noisy_*`` and ``delta_*`` scores.
        output_dir: where ``metrics.csv`` and ``summary.json`` go (default: ``estimates``).
        num_workers: scoring worker processes (``<= 1``: in-process).
        metrics: metric names (default ``("pesq", "estoi", "si_sdr")``; see :data:`edm_se.metrics.KNOWN_METRICS`).
        sample_rate: rate in Hz every file is loaded at (resampled when it differs).
        progress: show a tqdm bar while scoring.
        transcripts: reference transcripts for the WER metrics (``wer_whisper``, ``wer_sphinx``): a CSV with
            ``name`` + ``transcript`` columns, a directory of ``<name>.txt`` files or a test-set directory
            (:func:`edm_se.testset.read_transcripts`). Default: the references directory's parent (a test set's
            ``manifest.csv`` / ``txt/``). WER summaries are corpus-level WERs (%) with bootstrap CIs; the
            recognisers' hypotheses are written to ``metrics.csv`` (``hyp_<recogniser>``).
        partial: score only the references that have an estimate when some have none (their names go to the
            summary's ``missing_estimates``). False (default): that is an error, since a mean over the files a
            system did produce is not its score on the test set (a failed file would silently leave it).
        max_length_mismatch: the largest relative length difference of a matched pair (and its noisy file) that is
            scored, on the first ``min`` samples of each, with a warning (an STFT's padding, a peer's delay
            compensation); a larger one, as a fraction of the longest file, is an error: an estimate half as long
            as its reference scored a perfect PESQ on that half. None: any difference is scored.
        held_out: the outcome of :func:`check_held_out`, kept as ``provenance.held_out``.

    Returns:
        ``{"format", "num_files", "sample_rate", "metrics": [names], "estimates", "references", "noisy",
        "scores": {metric: {"mean", "ci95", "n"}}}`` plus, with ``noisy``, ``"noisy_scores"`` and ``"delta"``
        (paired per-file improvement, same shape), and with ``partial`` and references left without an estimate,
        ``"missing_estimates"`` (their names). ``ci95`` is the 95% CI half-width (Student t).

    Raises:
        AudioError: a directory is missing / holds no audio, nothing matches, a reference has no estimate (unless
            ``partial``), a matched file lacks its noisy counterpart, the lengths of a pair differ by more than
            ``max_length_mismatch``, or a file is unreadable (see :func:`edm_se.audio.load_audio`).
        ValueError: unknown metric name, or a WER metric without a transcript for every file.
        edm_se.asr.MissingExtra: a WER metric without the ``asr`` extra.
    """
    import numpy as np

    from edm_se.audio import load_audio
    from edm_se.metrics import DEFAULT_METRICS, KNOWN_METRICS, score_pairs

    metrics = tuple(metrics) if metrics else DEFAULT_METRICS
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(KNOWN_METRICS)}")
    est_dir, ref_dir = Path(estimates), Path(references)
    noisy_dir = Path(noisy) if noisy is not None else None
    out_dir = Path(output_dir) if output_dir is not None else est_dir
    est_files = _audio_files(est_dir, "estimates")
    ref_files = _audio_files(ref_dir, "references")
    noisy_files = _audio_files(noisy_dir, "noisy") if noisy_dir is not None else None

    keys = [k for k in est_files if k in ref_files]
    if not keys:
        raise AudioError(est_dir, f"no estimate has a reference of the same name in {ref_dir}")
    skipped = len(est_files) - len(keys)
    if skipped:
        log.warning("%d estimate(s) in %s have no reference in %s and are skipped", skipped, est_dir, ref_dir)
    missing_estimates = [k for k in ref_files if k not in est_files]
    if missing_estimates and not partial:
        raise AudioError(est_dir, f"no estimate for {len(missing_estimates)} of {len(ref_files)} reference(s) in "
                         f"{ref_dir}, e.g. {missing_estimates[0]} (partial=true scores the other files only)")
    if missing_estimates:
        log.warning("partial: %d of %d reference(s) have no estimate in %s and are left out, e.g. %s",
                    len(missing_estimates), len(ref_files), est_dir, missing_estimates[0])
    if noisy_files is not None:
        missing = [k for k in keys if k not in noisy_files]
        if missing:
            raise AudioError(noisy_dir, f"no noisy file for {len(missing)} estimate(s), e.g. {missing[0]}")

    from edm_se.metrics import WER_METRICS, summary_stat

    texts: list[str | None] | None = None
    words: list[int] | None = None
    if any(m in WER_METRICS for m in metrics):
        from edm_se.asr import reference_words
        from edm_se.testset import read_transcripts

        source = Path(transcripts) if transcripts is not None else ref_dir.resolve().parent
        found = read_transcripts(source, keys)
        missing = [k for k in keys if not found.get(k)]
        if missing:
            raise AudioError(source, f"no transcript for {len(missing)} of {len(keys)} file(s), e.g. {missing[0]} "
                             "(WER needs transcripts=CSV_OR_DIR: a name,transcript CSV or <name>.txt files)")
        texts = [found[k] for k in keys]
        words = [reference_words(t) for t in texts]
    refs, ests, noisys = [], [], []
    for k in keys:
        ref = load_audio(ref_files[k], sample_rate=sample_rate)
        est = load_audio(est_files[k], sample_rate=sample_rate)
        pair = [ref, est]
        if noisy_files is not None:
            pair.append(load_audio(noisy_files[k], sample_rate=sample_rate))
        length, longest = min(int(w.numel()) for w in pair), max(int(w.numel()) for w in pair)
        if length != longest:
            lengths = "/".join(str(int(w.numel())) for w in pair)
            if lengths_too_different([length, longest], max_length_mismatch):
                raise AudioError(est_files[k], f"its length differs from its reference's by more than "
                                 f"{max_length_mismatch:.0%} ({lengths} samples: reference/estimate"
                                 f"{'/noisy' if noisy_files is not None else ''}); another file's estimate? "
                                 "(max_length_mismatch=null scores the first samples of each anyway)")
            log.warning("%s: lengths differ (%s samples); scoring the first %d", k, lengths, length)
        pair = [w[:length].numpy() for w in pair]
        refs.append(pair[0])
        ests.append(pair[1])
        if noisy_files is not None:
            noisys.append(pair[2])

    all_refs, all_ests = refs + (refs if noisy_files is not None else []), ests + noisys
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_log = out_dir / RESUME_LOG  # an interrupted run resumes from the pairs it scored
    frame, _ = score_pairs(all_refs, all_ests, sample_rate=sample_rate,
                           names=keys + (keys if noisy_files is not None else []), metrics=metrics,
                           num_workers=num_workers, progress=progress,
                           transcripts=None if texts is None else texts * (2 if noisy_files is not None else 1),
                           resume_log=resume_log)

    def stat(m: str, values: Any) -> dict:
        return summary_stat(m, values.to_numpy(dtype=np.float64), words)

    table = frame.iloc[: len(keys)].reset_index(drop=True)
    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT, "num_files": len(keys), "sample_rate": int(sample_rate), "metrics": list(metrics),
        "estimates": str(est_dir), "references": str(ref_dir), "noisy": str(noisy_dir) if noisy_dir else None,
        "scores": {m: stat(m, table[m]) for m in metrics},
    }
    if missing_estimates:
        summary["missing_estimates"] = missing_estimates
    from edm_se.provenance import named_files_sha256, run_info

    def content(files: dict[str, Path]) -> str:  # content identity of the scored files
        return named_files_sha256((k, files[k]) for k in keys)

    from edm_se.enhance_record import recorded_config

    summary["provenance"] = {"estimates_sha256": content(est_files), "references_sha256": content(ref_files),
                             "noisy_sha256": content(noisy_files) if noisy_files is not None else None,
                             "enhance": recorded_config(est_dir), **run_info(),
                             **({"held_out": held_out} if held_out is not None else {})}
    if noisy_files is not None:
        noisy_part = frame.iloc[len(keys):].reset_index(drop=True)
        for m in metrics:
            table[f"noisy_{m}"] = noisy_part[m].to_numpy()
        for c in noisy_part.columns:
            if c.startswith("hyp_"):
                table[f"noisy_{c}"] = noisy_part[c].to_numpy()
        for m in metrics:
            table[f"delta_{m}"] = table[m] - table[f"noisy_{m}"]
        summary["noisy_scores"] = {m: stat(m, table[f"noisy_{m}"]) for m in metrics}
        summary["delta"] = {m: stat(m, table[f"delta_{m}"]) for m in metrics}

    if words is not None:  # a recogniser looping on a phrase: named, since one such file moves a corpus WER
        from edm_se.asr import runaway_transcripts

        runaway = {c: [list(r) for r in runaway_transcripts(table[c].fillna("").tolist(), words, keys)]
                   for c in table.columns if c.startswith(("hyp_", "noisy_hyp_"))}
        runaway = {c: found for c, found in runaway.items() if found}
        if runaway:
            summary["runaway_transcripts"] = runaway
    atomic_write_text(out_dir / "metrics.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_json(out_dir / "summary.json", summary, indent=2)
    resume_log.unlink(missing_ok=True)  # the results stand on their own now
    return summary


def _fmt(stat: dict[str, Any] | None, signed: bool = False) -> str:
    if not stat:
        return "-"
    mean, ci = stat.get("mean"), stat.get("ci95")
    if mean is None or (isinstance(mean, float) and not math.isfinite(mean)):
        return "nan"
    text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    if ci is not None and isinstance(ci, (int, float)) and math.isfinite(ci):
        text += f" ± {ci:.3f}"
    return text


def format_summary(summary: dict[str, Any]) -> str:
    """A readable table of an :func:`evaluate_dirs` summary: one row per metric, mean ± 95% CI half-width.

    With noisy scores in the summary, adds ``noisy`` and ``delta`` (improvement over noisy) columns.
    """
    metrics = list(summary.get("metrics") or summary.get("scores", {}).keys())
    has_noisy = "noisy_scores" in summary
    header = ["metric", "estimate"] + (["noisy", "delta"] if has_noisy else [])
    rows = [header]
    for m in metrics:
        row = [m, _fmt(summary["scores"].get(m))]
        if has_noisy:
            row += [_fmt(summary["noisy_scores"].get(m)), _fmt(summary.get("delta", {}).get(m), signed=True)]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{summary.get('num_files', '?')} files (mean ± 95% CI half-width)"]
    missing = summary.get("missing_estimates") or []
    if missing:
        lines[0] += (f"; PARTIAL: {len(missing)} reference(s) without an estimate left out "
                     f"(e.g. {missing[0]})")
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
                     .rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    total = summary.get("num_files")
    for m in metrics:  # a mean over fewer files than were scored says so (SI-SDR is +inf for an exact copy)
        for column, stat in (("estimate", summary["scores"].get(m)), ("noisy", (summary.get("noisy_scores") or {})
                                                                               .get(m))):
            n = (stat or {}).get("n")
            if isinstance(total, int) and isinstance(n, int) and n < total:
                lines.append(f"{m} ({column}): the mean is over {n} of {total} files; the others' scores are not "
                             "finite (e.g. SI-SDR: +inf for an exact copy of the reference, -inf for an orthogonal "
                             "estimate)")
    held = (summary.get("provenance") or {}).get("held_out") or {}
    if held.get("status"):
        from edm_se.heldout import record_line

        lines.append(record_line(held))
    from edm_se.asr import RUNAWAY_RULE, describe_runaways

    for column, found in (summary.get("runaway_transcripts") or {}).items():
        lines.append(f"runaway transcript(s) in {column} ({RUNAWAY_RULE}): {describe_runaways(found, quote='')}")
    return "\n".join(lines)
