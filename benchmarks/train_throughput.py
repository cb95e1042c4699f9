"""Benchmark: training throughput (steps/s) and peak memory per backbone, through the real trainer step (data
loading, STFT, preconditioned denoiser, loss, backward, AdamW, EMA) of ``edm-se train +experiment=cpu_demo``.

Each configuration runs in its own process (so its peak memory is its own: ``ru_maxrss`` of that process on CPU,
``torch.cuda.max_memory_allocated`` on CUDA), warms up for ``--warmup`` steps, then times ``--steps`` steps.
``--amp`` (bf16 autocast) and ``--compile`` (``torch.compile`` of the backbone) are meant for a GPU.

    python benchmarks/train_throughput.py [--nets small ncsnpp_m] [--steps 10] [--batch 8] [--threads 2]
        [--device cpu] [--amp] [--compile] [--timeout S] [--json out.json]

A backbone whose run fails or passes ``--timeout`` is recorded in the JSON with its ``error`` and the others still
run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _env import environment, positive_int  # benchmarks/ (the script's own directory)

REPO = Path(__file__).resolve().parents[1]


def _error_line(text: str) -> str:
    """The line of a child's stderr that names its error: the last one mentioning an Error or Exception, else the
    last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    named = [ln for ln in lines if "Error" in ln or "Exception" in ln]
    return (named or lines or ["failed"])[-1][:300]


def child(net: str, steps: int, warmup: int, batch: int, threads: int, device: str, amp: bool,
          compile_net: bool, data: str) -> dict:
    import resource
    import tempfile

    import torch
    from hydra import compose, initialize_config_dir

    from edm_se.cli import conf_dir
    from edm_se.runtime import tune_malloc
    from edm_se.train import Trainer, instantiate_data

    malloc_tuned = tune_malloc()  # as `edm-se train` does (EDM_SE_MALLOC=default: glibc's default allocator)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose(config_name="train", overrides=[
            "+experiment=cpu_demo", f"net={net}", f"data={data}", f"trainer.batch_size={batch}",
            "trainer.num_workers=1", f"trainer.amp={str(amp).lower()}", f"device={device}", f"run_dir={tmp}",
            "trainer.tensorboard=false", "trainer.progress=false", "trainer.val_every=0"])
        tr = Trainer(cfg)
        if compile_net:
            tr.denoiser.net = torch.compile(tr.denoiser.net)
        tr._train_set = instantiate_data(cfg.data.train)
        batches = tr._loader()
        sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
        for k in range(warmup):
            tr.paradigm.step(next(batches), torch.Generator(device=tr.device).manual_seed(k))
        sync()
        if tr.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for k in range(steps):
            tr.paradigm.step(next(batches), torch.Generator(device=tr.device).manual_seed(warmup + k))
        sync()
        seconds = time.perf_counter() - t0
        peak = (torch.cuda.max_memory_allocated() / 2**20 if tr.device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return {"malloc_tuned": malloc_tuned, "net": net,
                "parameters": sum(p.numel() for p in tr.denoiser.parameters()), "batch": batch,
                "segment_seconds": float(cfg.data.train.segment_seconds), "steps": steps,
                "steps_per_s": steps / seconds, "seconds_per_step": seconds / steps, "peak_memory_mib": peak,
                "peak_memory_kind": "cuda max_memory_allocated" if tr.device.type == "cuda" else "process max RSS",
                "device": str(tr.device), "threads": threads, "amp": amp, "compile": compile_net}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=["small", "ncsnpp_m"])
    parser.add_argument("--steps", type=positive_int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="builtin", help="data config (builtin: no corpus build needed)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument("--timeout", type=float, default=None, help="seconds one backbone's run may take "
                        "(a run past it is recorded as failed and the next backbone runs)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.warmup, args.batch, args.threads, args.device,
                               args.amp, args.compile, args.data)))
        return 0
    rows, failed = [], False
    for net in args.nets:
        cmd = [sys.executable, __file__, "--child", net, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch", str(args.batch), "--threads", str(args.threads), "--device", args.device,
               "--data", args.data, *(["--amp"] if args.amp else []), *(["--compile"] if args.compile else [])]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            res = None
        if res is None or res.returncode != 0:  # the other backbones still run; the JSON records the failure
            why = f"timed out after {args.timeout} s" if res is None else res.stderr.strip()[-2000:]
            print(f"{net}: failed: {why}", file=sys.stderr)
            rows.append({"net": net, "device": args.device, "amp": args.amp, "compile": args.compile,
                         "error": _error_line(why)})
            failed = True
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{net:<10} {row['parameters'] / 1e6:7.2f} M params  {row['steps_per_s']:7.3f} steps/s  "
              f"peak {row['peak_memory_mib']:8.0f} MiB ({row['peak_memory_kind']})  batch {row['batch']} x "
              f"{row['segment_seconds']} s  device={row['device']} threads={row['threads']} amp={row['amp']} "
              f"compile={row['compile']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, **environment()}, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
