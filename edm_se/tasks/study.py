"""``edm-se study study=paradigms`` (alias ``edm-se paradigms``): the training paradigms of Milling et al. 2024
(Tables 1-2) side by side, at our scale.

Per task of ``tasks`` (``keywords``: the M5 classifier on spoken digits; ``sentences``: the CTC recogniser on
clauses): rows are the task's ``cells`` (each paradigm trained with the same task model, data, budget and seed),
the pretrained peers as cold-cascade front ends of the baseline task model (``peers``), and the clean reference
(the baseline task model on the clean clips). Columns: the task metric at each test SNR (0-25 dB) and on average,
each with a 95% interval (Wilson's for keyword accuracy, a bootstrap over files for WER). A task's ``blackbox``
recognisers (e.g. Whisper) add, for every row, their WER on the same inputs (the row's front end's output): how a
frozen recogniser that nobody trained against fares behind each enhancer (D4AM's "unseen recogniser" question).
The test clips are the test voices (flite slt / awb, Allison's recorded digits), never trained on, mixed with the
corpus's test noise; ``max_clips`` keeps an evenly spaced subset of them (the same clips at every SNR).

Every cell trains in ``out_dir/<task>/cells/<name>/`` with ``resume=true`` (interrupt at any time; a changed
training configuration is refused by the trainer) and is scored once per checkpoint and test set (``eval.json``
and ``blackbox/*.json`` record the hashes; a different checkpoint or test set is re-scored). ``results.csv`` (tidy:
task x row x metric x SNR), ``results.md``, ``<task>_<metric>_vs_snr.{png,pdf}`` and ``<task>_vs_nfe.{png,pdf}``
(the iterative enhancer with 1-8 steps of its sampler) are rewritten at the end.

Which enhancer sits in front of which task model at test time:

=========================  ==========================================================================================
baseline, data_aug.        none (the noisy input)
cold_cascade(_da)          the front end (default: the bundled diffusion model, NFE 1)
multi_task, iterative,     the cell's own fine-tuned enhancer (EMA weights, its default sampler, ``eval_num_steps``)
d4am, blackbox_iterative   in front of its own task model (D4AM's and the black-box cell's: the frozen baseline's)
peers                      DFN3 / RNNoise in front of the baseline task model
=========================  ==========================================================================================

A task's ``task_init: baseline`` starts every joint cell's task model from the baseline cell's (fine-tuning both
models); ``cell_overrides`` gives single cells their own training overrides (e.g. a longer budget for the task
model alone). ``workers=N`` trains the cells (of every task and seed) in N processes side by side, each cell once the
one it starts from is trained (:mod:`edm_se.tasks.launcher`), then scores them here.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

__all__ = ["run_study", "main", "TASK_TRAINED"]

# cells whose task model comes from another cell's run (its last.pt), trained first
TASK_TRAINED = {"d4am": "baseline", "blackbox_iterative": "baseline"}
# cells that fine-tune an enhancer (from ``enhancer_checkpoint``); at test time it sits in front of the cell's task model
JOINT = ("multi_task", "iterative", "d4am", "blackbox_iterative")


def _compose_train(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from edm_se.cli import conf_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose(config_name="train", overrides=list(overrides))


def _cell_overrides(name: str, cfg: DictConfig, tcfg: DictConfig, run: Sequence[str] = ()) -> list[str]:
    """The ``edm-se train`` overrides of cell ``name`` of a task: the study's, the task's, the cell's paradigm,
    ``run`` (run directory, resume, seed), the cell's own and the task's for that cell."""
    return [*cfg.train_overrides, *(tcfg.get("overrides") or []), f"paradigm={cfg.cells[name].paradigm}", *run,
            *cfg.cells[name].get("overrides", []), *((tcfg.get("cell_overrides") or {}).get(name) or [])]


def _cell_config(name: str, cfg: DictConfig, tcfg: DictConfig, out: Path, deps: dict[str, Path]
                 ) -> tuple[DictConfig, Path]:
    """The validated ``edm-se train`` config of one paradigm cell of a task, and its ``last.pt`` path."""
    from edm_se import validate

    run_dir = out / "cells" / name
    paradigm = str(cfg.cells[name].paradigm)
    overrides = _cell_overrides(name, cfg, tcfg, [f"run_dir={run_dir}", "resume=true", f"seed={int(cfg.seed)}"])
    dep = _task_source(name, cfg, tcfg)
    if dep is not None:
        overrides.append(f"paradigm.task_checkpoint={deps[dep]}")
    if cfg.cells[name].get("enhancer_checkpoint", True) and paradigm in JOINT:
        from edm_se.model import default_checkpoint_path

        overrides.append(f"paradigm.enhancer_checkpoint={cfg.enhancer_checkpoint or default_checkpoint_path()}")
    train_cfg = _compose_train(overrides)
    validate.train_config(train_cfg)
    return train_cfg, run_dir / "checkpoints" / "last.pt"


def _finished(name: str, train_cfg: DictConfig, last: Path) -> bool:
    """Whether cell ``name``'s ``last.pt`` has reached ``trainer.max_steps``; a finished cell trained with another
    config is refused (:func:`edm_se.train_resume.refuse_changed_config`: it would be scored as if trained so).

    Raises:
        CheckpointError: finished under another training config."""
    from edm_se.checkpoint import load_checkpoint
    from edm_se.train_resume import refuse_changed_config

    if not last.exists():
        return False
    ckpt = load_checkpoint(last)
    if int(ckpt["step"]) < int(train_cfg.trainer.max_steps):
        return False
    changed = refuse_changed_config(last, ckpt, train_cfg)
    if changed:
        log.warning("cell %s: resume=force: keeping %s, trained with a changed config (%s)", name, last,
                    ", ".join(changed))
    log.info("cell %s: trained (%s)", name, last)
    return True


def _train_cell(name: str, cfg: DictConfig, tcfg: DictConfig, out: Path, deps: dict[str, Path]) -> Path:
    """Train (or resume, or skip when finished) one paradigm cell of a task; returns its checkpoint."""
    from edm_se.train import train

    train_cfg, last = _cell_config(name, cfg, tcfg, out, deps)
    if _finished(name, train_cfg, last):
        return last
    t0 = time.time()
    log.info("cell %s: training paradigm=%s for %d steps", name, cfg.cells[name].paradigm,
             int(train_cfg.trainer.max_steps))
    train(train_cfg)
    (out / "cells" / name / "train_seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
    return last


def _task_source(name: str, cfg: DictConfig, tcfg: DictConfig) -> str | None:
    """The cell whose task model ``name`` starts from: D4AM's and the black-box cell's frozen task model is the
    baseline's (:data:`TASK_TRAINED`); a task's ``task_init`` (e.g. ``baseline``) starts every joint cell from it."""
    paradigm = str(cfg.cells[name].paradigm)
    if paradigm in TASK_TRAINED:  # the task's cell of that paradigm
        want = TASK_TRAINED[paradigm]
        cell = next((n for n in tcfg.cells if str(cfg.cells[n].paradigm) == want), None)
        if cell is None:
            from edm_se.validate import ConfigError

            raise ConfigError(f"tasks.cells: cell {name} (paradigm={paradigm}) needs a {want} cell in the same task")
        return cell
    init = tcfg.get("task_init")
    return str(init) if init and paradigm in JOINT and name != init else None


def _front_end_for(name: str, paradigm: str, ckpt: Path, cfg: DictConfig):
    from edm_se.enhancers import DiffusionEnhancer
    from edm_se.model import EnhancementModel

    if paradigm in ("baseline", "data_augmentation"):
        return None
    if paradigm in ("cold_cascade", "cold_cascade_da"):
        front = cfg.cells[name].get("front_end", "diffusion")
        if front == "diffusion":
            return DiffusionEnhancer(EnhancementModel.from_checkpoint(cfg.enhancer_checkpoint, device="cpu"))
        from edm_se.enhancers import make_peer

        return make_peer(str(front))
    model = EnhancementModel.from_checkpoint(ckpt, device="cpu")  # the cell's fine-tuned enhancer, at the
    return DiffusionEnhancer(model, sampler=model.make_sampler(None, num_steps=int(cfg.eval_num_steps)))  # NFE


def _front_end_id(front) -> dict:
    from edm_se.provenance import checkpoint_identity

    if front is None or front == "clean":
        return {"name": "none" if front is None else "clean"}
    return {"name": getattr(front, "name", type(front).__name__),
            **({"checkpoint": checkpoint_identity(Path(front.model.info["path"])), "sampler": repr(front.sampler)}
               if hasattr(front, "model") else {})}


def _cached_eval(path: Path, key: dict, compute) -> dict:
    from edm_se.atomic import atomic_write_json

    if path.exists():
        old = json.loads(path.read_text())
        if old.get("key") == key:
            return old["result"]
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"key": key, "result": result})
    return result


def _manifest(cfg: DictConfig, task: str, tcfg: DictConfig) -> Path:
    """The task's manifest, ``task_root/<manifest>/manifest.csv``."""
    return Path(cfg.task_root) / str(tcfg.get("manifest", task)) / "manifest.csv"


