"""``edm-se study``: design-space studies as Hydra multiruns, resumable, gathered into one tidy table and plots.

A study is a Hydra multirun over the axes that a preset (``conf/study/<name>.yaml``) puts into
``hydra.sweeper.params``. Every combination is a *cell*, one Hydra job, whose output directory is
``studies/runs/<study.name>/<hydra.job.override_dirname>/`` (stable, so a re-run finds it). A cell:

* skips itself when its ``metrics.json`` records the same resolved cell config ("skipping finished cell");
* sampler studies (``study.kind: sampler``): load one checkpoint, build the cell's sampler, enhance every noisy file
  of the fixed test set, score it (PESQ, ESTOI, SI-SDR, optional DNSMOS) and write ``metrics.json`` atomically;
* training studies (``study.kind: train``): compose ``conf/train.yaml`` with the cell's overrides, train into the
  cell directory with ``resume=true`` (an interrupted cell resumes), then evaluate a small sampler x steps grid:
  several *points* in one ``metrics.json``;
* on failure writes ``error.json`` (type, one-line message, traceback) and returns normally, so the sweep goes on.

``metrics.json`` (format ``edm_se.study/1``)::

    {"format", "study", "cell", "overrides": [...], "config": {resolved cell config}, "test_set": {...},
     "points": [{"label", "sampler", "num_steps", "nfe", "s_churn", "s_noise", "t_start", "sde", "precond",
                 "design", "n", "wall_s", "audio_s", "rtf",
                 "metrics": {name: {"mean", "ci95", "n"}}, "per_snr": {name: {snr_db: mean}}, "audio": [...]}],
     "started", "finished"}

``ci95`` is the half-width of the 95% confidence interval of the mean over test files (Student t).
:class:`GatherCallback` (``on_multirun_end``) and :func:`gather` collect every cell into ``results.csv`` (one row per
cell x point x metric (x SNR)), ``results.md`` and the figures of :mod:`edm_se.plots`. Launcher-agnostic: the basic
launcher runs cells in one process; ``hydra/launcher=joblib`` runs them in parallel processes and
``hydra/launcher=submitit_slurm`` on a cluster, with no code change (every cell is self-contained).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

try:  # Hydra is a hard dependency; the guard keeps `import edm_se.study` cheap in odd environments
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]

log = logging.getLogger("edm_se.study")

FORMAT = "edm_se.study/1"
NOISY_FORMAT = "edm_se.study.noisy/1"
# Config keys that do not change a cell's results: a change does not re-run a finished cell.
IGNORED_KEYS = ("device", "threads", "num_workers", "progress", "keep_audio", "reuse_checkpoints")
# Training-config keys that do not change a trained model (a checkpoint differing only there can be reused).
TRAIN_IDENTITY_IGNORED = ("run_dir", "resume", "device")
METRIC_ORDER = ("pesq", "estoi", "si_sdr", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")
RESULT_COLUMNS = ("study", "kind", "cell", "design", "sampler", "num_steps", "nfe", "s_churn", "s_noise", "t_start",
                  "sde", "precond", "metric", "snr_db", "mean", "ci95", "n", "rtf", "wall_s", "audio_s", "audio")


# ----------------------------------------------------------------------------------------------- small helpers
from edm_se.atomic import atomic_path, atomic_write_json, atomic_write_text, json_safe  # noqa: E402,F401  (studies write via these)


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or unreadable (e.g. a crash mid-write elsewhere)."""
    try:
        with open(path) as fh:
            obj = json.load(fh)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def cell_config(cfg: DictConfig) -> dict:
    """The resolved cell config that identifies a finished cell.

    ``cfg`` minus :data:`IGNORED_KEYS` and minus what belongs to the study rather than the cell: its
    ``description`` and, in a training study, the other cells' entries of ``study.cells`` (so adding a cell to a
    preset, or editing another cell, does not re-run the finished ones).
    """
    full = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(full, dict)
    for key in IGNORED_KEYS:
        full.pop(key, None)
    spec = full.get("study")
    if isinstance(spec, dict):
        spec.pop("description", None)
        cells = spec.get("cells")
        if isinstance(cells, dict):
            spec["cells"] = {k: v for k, v in cells.items() if k == full.get("cell")}
    return json_safe(full)  # normalised as stored in metrics.json (tuples -> lists, NaN -> null)


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


