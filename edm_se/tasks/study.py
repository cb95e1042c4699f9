"""``edm-se paradigms``: the training paradigms of Milling et al. 2024 (Tables 1-2) side by side, at our scale.

Rows: each paradigm (``cells``, trained with the same task model, data, budget and seed), the pretrained peers as
cold-cascade front ends of the baseline task model (``peers``), and the references (the baseline task model on the
clean and on the noisy test clips). Columns: the keyword accuracy at each test SNR (0-25 dB) and on average, each
with a 95% Wilson interval; the test clips are the test voices (flite slt / awb, Allison's recorded digits), never
trained on, mixed with the corpus's test noise.

Every cell trains in ``out_dir/cells/<name>/`` with ``resume=true`` (interrupt at any time; a changed training
configuration is refused by the trainer) and is scored once per checkpoint and test set (``eval.json`` records
both hashes; a different checkpoint or test set is re-scored). ``results.csv`` (tidy: row x SNR), ``results.md``
and the figures ``accuracy_vs_snr.{png,pdf}`` and ``accuracy_vs_nfe.{png,pdf}`` (the iterative enhancer with 1-8
Euler steps) are rewritten at the end.

Which enhancer sits in front of which task model at test time:

====================  ===============================================================
baseline, data_aug.   none (the noisy input)
cold_cascade(_da)     the front end (default: the bundled diffusion model, NFE 1)
multi_task,           the cell's own fine-tuned enhancer (EMA weights, its default sampler) in front of its own
iterative, d4am       task model (D4AM's is the frozen baseline task model it was trained against)
peers                 DFN3 / RNNoise in front of the baseline task model
====================  ===============================================================
"""

from __future__ import annotations

import csv
import io
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
TASK_TRAINED = {"d4am": "baseline"}


