"""``edm-se study``: design-space studies as Hydra multiruns, resumable, gathered into one tidy table and plots.

A study is a Hydra multirun over the axes that a preset (``conf/study/<name>.yaml``) puts into
``hydra.sweeper.params``. Every combination is a *cell*, one Hydra job, whose output directory is
``studies/runs/<study.name>/<hydra.job.override_dirname>/`` (stable, so a re-run finds it), led by
``model=<label>,`` in a sampler study given ``ckpt=`` (several checkpoints, ``ckpt=a.pt,b.pt``, are one more swept
axis: :func:`edm_se.study_common.model_label`; the label is the rows' ``design``). A cell:

* skips itself when its ``metrics.json`` records the same resolved cell config ("skipping finished cell");
* sampler studies (``study.kind: sampler``): load one checkpoint, build the cell's sampler, enhance every noisy file
  of the fixed test set, score it (PESQ, ESTOI, SI-SDR, the recognisers' WER, optional DNSMOS) and write
  ``metrics.json`` atomically;
* training studies (``study.kind: train``): compose ``conf/train.yaml`` with the cell's overrides, train into the
  cell directory with ``resume=true`` (an interrupted cell resumes), then evaluate a small sampler x steps grid:
  several *points* in one ``metrics.json``;
* on failure writes ``error.json`` (type, one-line message, traceback) and returns normally, so the sweep goes on.

``metrics.json`` (format ``edm_se.study/1``)::

    {"format", "study", "cell", "overrides": [...], "config": {resolved cell config},
     "provenance": {"checkpoint": {"path", "sha256", "step"}, "test_set": {"root", "n", "sha256"},
                    "edm_se_version", "git_commit", "torch_version"},
     "test_set": {...},
     "points": [{"label", "sampler", "num_steps", "nfe", "s_churn", "s_noise", "t_start", "oa_weight", "sde",
                 "precond",
                 "design", "n", "wall_s", "audio_s", "rtf", "score_s",
                 "metrics": {name: {"mean", "ci95", "n"}}, "per_snr": {name: {snr_db: mean}},
                 "improvement": {name: {"mean", "ci95", "n"}},
                 "per_file": {"names": [...], name: [...], "hyp_<recogniser>": [transcript, ...], "ref_words": [...]},
                 "audio": [...]}],
     "started", "finished"}

References scored once per test set and drawn beside every curve: the noisy input (``noisy_metrics.json``, with
the clean references' WER under ``clean``) and each pretrained peer of ``peers`` (``peers/<name>.json``; DFN3,
RNNoise, noisereduce, :mod:`edm_se.enhancers`).

A finished cell is skipped only when its config AND the content of what it used (the checkpoint's SHA-256 and
step, the test set's SHA-256 over its files) are unchanged: retraining into the same path, a new bundled model or
an edited test set re-runs it. ``ci95`` is the half-width of the 95% confidence interval of the mean over test
files (Student t); ``improvement`` is the same for the per-file difference to the noisy input (paired).

The pieces live in their own modules: :mod:`edm_se.testset` (test sets), :mod:`edm_se.scoring` (scoring and
paired statistics), :mod:`edm_se.study_train` (training cells), :mod:`edm_se.study_report` (``results.csv`` /
``results.md``), :mod:`edm_se.provenance` (hashes). :class:`GatherCallback` (``on_multirun_end``) and
:func:`gather` collect every cell into ``results.csv``, ``results.md`` and the figures of :mod:`edm_se.plots`.
Launcher-agnostic: the basic launcher runs cells in one process; ``hydra/launcher=joblib`` runs them in parallel
processes and ``hydra/launcher=submitit_slurm`` on a cluster, with no code change (every cell is self-contained).
"""

from __future__ import annotations

import copy
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

try:  # Hydra is a hard dependency; the guard keeps `import edm_se.study` cheap in odd environments
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]

