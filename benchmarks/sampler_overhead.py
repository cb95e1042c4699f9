"""Benchmark: what a sampler costs beyond its network calls. For each sampler and NFE n, the wall time of
``EnhancementModel.enhance`` divided by ``n x`` the time of one bare denoiser call on the same input (the padded
compressed STFT of one real test utterance, repeated to ``--seconds``): 1.0 means the sampler adds nothing; the
excess at NFE 1 is the fixed cost (STFT, normalisation, float64 state, inverse STFT), reported in ms too.

Timings are medians of ``--repeats`` runs, interleaved over the grid (every repeat walks the whole grid, so a
slower moment of a shared machine hits every point alike). Writes JSON with ``--json``.

On a shared machine one bare call varies by +-15% from minute to minute, which moves that ratio by as much. So every
enhancement also times its own network calls (a wrapper around the denoiser): ``in_run_ratio`` is the wall time over
the time spent inside those calls, and ``sampler_ms_per_nfe`` the time outside them per NFE beyond the lowest NFE's fixed
cost, both measured in the same run and so free of the drift.

    python benchmarks/sampler_overhead.py [--ckpt PATH] [--seconds 4] [--repeats 5] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from _enhance_setup import add_model_args, model_and_input  # benchmarks/ (the script's own directory)
from _env import environment

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

    class Timed:
        """The denoiser, timing its calls (``seconds``: total inside them since the last reset)."""

        def __init__(self, denoiser) -> None:
            self.denoiser, self.seconds = denoiser, 0.0

        def __call__(self, *args):
            t0 = time.perf_counter()
            out = self.denoiser(*args)
            sync()
            self.seconds += time.perf_counter() - t0
            return out

    timed = Timed(model.parts.denoiser)

    def enhance(sampler: str, steps: int):
        model.parts.denoiser, timed.seconds = timed, 0.0
        try:
            res = model.enhance(wave, model.sample_rate, sampler=sampler, num_steps=steps)
            sync()
        finally:
            model.parts.denoiser = timed.denoiser
        return res, timed.seconds

    points = [(s, target, steps) for s, grid in GRID.items() for target, steps in grid.items() if target in args.nfe]
    calls: list[float] = []
    times: dict[tuple[str, int], list[float]] = {(s, k): [] for s, _, k in points}
    inside: dict[tuple[str, int], list[float]] = {(s, k): [] for s, _, k in points}
    nfes: dict[tuple[str, int], int] = {}
    one_call(), model.enhance(wave, model.sample_rate, sampler="euler", num_steps=1)  # warm-up
    for _ in range(args.repeats):
        calls += [one_call() for _ in range(3)]
        for s, _, steps in points:
            res, in_net = enhance(s, steps)
            times[(s, steps)].append(res.seconds)
            inside[(s, steps)].append(res.seconds / in_net)
            nfes[(s, steps)] = int(res.nfe)
    call = statistics.median(calls)
    rows = []
    for s, target, steps in points:
        wall = statistics.median(times[(s, steps)])
        nfe = nfes[(s, steps)]
        ratio_in = statistics.median(inside[(s, steps)])
        rows.append({"sampler": s, "num_steps": steps, "nfe": nfe, "seconds": wall,
                     "overhead_ratio": wall / (nfe * call), "fixed_ms": 1e3 * (wall - nfe * call),
                     "in_run_ratio": ratio_in, "outside_ms": 1e3 * wall * (1 - 1 / ratio_in)})
    for r in rows:  # time outside the network per NFE beyond the same sampler's lowest-NFE point (the fixed cost)
        first = min((q for q in rows if q["sampler"] == r["sampler"]), key=lambda q: q["nfe"])
        r["sampler_ms_per_nfe"] = (None if r["nfe"] == first["nfe"] else
                                   (r["outside_ms"] - first["outside_ms"]) / (r["nfe"] - first["nfe"]))
    result = {"device": args.device, "malloc_tuned": args.malloc_tuned, "threads": args.threads,
              "input_seconds": args.seconds,
              "spec_shape": list(y.shape), "repeats": args.repeats, "denoiser_call_seconds": call,
              "net_parameters": sum(p.numel() for p in model.parts.net.parameters()), "rows": rows,
              **environment()}
    print(f"one denoiser call on {tuple(y.shape)}: {call * 1e3:.1f} ms  (device={args.device}, "
          f"threads={args.threads}, torch {torch.__version__}, malloc tuned: {args.malloc_tuned})")
    print(f"{'sampler':<16}{'steps':>6}{'NFE':>5}{'wall s':>9}{'ratio':>8}{'fixed ms':>10}{'in-run':>8}"
          f"{'ms/NFE':>8}")
    for r in rows:
        per = "" if r["sampler_ms_per_nfe"] is None else f"{r['sampler_ms_per_nfe']:.2f}"
        print(f"{r['sampler']:<16}{r['num_steps']:>6}{r['nfe']:>5}{r['seconds']:>9.3f}{r['overhead_ratio']:>8.3f}"
              f"{r['fixed_ms']:>10.1f}{r['in_run_ratio']:>8.3f}{per:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
