"""Paired differences between the rows of the paradigms study (:mod:`edm_se.tasks.study`).

Every row of a task scores the same test mixtures, so a row's difference from another row is best measured mixture
by mixture: the pairing removes how hard each clip is, which dominates the rows' own intervals. Per training seed,
the difference is the mean over the mixtures of

- keyword accuracy: ``100 * (correct_row - correct_against)`` (accuracy points);
- WER (the CTC recogniser's, Whisper's): ``100 * n * (errors_row - errors_against) / words`` (WER points; its mean
  is exactly the difference of the two corpus WERs, because both rows transcribe the same references),

with its 95% Student-t interval over the mixtures (:func:`edm_se.metrics.mean_ci95`). Over the training seeds, the
per-seed differences get their mean and 95% t-interval over the seeds: the spread of training, which a single seed's
interval over mixtures does not show (D4AM, seed 0 and 2 of the keyword study: +14.8 and +1.9 points).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Sequence

__all__ = ["paired_table", "paired_markdown", "write_paired_csv", "paired_plots"]


def _per_file(row: dict) -> dict[tuple[str, float], dict]:
    return {(str(f["name"]), float(f["snr_db"])): f for f in row.get("per_file") or []}


def _differences(row: dict, against: dict) -> list[float]:
    """Per-mixture differences ``row - against`` (see the module docstring).

    Raises:
        ValueError: the two rows scored other mixtures, or (WER) other reference word counts.
    """
    a, b = _per_file(row), _per_file(against)
    if set(a) != set(b):
        raise ValueError(f"{row['task']}: rows {row['row']!r} and {against['row']!r} ({row['metric']}) scored other "
                         f"test mixtures ({len(a)} and {len(b)}, {len(set(a) ^ set(b))} not shared)")
    keys = sorted(b)
    if row["metric"] == "accuracy":
        return [100.0 * (int(a[k]["correct"]) - int(b[k]["correct"])) for k in keys]
    words = [int(b[k]["words"]) for k in keys]
    if words != [int(a[k]["words"]) for k in keys]:
        raise ValueError(f"{row['task']}: rows {row['row']!r} and {against['row']!r} ({row['metric']}) count other "
                         "reference words")
    scale = 100.0 * len(keys) / max(sum(words), 1)
    return [scale * (int(a[k]["errors"]) - int(b[k]["errors"])) for k in keys]


def paired_table(rows: Sequence[dict], against: Sequence[str]) -> list[dict]:
    """Every row's paired difference from each row named in ``against``, per (task, metric, training seed), and
    over the seeds.

    Args:
        rows: scored rows of the study (``task``, ``row``, ``metric``, ``per_file``; ``seed``, default 0). Rows
            without per-file scores are left out; a name of ``against`` a task lacks is skipped for that task.
        against: the row names to compare with (the study's ``paired_against``; by default the noisy input
            through the baseline task model and the bundled enhancer alone in front of it).

    Returns:
        ``[{task, metric, against, row, per_seed: {seed: {mean, ci95, n}}, mean, ci95, n}]``: per seed the mean
        difference over the mixtures with its 95% t half-width and the number of mixtures; ``mean``/``ci95``/``n``
        over the seeds' means (``ci95`` NaN for one seed).

    Raises:
        ValueError: two rows of one task, metric and seed scored other mixtures.
    """
    from edm_se.metrics import mean_ci95

    by: dict[tuple[str, str, int], dict[str, dict]] = {}
    for r in rows:
        if r.get("per_file"):
            by.setdefault((r["task"], r["metric"], int(r.get("seed", 0))), {})[r["row"]] = r
    out: dict[tuple[str, str, str, str], dict] = {}
    for (task, metric, seed), named in by.items():
        for ref in against:
            if ref not in named:
                continue
            for name, r in named.items():
                if name == ref:
                    continue
                entry = out.setdefault((task, metric, ref, name), {"task": task, "metric": metric, "against": ref,
                                                                  "row": name, "per_seed": {}})
                entry["per_seed"][str(seed)] = mean_ci95(_differences(r, named[ref]))
    table = []
    for entry in out.values():
        entry["per_seed"] = dict(sorted(entry["per_seed"].items(), key=lambda kv: int(kv[0])))
        table.append({**entry, **mean_ci95([s["mean"] for s in entry["per_seed"].values()])})
    return table


def _groups(table: Sequence[dict]) -> list[tuple[tuple[str, str, str], list[dict], list[str]]]:
    """The table's entries per (task, metric, compared-with row), in order, with the seeds they cover."""
    keys = dict.fromkeys((t["task"], t["metric"], t["against"]) for t in table)
    out = []
    for key in keys:
        sel = [t for t in table if (t["task"], t["metric"], t["against"]) == key]
        out.append((key, sel, sorted({k for t in sel for k in t["per_seed"]}, key=int)))
    return out


