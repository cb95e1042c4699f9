"""Noisy vs enhanced, per SNR, with 95% confidence intervals: the bundled model's table in the README.

Enhances every mixture of a paired test set (default: the built-in real-audio test set, 25 files at 0-20 dB) with a
checkpoint at a sampler / NFE, scores PESQ-WB, ESTOI and SI-SDR of the noisy input and of the estimate against the
clean reference, and prints two Markdown tables: the scores (mean ± 95% CI half-width per SNR and overall) and the
paired per-file improvement over the noisy input (enhanced - noisy, mean ± 95% CI), the statistic that says
whether the model helps at an SNR. Records where the numbers came from (checkpoint and test-set SHA-256, git
commit) in the header and, with ``--json``, in a JSON file; ``--csv`` writes the per-file scores.

    python benchmarks/quality_table.py [--ckpt PATH] [--test-set DIR] [--sampler edm_heun] [--num-steps N]
                                       [--t-start 1.0] [--csv out.csv] [--json out.json] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time



def main(argv: list[str] | None = None) -> int:
    # torch here, not at the top: a spawned scoring worker re-runs the script's top level, and a
    # worker without torch starts about 3 s sooner on 2 cores (tests/test_metrics.py)
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--test-set", default=None, help="dir with clean/ noisy/ manifest.csv (default: built-in)")
    parser.add_argument("--sampler", default=None, help="conf/sampler name (default: the checkpoint's own)")
    parser.add_argument("--num-steps", type=int, default=None)
    parser.add_argument("--t-start", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", default=None, help="write per-file scores here")
    parser.add_argument("--json", default=None, help="write the tables and their provenance here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from edm_se import metrics as M
    from edm_se.audio import load_audio
    from edm_se.model import EnhancementModel
    from edm_se.testset import load_test_set

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
    from edm_se.atomic import atomic_write_json
    from edm_se.model import default_checkpoint_path
    from edm_se.provenance import checkpoint_identity, run_info

    ckpt = checkpoint_identity(args.ckpt or default_checkpoint_path())
    ident = test.identity()
    metrics = [("pesq", "PESQ-WB"), ("estoi", "ESTOI"), ("si_sdr", "SI-SDR (dB)")]
    print(f"checkpoint: {ckpt['path']} (sha256 {ckpt['sha256'][:12]}, step {ckpt['step']})  sampler: "
          f"{args.sampler or 'default'}  NFE={nfe}  RTF={wall / audio_s:.3f}  test set: {ident['root']} "
          f"({len(test.names)} files, sha256 {ident['sha256'][:12]})  {torch.get_num_threads()} threads\n")
    groups = sorted({s for s in test.snr_db if s is not None}) + ["all"]

    def select(frame, g, key):
        return list(frame[key] if g == "all" else frame.loc[frame["snr_db"] == g, key])

    def fmt(ci, key, signed=False):
        d = 2 if key == "si_sdr" else 3
        m = f"{ci['mean']:+.{d}f}" if signed else f"{ci['mean']:.{d}f}"
        return f"{m} ± {ci['ci95']:.{d}f}"

    table: dict = {}
    print("| SNR (dB) | n | " + " | ".join(f"{t} noisy | {t} enhanced" for _, t in metrics) + " |")
    print("|" + "---|" * (2 + 2 * len(metrics)))
    for g in groups:
        cells, n = [], len(select(frames["noisy"], g, "pesq"))
        for key, _ in metrics:
            for label in ("noisy", "enhanced"):
                ci = M.mean_ci95(select(frames[label], g, key))
                table.setdefault(str(g), {})[f"{key}_{label}"] = ci
                cells.append(fmt(ci, key))
        print(f"| {g if g == 'all' else f'{g:g}'} | {n} | " + " | ".join(cells) + " |")
    print("\nPaired improvement over the noisy input (per file: enhanced - noisy; mean ± 95% CI):\n")
    print("| SNR (dB) | n | " + " | ".join(f"Δ {t}" for _, t in metrics) + " |")
    print("|" + "---|" * (2 + len(metrics)))
    for g in groups:
        cells, n = [], len(select(frames["noisy"], g, "pesq"))
        for key, _ in metrics:
            d = [e - o for e, o in zip(select(frames["enhanced"], g, key), select(frames["noisy"], g, key))]
            ci = M.mean_ci95(d)
            table[str(g)][f"{key}_delta"] = ci
            cells.append(fmt(ci, key, signed=True))
        print(f"| {g if g == 'all' else f'{g:g}'} | {n} | " + " | ".join(cells) + " |")
    if args.json:
        atomic_write_json(args.json, {"checkpoint": ckpt, "test_set": {k: ident[k] for k in ("root", "n", "sha256")},
                                      "sampler": args.sampler, "num_steps": args.num_steps, "t_start": args.t_start,
                                      "nfe": nfe, "rtf": wall / audio_s, "threads": torch.get_num_threads(),
                                      **run_info(), "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