# ----------------------------------------------------------------------------------------------- test set
@dataclass
class TestSet:
    """A fixed paired test set: ``clean/`` and ``noisy/`` files with the same names, optional SNR per file.

    Attributes:
        root: the directory.
        names: file names (relative to ``clean/`` and ``noisy/``), sorted.
        snr_db: SNR in dB of each mixture (None where the manifest does not say).
    """

    root: Path
    names: list[str]
    snr_db: list[float | None]

    __test__ = False  # not a pytest test class

    def clean(self, name: str) -> Path:
        return self.root / "clean" / name

    def noisy(self, name: str) -> Path:
        return self.root / "noisy" / name

    def identity(self) -> dict:
        return {"root": str(self.root), "names": list(self.names)}

    def kept(self, k: int) -> list[str]:
        """``k`` file names spread evenly over the (sorted) test set: the files whose audio is kept."""
        n = len(self.names)
        if k <= 0 or n == 0:
            return []
        if k >= n:
            return list(self.names)
        return [self.names[round(i * (n - 1) / (k - 1))] if k > 1 else self.names[0] for i in range(k)]


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def load_test_set(path: str | os.PathLike | None = None, max_files: int | None = None) -> TestSet:
    """Read a paired test-set directory (``clean/``, ``noisy/``, optional ``manifest.csv``).

    Args:
        path: the directory; None: ``edm_se.data.builtin_test_set()``.
        max_files: keep only the first N files (sorted by name).

    Returns:
        :class:`TestSet`. The SNR of a file comes from a manifest column named ``snr_db`` (or ``snr``), matched by
        a column holding the file name (``name``, ``file``, ``noisy`` or ``path``).

    Raises:
        edm_se.audio.AudioError: the directory or its ``clean/`` / ``noisy/`` sub-directories are missing, or no
            noisy file has a clean reference.
    """
    import csv

    from edm_se.audio import AudioError

    if path is None:
        from edm_se.data import builtin_test_set

        path = builtin_test_set()
        if not isinstance(path, (str, os.PathLike)):  # an object describing the set
            path = getattr(path, "root")
    root = Path(path).expanduser().resolve()
    for sub in ("clean", "noisy"):
        if not (root / sub).is_dir():
            raise AudioError(f"{root}: not a test set (expected {sub}/ with audio files, plus manifest.csv)")
    noisy = {p.relative_to(root / "noisy").as_posix() for p in (root / "noisy").rglob("*")
             if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES}
    names = sorted(n for n in noisy if (root / "clean" / n).is_file())
    if not names:
        raise AudioError(f"{root}: no noisy file has a clean reference of the same name in clean/")
    if len(names) < len(noisy):
        log.warning("%s: %d noisy file(s) without a clean reference are ignored", root, len(noisy) - len(names))
    if max_files is not None:
        names = names[: int(max_files)]
    snr: dict[str, float] = {}
    manifest = root / "manifest.csv"
    if manifest.exists():
        with open(manifest, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            snr_col = next((c for c in ("snr_db", "snr") if c in rows[0]), None)
            name_cols = [c for c in ("name", "file", "noisy", "path", "noisy_path") if c in rows[0]]
            if snr_col:
                for row in rows:
                    for col in name_cols:
                        key = Path(row[col]).name if row[col] else ""
                        for n in names:
                            if n == row[col] or Path(n).name == key or Path(n).stem == key:
                                try:
                                    snr[n] = float(row[snr_col])
                                except (TypeError, ValueError):
                                    pass
    return TestSet(root=root, names=names, snr_db=[snr.get(n) for n in names])


# ----------------------------------------------------------------------------------------------- scoring
def score(references: list[Any], estimates: list[Any], names: list[str], sample_rate: int,
          metrics: list[str], num_workers: int = 2) -> dict[str, list[float]]:
    """Per-file scores ``{metric: [value per file]}`` for ``metrics`` (see :func:`edm_se.metrics.score_pairs`).

    Args:
        references, estimates: 1-D float32 waveforms (numpy or torch) at ``sample_rate`` Hz, paired by position.
        names: file names, same order.
        metrics: metric names (``pesq``, ``estoi``, ``si_sdr``, ``dnsmos_ovrl``, ...). DNSMOS metrics are dropped
            with a warning when ``speechmos`` is not installed.
    """
    import numpy as np

    from edm_se import metrics as M

    refs = [np.asarray(r.numpy() if hasattr(r, "numpy") else r, dtype=np.float32) for r in references]
    ests = [np.asarray(e.numpy() if hasattr(e, "numpy") else e, dtype=np.float32) for e in estimates]
    wanted = [m for m in metrics if not m.startswith("dnsmos") or M._have_speechmos()]
    if len(wanted) < len(metrics):
        log.warning("speechmos is not installed (pip install 'edm_se[dnsmos]'): DNSMOS is skipped")
    frame, _summary = M.score_pairs(refs, ests, sample_rate=sample_rate, names=names, metrics=tuple(wanted),
                                    num_workers=num_workers, progress=False)
    out: dict[str, list[float]] = {}
    for m in wanted:
        if m in frame.columns:
            out[m] = [float(v) for v in frame[m].tolist()]
    return out


def summarise(scores: dict[str, list[float]], snr_db: list[float | None]) -> tuple[dict, dict]:
    """Means with 95% CI half-widths, and per-SNR means, from per-file scores."""
    from edm_se.metrics import mean_ci95

    summary = {}
    per_snr: dict[str, dict[str, float]] = {}
    for m, values in scores.items():
        summary[m] = mean_ci95(values)
        groups: dict[float, list[float]] = {}
        for v, s in zip(values, snr_db):
            if s is not None:
                groups.setdefault(float(s), []).append(v)
        if groups:
            per_snr[m] = {f"{s:g}": mean_ci95(vs)["mean"] for s, vs in sorted(groups.items())}
    return summary, per_snr


# ----------------------------------------------------------------------------------------------- cells
_MODELS: dict[tuple[str, str], Any] = {}


def _load_model(ckpt: str | None, device: str):
    """Load (and cache per process: cells of a local sweep share one model) an :class:`EnhancementModel`."""
    from edm_se.model import EnhancementModel, default_checkpoint_path

    path = str(Path(ckpt).expanduser().resolve()) if ckpt else str(default_checkpoint_path())
    key = (path, str(device))
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = EnhancementModel.from_checkpoint(path, device=device)
    return _MODELS[key]


def evaluate_point(model: Any, test_set: TestSet, sampler: dict, *, t_start: float, seed: int,
                   metrics: list[str], keep: list[str], audio_dir: Path, num_workers: int = 2,
                   progress: bool = False) -> dict:
    """Enhance every noisy file of ``test_set`` with ``sampler`` and score it against the clean references.

    Args:
        model: :class:`edm_se.model.EnhancementModel`.
        sampler: a resolved sampler config node (``conf/sampler/*.yaml`` with overrides).
        t_start: process time the reverse process starts from.
        seed: sampler noise seed (the same for every file and cell: paired comparisons).
        keep: names of files whose enhanced audio is written to ``audio_dir``.

    Returns:
        A point dict (see the module docstring) without the labels ``sampler``/``sde``/... that the caller adds.
    """
    from tqdm import tqdm

    from edm_se.audio import load_audio, save_audio

    steps = sampler.get("num_steps")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"sampler num_steps must be >= 1, got {steps}")
    if not 0.0 < float(t_start) <= 1.0:
        raise ValueError(f"t_start must be in (0, 1], got {t_start}")
    sr = model.sample_rate
    smp = model.make_sampler(sampler)
    refs, ests, wall, audio_s, nfe = [], [], 0.0, 0.0, 0
    kept = []
    for name in tqdm(test_set.names, desc="enhance", disable=not progress, dynamic_ncols=True):
        noisy = load_audio(test_set.noisy(name), sample_rate=sr)
        clean = load_audio(test_set.clean(name), sample_rate=sr)
        res = model.enhance(noisy, sr, sampler=smp, t_start=float(t_start), seed=int(seed))
        n = min(clean.shape[-1], res.waveform.shape[-1])
        refs.append(clean[:n])
        ests.append(res.waveform[:n])
        wall += res.seconds
        audio_s += noisy.shape[-1] / sr
        nfe = max(nfe, int(res.nfe))
        if name in keep:
            dest = audio_dir / Path(name).with_suffix(".flac")
            save_audio(dest, res.waveform, sr)
            kept.append(dest)
    scores = score(refs, ests, test_set.names, sr, metrics, num_workers=num_workers)
    summary, per_snr = summarise(scores, test_set.snr_db)
    return {"nfe": nfe, "n": len(test_set.names), "wall_s": wall, "audio_s": audio_s,
            "rtf": wall / max(audio_s, 1e-9), "metrics": summary, "per_snr": per_snr,
            "audio": [str(p) for p in kept]}


