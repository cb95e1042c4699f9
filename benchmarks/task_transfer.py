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
    """Score ``task`` on the clean clips of ``manifest`` per split and voice (see the module docstring)."""
    import jiwer
    import soundfile as sf
    import torch

    from edm_se.asr import normalise_text
    from edm_se.tasks.data import TaskDataError, read_task_manifest
    from edm_se.tasks.evaluate import wer_summary, wilson_ci95

    asr = task.kind == "asr"
    splits: dict = {}
    task.eval()
    for split in ("train", "valid", "test"):
        try:
            rows = read_task_manifest(manifest, split)
        except TaskDataError:  # a corpus without this split (e.g. a test fixture): nothing to score
            continue
        rows = rows[::every] if split == "train" else rows
        by_voice: dict[str, list[dict]] = collections.defaultdict(list)
        for r in rows:
            by_voice[r["voice"]].append(r)
        scored: dict[str, list[dict]] = {}
        with torch.no_grad():
            for voice, sel in sorted(by_voice.items()):
                scored[voice] = []
                for r in _evenly(sel, max_per_voice):
                    wave, _ = sf.read(manifest.parent / r["path"], dtype="float32")
                    pred = task.predict(task(torch.from_numpy(wave)[None]))[0]
                    scored[voice].append({"target": r["text"] if asr else int(r["label"]), "prediction": pred})

        def summary(sel: list[dict]) -> dict:
            if not asr:
                return wilson_ci95(sum(int(s["prediction"] == s["target"]) for s in sel), len(sel))
            from edm_se.asr import word_errors

            rows_ = [{**s, "errors": (e := word_errors(s["target"], s["prediction"])).errors,
                      "words": e.reference_words} for s in sel]
            refs = [normalise_text(s["target"]) for s in sel]
            hyps = [normalise_text(s["prediction"]) for s in sel]
            return {**wer_summary(rows_), "cer": 100.0 * float(jiwer.cer(refs, hyps))}

        every_row = [s for v in scored.values() for s in v]
        if every_row:
            splits[split] = {"all": summary(every_row), **{v: summary(s) for v, s in scored.items()}}
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