def _compose_train(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from edm_se.cli import conf_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose(config_name="train", overrides=list(overrides))


def _train_cell(name: str, cfg: DictConfig, out: Path, deps: dict[str, Path]) -> Path:
    """Train (or resume, or skip when finished) one paradigm cell; returns its checkpoint."""
    from edm_se import validate
    from edm_se.checkpoint import load_checkpoint
    from edm_se.train import train

    run_dir = out / "cells" / name
    paradigm = str(cfg.cells[name].paradigm)
    overrides = [*cfg.train_overrides, f"paradigm={paradigm}", f"run_dir={run_dir}", "resume=true",
                 f"seed={int(cfg.seed)}", *cfg.cells[name].get("overrides", [])]
    dep = TASK_TRAINED.get(paradigm)
    if dep is not None:
        overrides.append(f"paradigm.task_checkpoint={deps[dep]}")
    if cfg.cells[name].get("enhancer_checkpoint", True) and paradigm in ("multi_task", "iterative", "d4am"):
        from edm_se.model import default_checkpoint_path

        overrides.append(f"paradigm.enhancer_checkpoint={cfg.enhancer_checkpoint or default_checkpoint_path()}")
    train_cfg = _compose_train(overrides)
    validate.train_config(train_cfg)
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists() and int(load_checkpoint(last)["step"]) >= int(train_cfg.trainer.max_steps):
        log.info("cell %s: trained (%s)", name, last)
        return last
    t0 = time.time()
    log.info("cell %s: training paradigm=%s for %d steps", name, paradigm, int(train_cfg.trainer.max_steps))
    train(train_cfg)
    (run_dir / "train_seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
    return last


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


def _cached_eval(path: Path, key: dict, compute) -> dict:
    from edm_se.atomic import atomic_write_json

    if path.exists():
        old = json.loads(path.read_text())
        if old.get("key") == key:
            return old["result"]
    result = compute()
    atomic_write_json(path, {"key": key, "result": result})
    return result


def _test_items(cfg: DictConfig) -> tuple[list[dict], str]:
    import hashlib

    from edm_se.tasks.data import make_task_test_set

    items = make_task_test_set(Path(cfg.task_root) / "keywords" / "manifest.csv", cfg.test_noise,
                               snrs_db=list(cfg.snrs_db), split=str(cfg.get("test_split", "test")),
                               segment_seconds=None)
    h = hashlib.sha256()
    for it in items:
        h.update(it["noisy"].numpy().tobytes())
        h.update(str(it["label"]).encode())
    return items, h.hexdigest()


def run_study(cfg: DictConfig) -> dict:
    """Train every cell, score every row, write the tables and figures; returns the summary dict."""
    from edm_se.atomic import atomic_write_text
    from edm_se.enhancers import make_peer, peer_available
    from edm_se.provenance import checkpoint_identity, run_info
    from edm_se.tasks.checkpoint import load_task_model
    from edm_se.tasks.evaluate import enhance_items, evaluate_task

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.threads)) if int(cfg.threads) > 0 else None
    items, test_sha = _test_items(cfg)
    log.info("test set: %d mixtures (%s), sha256 %s", len(items), ", ".join(f"{s:g} dB" for s in cfg.snrs_db),
             test_sha[:12])
    ckpts: dict[str, Path] = {}
    order = sorted(cfg.cells, key=lambda n: TASK_TRAINED.get(str(cfg.cells[n].paradigm)) is not None)
    for name in order:
        ckpts[name] = _train_cell(name, cfg, out, {str(cfg.cells[n].paradigm): ckpts[n] for n in ckpts})
    rows: list[dict] = []

    def score(row: str, task_ckpt: Path, front, front_id: dict, cache: Path, task_from: str) -> None:
        key = {"task": checkpoint_identity(task_ckpt), "front_end": front_id, "test_sha256": test_sha}

        def compute():
            task = load_task_model(task_ckpt)
            t0 = time.time()
            waves = enhance_items(items, front)
            res = evaluate_task(task, items, waves)
            res["seconds"] = round(time.time() - t0, 1)
            return res

        res = _cached_eval(cache, key, compute)
        rows.append({"row": row, "task_model": task_from, "front_end": front_id.get("name", "none"), **res,
                     "provenance": key})

    baseline = next((n for n in cfg.cells if str(cfg.cells[n].paradigm) == "baseline"), None)
    for name in cfg.cells:
        paradigm = str(cfg.cells[name].paradigm)
        front = _front_end_for(name, paradigm, ckpts[name], cfg)
        front_id = ({"name": "none"} if front is None else
                    {"name": getattr(front, "name", type(front).__name__),
                     **({"checkpoint": checkpoint_identity(Path(front.model.info["path"])),
                         "sampler": repr(front.sampler)} if hasattr(front, "model") else {})})
        # d4am's run holds the frozen task model it was trained against (loaded from the baseline cell)
        score(name, ckpts[name], front, front_id, out / "cells" / name / "eval.json", name)
    if baseline is not None:
        base = ckpts[baseline]
        score("clean reference", base, "clean", {"name": "clean"}, out / "references_clean.json", baseline)
        for peer in [p for p in (cfg.peers or []) if peer_available(p)]:
            score(f"{peer} + baseline", base, make_peer(peer), {"name": peer}, out / f"peer_{peer}.json", baseline)
    nfe = _accuracy_vs_nfe(cfg, ckpts, items, test_sha, out) if cfg.nfe_curve else []
    _write_results(out, rows, nfe, cfg)
    summary = {"rows": [{k: v for k, v in r.items() if k != "per_file"} for r in rows], "nfe": nfe,
               "test_sha256": test_sha, "n_test": len(items), "config": OmegaConf.to_container(cfg, resolve=True),
               **run_info()}
    from edm_se.atomic import atomic_write_json

    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "results.md", _markdown(rows, nfe, cfg, test_sha))
    return summary


def _accuracy_vs_nfe(cfg, ckpts, items, test_sha, out) -> list[dict]:
    from edm_se.enhancers import DiffusionEnhancer
    from edm_se.model import EnhancementModel
    from edm_se.provenance import checkpoint_identity
    from edm_se.tasks.checkpoint import load_task_model
    from edm_se.tasks.evaluate import enhance_items, evaluate_task

    name = next((n for n in cfg.cells if str(cfg.cells[n].paradigm) == "iterative"), None)
    if name is None:
        return []
    res = []
    for steps in cfg.nfe_steps:
        key = {"task": checkpoint_identity(ckpts[name]), "steps": int(steps), "test_sha256": test_sha}

        def compute(steps=steps):
            model = EnhancementModel.from_checkpoint(ckpts[name], device="cpu")
            front = DiffusionEnhancer(model, sampler=model.make_sampler(None, num_steps=int(steps)))
            r = evaluate_task(load_task_model(ckpts[name]), items, enhance_items(items, front))
            nfe = model.enhance(torch.zeros(16000), 16000, num_steps=int(steps)).nfe
            return {**{k: v for k, v in r.items() if k != "per_file"}, "nfe": int(nfe)}

        res.append({"steps": int(steps), **_cached_eval(out / "cells" / name / f"eval_steps{int(steps)}.json", key,
                                                        compute)})
    return res


