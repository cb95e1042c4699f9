"""Shared pieces of the study modules: format tags, result columns, JSON reading and labels."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FORMAT = "edm_se.study/1"
NOISY_FORMAT = "edm_se.study.noisy/3"
METRIC_ORDER = ("pesq", "estoi", "si_sdr", "wer_whisper", "wer_sphinx", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak",
                "dnsmos_p808")
RESULT_COLUMNS = ("study", "kind", "cell", "design", "sampler", "num_steps", "nfe", "s_churn", "s_noise", "t_start",
                  "sde", "precond", "metric", "snr_db", "mean", "ci95", "n", "delta_mean", "delta_ci95", "rtf",
                  "wall_s", "audio_s", "audio")


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or unreadable (e.g. a crash mid-write elsewhere)."""
    try:
        with open(path) as fh:
            obj = json.load(fh)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def metric_sort_key(m: str) -> tuple[int, str]:
    """Sort key of metric names: the order of :data:`METRIC_ORDER`, unknown names after it, alphabetically."""
    return (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m)


def finished_cells(sweep_dir: str | os.PathLike) -> list[tuple[Path, dict]]:
    """``(path, content)`` of every finished cell's ``metrics.json`` under ``sweep_dir`` (format :data:`FORMAT`),
    in sorted path order; unreadable or foreign files are skipped."""
    out = []
    for path in sorted(Path(sweep_dir).rglob("metrics.json")):
        result = read_json(path)
        if result and result.get("format") == FORMAT:
            out.append((path, result))
    return out


def _short_target(node: Any) -> str | None:
    """``edm_se.sde.OUVE`` -> ``ouve`` (a label only; nothing is chosen from it)."""
    if isinstance(node, dict) and isinstance(node.get("_target_"), str):
        return node["_target_"].rsplit(".", 1)[-1].lower()
    return None


def _override_value(overrides: list[str], key: str) -> str | None:
    for item in overrides:
        k, sep, v = item.lstrip("+~").partition("=")
        if sep and k == key:
            return v
    return None


def _fmt_metrics(summary: dict) -> str:
    return "  ".join(f"{m}={v['mean']:.3f}" for m, v in summary.items() if v.get("mean") is not None)


def sampler_params(node: dict) -> dict:
    """The sampler parameters a result row records (``num_steps``, ``s_churn``, ``s_noise``)."""
    return {k: node.get(k) for k in ("num_steps", "s_churn", "s_noise")}
