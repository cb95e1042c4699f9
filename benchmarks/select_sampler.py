"""Pick a checkpoint's default sampler on VALIDATION mixtures (never the test set).

Enhances the built-in validation mixtures (``conf/data/builtin.yaml`` ``valid``: valid speech x valid noise,
0-15 dB) with a grid of samplers, step counts and ``t_start``, and prints mean PESQ-WB / ESTOI / SI-SDR gains over
the noisy input per setting, best first (ranked by the smallest of the three gains, each divided by its spread
over the grid, so that no metric is traded away). This is how the bundled model's default sampler was chosen.

    python benchmarks/select_sampler.py --ckpt runs/bundled/checkpoints/last.pt [--files 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    # torch here, not at the top: a spawned scoring worker re-runs the script's top level, and a
    # worker without torch starts about 3 s sooner on 2 cores (tests/test_metrics.py)
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samplers", default="edm_heun:1,2,4,8;euler:2,4,8")
    parser.add_argument("--t-starts", default="1.0,0.7,0.5")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from edm_se import metrics as M
    from edm_se.data import MixingDataset
    from edm_se.model import EnhancementModel

    model = EnhancementModel.from_checkpoint(args.ckpt, device="cpu")
    data = MixingDataset("builtin:valid", "builtin:valid", snr_db=(0.0, 15.0), segment_seconds=None,
                         length=args.files, seed=1234, gain_db=None)
    items = [data[i] for i in range(args.files)]
    refs = [it["clean"].numpy() for it in items]
    _, noisy = M.score_pairs(refs, [it["noisy"].numpy() for it in items], num_workers=2, progress=False)
    grid = []
    for spec in args.samplers.split(";"):
        name, steps = spec.split(":")
        grid += [(name, int(n)) for n in steps.split(",")]
    rows = []
    for (name, n), t_start in itertools.product(grid, [float(t) for t in args.t_starts.split(",")]):
        ests, nfe = [], 0
        for i, it in enumerate(items):
            res = model.enhance(it["noisy"], model.sample_rate, sampler=name, num_steps=n, t_start=t_start, seed=i)
            ests.append(res.waveform.numpy())
            nfe = res.nfe
        _, summ = M.score_pairs(refs, ests, num_workers=2, progress=False)
        gains = {m: summ[m]["mean"] - noisy[m]["mean"] for m in ("pesq", "estoi", "si_sdr")}
        rows.append((name, n, t_start, nfe, gains))
        print(f"{name:9s} steps={n:2d} t_start={t_start:.2f} NFE={nfe:2d}  " +
              "  ".join(f"d{m}={g:+.3f}" for m, g in gains.items()), flush=True)
    spread = {m: np.std([r[4][m] for r in rows]) + 1e-9 for m in ("pesq", "estoi", "si_sdr")}
    rows.sort(key=lambda r: -min(r[4][m] / spread[m] for m in spread))
    print("\nnoisy: " + "  ".join(f"{m}={noisy[m]['mean']:.3f}" for m in ("pesq", "estoi", "si_sdr")))
    print("best first:")
    for name, n, t_start, nfe, gains in rows[:5]:
        print(f"  {name} num_steps={n} t_start={t_start} (NFE {nfe}): " +
              "  ".join(f"d{m}={g:+.3f}" for m, g in gains.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