def noisy_reference(test_set: TestSet, sweep_dir: Path, metrics: list[str], sample_rate: int, keep: list[str],
                    num_workers: int = 2) -> dict:
    """Score the noisy input against the clean reference once per study (cached in ``noisy_metrics.json``).

    Also copies the kept files' clean and noisy audio to ``sweep_dir/audio/{clean,noisy}/`` for the spectrograms.
    """
    from edm_se.audio import load_audio, save_audio

    path = sweep_dir / "noisy_metrics.json"
    ident = {**test_set.identity(), "metrics": list(metrics), "sample_rate": sample_rate}
    cached = read_json(path)
    if cached and cached.get("test_set") == ident:
        return cached
    refs, noisies = [], []
    for name in test_set.names:
        clean = load_audio(test_set.clean(name), sample_rate=sample_rate)
        noisy = load_audio(test_set.noisy(name), sample_rate=sample_rate)
        n = min(clean.shape[-1], noisy.shape[-1])
        refs.append(clean[:n])
        noisies.append(noisy[:n])
        if name in keep:
            save_audio(sweep_dir / "audio" / "clean" / Path(name).with_suffix(".flac"), clean, sample_rate)
            save_audio(sweep_dir / "audio" / "noisy" / Path(name).with_suffix(".flac"), noisy, sample_rate)
    scores = score(refs, noisies, test_set.names, sample_rate, metrics, num_workers=num_workers)
    summary, per_snr = summarise(scores, test_set.snr_db)
    out = {"format": NOISY_FORMAT, "test_set": ident, "metrics": summary, "per_snr": per_snr,
           "n": len(test_set.names)}
    atomic_write_json(path, out)
    return out


