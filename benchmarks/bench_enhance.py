"""Benchmark: what each sampling step costs. Measures wall time, NFE and real-time factor of `EnhancementModel`
for several samplers and step counts on one real test utterance, and prints a table (and optionally a CSV).

    python benchmarks/bench_enhance.py [--ckpt PATH | --net NAME] [--compile] [--seconds 4] [--repeats 3]
        [--threads 2] [--csv out.csv]

The warm-up call's time is printed: with ``--compile`` it includes compiling the backbone for the input's shape
(``TORCHINDUCTOR_FORCE_DISABLE_CACHES=1`` keeps inductor's on-disk cache from shortening it).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time

from _enhance_setup import add_model_args, model_and_input  # benchmarks/ (the script's own directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, repeats=3)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    model, wave = model_and_input(args)
    grid = [("edm_heun", s) for s in (1, 2, 4, 8, 16)] + [("euler", s) for s in (1, 4, 16)] + [("pc", s) for s in (4, 30)]
    rows = []
    t0 = time.perf_counter()
    model.enhance(wave, model.sample_rate, sampler="euler", num_steps=1)  # warm-up (compiles with --compile)
    warmup = time.perf_counter() - t0
    diff = ""
    if args.compile:  # how far the compiled backbone moves the output (EDM Heun, NFE 7, same seed)
        den = model.parts.denoiser
        compiled = model.enhance(wave, model.sample_rate, sampler="edm_heun", num_steps=4).waveform
        den.net, kept = den.net._orig_mod, den.net
        eager = model.enhance(wave, model.sample_rate, sampler="edm_heun", num_steps=4).waveform
        den.net = kept
        diff = (f"  compiled vs eager output (EDM Heun NFE 7): max |diff| {float((compiled - eager).abs().max()):.1e}"
                f" of peak {float(eager.abs().max()):.2f}")
    for name, steps in grid:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = model.enhance(wave, model.sample_rate, sampler=name, num_steps=steps)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append({"sampler": name, "num_steps": steps, "nfe": res.nfe, "seconds": round(med, 4),
                     "seconds_per_nfe": round(med / res.nfe, 4), "rtf": round(med / args.seconds, 4)})
    print(f"device={args.device} threads={args.threads} input={args.seconds:.1f} s  net params="
          f"{sum(p.numel() for p in model.parts.net.parameters()) / 1e6:.3f}M  compile={args.compile}  "
          f"warm-up call {warmup:.2f} s{diff}")
    print(f"{'sampler':<10}{'steps':>6}{'NFE':>5}{'seconds':>10}{'s/NFE':>8}{'RTF':>8}")
    for r in rows:
        print(f"{r['sampler']:<10}{r['num_steps']:>6}{r['nfe']:>5}{r['seconds']:>10.3f}{r['seconds_per_nfe']:>8.3f}"
              f"{r['rtf']:>8.3f}")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
