"""Tables and figures of the paradigms study (:mod:`edm_se.tasks.study`): ``results.csv``, ``results.md``,
``<task>_<metric>_vs_snr.{png,pdf}``, ``<task>_vs_nfe.{png,pdf}`` and, with extra training seeds, the per-seed table
(:func:`seed_table`)."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["METRIC_LABEL", "write_results", "plots", "markdown", "seed_table", "seed_markdown"]

METRIC_LABEL = {"accuracy": "keyword accuracy (%), higher is better", "wer": "CTC WER (%), lower is better",
                "wer_whisper": "Whisper WER (%), lower is better", "wer_sphinx": "PocketSphinx WER (%), lower is better"}


def write_results(out: Path, rows: list[dict], nfe: dict[str, list[dict]]) -> None:
    """``results.csv`` (task x row x metric x SNR, tidy) and the figures (:func:`plots`)."""
    from edm_se.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "row", "task_model", "front_end", "snr_db", "metric", "mean", "ci95", "n"])
    for r in rows:
        for snr, v in [*r["per_snr"].items(), ("all", r["overall"])]:
            w.writerow([r["task"], r["row"], r["task_model"], r["front_end"], snr, r["metric"], f"{v['mean']:.4g}",
                        f"{v['ci95']:.4g}", v["n"]])
    atomic_write_text(out / "results.csv", buf.getvalue())
    try:
        plots(out, rows, nfe)
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        log.warning("matplotlib missing: no figures")


def plots(out: Path, rows: list[dict], nfe: dict[str, list[dict]]) -> None:
    """``<task>_<metric>_vs_snr.{png,pdf}`` per task and metric, ``<task>_vs_nfe.{png,pdf}`` per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for task, metric in dict.fromkeys((r["task"], r["metric"]) for r in rows):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in [r for r in rows if r["task"] == task and r["metric"] == metric]:
            snrs = [float(s) for s in r["per_snr"]]
            mean = np.array([v["mean"] for v in r["per_snr"].values()])
            ci = np.array([v["ci95"] for v in r["per_snr"].values()])
            style = ":" if r["row"] == "clean reference" else "-." if "+" in r["row"] else "-"
            line, = ax.plot(snrs, mean, style, marker="o", ms=3, label=r["row"])
            ax.fill_between(snrs, mean - ci, mean + ci, color=line.get_color(), alpha=0.08)
        ax.set_xlabel("test SNR (dB)")
        ax.set_ylabel(METRIC_LABEL.get(metric, metric))
        ax.set_title(f"paradigms, {task}: {metric} vs SNR (95% bands)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            fig.savefig(out / f"{task}_{metric}_vs_snr.{ext}", dpi=130)
        plt.close(fig)
    for task, points in nfe.items():
        if not points:
            continue
        metric = points[0].get("metric", "accuracy")
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = [p["nfe"] for p in points]
        ys = np.array([p["overall"]["mean"] for p in points])
        cis = np.array([p["overall"]["ci95"] for p in points])
        ax.errorbar(xs, ys, yerr=cis, marker="o", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFE (the iterative enhancer's default sampler)")
        ax.set_ylabel(METRIC_LABEL.get(metric, metric))
        ax.set_title(f"iterative, {task}: {metric} vs NFE (all SNRs)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            fig.savefig(out / f"{task}_vs_nfe.{ext}", dpi=130)
        plt.close(fig)


def _runaway_lines(rows: list[dict]) -> list[str]:
    """A section naming the runaway transcripts of every WER row (:func:`edm_se.asr.runaway_transcripts`): one
    looping hypothesis moves a corpus WER by its length. Empty when there are none."""
    from edm_se.asr import RUNAWAY_RULE, describe_runaways, runaway_transcripts

    lines = []
    for r in rows:
        per_file = r.get("per_file") or []
        if not str(r.get("metric", "")).startswith("wer") or not per_file:
            continue
        found = runaway_transcripts([f.get("prediction") or "" for f in per_file],
                                    [int(f.get("words") or 0) for f in per_file],
                                    [f"{f.get('name', '')} at {f.get('snr_db', 0):g} dB" for f in per_file])
        if found:
            lines.append(f"- {r['task']}, {r['row']}, {r['metric']}: {describe_runaways(found)}")
    if lines:
        lines = ["## Runaway transcripts", "", f"Files whose transcript ran away ({RUNAWAY_RULE}):", *lines, ""]
    return lines


def markdown(rows: list[dict], nfe: dict[str, list[dict]], shas: dict[str, dict]) -> str:
    """``results.md``: per task and metric a row x SNR table with 95% intervals, and the NFE curves."""
    lines: list[str] = ["# paradigms: each cell with its 95% interval (Wilson for accuracy, bootstrap over files for "
                        "WER)", ""]
    for task, metric in dict.fromkeys((r["task"], r["metric"]) for r in rows):
        sel = [r for r in rows if r["task"] == task and r["metric"] == metric]
        snrs = list(sel[0]["per_snr"])
        lines += [f"## {task}: {METRIC_LABEL.get(metric, metric)}; test set sha256 "
                  f"{shas[task]['test_sha256'][:12]} ({shas[task]['n_test']} mixtures)", "",
                  *([f"Held-out check: {shas[task]['held_out']}.", ""] if shas[task].get("held_out") else []),
                  "| row | front end | " + " | ".join(f"{s} dB" for s in snrs) + " | all |",
                  "|" + "---|" * (len(snrs) + 3)]
        for r in sel:
            cells = [f"{v['mean']:.1f} ± {v['ci95']:.1f}" for v in r["per_snr"].values()]
            lines.append(f"| {r['row']} | {r['front_end']} | " + " | ".join(cells) +
                         f" | **{r['overall']['mean']:.1f} ± {r['overall']['ci95']:.1f}** |")
        lines.append("")
    lines += _runaway_lines(rows)
    for task, points in nfe.items():
        if points:
            lines += [f"## {task}: the iterative enhancer, {points[0].get('metric', 'accuracy')} vs NFE (all SNRs)", "",
                      "| steps | NFE | value |", "|---|---|---|"]
            lines += [f"| {p['steps']} | {p['nfe']} | {p['overall']['mean']:.1f} ± {p['overall']['ci95']:.1f} |"
                      for p in points]
            lines.append("")
    return "\n".join(lines)


def seed_table(rows: list[dict]) -> list[dict]:
    """Each (task, row, metric)'s all-SNR value per training seed, with the mean and the 95% Student-t interval over
    the seeds (:func:`edm_se.metrics.mean_ci95`): ``[{task, row, metric, per_seed: {seed: value}, mean, ci95, n}]``.

    ``rows``: scored rows (see :func:`edm_se.tasks.study.run_study`) with a ``seed`` key.
    """
    from edm_se.metrics import mean_ci95

    groups: dict[tuple[str, str, str], dict[int, float]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["row"], r["metric"]), {})[int(r["seed"])] = float(r["overall"]["mean"])
    out = []
    for (task, row, metric), per_seed in groups.items():
        stats = mean_ci95(list(per_seed.values()))
        out.append({"task": task, "row": row, "metric": metric,
                    "per_seed": {str(k): v for k, v in sorted(per_seed.items())}, **stats})
    return out


def write_seed_csv(out: Path, table: list[dict]) -> None:
    """``seeds.csv``: task, row, metric, seed, value (all SNRs); one line per seed."""
    from edm_se.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "row", "metric", "seed", "value"])
    for t in table:
        for seed, v in t["per_seed"].items():
            w.writerow([t["task"], t["row"], t["metric"], seed, f"{v:.4g}"])
    atomic_write_text(out / "seeds.csv", buf.getvalue())


def seed_markdown(table: list[dict]) -> str:
    """The per-seed section of ``results.md``: per task and metric, each row's all-SNR value per seed and the mean
    with its 95% t-interval over seeds (the spread of training, not of the test clips)."""
    lines: list[str] = []
    for task, metric in dict.fromkeys((t["task"], t["metric"]) for t in table):
        sel = [t for t in table if t["task"] == task and t["metric"] == metric]
        seeds = sorted({k for t in sel for k in t["per_seed"]}, key=int)
        lines += [f"## {task}: {METRIC_LABEL.get(metric, metric)}, all SNRs, per training seed", "",
                  "| row | " + " | ".join(f"seed {k}" for k in seeds) + " | mean ± 95% t-interval over seeds |",
                  "|" + "---|" * (len(seeds) + 2)]
        for t in sel:
            vals = [f"{t['per_seed'][k]:.1f}" if k in t["per_seed"] else "" for k in seeds]
            spread = f"{t['mean']:.1f} ± {t['ci95']:.1f}" if t["n"] >= 2 else f"{t['mean']:.1f}"
            lines.append(f"| {t['row']} | " + " | ".join(vals) + f" | **{spread}** (n={t['n']}) |")
        lines.append("")
    return "\n" + "\n".join(lines)