def _sampler_params(node: dict) -> dict:
    return {k: node.get(k) for k in ("num_steps", "s_churn", "s_noise")}


def _run_sampler_cell(cfg: DictConfig, out_dir: Path, choices: dict, test_set: TestSet, keep: list[str]) -> list:
    if cfg.get("sampler") is None:
        raise ValueError("a sampler study needs a sampler (sampler=edm_heun, ...)")
    model = _load_model(cfg.ckpt, str(cfg.device))
    node = OmegaConf.to_container(cfg.sampler, resolve=True)
    point = evaluate_point(model, test_set, node, t_start=float(cfg.t_start), seed=int(cfg.seed),
                           metrics=list(cfg.metrics), keep=keep, audio_dir=out_dir / "audio",
                           num_workers=int(cfg.num_workers), progress=bool(cfg.progress))
    return [{"label": choices.get("sampler") or _short_target(node), "sampler": choices.get("sampler")
             or _short_target(node), **_sampler_params(node), "t_start": float(cfg.t_start),
             "sde": _short_target(model.config.get("sde")), "precond": _short_target(model.config.get("precond")),
             "design": None, **point}]


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


def _run_train_cell(cfg: DictConfig, out_dir: Path, test_set: TestSet, keep: list[str]) -> list:
    from edm_se.config import to_container
    from edm_se.model import EnhancementModel, sampler_from_name
    from edm_se.train import train

    cells = OmegaConf.to_container(cfg.study.cells, resolve=True) or {}
    if cfg.cell is None or cfg.cell not in cells:
        raise ValueError(f"unknown or missing cell {cfg.cell!r}; this study's cells are {sorted(cells)}")
    spec = cells[cfg.cell] or {}
    cell_overrides = [str(o) for o in spec.get("overrides", [])]
    overrides = [*map(str, cfg.study.train_overrides), *cell_overrides, f"run_dir='{out_dir}'", "resume=true",
                 f"seed={int(cfg.seed)}", f"device={cfg.device}"]
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
    grid = spec.get("eval") or OmegaConf.to_container(cfg.study.eval, resolve=True) or []
    if not grid:
        raise ValueError(f"cell {cfg.cell!r} has no evaluation grid (study.eval or study.cells.{cfg.cell}.eval)")
    points = []
    for entry in grid:
        name = str(entry["sampler"])
        params = dict(entry.get("params") or {})
        steps = entry.get("num_steps") or [None]
        for num_steps in steps if isinstance(steps, list) else [steps]:
            node = OmegaConf.to_container(sampler_from_name(name), resolve=True)
            for key, value in {**params, **({"num_steps": num_steps} if num_steps is not None else {})}.items():
                if key not in node:
                    raise KeyError(f"sampler {name} has no parameter {key!r}")
                node[key] = value
            audio_dir = out_dir / "audio" / f"{name}_{node.get('num_steps')}"
            point = evaluate_point(model, test_set, node, t_start=float(cfg.t_start), seed=int(cfg.seed),
                                   metrics=list(cfg.metrics), keep=keep, audio_dir=audio_dir,
                                   num_workers=int(cfg.num_workers), progress=bool(cfg.progress))
            points.append({"label": f"{cfg.cell} / {name}", "sampler": name, **_sampler_params(node),
                           "t_start": float(cfg.t_start),
                           "sde": _override_value(cell_overrides, "sde") or _short_target(full.get("sde")),
                           "precond": _override_value(cell_overrides, "precond")
                           or _short_target(full.get("precond")),
                           "design": str(cfg.cell), **point})
            log.info("cell %s / %s num_steps=%s: NFE=%d %s", cfg.cell, name, node.get("num_steps"), point["nfe"],
                     _fmt_metrics(point["metrics"]))
    return points


