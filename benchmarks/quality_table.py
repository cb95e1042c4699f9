"""Noisy vs enhanced, per SNR, with 95% confidence intervals: the bundled model's table in the README.

Enhances every mixture of a paired test set (default: the built-in real-audio test set, 25 files at 0-20 dB) with a
checkpoint at a sampler / NFE, scores PESQ-WB, ESTOI and SI-SDR of the noisy input and of the estimate against the
clean reference, and prints a Markdown table (mean ± 95% CI half-width per SNR and overall). Optionally writes the
per-file scores as CSV.

    python benchmarks/quality_table.py [--ckpt PATH] [--test-set DIR] [--sampler edm_heun] [--num-steps N]
                                       [--t-start 1.0] [--csv out.csv] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--test-set", default=None, help="dir with clean/ noisy/ manifest.csv (default: built-in)")
    parser.add_argument("--sampler", default=None, help="conf/sampler name (default: the checkpoint's own)")
    parser.add_argument("--num-steps", type=int, default=None)
    parser.add_argument("--t-start", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", default=None, help="write per-file scores here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import pandas as pd

    from edm_se import metrics as M
    from edm_se.audio import load_audio
    from edm_se.model import EnhancementModel
    from edm_se.study import load_test_set

    model = EnhancementModel.from_checkpoint(args.ckpt, device="cpu")
    test = load_test_set(args.test_set)
    sr = model.sample_rate
    refs, noisies, ests, nfe, wall, audio_s = [], [], [], 0, 0.0, 0.0
    for name in test.names:
        clean = load_audio(test.clean(name), sample_rate=sr)
        noisy = load_audio(test.noisy(name), sample_rate=sr)
        t0 = time.perf_counter()
        res = model.enhance(noisy, sr, sampler=args.sampler, num_steps=args.num_steps, t_start=args.t_start,
                            seed=args.seed)
        wall += time.perf_counter() - t0
        audio_s += noisy.shape[-1] / sr
        n = min(clean.shape[-1], res.waveform.shape[-1])
        refs.append(clean[:n].numpy())
        noisies.append(noisy[:n].numpy())
        ests.append(res.waveform[:n].numpy())
        nfe = res.nfe
    frames = {}
    for label, signals in (("noisy", noisies), ("enhanced", ests)):
        frame, _ = M.score_pairs(refs, signals, sample_rate=sr, names=test.names, num_workers=2, progress=False)
        frame["snr_db"] = test.snr_db
        frames[label] = frame
    if args.csv:
        both = frames["noisy"].merge(frames["enhanced"], on=["name", "snr_db"], suffixes=("_noisy", "_enhanced"))
        both.to_csv(args.csv, index=False)
    metrics = [("pesq", "PESQ-WB"), ("estoi", "ESTOI"), ("si_sdr", "SI-SDR (dB)")]
    header = "| SNR (dB) | n | " + " | ".join(f"{t} noisy | {t} enhanced" for _, t in metrics) + " |"
    print(f"checkpoint: {args.ckpt or 'bundled'}  sampler: {args.sampler or 'default'}  NFE={nfe}  "
          f"RTF={wall / audio_s:.3f}  ({len(test.names)} files, {torch.get_num_threads()} threads)\n")
    print(header)
    print("|" + "---|" * (2 + 2 * len(metrics)))
    groups = sorted({s for s in test.snr_db if s is not None}) + ["all"]
    for g in groups:
        cells = []
        for key, _ in metrics:
            for label in ("noisy", "enhanced"):
                f = frames[label]
                vals = f[key] if g == "all" else f.loc[f["snr_db"] == g, key]
                ci = M.mean_ci95(list(vals))
                cells.append(f"{ci['mean']:.3f} ± {ci['ci95']:.3f}" if key != "si_sdr"
                             else f"{ci['mean']:.2f} ± {ci['ci95']:.2f}")
        n = len(test.names) if g == "all" else sum(1 for s in test.snr_db if s == g)
        print(f"| {g if g == 'all' else f'{g:g}'} | {n} | " + " | ".join(cells) + " |")
    del pd
    return 0


if __name__ == "__main__":
    sys.exit(main())