def _test_items(cfg: DictConfig, task: str, tcfg: DictConfig) -> tuple[list[dict], str]:
    """The task's fixed test mixtures (every ``max_clips``-th subset of the clips when set, the same clips at every
    SNR) and their SHA-256 (audio and targets)."""
    import hashlib

    from edm_se.tasks.data import make_task_test_set

    target = str(tcfg.get("target", "label"))
    items = make_task_test_set(_manifest(cfg, task, tcfg), cfg.test_noise, snrs_db=list(cfg.snrs_db),
                               split=str(cfg.get("test_split", "test")), target=target, segment_seconds=None,
                               max_clips=tcfg.get("max_clips"))
    h = hashlib.sha256()
    for it in items:
        h.update(it["noisy"].numpy().tobytes())
        h.update(str(it.get(target)).encode())
    return items, h.hexdigest()


def _check_held_out(cfg: DictConfig, task: str, tcfg: DictConfig, items: list[dict], out: Path) -> dict:
    """The task's test mixtures against what its cells train on (:mod:`edm_se.heldout`): the task's training data
    (its training config's ``data.train``: the task manifest's train clips and the noise) and the enhancer the joint
    cells start from and the cold cascades use (``enhancer_checkpoint``; the bundled model's own training files).
    Written to ``out/held_out.json``; returns its report.

    Raises:
        edm_se.heldout.HeldOutError: shared audio and ``heldout_check=refuse`` (before any cell trains).
    """
    from edm_se.atomic import atomic_write_json
    from edm_se.heldout import check_pairs, enforce
    from edm_se.model import default_checkpoint_path
    from edm_se.trained_on import checkpoint_training_data, merged, training_data

    mode = str(cfg.get("heldout_check") or "refuse")
    if mode == "off":
        return {"status": "off", "reason": "heldout_check=off"}
    parts = [training_data(_compose_train(_cell_overrides(name, cfg, tcfg)), f"task {task}")
             for name in tcfg.cells]  # each cell's data (the same for most)
    parts.append(checkpoint_training_data(Path(str(cfg.enhancer_checkpoint)) if cfg.get("enhancer_checkpoint")
                                          else default_checkpoint_path()))
    data = merged(f"the {task} cells", parts)
    pairs = [(f"{i:04d}_{it['name'].replace('/', '_')}", it["clean"], it["noisy"]) for i, it in enumerate(items)]
    report = check_pairs(pairs, f"{task} test mixtures", data, clean_label="clean", progress=False)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "held_out.json", {"format": "edm_se.held_out/1", "mode": mode, **report.as_dict()})
    enforce(report, mode, key=f"tasks.{task}")
    return report.as_dict()