def _fmt_metrics(summary: dict) -> str:
    return "  ".join(f"{m}={v['mean']:.3f}" for m, v in summary.items() if v.get("mean") is not None)


def _locate(hc: Any) -> tuple[Path, Path, str]:
    """(cell output dir, sweep dir, cell name) of the running Hydra job."""
    out_dir = Path(hc.runtime.output_dir).resolve()
    cell = str(hc.job.override_dirname or "")
    try:
        sweep_dir = Path(str(hc.sweep.dir)).resolve()
    except Exception:  # noqa: BLE001 - an unresolvable interpolation: fall back to the directory layout
        sweep_dir = out_dir.parent
    if sweep_dir != out_dir and sweep_dir not in out_dir.parents:
        sweep_dir = out_dir.parent
    if not cell:
        cell = out_dir.relative_to(sweep_dir).as_posix() if out_dir != sweep_dir else "default"
    return out_dir, sweep_dir, cell


def run_cell(cfg: DictConfig, out_dir: Path, sweep_dir: Path, cell: str, overrides: list[str],
             choices: dict | None = None) -> dict | None:
    """Run one cell (or skip it when finished); returns its metrics.json content, or None when it failed.

    Never raises for a failure inside the cell: it writes ``out_dir/error.json`` instead (``KeyboardInterrupt``
    still stops the sweep).
    """
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    config = cell_config(cfg)
    metrics_path, error_path = out_dir / "metrics.json", out_dir / "error.json"
    done = read_json(metrics_path)
    if done is not None and done.get("format") == FORMAT and done.get("config") == config:
        log.info("skipping finished cell %s (%s)", cell, metrics_path)
        return done
    if done is not None:
        log.info("cell %s: its config changed since metrics.json was written; re-running it", cell)
    started = time.time()
    try:
        if int(cfg.threads) > 0:
            torch.set_num_threads(int(cfg.threads))
        test_set = load_test_set(cfg.test_set, cfg.max_files)
        keep = test_set.kept(int(cfg.keep_audio))
        kind = str(cfg.study.kind)
        if kind == "sampler":
            points = _run_sampler_cell(cfg, out_dir, choices or {}, test_set, keep)
            sample_rate = _load_model(cfg.ckpt, str(cfg.device)).sample_rate
        elif kind == "train":
            points = _run_train_cell(cfg, out_dir, test_set, keep)
            sample_rate = int(cfg.get("sample_rate", 16000))
        else:
            raise ValueError(f"study.kind must be 'sampler' or 'train', got {kind!r}")
        noisy_reference(test_set, sweep_dir, list(cfg.metrics), sample_rate, keep, int(cfg.num_workers))
    except Exception as err:  # noqa: BLE001 - a failed cell is recorded and the sweep goes on
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        atomic_write_json(error_path, {"format": FORMAT, "study": str(cfg.study.name), "cell": cell,
                                       "type": type(err).__name__, "message": msg,
                                       "traceback": traceback.format_exc(), "overrides": overrides,
                                       "config": config, "time": time.time()})
        log.error("cell %s failed: %s: %s (details in %s)", cell, type(err).__name__, msg, error_path)
        return None
    result = {"format": FORMAT, "study": str(cfg.study.name), "cell": cell, "overrides": overrides,
              "config": config, "test_set": {**test_set.identity(), "n": len(test_set.names)},
              "points": points, "started": started, "finished": time.time()}
    atomic_write_json(metrics_path, result)
    if error_path.exists():
        error_path.unlink()
    for p in points:
        log.info("cell %s: NFE=%d RTF=%.3f %s", cell, p["nfe"], p["rtf"], _fmt_metrics(p["metrics"]))
    return result


