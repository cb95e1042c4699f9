"""The held-out check of ``edm-se study``: before any cell, the test set against the training data of every model
the study scores (:mod:`edm_se.heldout`); the outcome goes into ``<sweep dir>/held_out.json``, each cell's
provenance and ``results.md``.

Which models: a sampler study's checkpoint (each of a swept ``ckpt=a.pt,b.pt``; the bundled model by default); a
training study's cells, each by the training config it composes (``study.train_overrides`` + its overrides), with
the model it is fine-tuned from (CRP's ``few_step``: the bundled model).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from edm_se.atomic import atomic_write_json
from edm_se.heldout import HELD_OUT, OVERLAP, UNCHECKED, Report, check_test_set, enforce
from edm_se.trained_on import TrainingData, checkpoint_training_data, training_data
from edm_se.study_common import read_json

log = logging.getLogger("edm_se.study")

FILE = "held_out.json"
FORMAT = "edm_se.held_out/1"


def _models(config: DictConfig) -> dict[str, TrainingData]:
    """key -> training data of each model the study scores; the key is what a cell looks itself up by
    (:func:`model_key`)."""
    from edm_se.validate_study import swept_values

    swept = swept_values(config) or {}
    if str(OmegaConf.select(config, "study.kind") or "sampler") != "train":
        ckpts = swept.get("ckpt") or [config.get("ckpt")]
        return {model_key(config, ckpt): checkpoint_training_data(_ckpt_path(ckpt)) for ckpt in ckpts}
    from edm_se.study_train import cell_train_overrides, compose_train_config

    cells = swept.get("cell") or ([str(config.cell)] if config.get("cell") is not None else
                                  list((config.study.get("cells") or {}).keys()))
    out: dict[str, TrainingData] = {}
    with tempfile.TemporaryDirectory() as tmp:  # a run directory that composes; nothing is written there
        for cell in cells:
            train = compose_train_config(config, cell_train_overrides(config, cell, Path(tmp)))
            out[f"cell {cell}"] = training_data(train, f"cell {cell}")
    return out


def _ckpt_path(ckpt: Any) -> Path:
    from edm_se.model import default_checkpoint_path

    return Path(str(ckpt)).expanduser() if ckpt not in (None, "", "null") else default_checkpoint_path()


def model_key(cfg: DictConfig, ckpt: Any = None) -> str:
    """What names a cell's model in ``held_out.json``: ``cell <name>`` in a training study, else the checkpoint's
    resolved path."""
    if str(OmegaConf.select(cfg, "study.kind") or "sampler") == "train":
        return f"cell {cfg.get('cell')}"
    return str(_ckpt_path(cfg.get("ckpt") if ckpt is None else ckpt).resolve())


def check_study(config: DictConfig, test_set: Any) -> list[Report]:
    """Check ``test_set`` against every model of the study and write ``<sweep dir>/held_out.json``
    (``heldout_check=off``: nothing is checked and the file says so).

    Raises:
        edm_se.heldout.HeldOutError: a test file shares audio with a model's training data and
            ``heldout_check=refuse`` (the default); nothing is written.
    """
    mode = str(config.get("heldout_check") or "refuse")
    sweep_dir = Path(str(config.hydra.sweep.dir))
    reports: dict[str, Report] = {}
    if mode != "off":
        checked: dict[tuple, Report] = {}  # models trained on the same data are checked once
        for key, data in _models(config).items():
            if data.key() not in checked:
                checked[data.key()] = check_test_set(test_set, data, progress=bool(config.get("progress")))
            report = checked[data.key()]
            reports[key] = Report.from_dict({**report.as_dict(), "model": data.model})
            enforce(reports[key], mode)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(sweep_dir / FILE, {"format": FORMAT, "mode": mode, "test_set": str(test_set.root),
                                         "reports": {k: r.as_dict() for k, r in reports.items()}})
    return list(reports.values())


def cell_record(cfg: DictConfig, sweep_dir: Path, test_root: Path) -> dict:
    """What a cell writes as ``provenance.held_out``: its model's status, the number of shared test mixtures and
    the line of :meth:`edm_se.heldout.Report.line` (``"not run"`` when the study's check did not run for it)."""
    data = read_json(sweep_dir / FILE) or {}
    if data.get("format") != FORMAT or Path(str(data.get("test_set"))).resolve() != Path(test_root).resolve():
        return {"status": "not run", "line": "the held-out check did not run for this test set"}
    if data.get("mode") == "off":
        return {"status": "off", "line": "not checked (heldout_check=off)"}
    rep = (data.get("reports") or {}).get(model_key(cfg))
    if not isinstance(rep, dict):
        return {"status": "not run", "line": "the held-out check did not run for this model"}
    report = Report.from_dict(rep)
    return {"status": report.status, "mode": data.get("mode"), "shared_mixtures": len(_mixtures(report)),
            "training_files": sum(t.get("files") or 0 for t in report.training), "line": report.line()}


def _mixtures(report: Report) -> set[str]:
    return {m["mixture"] for m in report.matches}


def markdown_lines(sweep_dir: Path) -> list[str]:
    """The ``results.md`` lines of ``held_out.json``: one per model, the overlapping ones first and loud."""
    data = read_json(Path(sweep_dir) / FILE) or {}
    if data.get("format") != FORMAT:
        return []
    if data.get("mode") == "off":
        return ["**Held out: not checked** (`heldout_check=off`): the test set was not compared with the models' "
                "training data."]
    lines = []
    for _, rep in sorted((data.get("reports") or {}).items(),
                         key=lambda kv: (kv[1].get("status") != OVERLAP, kv[0])):
        report = Report.from_dict(rep)
        label = {OVERLAP: "**NOT held out**", HELD_OUT: "Held out",
                 UNCHECKED: "**Held out: not checked**"}.get(report.status, report.status)
        text = report.line().removeprefix("held out: ").removeprefix("not checked against ")
        lines.append(f"- {label}: {text}.")
    if lines:
        lines.insert(0, "Test set against each model's training data (audio fingerprints, `edm_se.heldout`):")
    return lines
