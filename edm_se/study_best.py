"""Which point of a study is best, per metric, and is it better than the next one: paired comparisons between the
points of a study's cells (``best.json`` / ``best.md`` beside ``results.csv``).

Every point of every cell is scored on the same test files with the same sampler seed, so two points can be
compared file by file: the paired difference's 95% CI (Student t over files; WER: the difference of corpus-level
WERs, weighted by the references' word counts, with a bootstrap CI, :func:`edm_se.asr.weighted_mean_ci95`) is much
narrower than the CIs of the two means. For each metric the report gives

* the best point (highest mean; lowest for WER) and the paired difference to the runner-up, with ``tied`` when that
  CI contains 0 (the data cannot tell them apart);
* with ``study.compare_to: <cell>``: every other cell's point against the point of ``<cell>`` with the same sampler
  and ``num_steps`` (e.g. a fine-tuned model against the model it started from, at each NFE);
* with ``study.compare_to: KEY=VALUE`` (one level of a swept factor): every cell against the cell whose overrides
  are the same except ``KEY=VALUE``, i.e. the factor's effect with everything else held fixed (e.g.
  ``sampler.s_churn=0``: each amount of churn against none at the same steps; ``sampler=edm_heun``: every sampler
  against EDM Heun at the same ``num_steps``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from edm_se.atomic import atomic_write_json, atomic_write_text
from edm_se.metrics import LOWER_IS_BETTER, WER_METRICS
from edm_se.study_common import finished_cells, metric_sort_key

__all__ = ["paired_difference", "best_points", "best_markdown", "write_best", "factor_level", "cell_overrides",
           "same_value"]


def _point_label(cell: str, point: dict) -> str:
    return f"{cell} / {point.get('sampler')} {point.get('num_steps')} (NFE {point.get('nfe')})"


def paired_difference(a: dict, b: dict, metric: str) -> dict[str, float] | None:
    """Mean and 95% CI half-width of ``metric(a) - metric(b)`` over the files both points scored.

    Args:
        a, b: study points (with ``per_file``: ``names``, the metric's per-file values and, for WER metrics,
            ``ref_words``).
        metric: a metric name.

    Returns:
        ``{"mean", "ci95", "n"}``, or None when either point lacks the metric's per-file scores or they share
        no file. WER without word counts falls back to the unweighted mean of per-file differences.
    """
    from edm_se.metrics import mean_ci95

    pa, pb = a.get("per_file") or {}, b.get("per_file") or {}
    if metric not in pa or metric not in pb:
        return None
    index = {n: i for i, n in enumerate(pb.get("names") or [])}
    pairs = [(i, index[n]) for i, n in enumerate(pa.get("names") or []) if n in index]
    if not pairs:
        return None
    diffs = [float(pa[metric][i]) - float(pb[metric][j]) for i, j in pairs]
    words = pa.get("ref_words")
    if metric in WER_METRICS and words is not None:
        from edm_se.asr import weighted_mean_ci95

        return weighted_mean_ci95(diffs, [float(words[i]) for i, _ in pairs])
    return mean_ci95(diffs)


def factor_level(compare_to: str | None) -> tuple[str, str] | None:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE)`` (a level of a swept factor); a cell name or None -> None."""
    if compare_to is None or "=" not in str(compare_to):
        return None
    key, value = str(compare_to).split("=", 1)
    return key.strip(), value.strip()


def cell_overrides(cell: str) -> dict[str, str] | None:
    """A sampler study's cell name (Hydra's override dirname, ``k=v,k=v``) as ``{k: v}``; None when ``cell`` is not
    of that form (a training study's cell name)."""
    out = {}
    for part in str(cell).split(","):
        if "=" not in part:
            return None
        key, value = part.split("=", 1)
        out[key] = value
    return out