def main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se study``: one cell of the sweep (see the module docstring)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    out_dir, sweep_dir, cell = _locate(hc)
    overrides = [str(o) for o in hc.overrides.task]
    choices = {k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items() if isinstance(v, str)}
    run_cell(cfg, out_dir, sweep_dir, cell, overrides, choices)


# ----------------------------------------------------------------------------------------------- gathering
def _rows_of(result: dict, cell_dir: Path, base: Path) -> list[dict]:
    rows = []
    for p in result.get("points", []):
        common = {"study": result.get("study"), "kind": "cell", "cell": result.get("cell"),
                  "design": p.get("design"), "sampler": p.get("sampler"), "num_steps": p.get("num_steps"),
                  "nfe": p.get("nfe"), "s_churn": p.get("s_churn"), "s_noise": p.get("s_noise"),
                  "t_start": p.get("t_start"), "sde": p.get("sde"), "precond": p.get("precond"),
                  "rtf": p.get("rtf"), "wall_s": p.get("wall_s"), "audio_s": p.get("audio_s")}
        audio = ";".join(_relative(Path(a), base) for a in p.get("audio", []))
        for metric, s in (p.get("metrics") or {}).items():
            rows.append({**common, "metric": metric, "snr_db": None, "mean": s.get("mean"), "ci95": s.get("ci95"),
                         "n": s.get("n"), "audio": audio})
            for snr, mean in ((p.get("per_snr") or {}).get(metric) or {}).items():
                rows.append({**common, "metric": metric, "snr_db": float(snr), "mean": mean, "ci95": None,
                             "n": None, "audio": ""})
    return rows


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return str(path)


def _metric_sort_key(m: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m)


