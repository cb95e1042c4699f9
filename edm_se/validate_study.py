"""Checking the config of ``edm-se study`` before any cell runs (:func:`study_config`) and reading its swept values
(:func:`swept_values`): the values every cell shares, each swept value, a training study's cells (their evaluation
grids, their training configs) and ``study.compare_to``. A bad value raises :class:`edm_se.validate.ConfigError`
(one line naming the key), before any cell directory is made.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from edm_se.study_common import model_label
from edm_se.validate import (ConfigError, _device, _metrics, _prefixed, _sampler_values, check, int_at_least, list_of,
                             number_in, one_of, override_pairs, peers, sampler, train_config)


def study_config(cfg: DictConfig) -> None:
    """Check the values every cell of ``edm-se study`` shares (``conf/study.yaml``; swept values are checked per
    cell, whose failure is recorded in its ``error.json``)."""
    number_in(cfg, "t_start", 0.0, 1.0, low_open=True)
    number_in(cfg, "oa_weight", 0.0, 1.0)
    int_at_least(cfg, ["max_files"], 1, optional=True)
    int_at_least(cfg, ["keep_audio", "threads", "seed"], 0)
    int_at_least(cfg, ["num_workers"], 1)
    check(cfg, "progress", lambda v: isinstance(v, bool), "true or false")  # `progress=maybe` ran every cell
    from edm_se.heldout import MODES

    one_of(cfg, "heldout_check", MODES)
    _metrics(cfg)
    peers(cfg)
    # a directory alone was read letter by letter ('/', 't', 'm', 'p': every checkpoint under /); a mistyped one
    # was a warning in a cell's log, and the cell trained from scratch
    list_of(cfg, "reuse_checkpoints", lambda d: isinstance(d, str), "a list of directories (reuse_checkpoints=[DIR]) "
            "or []", optional=True, empty_ok=True)
    for d in cfg.get("reuse_checkpoints") or []:
        if not Path(d).expanduser().is_dir():
            raise ConfigError(f"reuse_checkpoints: {d} is not a directory")
    from edm_se.study_common import X_CANDIDATES

    one_of(cfg, "study.x", ("auto", *X_CANDIDATES, "rtf"))
    _device(cfg)  # a bad device would fail every cell
    cells = list((cfg.study.get("cells") or {}).keys()) if cfg.get("study") is not None else []
    from edm_se.study_best import factor_level, same_value

    swept = swept_values(cfg)
    kind = str(OmegaConf.select(cfg, "study.kind") or "sampler")
    if kind == "train" and (cfg.get("ckpt") is not None or "ckpt" in (swept or {})):
        # it was ignored: the study trained and scored its own models, not the one named
        ckpt = ",".join((swept or {}).get("ckpt") or [str(cfg.get("ckpt"))])
        raise ConfigError(f"ckpt={ckpt}: study={OmegaConf.select(cfg, 'study.name')} trains every cell's own model; "
                          "a checkpoint is for the sampler studies (steps, churn, t_start, oa)")
    named_cells = (swept or {}).get("cell") or ([str(cfg.get("cell"))] if cfg.get("cell") is not None else [])
    if kind != "train" and named_cells:  # it only renamed the cell directories of a sampler study
        raise ConfigError(f"cell={','.join(named_cells)}: study={OmegaConf.select(cfg, 'study.name')} sweeps samplers "
                          "on one checkpoint and has no cells; cell= picks the cells of a training study (design, "
                          "recipes, few_step)")
    if kind == "train":  # `cell=nope` made a cell directory and an error.json; `cell=a,b` picks some cells
        for key, value in override_pairs(OmegaConf.select(cfg, "hydra.overrides.task")):
            if key.split(".")[0] == "sampler":
                # every cell evaluates its own grid: `sampler=pc,euler` trained each cell once per sampler, unused
                raise ConfigError(f"{key}={value}: study={OmegaConf.select(cfg, 'study.name')} scores each cell "
                                  "with its evaluation grid (study.eval, study.cells.<cell>.eval), not with sampler=")
        for name in named_cells:
            if name not in cells:
                near = difflib.get_close_matches(name, cells, n=1, cutoff=0.6)
                raise ConfigError(f"cell={name}: no such cell in study={OmegaConf.select(cfg, 'study.name')} ("
                                  + (f"did you mean cell={near[0]}? " if near else "") + f"cells: {', '.join(cells)})")
        _eval_grids(cfg, named_cells or cells)
        _cell_trainings(cfg, named_cells or cells)
    for key, low_open in (("t_start", True), ("oa_weight", False)):  # every swept value, before any cell runs
        for value in (swept or {}).get(key, []):
            number_in({key: _swept_number(value)}, key, 0.0, 1.0, low_open=low_open)
    for key, values in (swept or {}).items():  # swept sampler fields too (sampler.num_steps=0,1 failed a cell each)
        if not key.startswith("sampler.") or key.startswith("sampler._"):
            continue
        for value in values:
            one = OmegaConf.create()
            OmegaConf.update(one, key.partition(".")[2], None if value == "null" else _swept_number(value))
            _prefixed(lambda: _sampler_values(one), "sampler")
    labels: dict[str, str] = {}
    for ckpt in (swept or {}).get("ckpt", []):
        if ckpt in ("null", ""):
            raise ConfigError(f"ckpt={','.join(swept['ckpt'])}: name every checkpoint of the sweep (the bundled "
                              "model is edm_se/checkpoints/default.pt)")
        label = model_label(ckpt)
        if label in labels and labels[label] != ckpt:
            raise ConfigError(f"ckpt: {labels[label]} and {ckpt} would both be model={label}; give one checkpoint "
                              "another file name (or trainer run directory)")
        labels[label] = ckpt
    level = factor_level(OmegaConf.select(cfg, "study.compare_to"))
    if level is None:
        check(cfg, "study.compare_to", lambda v: str(v) in cells,
              ("null, a cell of this study (" + ", ".join(cells) + ") or KEY=VALUE, a level of a swept key") if cells
              else "null or KEY=VALUE, a level of a swept key (e.g. sampler=edm_heun)", optional=True)
        return
    key, value = level
    if key == "cell":  # a training study's cells are compared by name
        raise ConfigError(f"study.compare_to=cell={value}: name the cell itself (study.compare_to={value})")
    if swept is not None and key not in swept:
        raise ConfigError(f"study.compare_to={key}={value}: {key} is not swept by this study (swept: "
                          f"{', '.join(swept) or 'nothing'})")
    if swept is not None and not any(same_value(value, v) for v in swept[key]):
        raise ConfigError(f"study.compare_to={key}={value}: {value} is not one of the swept values of {key} "
                          f"({', '.join(swept[key])})")


def _eval_grids(cfg: DictConfig, cells: list[str]) -> None:
    """Every point of the evaluation grid of each of ``cells`` names a sampler that builds
    (:func:`edm_se.study_train.eval_points`): a bad one failed its cell after the training."""
    from edm_se.study_train import eval_points

    specs = OmegaConf.to_container(cfg.study.cells, resolve=True) or {}
    study_eval = OmegaConf.to_container(cfg.study.eval, resolve=True) if cfg.study.get("eval") is not None else None
    for cell in cells:
        try:
            points = eval_points(cell, specs.get(cell) or {}, study_eval)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        for entry, _, node in points:  # the values come from the entry's params (its num_steps are checked)
            _prefixed(lambda: sampler(node, prefix=f"{entry}.params"), f"{entry}.params")


def _cell_trainings(cfg: DictConfig, cells: list[str]) -> None:
    """The training config of each of ``cells`` composes, passes :func:`train_config` and builds its model (a bad
    ``study.train_overrides`` or cell override failed every cell, after the noisy input and the peers were scored).
    """
    import tempfile

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from edm_se.config import build_model
    from edm_se.study_train import cell_train_overrides, compose_train_config

    with tempfile.TemporaryDirectory() as tmp:  # a run directory that composes; nothing is written there
        for cell in cells:
            overrides = cell_train_overrides(cfg, cell, Path(tmp))
            try:
                train = compose_train_config(cfg, overrides)
            except (HydraException, OmegaConfBaseException) as err:
                first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
                raise ConfigError(f"cell {cell}: its training overrides do not compose ({first.strip()}); "
                                  f"they are study.train_overrides + study.cells.{cell}.overrides") from None
            if OmegaConf.select(train, "trainer.max_steps") == 0:  # a cell that trains nothing (few_step's `none`:
                train.trainer.max_steps = 1                          # its starting weights as they are)
            try:
                train_config(train)
                build_model(train)  # a value its constructor refuses (sde.sigma_min above sigma_max, ...)
            except ConfigError as err:
                raise ConfigError(f"cell {cell}: {err}") from None


def _swept_number(text: str) -> Any:
    """A swept value as Hydra reads it: a number (``"2"`` -> 2, ``"1e-1"`` -> 0.1), a bool (``"true"``), else the
    text."""
    if text.lower() in ("true", "false"):  # sampler.float64=true,false: a bool, as the sampler check wants
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def swept_values(cfg: DictConfig) -> dict[str, list[str]] | None:
    """The keys a study sweeps and their values: the preset's ``hydra.sweeper.params`` and the command line's
    comma-separated overrides (``hydra.overrides.task``); None when ``cfg`` carries no Hydra node."""
    if OmegaConf.select(cfg, "hydra") is None:
        return None
    swept = {str(k): [v.strip() for v in str(vals).split(",")]
             for k, vals in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()}
    for key, vals in override_pairs(OmegaConf.select(cfg, "hydra.overrides.task")):
        # a comma sweeps; one value of a key the preset sweeps (`cell=a`) replaces the preset's values
        if ("," in vals or key in swept) and not vals.startswith(("[", "{", "'", '"')):
            swept[key] = [v.strip() for v in vals.split(",")]
    if "ckpt" in swept:  # the cells name each checkpoint's model (edm_se.study_common.cell_dir_name)
        swept["model"] = [model_label(v) for v in swept["ckpt"]]
    return swept
