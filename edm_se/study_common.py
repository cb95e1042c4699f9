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
                  "oa_weight", "sde", "precond", "metric", "snr_db", "mean", "ci95", "n", "delta_mean", "delta_ci95",
                  "rtf", "wall_s", "audio_s", "audio")


# Columns a study's figures can put on their x axis besides the real-time factor (``study.x``, ``edm-se plot x=``).
X_CANDIDATES = ("nfe", "t_start", "s_churn", "s_noise", "oa_weight")


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


def studies_in(sweep_dir: str | os.PathLike) -> set[str]:
    """The ``study`` names recorded by the cells under ``sweep_dir`` (their ``metrics.json`` and ``error.json``)."""
    names = {str(r.get("study")) for _, r in finished_cells(sweep_dir) if r.get("study") is not None}
    for path in Path(sweep_dir).rglob("error.json"):
        err = read_json(path)
        if err and err.get("format") == FORMAT and err.get("study") is not None:
            names.add(str(err["study"]))
    return names


def model_label(ckpt: str | os.PathLike) -> str:
    """The name a sampler study gives the model of checkpoint ``ckpt`` (its cells' ``model=`` and the ``design``
    column of their rows): ``<run>-<stem>`` for a trainer's ``<run>/checkpoints/<stem>.pt``
    (``runs/ve/checkpoints/best.pt`` -> ``ve-best``), else the file's stem (``runs/sgmse_vbdmd.pt`` ->
    ``sgmse_vbdmd``); characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_`` (a cell name is
    ``k=v,k=v``)."""
    import re

    path = Path(str(ckpt)).expanduser()
    label = f"{path.parent.parent.name}-{path.stem}" if path.parent.name == "checkpoints" else path.stem
    return re.sub(r"[^A-Za-z0-9._-]", "_", label) or "model"


def cell_dir_name(override_dirname: str, ckpt: str | None, kind: str | None) -> str:
    """A study cell's directory name (the ``edm_se_cell`` resolver of ``hydra.sweep.subdir`` in
    ``conf/study.yaml``): Hydra's override dirname, led by ``model=<label>`` (:func:`model_label`) in a sampler
    study given a checkpoint, so that a sweep over checkpoints (``ckpt=a.pt,b.pt``) gives each model its own
    cells. The bundled model (``ckpt`` null) and training studies keep the plain override dirname."""
    if not ckpt or str(kind) != "sampler":
        return override_dirname
    return ",".join(p for p in (f"model={model_label(ckpt)}", override_dirname) if p)


def register_resolvers() -> None:
    """Register the OmegaConf resolvers ``edm_se_cell`` (:func:`cell_dir_name`) that ``conf/study.yaml`` names and
    ``edm_se_groups`` (:func:`edm_se.cli_hints.config_groups_help`) that ``conf/hydra/help/edm_se.yaml`` names;
    idempotent. :mod:`edm_se.cli` and :mod:`edm_se.study` call it on import, so a launcher's worker process that
    unpickles the task has them too."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("edm_se_cell"):
        OmegaConf.register_new_resolver("edm_se_cell", cell_dir_name)
    if not OmegaConf.has_resolver("edm_se_groups"):
        OmegaConf.register_new_resolver("edm_se_groups", _config_groups_help)


def _config_groups_help(config_name: str) -> str:
    from edm_se.cli_hints import config_groups_help  # imported when a help is drawn

    return config_groups_help(config_name)


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


def oa_weight(cfg: Any) -> float:
    """The study config's observation-adding weight (``oa_weight``; 0, off, when the config predates it)."""
    return float(cfg.get("oa_weight") or 0.0)


def sampler_params(node: dict) -> dict:
    """The sampler parameters a result row records (``num_steps``, ``s_churn``, ``s_noise``)."""
    return {k: node.get(k) for k in ("num_steps", "s_churn", "s_noise")}
