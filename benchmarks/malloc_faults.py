"""Benchmark: what glibc's default allocator costs the network calls, against ``edm_se.tune_malloc()``.

Runs ``--rounds`` rounds of two fresh processes each (mallopt cannot be undone in a process), one with
``EDM_SE_MALLOC=default`` and one with the setting, alternately. Each times one bare denoiser call of the bundled
model on a ``--seconds`` input (median of 15) and one enhancement with Euler at NFE 4 (median of 6), and counts
the minor page faults of each (``getrusage``). Writes JSON with ``--json``.

    python benchmarks/malloc_faults.py [--rounds 4] [--seconds 4] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _env import environment, positive_int  # benchmarks/ (the script's own directory)

_CHILD = r"""
import argparse, json, resource, statistics, sys, time
sys.path.insert(0, {bench!r})
import torch
from _enhance_setup import model_and_input
args = argparse.Namespace(ckpt=None, seconds={seconds}, threads={threads}, device="cpu")
model, wave = model_and_input(args)
y, _ = model.to_spec(wave[None])
x = torch.randn_like(y)
sigma = torch.full((1,), 0.5, dtype=torch.float64)
def timed(f, n):
    f(); f()
    f0, ts = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return statistics.median(ts), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n
with torch.no_grad():
    call, call_faults = timed(lambda: model.parts.denoiser(x, y, sigma), 15)
enh, enh_faults = timed(lambda: model.enhance(wave, model.sample_rate, sampler="euler", num_steps=4), 6)
print(json.dumps({{"malloc_tuned": args.malloc_tuned, "call_ms": call * 1e3, "call_faults": call_faults,
                  "euler4_ms": enh * 1e3, "euler4_faults": enh_faults}}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=positive_int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    code = _CHILD.format(bench=str(Path(__file__).resolve().parent), seconds=args.seconds, threads=args.threads)
    rows = []
    for k in range(args.rounds):
        for malloc in ("default", "tuned"):
            env = {key: v for key, v in os.environ.items() if key != "EDM_SE_MALLOC"}
            if malloc == "default":
                env["EDM_SE_MALLOC"] = "default"
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            row = {"round": k, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"round {k} malloc {'tuned' if row['malloc_tuned'] else 'default':<8} call {row['call_ms']:6.1f} ms "
                  f"({row['call_faults']:7.0f} faults)   Euler NFE 4 {row['euler4_ms']:6.1f} ms "
                  f"({row['euler4_faults']:7.0f} faults)")
    summary = {}
    for tuned in (False, True):
        sel = [r for r in rows if r["malloc_tuned"] == tuned]
        summary["tuned" if tuned else "default"] = {
            key: statistics.median(r[key] for r in sel) for key in ("call_ms", "call_faults", "euler4_ms", "euler4_faults")}
    print("medians:", json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "medians": summary, "seconds": args.seconds,
                                               "threads": args.threads, **environment()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