from edm_se.atomic import atomic_path, atomic_write_json, atomic_write_text, json_safe  # noqa: F401
from edm_se.scoring import (evaluate_point, noisy_reference, peer_reference, score, summarise,  # noqa: F401
                            wanted_metrics)
from edm_se.study_common import (FORMAT, METRIC_ORDER, NOISY_FORMAT, RESULT_COLUMNS, _fmt_metrics,  # noqa: F401
                                 _override_value, _short_target, model_label, oa_weight, read_json,
                                 register_resolvers, sampler_params)
from edm_se.study_report import gather, results_markdown  # noqa: F401
from edm_se.study_train import (TRAIN_IDENTITY_IGNORED, _run_train_cell, compose_train_config,  # noqa: F401
                                find_reusable_checkpoint)
from edm_se.testset import TestSet, load_test_set  # noqa: F401

log = logging.getLogger("edm_se.study")
register_resolvers()  # conf/study.yaml's cell directory names (a launcher's worker may import this module first)

# Config keys that do not change a cell's results: a change does not re-run a finished cell.
IGNORED_KEYS = ("device", "threads", "num_workers", "progress", "keep_audio", "reuse_checkpoints", "peers",
                "heldout_check")  # the held-out check gates the study; a cell finished before it existed stands


def cell_config(cfg: DictConfig) -> dict:
    """The resolved cell config that identifies a finished cell.

    ``cfg`` minus :data:`IGNORED_KEYS` and minus what belongs to the study rather than the cell: its
    ``description``, its report's ``compare_to`` and plots' ``x`` and, in a training study, the other cells' entries of
    ``study.cells`` (so adding a cell to a preset, editing another cell or asking for another comparison does not
    re-run the finished ones). ``cfg`` may also be the config a finished cell stored (a plain dict).
    """
    full = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else copy.deepcopy(cfg)
    assert isinstance(full, dict)
    for key in IGNORED_KEYS:
        full.pop(key, None)
    spec = full.get("study")
    if isinstance(spec, dict):
        for key in ("description", "compare_to", "x"):  # the study's report, not the cell
            spec.pop(key, None)
        cells = spec.get("cells")
        if isinstance(cells, dict):
            spec["cells"] = {k: v for k, v in cells.items() if k == full.get("cell")}
    if full.get("oa_weight") in (0, 0.0):  # off: a cell finished before the option existed stands
        full.pop("oa_weight")
    return json_safe(full)  # normalised as stored in metrics.json (tuples -> lists, NaN -> null)



# ----------------------------------------------------------------------------------------------- cells
_MODELS: dict[tuple[str, str], Any] = {}


def _load_model(ckpt: str | None, device: str):
    """Load (and cache per process: cells of a local sweep share one model) an :class:`EnhancementModel`; the cache
    is keyed by the file's size and modification time too, so a checkpoint rewritten in place is loaded anew."""
    from edm_se.model import EnhancementModel, default_checkpoint_path

    path = str(Path(ckpt).expanduser().resolve()) if ckpt else str(default_checkpoint_path())
    st = os.stat(path) if os.path.exists(path) else None
    key = (path, st.st_size if st else None, st.st_mtime_ns if st else None, str(device))
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = EnhancementModel.from_checkpoint(path, device=device)
    return _MODELS[key]


def _run_sampler_cell(cfg: DictConfig, out_dir: Path, choices: dict, test_set: TestSet, keep: list[str],
                      noisy: dict, metrics: list[str]) -> list:
    if cfg.get("sampler") is None:
        raise ValueError("a sampler study needs a sampler (sampler=edm_heun, ...)")
    model = _load_model(cfg.ckpt, str(cfg.device))
    node = OmegaConf.to_container(cfg.sampler, resolve=True)
    point = evaluate_point(model, test_set, node, t_start=float(cfg.t_start), seed=int(cfg.seed),
                           oa_weight=oa_weight(cfg), metrics=metrics, keep=keep, audio_dir=out_dir / "audio",
                           num_workers=int(cfg.num_workers), progress=bool(cfg.progress), noisy_ref=noisy)
    return [{"label": choices.get("sampler") or _short_target(node), "sampler": choices.get("sampler")
             or _short_target(node), **sampler_params(node), "t_start": float(cfg.t_start),
             "oa_weight": oa_weight(cfg),
             "sde": _short_target(model.config.get("sde")), "precond": _short_target(model.config.get("precond")),
             "design": model_label(cfg.ckpt) if cfg.get("ckpt") else None, **point}]


