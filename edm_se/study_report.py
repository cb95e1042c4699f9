"""Gathering a study: every cell's ``metrics.json`` into ``results.csv`` (one row per cell x point x metric (x SNR))
and ``results.md``, then the figures of :mod:`edm_se.plots`."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from edm_se.atomic import atomic_write_text
from edm_se.metrics import LOWER_IS_BETTER
from edm_se.study_common import FORMAT, RESULT_COLUMNS, finished_cells, metric_sort_key, read_json


def _rows_of(result: dict, cell_dir: Path, base: Path) -> list[dict]:
    rows = []
    for p in result.get("points", []):
        common = {"study": result.get("study"), "kind": "cell", "cell": result.get("cell"),
                  "design": p.get("design"), "sampler": p.get("sampler"), "num_steps": p.get("num_steps"),
                  "nfe": p.get("nfe"), "s_churn": p.get("s_churn"), "s_noise": p.get("s_noise"),
                  "t_start": p.get("t_start"), "oa_weight": p.get("oa_weight"), "sde": p.get("sde"),
                  "precond": p.get("precond"), "rtf": p.get("rtf"), "wall_s": p.get("wall_s"),
                  "audio_s": p.get("audio_s")}
        audio = ";".join(_relative(Path(a), base) for a in p.get("audio", []))
        delta = p.get("improvement") or {}
        delta_snr = p.get("improvement_per_snr") or {}
        for metric, s in (p.get("metrics") or {}).items():
            d = delta.get(metric) or {}
            rows.append({**common, "metric": metric, "snr_db": None, "mean": s.get("mean"), "ci95": s.get("ci95"),
                         "n": s.get("n"), "delta_mean": d.get("mean"), "delta_ci95": d.get("ci95"),
                         "audio": audio})
            for snr, mean in ((p.get("per_snr") or {}).get(metric) or {}).items():
                rows.append({**common, "metric": metric, "snr_db": float(snr), "mean": mean, "ci95": None,
                             "n": None, "delta_mean": (delta_snr.get(metric) or {}).get(snr), "audio": ""})
    return rows


def _reference_rows(ref: dict, study: str | None, kind: str, label: str, audio: str) -> list[dict]:
    """Rows of a reference system scored once per test set: the noisy input, the clean reference (WER only) or a
    pretrained peer (with its RTF and paired improvement over the noisy input)."""
    common = {"study": study, "kind": kind, "cell": label, "rtf": ref.get("rtf"), "wall_s": ref.get("wall_s"),
              "audio_s": ref.get("audio_s")}
    delta, delta_snr = ref.get("improvement") or {}, ref.get("improvement_per_snr") or {}
    rows = []
    for metric, s in (ref.get("metrics") or {}).items():
        d = delta.get(metric) or {}
        rows.append({**common, "metric": metric, "snr_db": None, "mean": s.get("mean"), "ci95": s.get("ci95"),
                     "n": s.get("n"), "delta_mean": d.get("mean"), "delta_ci95": d.get("ci95"), "audio": audio})
        for snr, mean in ((ref.get("per_snr") or {}).get(metric) or {}).items():
            rows.append({**common, "metric": metric, "snr_db": float(snr), "mean": mean,
                         "delta_mean": (delta_snr.get(metric) or {}).get(snr)})
    return rows


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return str(path)


def gather(sweep_dir: str | os.PathLike, plot: bool = True, x: str = "auto") -> dict:
    """Collect every cell's ``metrics.json`` under ``sweep_dir`` into ``results.csv`` and ``results.md``.

    Args:
        sweep_dir: a study's sweep directory (``studies/runs/<name>``).
        plot: also draw the figures (:func:`edm_se.plots.make_plots`) next to ``results.csv``.
        x: their x axis (the study's ``study.x``: ``auto``, one of
            :data:`edm_se.study_common.X_CANDIDATES`, or ``rtf``).

    Returns:
        ``{"results": Path, "markdown": Path, "figures": [Path], "cells": int, "failed": [(cell, message)]}``.

    Raises:
        FileNotFoundError: ``sweep_dir`` does not exist.
    """
    import pandas as pd

    sweep_dir = Path(sweep_dir).resolve()
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such study directory")
    rows: list[dict] = []
    cells = 0
    failed: list[tuple[str, str]] = []
    study = None
    for path, result in finished_cells(sweep_dir):
        cells += 1
        study = study or result.get("study")
        rows += _rows_of(result, path.parent, sweep_dir)
    for path in sorted(sweep_dir.rglob("error.json")):
        err = read_json(path) or {}
        if err.get("format") == FORMAT:
            failed.append((str(err.get("cell", path.parent.name)), f"{err.get('type')}: {err.get('message')}"))
            study = study or err.get("study")
    noisy = read_json(sweep_dir / "noisy_metrics.json")
    if noisy:
        kept = sorted((sweep_dir / "audio" / "noisy").rglob("*.flac")) if (sweep_dir / "audio").exists() else []
        rows += _reference_rows(noisy, study, "noisy", "noisy input",
                                ";".join(_relative(p, sweep_dir) for p in kept))
        if noisy.get("clean"):
            rows += _reference_rows(noisy["clean"], study, "clean", "clean reference", "")
    for path in sorted((sweep_dir / "peers").glob("*.json")) if (sweep_dir / "peers").is_dir() else []:
        peer = read_json(path)
        if peer and peer.get("metrics"):
            audio = ";".join(_relative(Path(a), sweep_dir) for a in peer.get("audio", []))
            rows += _reference_rows(peer, study, "peer", str(peer.get("label") or path.stem), audio)
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    for col in ("num_steps", "nfe", "n"):  # integers, empty where not applicable
        frame[col] = pd.to_numeric(frame[col], errors="coerce").round().astype("Int64")
    if len(frame):
        frame["_m"] = frame["metric"].map(metric_sort_key)
        frame = frame.sort_values(["kind", "_m", "design", "sampler", "s_churn", "s_noise", "t_start", "oa_weight",
                                   "nfe", "snr_db"], na_position="first", kind="stable").drop(columns="_m")
    csv_path = sweep_dir / "results.csv"
    atomic_write_text(csv_path, frame.to_csv(index=False))
    from edm_se.study_heldout import markdown_lines

    md_path = atomic_write_text(sweep_dir / "results.md",
                                results_markdown(frame, failed, study, runaway=_runaways(sweep_dir),
                                                 held_out=markdown_lines(sweep_dir)))
    figures: list[Path] = []
    if plot and (frame["kind"] == "cell").any():
        from edm_se.plots import make_plots

        figures = make_plots(csv_path, x=x)
    return {"results": csv_path, "markdown": md_path, "figures": figures, "cells": cells, "failed": failed}


def _runaways(sweep_dir: Path) -> list[str]:
    """One Markdown line per system and recogniser with runaway transcripts (:func:`edm_se.asr.runaway_transcripts`),
    from the per-file hypotheses the noisy reference, the peers and every finished cell keep."""
    from edm_se.asr import RUNAWAY_RULE, describe_runaways, runaway_transcripts

    systems: list[tuple[str, dict]] = []
    noisy = read_json(sweep_dir / "noisy_metrics.json") or {}
    systems.append(("noisy input", noisy))
    if noisy.get("clean"):
        systems.append(("clean reference", noisy["clean"]))
    for path in sorted((sweep_dir / "peers").glob("*.json")) if (sweep_dir / "peers").is_dir() else []:
        peer = read_json(path) or {}
        systems.append((str(peer.get("label") or path.stem), peer))
    for _, result in finished_cells(sweep_dir):
        for p in result.get("points", []):
            label = str(result.get("cell"))
            systems.append((label if len(result.get("points", [])) == 1 else f"{label} / {p.get('label')}", p))
    lines = []
    for label, point in systems:
        per_file = point.get("per_file") or {}
        names, words = per_file.get("names"), per_file.get("ref_words")
        for key in sorted(k for k in per_file if k.startswith("hyp_")):
            if not names or not words or len(per_file[key]) != len(names):
                continue
            found = runaway_transcripts(per_file[key], words, names)
            if found:
                lines.append(f"- {label}, {key[4:]}: {describe_runaways(found)}")
    if lines:
        lines.insert(0, f"Files whose transcript ran away ({RUNAWAY_RULE}):")
    return lines


def results_markdown(frame: Any, failed: list[tuple[str, str]], study: str | None,
                     runaway: list[str] | None = None, held_out: list[str] | None = None) -> str:
    """A readable Markdown table: one row per point (cell/sampler/NFE), one column per metric (mean ± CI95); with
    ``runaway``, a section naming the runaway transcripts (:func:`_runaways`); with ``held_out``, the held-out check
    of the test set (:func:`edm_se.study_heldout.markdown_lines`) under the title."""
    lines = [f"# Study `{study or '?'}`", ""]
    if held_out:
        lines += [*held_out, ""]
    overall = frame[frame["snr_db"].isna()] if len(frame) else frame
    if len(overall):
        metrics = sorted(overall["metric"].dropna().unique(), key=metric_sort_key)
        keys = ["design", "sampler", "num_steps", "nfe", "s_churn", "s_noise", "t_start", "oa_weight"]
        cellrows = overall[overall["kind"] == "cell"]
        show = [k for k in keys if cellrows[k].notna().any() and (k in ("sampler", "nfe")
                                                                   or cellrows[k].nunique(dropna=True) > 1)]
        has_delta = bool(cellrows["delta_mean"].notna().any())
        dmetrics = metrics if has_delta else []
        header = [*show, *[_metric_header(m) for m in metrics], *[f"Δ {_metric_header(m)}" for m in dmetrics],
                  "RTF"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for kind in ("noisy", "clean", "peer"):  # the references scored once per test set
            for label, ref in overall[overall["kind"] == kind].groupby("cell", sort=True):
                vals = {r.metric: _pm(r.mean, r.ci95) for r in ref.itertuples()}
                if kind == "noisy":
                    dvals = {m: "0" for m in dmetrics}
                else:
                    dvals = {r.metric: _pm(r.delta_mean, r.delta_ci95, signed=True) for r in ref.itertuples()}
                lines.append("| " + " | ".join([str(label), *[""] * (len(show) - 1),
                                                *[vals.get(m, "") for m in metrics],
                                                *[dvals.get(m, "") for m in dmetrics],
                                                _fmt(ref["rtf"].iloc[0], 3)]) + " |")
        for _, grp in cellrows.groupby(["cell", "design", "sampler", "num_steps", "nfe", "t_start", "oa_weight"],
                                       dropna=False, sort=False):
            first = grp.iloc[0]
            vals = {r.metric: _pm(r.mean, r.ci95) for r in grp.itertuples()}
            dvals = {r.metric: _pm(r.delta_mean, r.delta_ci95, signed=True) for r in grp.itertuples()}
            cells = [_fmt(first[k]) for k in show]
            lines.append("| " + " | ".join([*cells, *[vals.get(m, "") for m in metrics],
                                            *[dvals.get(m, "") for m in dmetrics], _fmt(first["rtf"], 3)]) + " |")
        n = overall["n"].dropna()
        lines += ["", f"Mean ± 95% confidence half-width over {int(n.max()) if len(n) else '?'} test files. "
                  "NFE: network calls per file. RTF: wall time / audio duration."]
        short = overall[overall["n"].notna() & (overall["n"] < (n.max() if len(n) else 0))]
        if len(short):  # a mean over fewer files says so (mean_ci95 leaves out scores that are not finite)
            named = [f"{r.cell if isinstance(r.cell, str) and r.cell else r.kind} {r.metric} (n={int(r.n)})"
                     for r in short.itertuples()]
            lines += [f"Fewer files in {len(short)} row(s): {', '.join(named[:4])}{', ...' if len(named) > 4 else ''}"
                      "; the other files' scores are not finite (e.g. SI-SDR: +inf for an exact copy of the "
                      "reference) and are left out of the mean."]
        if any(m in LOWER_IS_BETTER for m in metrics):
            lines += ["WER: corpus-level word error rate in % (total errors / total reference words; lower is "
                      "better), 95% bootstrap interval over files; `clean reference`: the recogniser on the clean "
                      "speech (the floor)."]
        if (overall["kind"] == "peer").any():
            lines += ["Peers (pretrained, scored once per test set): DeepFilterNet3, RNNoise, noisereduce "
                      "(`edm_se.enhancers`)."]
        if has_delta:
            lines += ["Δ: paired per-file improvement over the noisy input (enhanced - noisy), mean ± 95% "
                      "confidence half-width; a CI that excludes 0 is a significant change on this test set."]
    else:
        lines.append("No finished cell yet.")
    if runaway:
        lines += ["", "## Runaway transcripts", "", *runaway]
    if failed:
        lines += ["", "## Failed cells", ""] + [f"- `{c}`: {m}" for c, m in failed]
    return "\n".join(lines) + "\n"


def _metric_header(m: str) -> str:
    return {"pesq": "PESQ", "estoi": "ESTOI", "si_sdr": "SI-SDR (dB)", "wer_whisper": "WER Whisper (%)",
            "wer_sphinx": "WER Sphinx (%)"}.get(m, m)


def _fmt(v: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant digits (grid values such as 0.35 and 1.007 unchanged)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _pm(mean: Any, ci: Any, signed: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    m = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    if ci is None or (isinstance(ci, float) and math.isnan(ci)):
        return m
    return f"{m} ± {ci:.3f}"

