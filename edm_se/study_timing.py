"""Where a study's time goes (``timing.json`` / ``timing.md`` beside ``results.csv``): cells per minute, and each
cell's wall time split into the network (the sampler's denoiser calls and the STFTs: ``EnhancementModel.enhance``),
reading and writing audio, scoring (wall time of the worker pool, and inside it the CPU seconds of the signal
metrics and of the recognisers) and the rest (training of training cells, the noisy and peer references scored once
per test set, model loading).

Built from every finished cell's ``metrics.json`` (``started``/``finished`` and each point's ``wall_s``, ``io_s``,
``score_s``, ``score_cpu_s``); cells written before ``io_s``/``score_cpu_s`` existed count those parts as 0.
"""

from __future__ import annotations

import os
from pathlib import Path

from edm_se.atomic import atomic_write_json, atomic_write_text
from edm_se.study_common import finished_cells

__all__ = ["timing_summary", "timing_markdown", "write_timing"]

PARTS = ("network_s", "io_s", "scoring_wall_s", "other_s")


def timing_summary(sweep_dir: str | os.PathLike) -> dict:
    """``{"cells", "points", "elapsed_s", "cells_per_minute", "points_per_minute", "totals": {part: s},
    "fractions": {part: share of elapsed}, "scoring_cpu_s": {"metrics_s", "recognisers_s"}, "per_cell": [...]}``."""
    per_cell = []
    for _, result in finished_cells(sweep_dir):
        if "started" not in result:
            continue
        points = result.get("points", [])
        elapsed = float(result["finished"]) - float(result["started"])
        row = {"cell": result.get("cell"), "points": len(points), "elapsed_s": elapsed,
               "network_s": sum(float(p.get("wall_s") or 0) for p in points),
               "io_s": sum(float(p.get("io_s") or 0) for p in points),
               "scoring_wall_s": sum(float(p.get("score_s") or 0) for p in points),
               "metrics_cpu_s": sum(float((p.get("score_cpu_s") or {}).get("metrics_s") or 0) for p in points),
               "recognisers_cpu_s": sum(float((p.get("score_cpu_s") or {}).get("recognisers_s") or 0)
                                        for p in points)}
        row["other_s"] = max(elapsed - row["network_s"] - row["io_s"] - row["scoring_wall_s"], 0.0)
        per_cell.append(row)
    elapsed = sum(r["elapsed_s"] for r in per_cell)
    totals = {k: sum(r[k] for r in per_cell) for k in PARTS}
    minutes = elapsed / 60.0
    return {"cells": len(per_cell), "points": sum(r["points"] for r in per_cell), "elapsed_s": elapsed,
            "cells_per_minute": len(per_cell) / minutes if minutes > 0 else float("nan"),
            "points_per_minute": sum(r["points"] for r in per_cell) / minutes if minutes > 0 else float("nan"),
            "totals": totals, "fractions": {k: v / elapsed if elapsed > 0 else float("nan") for k, v in totals.items()},
            "scoring_cpu_s": {"metrics_s": sum(r["metrics_cpu_s"] for r in per_cell),
                              "recognisers_s": sum(r["recognisers_cpu_s"] for r in per_cell)},
            "per_cell": per_cell}


def timing_markdown(summary: dict) -> str:
    names = {"network_s": "network (enhance)", "io_s": "audio I/O", "scoring_wall_s": "scoring (wall)",
             "other_s": "training, references, loading"}
    lines = ["# Where the study's time went", "",
             f"{summary['cells']} cells, {summary['points']} points in {summary['elapsed_s'] / 60:.1f} min: "
             f"{summary['cells_per_minute']:.2f} cells/min, {summary['points_per_minute']:.2f} points/min.", "",
             "| part | seconds | share |", "|---|---|---|"]
    for k in PARTS:
        lines.append(f"| {names[k]} | {summary['totals'][k]:.1f} | {100 * summary['fractions'][k]:.1f}% |")
    cpu = summary["scoring_cpu_s"]
    lines += ["", f"Inside scoring (CPU seconds in the worker processes): signal metrics {cpu['metrics_s']:.1f} s, "
              f"recognisers {cpu['recognisers_s']:.1f} s."]
    return "\n".join(lines) + "\n"


def write_timing(sweep_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``timing.json`` and ``timing.md`` into ``sweep_dir`` (atomically); returns their paths."""
    summary = timing_summary(sweep_dir)
    return (Path(atomic_write_json(Path(sweep_dir) / "timing.json", summary)),
            Path(atomic_write_text(Path(sweep_dir) / "timing.md", timing_markdown(summary))))