def installed_peers(peers: Any, warn: bool = False) -> list[str]:
    """The peers of ``peers`` whose package is installed; the others are skipped (with ``warn``: one warning each,
    naming the extra to install), so a study without the ``peers`` extra still runs.

    Raises:
        ValueError: an unknown peer name.
    """
    from edm_se.enhancers import PEERS, peer_available

    out = []
    for peer in [str(p) for p in peers]:
        if peer not in PEERS:
            raise ValueError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
        if peer_available(peer):
            out.append(peer)
        elif warn:
            log.warning("peer %s is not installed and is skipped (pip install 'edm_se[peers]')", peer)
    return out


def _checkpoint_of(cfg: DictConfig, out_dir: Path) -> Path | None:
    """The checkpoint a cell uses: the sampler study's ``ckpt`` (default: the bundled model) or a training cell's
    ``checkpoints/last.pt`` (None until it exists)."""
    from edm_se.model import default_checkpoint_path

    if str(cfg.study.kind) == "train":
        last = out_dir / "checkpoints" / "last.pt"
        return last if last.exists() else None
    return Path(str(cfg.ckpt)).expanduser() if cfg.get("ckpt") else default_checkpoint_path()


def _identity(prov: dict | None) -> tuple:
    """What must be unchanged for a finished cell to stand: checkpoint content and step, test-set content."""
    prov = prov or {}
    ck, ts = prov.get("checkpoint") or {}, prov.get("test_set") or {}
    return ck.get("sha256"), ck.get("step"), ts.get("sha256"), ts.get("transcripts_sha256")


def _locate(hc: Any) -> tuple[Path, Path, str]:
    """(cell output dir, sweep dir, cell name) of the running Hydra job: the name is the output dir's path in the
    sweep dir (``hydra.sweep.subdir``: the override dirname, led by ``model=<label>`` in a sampler study given a
    checkpoint; :func:`edm_se.study_common.cell_dir_name`)."""
    out_dir = Path(hc.runtime.output_dir).resolve()
    try:
        sweep_dir = Path(str(hc.sweep.dir)).resolve()
    except Exception:  # noqa: BLE001 - an unresolvable interpolation: fall back to the directory layout
        sweep_dir = out_dir.parent
    if sweep_dir != out_dir and sweep_dir not in out_dir.parents:
        sweep_dir = out_dir.parent
    cell = out_dir.relative_to(sweep_dir).as_posix() if out_dir != sweep_dir else ""
    return out_dir, sweep_dir, cell or str(hc.job.override_dirname or "") or "default"