def same_value(a: Any, b: Any) -> bool:
    """Whether two override values name the same level: equal as numbers (``0`` and ``0.0``) or as strings."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _baseline_pairs(points: list[tuple[str, dict]], compare_to: str) -> list[tuple[str, dict, str, dict]]:
    """``(cell, point, baseline cell, baseline point)`` for ``compare_to`` (see the module docstring). Points pair
    by sampler and ``num_steps``; for a factor level, two cells of one point each pair whatever their sampler and
    steps (the factor may be the sampler or the steps themselves)."""
    by_cell: dict[str, list[dict]] = {}
    for cell, p in points:
        by_cell.setdefault(cell, []).append(p)
    level = factor_level(compare_to)
    if level is None:
        targets = {cell: compare_to for cell in by_cell if cell != compare_to}
    else:
        key, value = level
        parsed = {cell: cell_overrides(cell) for cell in by_cell}
        targets = {}
        for cell, over in parsed.items():
            if over is None or key not in over or same_value(over[key], value):
                continue
            want = {**over, key: value}
            targets.update({cell: other for other, o in parsed.items() if o is not None and o.keys() == want.keys()
                            and all(same_value(o[k], v) for k, v in want.items())})
    pairs = []
    for cell, base_cell in targets.items():
        mine, base = by_cell[cell], by_cell.get(base_cell, [])
        if level is not None and len(mine) == len(base) == 1:
            pairs.append((cell, mine[0], base_cell, base[0]))
            continue
        index = {(p.get("sampler"), p.get("num_steps")): p for p in base}
        pairs += [(cell, p, base_cell, index[(p.get("sampler"), p.get("num_steps"))]) for p in mine
                  if (p.get("sampler"), p.get("num_steps")) in index]
    return pairs


def _collect(sweep_dir: Path) -> list[tuple[str, dict]]:
    points = []
    for _, result in finished_cells(sweep_dir):
        cell = str(result.get("cell"))  # a training study's cell directory is "cell=<name>"
        cell = cell[len("cell="):] if cell.startswith("cell=") and "," not in cell else cell
        points += [(cell, p) for p in result.get("points", [])]
    return points


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(float(x))


def best_points(sweep_dir: str | os.PathLike, compare_to: str | None = None) -> dict:
    """The best point per metric over every cell of ``sweep_dir`` and its paired difference to the runner-up
    (and, with ``compare_to``, a cell name or a factor level ``KEY=VALUE``, each point against its baseline point:
    see the module docstring).

    Returns:
        ``{"metrics": {metric: {"higher_is_better", "best": {"label", "mean", "ci95"}, "runner_up": {...},
        "difference": {"mean", "ci95", "n"}, "tied": bool, "ranking": [{"label", "mean", "ci95"}, ...]}},
        "compare_to": cell or None, "comparisons": [{"label", "baseline", "metric", "mean", "ci95", "n",
        "significant"}]}``.
    """
    sweep_dir = Path(sweep_dir)
    points = _collect(sweep_dir)
    metrics = sorted({m for _, p in points for m in (p.get("metrics") or {})},
                     key=metric_sort_key)
    out: dict[str, Any] = {"metrics": {}, "compare_to": compare_to, "comparisons": []}
    for m in metrics:
        higher = m not in LOWER_IS_BETTER
        scored = [(c, p) for c, p in points if _finite(((p.get("metrics") or {}).get(m) or {}).get("mean"))]
        if not scored:
            continue
        scored.sort(key=lambda cp: cp[1]["metrics"][m]["mean"], reverse=higher)
        ranking = [{"label": _point_label(c, p), "mean": p["metrics"][m]["mean"],
                    "ci95": p["metrics"][m].get("ci95")} for c, p in scored]
        entry: dict[str, Any] = {"higher_is_better": higher, "best": ranking[0], "ranking": ranking}
        if len(scored) > 1:
            diff = paired_difference(scored[0][1], scored[1][1], m)
            entry["runner_up"] = ranking[1]
            entry["difference"] = diff
            entry["tied"] = bool(diff is None or not _finite(diff.get("ci95"))
                                 or abs(diff["mean"]) <= diff["ci95"])
        out["metrics"][m] = entry
    if compare_to:
        for cell, p, base_cell, ref in _baseline_pairs(points, str(compare_to)):
            for m in metrics:
                diff = paired_difference(p, ref, m)
                if diff is None:
                    continue
                out["comparisons"].append({
                    "label": _point_label(cell, p), "baseline": _point_label(base_cell, ref), "metric": m,
                    **diff, "significant": bool(_finite(diff.get("ci95")) and abs(diff["mean"]) > diff["ci95"])})
    return out


def _pm(d: dict | None, signed: bool = False) -> str:
    if not d or not _finite(d.get("mean")):
        return ""
    mean = f"{d['mean']:+.3f}" if signed else f"{d['mean']:.3f}"
    return f"{mean} ± {d['ci95']:.3f}" if _finite(d.get("ci95")) else mean


def best_markdown(summary: dict) -> str:
    """The report of :func:`best_points` as Markdown."""
    lines = ["# Best point per metric", "",
             "Paired differences over the same test files (mean ± 95% CI half-width; WER: difference of corpus "
             "WERs in points, bootstrap CI). *tied*: the CI of the difference to the runner-up contains 0.", "",
             "| metric | best point | mean ± CI | runner-up | mean ± CI | best - runner-up | verdict |",
             "|---|---|---|---|---|---|---|"]
    for m, e in summary["metrics"].items():
        ru = e.get("runner_up") or {}
        verdict = "only point" if not ru else ("tied" if e.get("tied") else "best")
        lines.append(f"| {m} | {e['best']['label']} | {_pm(e['best'])} | {ru.get('label', '')} | {_pm(ru)} | "
                     f"{_pm(e.get('difference'), signed=True)} | {verdict} |")
    if summary.get("comparisons"):
        against = (f"## Against `{summary['compare_to']}`, everything else the same"
                   if factor_level(summary["compare_to"]) else
                   f"## Against `{summary['compare_to']}` at the same sampler and steps")
        metrics = list(dict.fromkeys(c["metric"] for c in summary["comparisons"]))
        rows: dict[tuple[str, str], dict[str, dict]] = {}
        for c in summary["comparisons"]:
            rows.setdefault((c["label"], c["baseline"]), {})[c["metric"]] = c
        lines += ["", against, "", "Paired difference point - baseline, mean ± 95% CI; **bold**: the CI excludes 0.", "",
                  "| point | baseline | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
        for (label, baseline), by_metric in rows.items():
            cells = []
            for m in metrics:
                c = by_metric.get(m)
                text = _pm(c, signed=True) if c else ""
                cells.append(f"**{text}**" if c and c["significant"] else text)
            lines.append(f"| {label} | {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_best(sweep_dir: str | os.PathLike, compare_to: str | None = None) -> tuple[Path, Path]:
    """Write ``best.json`` and ``best.md`` into ``sweep_dir`` (atomically); returns their paths."""
    sweep_dir = Path(sweep_dir)
    summary = best_points(sweep_dir, compare_to)
    js = atomic_write_json(sweep_dir / "best.json", summary)
    md = atomic_write_text(sweep_dir / "best.md", best_markdown(summary))
    return Path(js), Path(md)
