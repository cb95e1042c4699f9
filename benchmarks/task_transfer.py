"""Does a task model transfer to new voices? Its score on the *clean* clips of every voice of the task corpus, per
split and voice: the training voices (every ``--every``-th clip), the validation voice and the test voices. No noise,
no enhancer: what the task model itself can do, before any paradigm is compared.

- a keyword model (M5; manifest ``keywords``): accuracy (%) with its 95% Wilson interval;
- a speech recogniser (the CTC model; manifest ``sentences``): corpus WER (%) with its 95% bootstrap half-width over
  files (weighted by reference words) and the corpus CER (%), both on text normalised by
  :func:`edm_se.asr.normalise_text`. The CER says how close a model whose WER is near 100% is to the words.

    python benchmarks/task_transfer.py --ckpt runs/kw/checkpoints/last.pt [--task-root data_cache/tasks]
        [--every 10] [--max-per-voice N] [--json out.json]

The checkpoint is a task checkpoint or a task paradigm's training checkpoint (``last.pt``). Output: one line per
split on stdout; ``--json`` writes ``{"checkpoint", "kind", "metric", "config", "splits": {split: {"all" | voice:
{"mean", "ci95", "n"[, "cer"]}}}}``.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

MANIFEST = {"keyword": "keywords", "asr": "sentences"}


def _evenly(rows: list, k: int | None) -> list:
    """At most ``k`` of ``rows``: every ``len(rows) // k``-th from the first (all of them for k None)."""
    return rows if k is None else rows[::max(1, len(rows) // k)][:k]


def score_voices(task, manifest: Path, every: int = 10, max_per_voice: int | None = None) -> dict:
    """Score ``task`` on the clean clips of ``manifest`` per split and voice (see the module docstring): the
    predictions and WER of :func:`edm_se.tasks.evaluate.evaluate_task`, the CER of the CTC model's own metric."""
    import soundfile as sf

    from edm_se.tasks.data import TaskDataError, read_task_manifest
    from edm_se.tasks.evaluate import evaluate_task, wer_summary, wilson_ci95
    from edm_se.tasks.models import TaskTargets

    asr = task.kind == "asr"

    def summary(rows: list[dict]) -> dict:
        if not asr:
            return wilson_ci95(sum(r["correct"] for r in rows), len(rows))
        cer = task.metric([r["prediction"] for r in rows], TaskTargets(texts=[r["target"] for r in rows]))["cer"]
        return {**wer_summary(rows), "cer": cer}

    splits: dict = {}
    for split in ("train", "valid", "test"):
        try:
            rows = read_task_manifest(manifest, split)
        except TaskDataError:  # a corpus without this split (e.g. a test fixture): nothing to score
            continue
        rows = rows[::every] if split == "train" else rows
        by_voice: dict[str, list[dict]] = collections.defaultdict(list)
        for r in rows:
            by_voice[r["voice"]].append(r)
        sel = [r for _, v in sorted(by_voice.items()) for r in _evenly(v, max_per_voice)]
        if not sel:
            continue
        items = [{"name": r["path"], "snr_db": 0.0, **({"text": r["text"]} if asr else {"label": int(r["label"])})}
                 for r in sel]
        waves = [sf.read(manifest.parent / r["path"], dtype="float32")[0] for r in sel]
        scored = evaluate_task(task, items, waves)["per_file"]
        voice_of = {r["path"]: r["voice"] for r in sel}
        per_voice: dict[str, list[dict]] = collections.defaultdict(list)
        for row in scored:
            per_voice[voice_of[row["name"]]].append(row)
        splits[split] = {"all": summary(scored), **{v: summary(per_voice[v]) for v in sorted(per_voice)}}
    return splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="task checkpoint (or a task paradigm run's last.pt)")
    parser.add_argument("--task-root", default="data_cache/tasks", help="out_dir of `edm-se data tasks`")
    parser.add_argument("--every", type=int, default=10, help="score every n-th clip of the training split")
    parser.add_argument("--max-per-voice", type=int, default=None,
                        help="at most N clips per voice and split, every (count // N)-th (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="write the scores here")
    args = parser.parse_args(argv)

    import torch

    from edm_se.atomic import atomic_write_text
    from edm_se.tasks.checkpoint import load_task_model

    torch.set_num_threads(args.threads)
    task = load_task_model(args.ckpt)
    if task.kind not in MANIFEST:
        parser.error(f"--ckpt {args.ckpt}: task model of kind {task.kind!r}; expected one of {sorted(MANIFEST)}")
    manifest = Path(args.task_root) / MANIFEST[task.kind] / "manifest.csv"
    if not manifest.is_file():
        parser.error(f"--task-root {args.task_root}: no {manifest} (run `edm-se data tasks`)")
    splits = score_voices(task, manifest, args.every, args.max_per_voice)
    metric = "wer" if task.kind == "asr" else "accuracy"
    for split, res in splits.items():
        line = "  ".join(f"{v} {s['mean']:.1f} ± {s['ci95']:.1f}%" + (f" CER {s['cer']:.1f}%" if "cer" in s else "")
                         + f" (n={s['n']})" for v, s in res.items())
        print(f"{split:<6} {metric} {line}")
    if args.json:
        out = {"checkpoint": str(args.ckpt), "kind": task.kind, "metric": metric, "config": task.config(),
               "splits": splits}
        atomic_write_text(Path(args.json), json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