def _tasks(cfg: DictConfig) -> dict[str, DictConfig]:
    from edm_se import validate

    tasks = cfg.get("tasks") or {}
    validate.check(cfg, "tasks", lambda v: v is not None and len(v) > 0, "a non-empty map of task name -> "
                   "{manifest, target, overrides, cells, blackbox}")
    for name, t in tasks.items():
        validate.check(cfg, f"tasks.{name}.target", lambda v: v in ("label", "text"), "label (keywords) or text "
                       "(sentences)")
        validate.check(cfg, f"tasks.{name}.cells", lambda v: v is not None and all(c in cfg.cells for c in v),
                       f"a list of names of `cells` ({', '.join(cfg.cells)})")
        validate.check(cfg, f"tasks.{name}.blackbox", lambda v: v is None or all(r in ("whisper", "sphinx")
                                                                               for r in v),
                       "a list of black-box recognisers (whisper, sphinx)")
        if t.get("blackbox") and t.target != "text":
            raise validate.ConfigError(f"tasks.{name}.blackbox={list(t.blackbox)}: black-box WER needs transcripts "
                                       "(target=text)")
    return dict(tasks)


def run_study(cfg: DictConfig) -> dict:
    """Train every cell of every task, score every row, write the tables and figures; returns the summary dict.

    With ``seeds`` (extra training seeds; a task's own ``seeds`` replaces them for that task), every cell of the task
    is trained and scored again once per seed in
    ``out_dir/<task>/seed<k>/`` (the same test set; no NFE curve), and ``results.md`` / ``seeds.csv`` /
    ``summary.json`` gain each row's all-SNR value per seed with the mean and 95% t-interval over the seeds."""
    from edm_se.atomic import atomic_write_json, atomic_write_text
    from edm_se.heldout import record_line
    from edm_se.provenance import run_info
    from edm_se.tasks.data import read_task_manifest
    from edm_se.tasks.paired import paired_markdown, paired_plots, paired_table, write_paired_csv
    from edm_se.tasks.report import markdown, seed_markdown, seed_table, write_results, write_seed_csv

    out = Path(cfg.out_dir)
    tasks = _tasks(cfg)
    for task, tcfg in tasks.items():  # a missing or foreign manifest, before any directory (out_dir/<task>/) is made
        read_task_manifest(_manifest(cfg, task, tcfg), split=str(cfg.get("test_split", "test")))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.threads)) if int(cfg.threads) > 0 else None
    rows: list[dict] = []
    all_rows: list[dict] = []  # every seed's rows of every task, with per-file scores and their seed
    nfe: dict[str, list[dict]] = {}
    shas: dict[str, dict] = {}
    any_extra = False
    held: dict[str, dict] = {}
    shared_of: dict[str, dict] = {}
    for task, tcfg in tasks.items():  # every task's test mixtures against its training data, before any cell trains
        items, test_sha = _test_items(cfg, task, tcfg)
        shared_of[task] = {"items": items, "test_sha": test_sha, "waves": {}, "blackbox_dir": out / task / "blackbox"}
        held[task] = _check_held_out(cfg, task, tcfg, items, out / task)
    extra_seeds = {task: _extra_seeds(cfg, tcfg) for task, tcfg in tasks.items()}
    if int(cfg.get("workers") or 1) > 1:  # every cell trained side by side first; the loop below then scores them
        from edm_se.tasks.launcher import cell_jobs, train_cells

        train_cells(cfg, cell_jobs(cfg, tasks, extra_seeds), int(cfg.workers))
    for task, tcfg in tasks.items():
        extra = extra_seeds[task]
        any_extra = any_extra or bool(extra)
        shared = shared_of[task]
        t_rows, t_nfe, sha, n = _run_task(cfg, task, tcfg, out / task, shared)
        rows += t_rows
        all_rows += [{**r, "seed": int(cfg.seed)} for r in t_rows]
        nfe[task] = t_nfe
        shas[task] = {"test_sha256": sha, "n_test": n, "held_out": record_line(held[task], "**NOT held out**: ")}
        for k in extra:
            kcfg = cfg.copy()
            kcfg.seed, kcfg.nfe_curve = k, False
            log.info("task %s: seed %d", task, k)
            k_rows = _run_task(kcfg, task, tcfg, seed_dir(cfg, task, k), shared)[0]
            all_rows += [{**r, "seed": k} for r in k_rows]
    write_results(out, rows, nfe)
    seeds = seed_table([r for r in all_rows if extra_seeds[r["task"]]]) if any_extra else []
    summary = {"rows": [{k: v for k, v in r.items() if k != "per_file"} for r in rows], "nfe": nfe,
               "tests": shas, "config": OmegaConf.to_container(cfg, resolve=True), **run_info()}
    if seeds:
        summary["seeds"] = seeds
        write_seed_csv(out, seeds)
    paired = paired_table(all_rows, [str(a) for a in cfg.get("paired_against") or []])
    if paired:
        summary["paired"] = paired
        write_paired_csv(out, paired)
        paired_plots(out, paired)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "results.md", markdown(rows, nfe, shas) + (seed_markdown(seeds) if seeds else "")
                      + paired_markdown(paired))
    return summary