def _write_results(out: Path, rows: list[dict], nfe: list[dict], cfg) -> None:
    from edm_se.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "task_model", "front_end", "snr_db", "metric", "mean", "ci95", "n"])
    for r in rows:
        for snr, v in [*r["per_snr"].items(), ("all", r["overall"])]:
            w.writerow([r["row"], r["task_model"], r["front_end"], snr, r["metric"], f"{v['mean']:.4g}",
                        f"{v['ci95']:.4g}", v["n"]])
    atomic_write_text(out / "results.csv", buf.getvalue())
    try:
        _plots(out, rows, nfe)
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        log.warning("matplotlib missing: no figures")


def _plots(out: Path, rows: list[dict], nfe: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        snrs = [float(s) for s in r["per_snr"]]
        mean = np.array([v["mean"] for v in r["per_snr"].values()])
        ci = np.array([v["ci95"] for v in r["per_snr"].values()])
        style = ":" if r["row"] == "clean reference" else "-." if "+" in r["row"] else "-"
        line, = ax.plot(snrs, mean, style, marker="o", ms=3, label=r["row"])
        ax.fill_between(snrs, mean - ci, mean + ci, color=line.get_color(), alpha=0.08)
    ax.set_xlabel("test SNR (dB)")
    ax.set_ylabel("keyword accuracy (%), higher is better")
    ax.set_title("paradigms: keyword accuracy vs SNR (95% Wilson bands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"accuracy_vs_snr.{ext}", dpi=130)
    plt.close(fig)
    if nfe:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = [p["nfe"] for p in nfe]
        ys = np.array([p["overall"]["mean"] for p in nfe])
        cis = np.array([p["overall"]["ci95"] for p in nfe])
        ax.errorbar(xs, ys, yerr=cis, marker="o", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFE (the iterative enhancer's default sampler)")
        ax.set_ylabel("keyword accuracy (%)")
        ax.set_title("iterative: accuracy vs NFE (all SNRs)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            fig.savefig(out / f"accuracy_vs_nfe.{ext}", dpi=130)
        plt.close(fig)


def _markdown(rows: list[dict], nfe: list[dict], cfg, test_sha: str) -> str:
    snrs = list(rows[0]["per_snr"]) if rows else []
    head = "| row | front end | " + " | ".join(f"{s} dB" for s in snrs) + " | all |"
    lines = [f"# paradigms: keyword accuracy (%) +- 95% Wilson half-width, test set sha256 {test_sha[:12]}", "",
             head, "|" + "---|" * (len(snrs) + 3)]
    for r in rows:
        cells = [f"{v['mean']:.1f} ± {v['ci95']:.1f}" for v in r["per_snr"].values()]
        lines.append(f"| {r['row']} | {r['front_end']} | " + " | ".join(cells) +
                     f" | **{r['overall']['mean']:.1f} ± {r['overall']['ci95']:.1f}** |")
    if nfe:
        lines += ["", "iterative enhancer, accuracy vs NFE (all SNRs):", "", "| steps | NFE | accuracy |",
                  "|---|---|---|"]
        lines += [f"| {p['steps']} | {p['nfe']} | {p['overall']['mean']:.1f} ± {p['overall']['ci95']:.1f} |"
                  for p in nfe]
    return "\n".join(lines) + "\n"


def main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se paradigms``."""
    from edm_se import validate

    validate.int_at_least(cfg, ["threads"], 0)
    validate.check(cfg, "snrs_db", lambda v: len(v) > 0, "a non-empty list of SNRs in dB")
    summary = run_study(cfg)
    print(f"edm-se paradigms: {len(summary['rows'])} rows scored on {summary['n_test']} test mixtures; "
          f"{Path(cfg.out_dir) / 'results.md'}")

