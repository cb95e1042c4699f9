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

The sampler's own cost does not depend on the network, so the same grid runs once more with a **zero-cost
denoiser** (it returns ``x_tilde / 2``, a fraction of a millisecond, timed and subtracted): per sampler a line
``outside(n) = fixed_ms + per_nfe_ms n`` fitted by least squares over the grid, and from it ``break_even_call_ms``:
the shortest denoiser call for which the ratio stays at or below 1.10 at that NFE,
``(fixed_ms + per_nfe_ms n) / (0.10 n)``. A network slower than that meets the goal (with the caveat that inside a
run the state has left the cache after each network call, so the in-run costs are somewhat higher).
``--net NAME`` times a randomly initialised ``conf/net`` backbone in place of the checkpoint's.

    python benchmarks/sampler_overhead.py [--ckpt PATH | --net NAME] [--seconds 4] [--repeats 5] [--threads 2]
        [--nfe 1 4 16 60] [--json out.json]
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

# (sampler, num_steps) per target NFE n in {1, 4, 16, 60}: Euler, DPM-Solver++(2M), Posterior and PC without
# correctors make N calls, EDM Heun 2N - 1 (the nearest odd NFE), PC with one corrector 2N.
GRID = {
    "euler": {1: 1, 4: 4, 16: 16, 60: 60},
    "dpmpp_2m": {1: 1, 4: 4, 16: 16, 60: 60},
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

    def zero_cost(x_tilde, y_net, sigma):
        """A denoiser that costs one pass over the state (its time is measured and subtracted)."""
        return x_tilde * 0.5

    def enhance(sampler: str, steps: int, timed=timed):
        own, model.parts.denoiser, timed.seconds = model.parts.denoiser, timed, 0.0
        try:
            res = model.enhance(wave, model.sample_rate, sampler=sampler, num_steps=steps)
            sync()
        finally:
            model.parts.denoiser = own
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
              "ckpt": args.ckpt or "bundled", "net": args.net or "the checkpoint's",
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
    result["zero_cost_denoiser"] = sampler_only(points, lambda s, k: enhance(s, k, Timed(zero_cost)), args.repeats)
    print("with a zero-cost denoiser (the sampler alone; break-even: the shortest call for a ratio <= 1.10):")
    print(f"{'sampler':<16}{'fixed ms':>10}{'ms/NFE':>8}   break-even call ms at NFE")
    for name, z in result["zero_cost_denoiser"].items():
        even = "  ".join(f"{n}: {ms:.1f}" for n, ms in z["break_even_call_ms"].items())
        line = "" if z["per_nfe_ms"] is None else f"{z['fixed_ms']:>10.2f}{z['per_nfe_ms']:>8.2f}"
        print(f"{name:<16}{line:>18}   {even}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def sampler_only(points, run, repeats: int) -> dict:
    """Per sampler: the time outside the denoiser of ``run(sampler, num_steps) -> (result, seconds inside)`` at
    each grid point (median of ``repeats``), the least-squares line ``fixed_ms + per_nfe_ms NFE`` through it, and
    ``break_even_call_ms`` per NFE >= 2 (the call time at which the ratio is 1.10)."""
    run(points[0][0], points[0][2])  # warm-up
    outside: dict[tuple[str, int], list[float]] = {(s, k): [] for s, _, k in points}
    nfes: dict[tuple[str, int], int] = {}
    for _ in range(repeats):
        for s, _, steps in points:
            res, in_net = run(s, steps)
            outside[(s, steps)].append(1e3 * (res.seconds - in_net))
            nfes[(s, steps)] = int(res.nfe)
    out = {}
    for name in dict.fromkeys(s for s, _, _ in points):
        pts = [(nfes[(s, k)], statistics.median(outside[(s, k)])) for s, _, k in points if s == name]
        fixed = per = None  # one point (e.g. PC with --nfe 1 4): no line, the break-even from the point itself
        if len(pts) >= 2:
            per, fixed = statistics.linear_regression([n for n, _ in pts], [ms for _, ms in pts])
        out[name] = {"points": [{"nfe": n, "outside_ms": ms} for n, ms in pts], "fixed_ms": fixed,
                     "per_nfe_ms": per,
                     "break_even_call_ms": {n: (ms if per is None else fixed + per * n) / (0.10 * n)
                                            for n, ms in pts if n >= 2}}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