def seed_dir(cfg: DictConfig, task: str, seed: int) -> Path:
    """Where a task's cells of training seed ``seed`` live: ``out_dir/<task>`` for the study's ``seed``, else
    ``out_dir/<task>/seed<k>``."""
    base = Path(cfg.out_dir) / task
    return base if int(seed) == int(cfg.seed) else base / f"seed{int(seed)}"


def training_order(cfg: DictConfig, tcfg: DictConfig) -> list[str]:
    """A task's cells in training order: those no other cell's task model comes from (:func:`_task_source`) last."""
    return sorted(tcfg.cells, key=lambda n: _task_source(n, cfg, tcfg) is not None)


def _extra_seeds(cfg: DictConfig, tcfg: DictConfig) -> list[int]:
    """A task's extra training seeds: its own ``seeds`` (else the study's), without the study's ``seed``."""
    seeds = tcfg.get("seeds") if tcfg.get("seeds") is not None else cfg.get("seeds")
    return [int(k) for k in dict.fromkeys(seeds or []) if int(k) != int(cfg.seed)]


def _run_task(cfg: DictConfig, task: str, tcfg: DictConfig, out: Path,
              shared: dict | None = None) -> tuple[list[dict], list[dict], str, int]:
    """Train and score one task's cells in ``out``. ``shared`` (filled on the first call, passed again for the
    other training seeds) holds what does not depend on the seed: the test mixtures, the front ends' outputs
    (the peers', the bundled enhancer's) and the black-box recognisers' score directory."""
    from edm_se.enhancers import make_peer, peer_available
    from edm_se.provenance import checkpoint_identity
    from edm_se.tasks.checkpoint import load_task_model
    from edm_se.tasks.evaluate import SCORING_VERSION, enhance_items, evaluate_recogniser, evaluate_task

    out.mkdir(parents=True, exist_ok=True)
    shared = {} if shared is None else shared
    if "items" not in shared:
        shared["items"], shared["test_sha"] = _test_items(cfg, task, tcfg)
        shared["waves"], shared["blackbox_dir"] = {}, out / "blackbox"
    items, test_sha = shared["items"], shared["test_sha"]
    log.info("task %s: %d test mixtures (%s), sha256 %s", task, len(items),
             ", ".join(f"{s:g} dB" for s in cfg.snrs_db), test_sha[:12])
    cells = list(tcfg.cells)
    ckpts: dict[str, Path] = {}
    for name in training_order(cfg, tcfg):
        ckpts[name] = _train_cell(name, cfg, tcfg, out, ckpts)
    rows: list[dict] = []
    waves_of: dict[str, list[np.ndarray]] = shared["waves"]  # front-end identity -> its outputs (this process only)

    def waves(front, fid: dict) -> list[np.ndarray]:
        k = json.dumps(fid, sort_keys=True)
        if k not in waves_of:
            waves_of[k] = enhance_items(items, front)
        return waves_of[k]

    def score(row: str, task_ckpt: Path, front, cache: Path, task_from: str) -> None:
        fid = _front_end_id(front)
        key = {"task": checkpoint_identity(task_ckpt), "front_end": fid, "test_sha256": test_sha,
               "scoring": SCORING_VERSION}

        def compute():
            t0 = time.time()
            res = evaluate_task(load_task_model(task_ckpt), items, waves(front, fid))
            res["seconds"] = round(time.time() - t0, 1)
            return res

        res = _cached_eval(cache, key, compute)
        base = {"task": task, "row": row, "task_model": task_from, "front_end": fid.get("name", "none")}
        rows.append({**base, **res, "provenance": key})
        for rec in tcfg.get("blackbox") or []:  # the same front end's output scored by a frozen recogniser
            bkey = {"recogniser": rec, "front_end": fid, "test_sha256": test_sha}
            digest = _digest(bkey)
            bres = _cached_eval(shared["blackbox_dir"] / f"{rec}_{digest}.json", bkey,
                                lambda rec=rec: evaluate_recogniser(rec, items, waves(front, fid), **(
                                    {"threads": max(int(cfg.threads), 1)} if rec == "whisper" else {})))
            rows.append({**base, "task_model": rec, **bres, "provenance": bkey})

    for name in cells:
        paradigm = str(cfg.cells[name].paradigm)
        front = _front_end_for(name, paradigm, ckpts[name], cfg)
        # d4am's and blackbox_iterative's runs hold the frozen task model they were trained against (the baseline's)
        score(name, ckpts[name], front, out / "cells" / name / "eval.json", name)
    baseline = next((n for n in cells if str(cfg.cells[n].paradigm) == "baseline"), None)
    if baseline is not None:
        base = ckpts[baseline]
        score("clean reference", base, "clean", out / "references_clean.json", baseline)
        for peer in [p for p in (cfg.peers or []) if peer_available(p)]:
            score(f"{peer} + baseline", base, make_peer(peer), out / f"peer_{peer}.json", baseline)
    nfe = _accuracy_vs_nfe(cfg, cells, ckpts, items, test_sha, out) if cfg.nfe_curve else []
    return rows, nfe, test_sha, len(items)


