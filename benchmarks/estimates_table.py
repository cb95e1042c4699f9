"""What each network call of one sampling run buys and costs: the clean estimate after every call, scored.

Runs ``edm-se enhance ... estimates=true`` (one run of the sampler per file; the clean estimate ``y + D`` after
every network call, :attr:`edm_se.model.EnhanceResult.estimates`) on a paired test set (default: the built-in
real-audio test set, 25 held-out mixtures at 0-20 dB), scores every call's estimates with ``edm-se evaluate``
(PESQ-WB, ESTOI, SI-SDR, paired against the noisy input) and writes a Markdown table and JSON: per call, its noise
level sigma, the mean sampling time up to it, each metric's mean ± 95% CI and the paired improvement over the
noisy input, and a figure of each metric against the call (``estimates.png``). The last call's estimate is the run's output. Unlike the ``steps`` study (one run per step count),
every row here comes from the same run: what stopping it after call k would give.

The work directory keeps the audio (resumable: a re-run skips what is done); the JSON records the checkpoint and
test-set SHA-256 and the commit.

    python benchmarks/estimates_table.py [--ckpt PATH] [--test-set DIR] [--sampler edm_heun] [--num-steps 8]
        [--work studies/runs/estimates] [--out studies/results/estimates] [--threads 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from _env import environment  # benchmarks/ (the script's own directory)

METRICS = ("pesq", "estoi", "si_sdr")


def main(argv: list[str] | None = None) -> int:
    # torch here, not at the top: a spawned scoring worker re-runs the script's top level, and a
    # worker without torch starts about 3 s sooner on 2 cores (tests/test_metrics.py)
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--test-set", default=None, help="dir with clean/ noisy/ (default: the built-in test set)")
    parser.add_argument("--sampler", default="edm_heun", help="a conf/sampler name")
    parser.add_argument("--num-steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="scoring worker processes (1: score in-process)")
    parser.add_argument("--work", default="studies/runs/estimates", help="where the audio goes (resumable)")
    parser.add_argument("--out", default="studies/results/estimates", help="where table.md and table.json go")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import pandas as pd

    from edm_se.atomic import atomic_write_json, atomic_write_text
    from edm_se.enhance import enhance_files, list_inputs
    from edm_se.evaluate import evaluate_dirs
    from edm_se.metrics import mean_ci95
    from edm_se.model import EnhancementModel, default_checkpoint_path
    from edm_se.provenance import checkpoint_identity, run_info
    from edm_se.testset import load_test_set

    test = load_test_set(args.test_set)
    model = EnhancementModel.from_checkpoint(args.ckpt, device="cpu")
    run_dir = Path(args.work) / f"{args.sampler}_{args.num_steps}"
    root, files = list_inputs(test.root / "noisy")
    start = time.perf_counter()
    stats = enhance_files(model, files, root, run_dir, sampler=args.sampler, num_steps=args.num_steps,
                          seed=args.seed, progress=True, estimates=True)
    steps = pd.read_csv(run_dir / "estimates" / "steps.csv")
    # the noisy input is scored once (not once per call); each call's paired improvement is the mean (95% CI) of
    # the per-file differences to it, as `edm-se evaluate noisy=...` computes it, from the per-file scores of
    # metrics.csv (6 significant digits: the improvements move by up to 2e-5, below the 3 decimals printed)
    noisy = evaluate_dirs(test.root / "noisy", test.root / "clean", output_dir=run_dir / "scores" / "noisy",
                          metrics=METRICS, progress=False, num_workers=args.workers)
    noisy_files = pd.read_csv(run_dir / "scores" / "noisy" / "metrics.csv").set_index("name")
    rows = []
    for nfe, group in steps.groupby("nfe"):
        est_dir = run_dir / "estimates" / f"nfe{int(nfe):03d}"
        summary = evaluate_dirs(est_dir, test.root / "clean", output_dir=run_dir / "scores" / est_dir.name,
                                metrics=METRICS, progress=False, num_workers=args.workers)
        per_file = pd.read_csv(run_dir / "scores" / est_dir.name / "metrics.csv").set_index("name")
        delta = {m: mean_ci95((per_file[m] - noisy_files[m].loc[per_file.index]).to_numpy()) for m in METRICS}
        rows.append({"nfe": int(nfe), "sigma": float(group["sigma"].iloc[0]),
                     "seconds_mean": float(group["seconds"].mean()), "scores": summary["scores"],
                     "delta": delta, "noisy": noisy["scores"]})
        print(f"NFE {int(nfe)}: " + "  ".join(f"{m} {summary['scores'][m]['mean']:.3f}" for m in METRICS),
              flush=True)
    record = {"sampler": args.sampler, "num_steps": args.num_steps, "seed": args.seed,
              "nfe": int(steps["nfe"].max()), "files_enhanced_now": stats["files"] - stats["skipped"],
              "checkpoint": checkpoint_identity(args.ckpt or default_checkpoint_path()),
              "test_set": test.identity(), "environment": environment(), "run": run_info(),
              "threads": args.threads, "wall_seconds": time.perf_counter() - start, "rows": rows}
    out = Path(args.out)
    atomic_write_json(out / "table.json", record, indent=1)
    atomic_write_text(out / "table.md", _markdown(record))
    _figure(record, out / "estimates.png")
    print(_markdown(record))
    return 0


def _figure(record: dict, path: Path) -> None:
    """One panel per metric: the mean (95% CI band) of the estimate after each call, and the noisy input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from edm_se.atomic import atomic_path
    from edm_se.plots import METRIC_LABELS

    rows = record["rows"]
    nfe = np.array([r["nfe"] for r in rows])
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.3 * len(METRICS), 3.5), layout="constrained")
    for ax, m in zip(axes, METRICS):
        mean = np.array([r["scores"][m]["mean"] for r in rows])
        ci = np.array([r["scores"][m]["ci95"] for r in rows])
        ax.plot(nfe, mean, marker="o", ms=3.5, label=f"estimate after call k ({record['sampler']})")
        ax.fill_between(nfe, mean - ci, mean + ci, alpha=0.15, lw=0)
        ax.axhline(rows[0]["noisy"][m]["mean"], color="0.3", ls="--", lw=1.2, label="noisy input")
        ax.set_xlabel("network call k of one run")
        ax.set_ylabel(METRIC_LABELS.get(m, m))
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(f"One {record['sampler']} run of {record['num_steps']} steps (NFE {record['nfe']}): the clean "
                 f"estimate after each call (mean ± 95% CI over {record['test_set']['n']} files)", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)


