"""Training cells of ``edm-se study`` (``study.kind: train``): compose the cell's training config, train or reuse a
finished checkpoint with the same config, then evaluate a sampler x steps grid."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path
from omegaconf import DictConfig, OmegaConf

from edm_se.atomic import atomic_path, atomic_write_json, json_safe
from edm_se.scoring import evaluate_point
from edm_se.study_common import _fmt_metrics, _override_value, _short_target, oa_weight, sampler_params
from edm_se.testset import TestSet

log = logging.getLogger("edm_se.study")

# Training-config keys that do not change a trained model (a checkpoint differing only there can be reused).
TRAIN_IDENTITY_IGNORED = ("run_dir", "resume", "device")


def compose_train_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Compose ``conf/<study.train_config>.yaml`` with ``overrides`` (inside or outside a running Hydra app)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    name = str(cfg.study.train_config)
    if GlobalHydra.instance().is_initialized():
        return compose(config_name=name, overrides=overrides)
    from edm_se.cli import conf_dir

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose(config_name=name, overrides=overrides)


def cell_train_overrides(cfg: DictConfig, cell: str, out_dir: Path) -> list[str]:
    """The ``edm-se train`` overrides of training cell ``cell`` run in ``out_dir``: ``study.train_overrides``, the
    cell's ``overrides``, then its run directory, ``resume=true``, the study's seed and device."""
    spec = (OmegaConf.to_container(cfg.study.cells, resolve=True) or {}).get(cell) or {}
    return [*map(str, cfg.study.train_overrides), *(str(o) for o in spec.get("overrides", [])),
            f"run_dir='{out_dir}'", "resume=true", f"seed={int(cfg.seed)}", f"device={cfg.device}"]


def _train_identity(train_config: dict) -> dict:
    full = json_safe(train_config)  # a normalised copy
    for key in TRAIN_IDENTITY_IGNORED:
        full.pop(key, None)
    return full


def find_reusable_checkpoint(train_cfg: DictConfig, roots: list[Path]) -> Path | None:
    """A finished ``checkpoints/last.pt`` under ``roots`` trained with the same config as ``train_cfg``.

    "Same" means the resolved training config stored in the checkpoint equals ``train_cfg`` except for
    :data:`TRAIN_IDENTITY_IGNORED` (where it ran), and "finished" means its step is ``trainer.max_steps``. Training
    is deterministic given the config and seed (see :mod:`edm_se.train`), so reusing such a checkpoint gives the
    model the cell would train. Used by ``reuse_checkpoints=[DIR,...]`` (e.g. ``recipes`` reusing the ``design``
    cells, which share two training configs). Unreadable files are skipped.

    Returns:
        The first match in sorted path order, or None.
    """
    from edm_se.checkpoint import CheckpointError, load_checkpoint
    from edm_se.config import to_container

    want = _train_identity(to_container(train_cfg))
    max_steps = int(train_cfg.trainer.max_steps)
    for root in roots:
        if not root.is_dir():
            log.warning("reuse_checkpoints: %s is not a directory; ignored", root)
            continue
        for path in sorted(root.glob("**/checkpoints/last.pt")):
            try:
                ckpt = load_checkpoint(path)
            except CheckpointError:
                continue
            stored = ckpt.get("train_config")
            if int(ckpt.get("step", -1)) == max_steps and isinstance(stored, dict) \
                    and _train_identity(stored) == want:
                return path
    return None


def eval_points(cell: str, spec: dict, study_eval: list | None) -> list[tuple[str, str, dict]]:
    """``(entry, sampler name, sampler node)`` for every point of a training cell's evaluation grid: its own
    ``study.cells.<cell>.eval``, else ``study.eval``; one point per entry (named ``study.cells.<cell>.eval[i]``) and
    step count.

    An entry is ``{sampler: NAME, num_steps: N or [N, ...] (null: the sampler's own), params: {KEY: VALUE}}``
    (a ``conf/sampler/NAME.yaml`` with those fields replaced; a nested mapping is merged key by key).

    Raises:
        ValueError: no grid; an entry that is no such mapping, names an unknown sampler, a step count that is not an
            integer >= 1, or a parameter its sampler does not have; naming the entry (``study.cells.<cell>.eval[i]``).
    """
    from edm_se.model import sampler_from_name

    where = f"study.cells.{cell}.eval" if spec.get("eval") else "study.eval"
    grid = spec.get("eval") or study_eval or []
    if not grid:
        raise ValueError(f"cell {cell!r} has no evaluation grid (study.eval or study.cells.{cell}.eval)")
    if not isinstance(grid, list):
        raise ValueError(f"{where}={grid}: must be a list of {{sampler: NAME, num_steps: [N, ...]}} entries")
    out = []
    for i, entry in enumerate(grid):
        key = f"{where}[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("sampler"), str):
            raise ValueError(f"{key}={entry}: must be {{sampler: NAME, num_steps: [N, ...], params: {{...}}}}")
        extra = sorted(set(entry) - {"sampler", "num_steps", "params"})
        if extra:
            raise ValueError(f"{key}.{extra[0]}: an entry has sampler, num_steps and params only")
        name = entry["sampler"]
        try:
            base = OmegaConf.to_container(sampler_from_name(name), resolve=True)
        except ValueError as err:  # naming the choices
            raise ValueError(f"{key}.sampler: {err}") from None
        steps = entry.get("num_steps")
        steps = [None] if steps is None else steps if isinstance(steps, list) else [steps]
        if not steps or not all(n is None or (isinstance(n, int) and not isinstance(n, bool) and n >= 1)
                                for n in steps):
            raise ValueError(f"{key}.num_steps={entry.get('num_steps')}: must be a step count >= 1 or a non-empty "
                             "list of them")
        params = entry.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError(f"{key}.params={params}: must be a mapping of sampler parameters")
        for k in params:
            if k not in base or k == "_target_":
                raise ValueError(f"{key}.params.{k}: sampler {name} has no parameter {k!r} (it has "
                                 f"{', '.join(p for p in base if p != '_target_')})")
        for num_steps in steps:
            node = _merged(base, {**params, **({"num_steps": num_steps} if num_steps is not None else {})})
            out.append((key, name, node))
    return out


def _merged(base: dict, changes: dict) -> dict:
    """A copy of ``base`` with ``changes`` merged in, key by key in nested mappings (``schedule: {sigma_min: 0.1}``
    keeps the schedule's ``_target_`` and other keys)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _run_train_cell(cfg: DictConfig, out_dir: Path, test_set: TestSet, keep: list[str], noisy: dict | None = None,
                    metrics: list[str] | None = None) -> list:
    from edm_se.config import to_container
    from edm_se.model import EnhancementModel
    from edm_se.train import train

    cells = OmegaConf.to_container(cfg.study.cells, resolve=True) or {}
    if cfg.cell is None or cfg.cell not in cells:
        raise ValueError(f"unknown or missing cell {cfg.cell!r}; this study's cells are {sorted(cells)}")
    spec = cells[cfg.cell] or {}
    # one point per sampler entry and step count of the cell's grid, read before the training
    study_eval = cfg.study.get("eval")
    grid = eval_points(str(cfg.cell), spec, OmegaConf.to_container(study_eval, resolve=True)
                       if study_eval is not None else None)
    cell_overrides = [str(o) for o in spec.get("overrides", [])]
    overrides = cell_train_overrides(cfg, str(cfg.cell), out_dir)
    train_cfg = compose_train_config(cfg, overrides)
    last = out_dir / "checkpoints" / "last.pt"
    if not last.exists() and cfg.get("reuse_checkpoints"):
        source = find_reusable_checkpoint(train_cfg, [Path(str(d)) for d in cfg.reuse_checkpoints])
        if source is not None:
            with atomic_path(last) as tmp:
                shutil.copyfile(source, tmp)
            atomic_write_json(out_dir / "reused_checkpoint.json", {"source": str(source.resolve())})
            log.info("cell %s: reusing %s (same training config, finished); no training", cfg.cell, source)
    log.info("cell %s: training with %s", cfg.cell, " ".join(overrides))
    train(train_cfg)
    model = EnhancementModel.from_checkpoint(out_dir / "checkpoints" / "last.pt", device=str(cfg.device))
    full = to_container(train_cfg)
    points = []
    for _, name, node in grid:
        audio_dir = out_dir / "audio" / f"{name}_{node.get('num_steps')}"
        point = evaluate_point(model, test_set, node, t_start=float(cfg.t_start), seed=int(cfg.seed),
                               oa_weight=oa_weight(cfg), metrics=list(cfg.metrics) if metrics is None else metrics,
                               keep=keep, audio_dir=audio_dir, num_workers=int(cfg.num_workers), progress=bool(cfg.progress), noisy_ref=noisy)
        points.append({"label": f"{cfg.cell} / {name}", "sampler": name, **sampler_params(node),
                       "t_start": float(cfg.t_start), "oa_weight": oa_weight(cfg),
                       "sde": _override_value(cell_overrides, "sde") or _short_target(full.get("sde")),
                       "precond": _override_value(cell_overrides, "precond")
                       or _short_target(full.get("precond")),
                       "design": str(cfg.cell), **point})
        log.info("cell %s / %s num_steps=%s: NFE=%d %s", cfg.cell, name, node.get("num_steps"), point["nfe"],
                 _fmt_metrics(point["metrics"]))
    return points

