"""Does a keyword model transfer to new voices? Accuracy of a trained M5 (a task checkpoint, or a task paradigm's
training checkpoint) on the *clean* clips of every voice of the task corpus, per split and voice: the training
voices (every ``--every``-th clip), the validation voice and the test voices. No noise, no enhancer: what the task
model itself can do, before any paradigm is compared.

    python benchmarks/task_transfer.py --ckpt runs/kw/checkpoints/last.pt [--task-root data_cache/tasks]
        [--every 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="task checkpoint (or a task paradigm run's last.pt)")
    parser.add_argument("--task-root", default="data_cache/tasks", help="out_dir of `edm-se data tasks`")
    parser.add_argument("--every", type=int, default=10, help="score every n-th clip of the training split")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import numpy as np
    import soundfile as sf
    import torch

    from edm_se.tasks.checkpoint import load_task_model
    from edm_se.tasks.data import read_task_manifest
    from edm_se.tasks.evaluate import wilson_ci95

    task = load_task_model(args.ckpt)
    manifest = Path(args.task_root) / "keywords" / "manifest.csv"
    out: dict = {"checkpoint": str(args.ckpt), "config": task.config(), "splits": {}}
    for split in ("train", "valid", "test"):
        rows = read_task_manifest(manifest, split)
        rows = rows[::args.every] if split == "train" else rows
        correct: dict[str, list[int]] = collections.defaultdict(list)
        with torch.no_grad():
            for r in rows:
                wave, _ = sf.read(manifest.parent / r["path"], dtype="float32")
                pred = task.predict(task(torch.from_numpy(wave)[None]))[0]
                correct[r["voice"]].append(int(pred == r["label"]))
        every = [c for v in correct.values() for c in v]
        out["splits"][split] = {"all": wilson_ci95(sum(every), len(every)),
                                **{v: wilson_ci95(sum(c), len(c)) for v, c in sorted(correct.items())}}
        line = "  ".join(f"{v} {s['mean']:.1f} ± {s['ci95']:.1f}% (n={s['n']})" for v, s in out["splits"][split].items())
        print(f"{split:<6} {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