def gather(sweep_dir: str | os.PathLike, plot: bool = True) -> dict:
    """Collect every cell's ``metrics.json`` under ``sweep_dir`` into ``results.csv`` and ``results.md``.

    Args:
        sweep_dir: a study's sweep directory (``studies/runs/<name>``).
        plot: also draw the figures (:func:`edm_se.plots.make_plots`) next to ``results.csv``.

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
    for path in sorted(sweep_dir.rglob("metrics.json")):
        result = read_json(path)
        if not result or result.get("format") != FORMAT:
            continue
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
        audio = ";".join(_relative(p, sweep_dir) for p in kept)
        for metric, s in (noisy.get("metrics") or {}).items():
            rows.append({"study": study, "kind": "noisy", "cell": "noisy input", "metric": metric, "snr_db": None,
                         "mean": s.get("mean"), "ci95": s.get("ci95"), "n": s.get("n"), "audio": audio})
            for snr, mean in ((noisy.get("per_snr") or {}).get(metric) or {}).items():
                rows.append({"study": study, "kind": "noisy", "cell": "noisy input", "metric": metric,
                             "snr_db": float(snr), "mean": mean})
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    for col in ("num_steps", "nfe", "n"):  # integers, empty where not applicable
        frame[col] = pd.to_numeric(frame[col], errors="coerce").round().astype("Int64")
    if len(frame):
        frame["_m"] = frame["metric"].map(_metric_sort_key)
        frame = frame.sort_values(["kind", "_m", "design", "sampler", "s_churn", "s_noise", "t_start", "nfe",
                                   "snr_db"], na_position="first", kind="stable").drop(columns="_m")
    csv_path = sweep_dir / "results.csv"
    atomic_write_text(csv_path, frame.to_csv(index=False))
    md_path = atomic_write_text(sweep_dir / "results.md", results_markdown(frame, failed, study))
    figures: list[Path] = []
    if plot and (frame["kind"] == "cell").any():
        from edm_se.plots import make_plots

        figures = make_plots(csv_path)
    return {"results": csv_path, "markdown": md_path, "figures": figures, "cells": cells, "failed": failed}


def results_markdown(frame: Any, failed: list[tuple[str, str]], study: str | None) -> str:
    """A readable Markdown table: one row per point (cell/sampler/NFE), one column per metric (mean ± CI95)."""
    lines = [f"# Study `{study or '?'}`", ""]
    overall = frame[frame["snr_db"].isna()] if len(frame) else frame
    if len(overall):
        metrics = sorted(overall["metric"].dropna().unique(), key=_metric_sort_key)
        keys = ["design", "sampler", "num_steps", "nfe", "s_churn", "s_noise", "t_start"]
        cellrows = overall[overall["kind"] == "cell"]
        show = [k for k in keys if cellrows[k].notna().any() and (k in ("sampler", "nfe")
                                                                   or cellrows[k].nunique(dropna=True) > 1)]
        header = [*show, *[_metric_header(m) for m in metrics], "RTF"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        noisy = overall[overall["kind"] == "noisy"]
        if len(noisy):
            vals = {r.metric: _pm(r.mean, r.ci95) for r in noisy.itertuples()}
            lines.append("| " + " | ".join(["noisy input", *[""] * (len(show) - 1), *[vals.get(m, "") for m in
                                                                                       metrics], ""]) + " |")
        for _, grp in cellrows.groupby(["cell", "design", "sampler", "num_steps", "nfe", "t_start"], dropna=False,
                                       sort=False):
            first = grp.iloc[0]
            vals = {r.metric: _pm(r.mean, r.ci95) for r in grp.itertuples()}
            cells = [_fmt(first[k]) for k in show]
            lines.append("| " + " | ".join([*cells, *[vals.get(m, "") for m in metrics], _fmt(first["rtf"], 3)]) + " |")
        n = overall["n"].dropna()
        lines += ["", f"Mean ± 95% confidence half-width over {int(n.max()) if len(n) else '?'} test files. "
                  "NFE: network calls per file. RTF: wall time / audio duration."]
    else:
        lines.append("No finished cell yet.")
    if failed:
        lines += ["", "## Failed cells", ""] + [f"- `{c}`: {m}" for c, m in failed]
    return "\n".join(lines) + "\n"


def _metric_header(m: str) -> str:
    return {"pesq": "PESQ", "estoi": "ESTOI", "si_sdr": "SI-SDR (dB)"}.get(m, m)


def _fmt(v: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant digits (grid values such as 0.35 and 1.007 unchanged)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _pm(mean: Any, ci: Any) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if ci is None or (isinstance(ci, float) and math.isnan(ci)):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {ci:.3f}"


class GatherCallback(Callback):
    """Hydra callback of ``edm-se study``.

    ``on_multirun_start`` checks the inputs that every cell shares (the checkpoint of a sampler study, the test
    set), so that a typo stops the study with one line instead of failing every cell; ``on_multirun_end`` gathers
    the results, draws the plots and says where they are.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import sys

        from edm_se.checkpoint import load_checkpoint
        from edm_se.cli import _user_error_types
        from edm_se.model import default_checkpoint_path

        try:
            load_test_set(config.get("test_set"), config.get("max_files"))
            if str(config.study.get("kind", "sampler")) == "sampler":
                load_checkpoint(Path(config.ckpt).expanduser() if config.get("ckpt") else default_checkpoint_path())
        except _user_error_types() as err:
            # Hydra turns exceptions raised by callbacks into warnings; SystemExit stops the study before any cell.
            print(f"edm-se study: error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
            raise SystemExit(2) from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            print(f"edm-se study: nothing was written to {sweep_dir}")
            return
        out = gather(sweep_dir)
        print(f"edm-se study: {out['cells']} finished cell(s), {len(out['failed'])} failed")
        for cell, msg in out["failed"]:
            print(f"  failed cell {cell}: {msg} (see its error.json)")
        print(f"results: {out['results']}  and  {out['markdown']}")
        pngs = [p for p in out["figures"] if p.suffix == ".png"]
        if pngs:
            print("figures: " + "  ".join(str(p) for p in pngs) + "  (+ PDF)")