def _markdown(record: dict) -> str:
    def cell(stat: dict, signed: bool = False) -> str:
        return f"{stat['mean']:+.3f} ± {stat['ci95']:.3f}" if signed else f"{stat['mean']:.3f} ± {stat['ci95']:.3f}"

    noisy = record["rows"][0]["noisy"]
    lines = [f"`{record['sampler']}`, {record['num_steps']} steps (NFE {record['nfe']}), one run per file, "
             f"checkpoint {record['checkpoint']['sha256'][:12]}, test set {record['test_set']['sha256'][:12]} "
             f"({record['test_set']['n']} files). Mean ± 95% CI; Δ: paired improvement over the noisy input.", "",
             "| after call | sigma | sampling s (mean) | PESQ | ESTOI | SI-SDR (dB) | Δ PESQ | Δ ESTOI | Δ SI-SDR |",
             "|---|---|---|---|---|---|---|---|---|",
             "| noisy input | | | " + " | ".join(cell(noisy[m]) for m in METRICS) + " | | | |"]
    for r in record["rows"]:
        lines.append(f"| {r['nfe']} | {r['sigma']:.3g} | {r['seconds_mean']:.3f} | "
                     + " | ".join(cell(r["scores"][m]) for m in METRICS) + " | "
                     + " | ".join(cell(r["delta"][m], signed=True) for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