def _digest(obj: dict) -> str:
    """12 hex digits of the SHA-256 of ``obj`` as sorted JSON (a cache file name)."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _accuracy_vs_nfe(cfg, cells, ckpts, items, test_sha, out) -> list[dict]:
    from edm_se.enhancers import DiffusionEnhancer
    from edm_se.model import EnhancementModel
    from edm_se.provenance import checkpoint_identity
    from edm_se.tasks.checkpoint import load_task_model
    from edm_se.tasks.evaluate import SCORING_VERSION, enhance_items, evaluate_task

    name = next((n for n in cells if str(cfg.cells[n].paradigm) == "iterative"), None)
    if name is None:
        return []
    res = []
    for steps in cfg.nfe_steps:
        key = {"task": checkpoint_identity(ckpts[name]), "steps": int(steps), "test_sha256": test_sha,
               "scoring": SCORING_VERSION}

        def compute(steps=steps):
            model = EnhancementModel.from_checkpoint(ckpts[name], device="cpu")
            front = DiffusionEnhancer(model, sampler=model.make_sampler(None, num_steps=int(steps)))
            r = evaluate_task(load_task_model(ckpts[name]), items, enhance_items(items, front))
            nfe = model.enhance(torch.zeros(16000), 16000, num_steps=int(steps)).nfe
            return {**{k: v for k, v in r.items() if k != "per_file"}, "nfe": int(nfe)}

        res.append({"steps": int(steps), **_cached_eval(out / "cells" / name / f"eval_steps{int(steps)}.json", key,
                                                        compute)})
    return res


def main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se study study=paradigms`` (``edm-se paradigms``)."""
    from edm_se import validate

    validate.int_at_least(cfg, ["threads"], 0)
    validate.int_at_least(cfg, ["workers"], 1)
    for key in ["seeds", *[f"tasks.{t}.seeds" for t in (cfg.get("tasks") or {})]]:
        validate.check(cfg, key, lambda v: v is None or all(isinstance(k, int) and k >= 0 for k in v),
                       "a list of training seeds (integers >= 0), e.g. [1,2]")
    validate.check(cfg, "snrs_db", lambda v: len(v) > 0 and all(validate.is_number(x) for x in v),
                   "a non-empty list of SNRs in dB (numbers)")
    # checked before the task data is read: nfe_steps=4 was a TypeError after the study's first hour of training
    validate.peers(cfg)
    from edm_se.enhancers import PEERS

    rows_named = [*(cfg.get("cells") or {}), *(f"{p} + baseline" for p in PEERS), "clean reference"]
    validate.list_of(cfg, "paired_against", lambda n: n in rows_named, "a list of rows to compare every row with ("
                     + ", ".join(rows_named) + "), or []", optional=True, empty_ok=True)
    validate.list_of(cfg, "nfe_steps", lambda n: isinstance(n, int) and not isinstance(n, bool) and n >= 1,
                     "a list of step counts (integers >= 1), e.g. [1,2,4,8]", empty_ok=True)
    validate.check(cfg, "nfe_curve", lambda v: isinstance(v, bool), "true or false")
    validate.int_at_least(cfg, ["eval_num_steps"], 1)
    validate.int_at_least(cfg, ["seed"], 0)
    validate.one_of(cfg, "heldout_check", ("refuse", "warn", "off"))
    summary = run_study(cfg)
    n = ", ".join(f"{t}: {v['n_test']}" for t, v in summary["tests"].items())
    print(f"edm-se paradigms: {len(summary['rows'])} rows scored (test mixtures {n}); "
          f"{Path(cfg.out_dir) / 'results.md'}")

