"""Benchmark: what a sampler costs beyond its network calls. For each sampler and NFE n, the wall time of
``EnhancementModel.enhance`` divided by ``n x`` the time of one bare denoiser call on the same input (the padded
compressed STFT of one real test utterance, repeated to ``--seconds``): 1.0 means the sampler adds nothing; the
excess at NFE 1 is the fixed cost (STFT, normalisation, float64 state, inverse STFT), reported in ms too.

Timings are medians of ``--repeats`` runs, interleaved over the grid (every repeat walks the whole grid, so a
slower moment of a shared machine hits every point alike). Writes JSON with ``--json``.

    python benchmarks/sampler_overhead.py [--ckpt PATH] [--seconds 4] [--repeats 5] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from _enhance_setup import add_model_args, model_and_input  # benchmarks/ (the script's own directory)

# (sampler, num_steps) per target NFE n in {1, 4, 16, 60}: Euler, Posterior and PC without correctors make N calls,
# EDM Heun 2N - 1 (the nearest odd NFE), PC with one corrector 2N.
GRID = {
    "euler": {1: 1, 4: 4, 16: 16, 60: 60},
    "posterior": {1: 1, 4: 4, 16: 16, 60: 60},
    "edm_heun": {1: 1, 4: 2, 16: 8, 60: 30},
    "edm_heun_churn": {1: 1, 4: 2, 16: 8, 60: 30},
    "pc": {4: 2, 16: 8, 60: 30},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, repeats=5)
    parser.add_argument("--nfe", type=int, nargs="+", default=[1, 4, 16, 60], help="target NFEs (of 1 4 16 60)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from edm_se.model import peak_normalize

    model, wave = model_and_input(args)
    dev = torch.device(args.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    y, _ = model.to_spec(peak_normalize(wave[None].to(dev))[0])
    sigma = torch.full((1,), float(model.parts.sde.sigma(torch.tensor(0.5, dtype=torch.float64))),
                       dtype=torch.float64)
    x_tilde = torch.randn_like(y)

    @torch.no_grad()
    def one_call() -> float:
        t0 = time.perf_counter()
        model.parts.denoiser(x_tilde, y, sigma)
        sync()
        return time.perf_counter() - t0

    points = [(s, target, steps) for s, grid in GRID.items() for target, steps in grid.items() if target in args.nfe]
    calls: list[float] = []
    times: dict[tuple[str, int], list[float]] = {(s, k): [] for s, _, k in points}
    nfes: dict[tuple[str, int], int] = {}
    one_call(), model.enhance(wave, model.sample_rate, sampler="euler", num_steps=1)  # warm-up
    for _ in range(args.repeats):
        calls += [one_call() for _ in range(3)]
        for s, _, steps in points:
            res = model.enhance(wave, model.sample_rate, sampler=s, num_steps=steps)
            sync()
            times[(s, steps)].append(res.seconds)
            nfes[(s, steps)] = int(res.nfe)
    call = statistics.median(calls)
    rows = []
    for s, target, steps in points:
        wall = statistics.median(times[(s, steps)])
        nfe = nfes[(s, steps)]
        rows.append({"sampler": s, "num_steps": steps, "nfe": nfe, "seconds": wall,
                     "overhead_ratio": wall / (nfe * call), "fixed_ms": 1e3 * (wall - nfe * call)})
    result = {"device": args.device, "threads": args.threads, "input_seconds": args.seconds,
              "spec_shape": list(y.shape), "repeats": args.repeats, "denoiser_call_seconds": call,
              "net_parameters": sum(p.numel() for p in model.parts.net.parameters()), "rows": rows,
              "torch": torch.__version__, "python": platform.python_version(),
              "machine": platform.processor() or platform.machine(), "cpu_count": __import__("os").cpu_count()}
    print(f"one denoiser call on {tuple(y.shape)}: {call * 1e3:.1f} ms  (device={args.device}, "
          f"threads={args.threads}, torch {torch.__version__})")
    print(f"{'sampler':<16}{'steps':>6}{'NFE':>5}{'wall s':>9}{'ratio':>8}{'fixed ms':>10}")
    for r in rows:
        print(f"{r['sampler']:<16}{r['num_steps']:>6}{r['nfe']:>5}{r['seconds']:>9.3f}{r['overhead_ratio']:>8.3f}"
              f"{r['fixed_ms']:>10.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