def run_cell(cfg: DictConfig, out_dir: Path, sweep_dir: Path, cell: str, overrides: list[str],
             choices: dict | None = None) -> dict | None:
    """Run one cell (or skip it when finished); returns its metrics.json content, or None when it failed.

    Never raises for a failure inside the cell: it writes ``out_dir/error.json`` instead (``KeyboardInterrupt``
    still stops the sweep).
    """
    import torch

    from edm_se.provenance import checkpoint_identity, run_info
    from edm_se.study_heldout import cell_record

    out_dir.mkdir(parents=True, exist_ok=True)
    config = cell_config(cfg)
    metrics_path, error_path = out_dir / "metrics.json", out_dir / "error.json"
    started = time.time()
    try:
        if int(cfg.threads) > 0:
            torch.set_num_threads(int(cfg.threads))
        test_set = load_test_set(cfg.test_set, cfg.max_files)
        ts_ident = test_set.identity()
        ckpt = _checkpoint_of(cfg, out_dir)
        prov = {"checkpoint": checkpoint_identity(ckpt) if ckpt is not None else None,
                "test_set": {k: ts_ident[k] for k in ("root", "n", "sha256", "transcripts_sha256")
                             if k in ts_ident},
                "held_out": cell_record(cfg, sweep_dir, test_set.root)}
        done = read_json(metrics_path)
        stored = done.get("config") if done is not None else None
        if done is not None and done.get("format") == FORMAT and isinstance(stored, dict) \
                and cell_config(stored) == config:
            if prov["checkpoint"] is not None and _identity(done.get("provenance")) == _identity(prov):
                log.info("skipping finished cell %s (%s)", cell, metrics_path)
                return done
            log.info("cell %s: its checkpoint or test set changed since metrics.json was written (%s); re-running "
                     "it", cell, _what_changed(done.get("provenance"), prov))
        elif done is not None:
            log.info("cell %s: its config changed since metrics.json was written; re-running it", cell)
        keep = test_set.kept(int(cfg.keep_audio))
        kind = str(cfg.study.kind)
        if kind == "sampler":
            sample_rate = _load_model(cfg.ckpt, str(cfg.device)).sample_rate
        elif kind == "train":
            sample_rate = int(cfg.get("sample_rate", 16000))
        else:
            raise ValueError(f"study.kind must be 'sampler' or 'train', got {kind!r}")
        metrics = wanted_metrics(list(cfg.metrics), test_set)
        noisy = noisy_reference(test_set, sweep_dir, metrics, sample_rate, keep, int(cfg.num_workers))
        for peer in installed_peers(cfg.get("peers") or []):  # scored once per test set (cached in peers/)
            peer_reference(peer, test_set, sweep_dir, metrics, sample_rate, keep, int(cfg.num_workers), noisy)
        if kind == "sampler":
            points = _run_sampler_cell(cfg, out_dir, choices or {}, test_set, keep, noisy, metrics)
        else:
            points = _run_train_cell(cfg, out_dir, test_set, keep, noisy, metrics)
            prov["checkpoint"] = checkpoint_identity(out_dir / "checkpoints" / "last.pt")
    except Exception as err:  # noqa: BLE001 - a failed cell is recorded and the sweep goes on
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        atomic_write_json(error_path, {"format": FORMAT, "study": str(cfg.study.name), "cell": cell,
                                       "type": type(err).__name__, "message": msg,
                                       "traceback": traceback.format_exc(), "overrides": overrides,
                                       "config": config, "time": time.time()})
        log.error("cell %s failed: %s: %s (details in %s)", cell, type(err).__name__, msg, error_path)
        return None
    result = {"format": FORMAT, "study": str(cfg.study.name), "cell": cell, "overrides": overrides,
              "config": config, "provenance": {**prov, **run_info()}, "test_set": ts_ident,
              "points": points, "started": started, "finished": time.time()}
    atomic_write_json(metrics_path, result)
    if error_path.exists():
        error_path.unlink()
    for p in points:
        log.info("cell %s: NFE=%d RTF=%.3f %s", cell, p["nfe"], p["rtf"], _fmt_metrics(p["metrics"]))
    return result


def _what_changed(old: dict | None, new: dict) -> str:
    o, n = _identity(old), _identity(new)
    parts = [label for label, a, b in zip(("checkpoint sha256", "checkpoint step", "test set sha256",
                                           "test set transcripts"), o, n)
             if a != b]
    return ", ".join(parts) or "no provenance recorded"


def main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se study``: one cell of the sweep (see the module docstring)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    out_dir, sweep_dir, cell = _locate(hc)
    overrides = [str(o) for o in hc.overrides.task]
    choices = {k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items() if isinstance(v, str)}
    run_cell(cfg, out_dir, sweep_dir, cell, overrides, choices)