def _fmt(stat: dict) -> str:
    if stat["n"] >= 2 and stat["ci95"] == stat["ci95"]:
        return f"{stat['mean']:+.1f} ± {stat['ci95']:.1f}"
    return f"{stat['mean']:+.1f}"


def paired_markdown(table: Sequence[dict]) -> str:
    """The paired section of ``results.md``: per task, metric and compared-with row, each row's difference per seed
    (95% t over the mixtures) and over the seeds (95% t over the seeds' means); empty without a table."""
    from edm_se.tasks.report import METRIC_LABEL

    lines: list[str] = []
    for (task, metric, ref), sel, seeds in _groups(table):
        n_mix = max(s["n"] for t in sel for s in t["per_seed"].values())
        lines += [f"## {task}: {METRIC_LABEL.get(metric, metric)}, paired difference against {ref}", "",
                  f"Row minus {ref} on the same {n_mix} mixtures, in points: per seed the mean with its 95% t-interval "
                  "over the mixtures" + (", over seeds the mean of the seeds' differences with its 95% t-interval "
                                         "over the seeds." if len(seeds) > 1 else "."), "",
                  f"| row - {ref} | " + " | ".join(f"seed {k}" for k in seeds) +
                  (" | over seeds |" if len(seeds) > 1 else " |"),
                  "|" + "---|" * (len(seeds) + 1 + (len(seeds) > 1))]
        for t in sel:
            cells = [_fmt(t["per_seed"][k]) if k in t["per_seed"] else "" for k in seeds]
            over = [f"**{_fmt(t)}** (n={t['n']})"] if len(seeds) > 1 else []
            lines.append(f"| {t['row']} | " + " | ".join([*cells, *over]) + " |")
        lines.append("")
    return ("\n" + "\n".join(lines)) if lines else ""


def write_paired_csv(out: Path, table: Sequence[dict]) -> None:
    """``paired.csv``: task, metric, against, row, seed (``all``: over the seeds), mean, ci95, n."""
    from edm_se.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "metric", "against", "row", "seed", "mean", "ci95", "n"])
    for t in table:
        for seed, s in [*t["per_seed"].items(), ("all", t)]:
            w.writerow([t["task"], t["metric"], t["against"], t["row"], seed, f"{s['mean']:.4g}", f"{s['ci95']:.4g}",
                        s["n"]])
    atomic_write_text(out / "paired.csv", buf.getvalue())


def paired_plots(out: Path, table: Sequence[dict]) -> list[Path]:
    """``<task>_<metric>_minus_<against>.{png,pdf}`` (``dfn3 + baseline``: ``dfn3_baseline``): per compared-with
    row, each row's paired difference per seed (small markers, 95% t over the mixtures) and over the seeds (large
    marker, 95% t over the seeds), beside zero. Returns the PNG paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edm_se.tasks.report import METRIC_LABEL

    written = []
    for (task, metric, ref), sel, seeds in _groups(table):
        fig, ax = plt.subplots(figsize=(7, 0.8 + 0.45 * len(sel)))
        for y, t in enumerate(sel):
            for j, k in enumerate(seeds):
                if k in t["per_seed"]:
                    s = t["per_seed"][k]
                    off = (j - (len(seeds) - 1) / 2) * 0.08
                    ax.errorbar(s["mean"], y + 0.15 + off, xerr=s["ci95"] if s["ci95"] == s["ci95"] else None,
                                fmt="o", ms=3, color=f"C{j}", alpha=0.6, capsize=2,
                                label=f"seed {k}" if y == 0 else None)
            if len(seeds) > 1:
                ax.errorbar(t["mean"], y - 0.2, xerr=t["ci95"] if t["ci95"] == t["ci95"] else None, fmt="D",
                            ms=6, color="k", capsize=4, label="over seeds" if y == 0 else None)
        ax.axvline(0.0, color="grey", lw=1, ls="--")
        ax.set_yticks(range(len(sel)), [t["row"] for t in sel])
        ax.invert_yaxis()
        label = METRIC_LABEL.get(metric, metric).split(",")[0]
        ax.set_xlabel(f"{label}: row minus {ref} (points, 95% t)")
        ax.set_title(f"paradigms, {task}: paired difference against {ref}")
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        stem = out / f"{task}_{metric}_minus_{re.sub(r'[^A-Za-z0-9]+', '_', ref).strip('_')}"  # dfn3_baseline
        for ext in ("png", "pdf"):
            fig.savefig(f"{stem}.{ext}", dpi=130)
        plt.close(fig)
        written.append(stem.with_suffix(".png"))
    return written
