"""Benchmark: our NCSN++ against sgmse's own backbone (from its PyPI wheel, fetched like the tests do), same
configuration (SGMSE+'s: nf 128, 65.6 M parameters), same weights (ours converted from theirs), same input
(batch x 4 x F x T), same threads. Forward and forward + backward, interleaved (ours, theirs, ours, ...), median of
``--repeats`` runs after a warm-up; writes a JSON with the ratios ours / theirs.

    python benchmarks/ncsnpp_vs_sgmse.py [--size 256 256] [--batch 1] [--repeats 5] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from _env import environment, positive_int  # benchmarks/ (the script's own directory)

REPO = Path(__file__).resolve().parents[1]


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("F", "T"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "tests"))
    from sgmse_reference import sgmse_module  # pip download --no-deps of sgmse==0.1.2, test-only code

    from edm_se.nets.ncsnpp import NCSNpp
    from edm_se.sgmse_import import convert_ncsnpp_state

    dev = torch.device(args.device)
    torch.manual_seed(0)
    theirs = sgmse_module("backbones.ncsnpp").NCSNpp().to(dev)
    ours = NCSNpp(output_bias_times_t=True)
    ours.load_state_dict(convert_ncsnpp_state(theirs.state_dict(), ours))
    ours = ours.to(dev)
    f, t = args.size
    x = torch.randn(args.batch, 2, f, t, dtype=torch.complex64, device=dev)
    tt = torch.full((args.batch,), 0.5, device=dev)
    x4 = torch.cat([x[:, [0]].real, x[:, [0]].imag, x[:, [1]].real, x[:, [1]].imag], dim=1)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    runs = {
        "ours_forward": lambda: (ours(x4, torch.log(tt)), sync()),
        "theirs_forward": lambda: (theirs(x, tt), sync()),
        "ours_forward_backward": lambda: (ours(x4, torch.log(tt)).square().mean().backward(), sync()),
        "theirs_forward_backward": lambda: (theirs(x, tt).abs().square().mean().backward(), sync()),
    }
    with torch.no_grad():
        ref, got = theirs(x, tt), ours(x4, torch.log(tt)) / tt[:, None, None, None]
        got = torch.view_as_complex(got.permute(0, 2, 3, 1).contiguous())[:, None]
        rel = float((got - ref).abs().norm() / ref.abs().norm())
    times: dict[str, list[float]] = {k: [] for k in runs}
    for name, fn in runs.items():  # warm-up
        if "backward" in name:
            fn()
        else:
            with torch.no_grad():
                fn()
    for _ in range(args.repeats):
        for kind in ("forward", "forward_backward"):
            for who in ("ours", "theirs"):  # interleaved
                name = f"{who}_{kind}"
                ours.zero_grad(set_to_none=True)
                theirs.zero_grad(set_to_none=True)
                if kind == "forward":
                    with torch.no_grad():
                        times[name].append(_time(runs[name]))
                else:
                    times[name].append(_time(runs[name]))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "input": [args.batch, 4, f, t], "threads": args.threads, "device": args.device, "repeats": args.repeats,
        "parameters": {"ours": sum(p.numel() for p in ours.parameters()),
                       "theirs": sum(p.numel() for p in theirs.parameters())},
        "output_relative_error": rel,
        "median_seconds": med, "all_seconds": times,
        "ratio_ours_over_theirs": {k: med[f"ours_{k}"] / med[f"theirs_{k}"] for k in ("forward", "forward_backward")},
        **environment(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "all_seconds"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