class GatherCallback(Callback):
    """Hydra callback of ``edm-se study``.

    ``on_multirun_start`` checks the inputs that every cell shares (the checkpoint of a sampler study, the test
    set), so that a typo stops the study with one line instead of failing every cell; ``on_multirun_end`` gathers
    the results, draws the plots and says where they are.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import sys

        from edm_se import validate_overrides, validate_study
        from edm_se.checkpoint import load_checkpoint
        from edm_se.cli import _user_error_types, conf_dir
        from edm_se.config import paths_as_text
        from edm_se.model import default_checkpoint_path
        from edm_se.study_common import studies_in
        from edm_se.validate import ConfigError

        try:
            paths_as_text(config, list(config.hydra.overrides.task))  # `ckpt=12`: Path(12) was a warning per cell
            validate_study.study_config(config)
            sweep, name = str(config.hydra.sweep.dir), str(config.study.name)
            others = sorted(studies_in(sweep) - {name})
            if others:  # gather() drew their cells into this study's results.csv, results.md and figures
                raise ConfigError(f"hydra.sweep.dir={sweep}: holds the cells of study {others[0]}; give "
                                  f"study.name={name} a directory of its own (by default studies/runs/<study.name>)")
            validate_overrides.overrides(config, conf_dir(), str(config.hydra.job.config_name),  # before any cell dir
                                         list(config.hydra.overrides.task), dict(config.hydra.runtime.choices))
            test_set = load_test_set(config.get("test_set"), config.get("max_files"))
            test_set.check_audio()  # one unreadable file failed every cell
            # a missing `asr` extra stops here, naming it; metrics that all drop out left cells that scored nothing
            if not wanted_metrics(list(config.metrics), test_set):
                raise ConfigError(f"metrics={list(config.metrics)}: none can be computed on this test set (the "
                                  "warning above says why); add one that can, e.g. metrics=[pesq,estoi,si_sdr]")
            installed_peers(config.get("peers") or [], warn=True)
            if str(config.study.get("kind", "sampler")) == "sampler":
                swept = (validate_study.swept_values(config) or {}).get("ckpt")  # ckpt=a.pt,b.pt: every model
                for ckpt in swept or [config.get("ckpt")]:
                    load_checkpoint(Path(ckpt).expanduser() if ckpt else default_checkpoint_path())
            from edm_se.study_heldout import check_study

            check_study(config, test_set)  # scores on training data are not results (heldout_check=refuse)
        except _user_error_types() as err:
            # Hydra turns exceptions raised by callbacks into warnings; SystemExit stops the study before any cell.
            print(f"edm-se study: error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
            raise SystemExit(2) from None
        except Exception:  # noqa: BLE001 - our own bug: as a warning, the study ran every cell past its checks
            import traceback

            traceback.print_exc()
            print("edm-se study: the study's checks failed (traceback above); no cell was run", file=sys.stderr)
            raise SystemExit(1) from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            print(f"edm-se study: nothing was written to {sweep_dir}")
            return
        out = gather(sweep_dir, x=str(config.study.get("x") or "auto"))
        from edm_se.study_best import write_best
        from edm_se.study_timing import write_timing

        _, best_md = write_best(sweep_dir, config.study.get("compare_to"))
        write_timing(sweep_dir)
        print(f"edm-se study: {out['cells']} finished cell(s), {len(out['failed'])} failed")
        for cell, msg in out["failed"]:
            print(f"  failed cell {cell}: {msg} (see its error.json)")
        print(f"results: {out['results']}  and  {out['markdown']}  (best point per metric: {best_md}; where the "
              f"time went: {sweep_dir / 'timing.md'})")
        pngs = [p for p in out["figures"] if p.suffix == ".png"]
        if pngs:
            print("figures: " + "  ".join(str(p) for p in pngs) + "  (+ PDF)")
