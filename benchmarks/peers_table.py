"""The diffusion model beside the enhancers researchers already use, on one held-out test set: the README's table.

Rows: the noisy input, the clean reference (its WER is the recognisers' floor), the pretrained peers (DeepFilterNet3,
RNNoise, noisereduce; :mod:`edm_se.enhancers`) and the diffusion model at the sampler points given (default: the
bundled model with EDM Heun at 1 and 8 steps, NFE 1 and 15). Columns: PESQ-WB, ESTOI, SI-SDR, WER of Whisper
tiny.en and of PocketSphinx (corpus-level, %), RTF, each with its 95% CI and the paired per-file improvement over
the noisy input with its 95% CI. Scoring is :mod:`edm_se.scoring`'s, the one the studies use (same caches: the
noisy/clean transcripts and each peer are scored once per test set in ``--out``).

    python benchmarks/peers_table.py [--ckpt PATH] [--test-set DIR] [--point edm_heun:1 --point edm_heun:8]
                                     [--peers dfn3 rnnoise noisereduce] [--out studies/results/peers]

Writes ``--out/table.md`` and ``--out/table.json`` (with the checkpoint and test-set SHA-256, versions, threads).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


METRICS = ["pesq", "estoi", "si_sdr", "wer_whisper", "wer_sphinx"]
TITLES = {"pesq": "PESQ", "estoi": "ESTOI", "si_sdr": "SI-SDR (dB)", "wer_whisper": "WER Whisper (%)",
          "wer_sphinx": "WER Sphinx (%)"}


def _fmt(stat: dict | None, key: str, signed: bool = False) -> str:
    if not stat or stat.get("mean") is None:
        return ""
    d = 1 if key.startswith("wer") else 2 if key == "si_sdr" else 3
    mean = f"{stat['mean']:+.{d}f}" if signed else f"{stat['mean']:.{d}f}"
    ci = stat.get("ci95")
    return mean if ci is None or ci != ci else f"{mean} ± {ci:.{d}f}"


def main(argv: list[str] | None = None) -> int:
    # torch here, not at the top: a spawned scoring worker re-runs the script's top level, and a
    # worker without torch starts about 3 s sooner on 2 cores (tests/test_metrics.py)
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled model)")
    p.add_argument("--test-set", default=None, help="dir with clean/ noisy/ manifest.csv (default: built-in)")
    p.add_argument("--point", action="append", default=None, metavar="SAMPLER:NUM_STEPS",
                   help="a diffusion operating point (repeatable; default edm_heun:1 and edm_heun:8)")
    p.add_argument("--peers", nargs="*", default=["dfn3", "rnnoise", "noisereduce"])
    p.add_argument("--metrics", nargs="*", default=METRICS)
    p.add_argument("--out", default="studies/results/peers")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the diffusion model")
    p.add_argument("--num-workers", type=int, default=2, help="metric / recogniser worker processes")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from edm_se.atomic import atomic_write_json, atomic_write_text
    from edm_se.model import EnhancementModel, default_checkpoint_path, sampler_from_name
    from edm_se.provenance import checkpoint_identity, run_info
    from edm_se.scoring import evaluate_point, noisy_reference, peer_reference, wanted_metrics
    from edm_se.testset import load_test_set

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = load_test_set(args.test_set)
    model = EnhancementModel.from_checkpoint(args.ckpt, device="cpu")
    sr = model.sample_rate
    metrics = wanted_metrics(list(args.metrics), test)
    rows: list[dict] = []
    t0 = time.perf_counter()
    noisy = noisy_reference(test, out, metrics, sr, keep=[], num_workers=args.num_workers)
    timing = {"noisy_and_clean_s": time.perf_counter() - t0}
    rows.append({"system": "noisy input", **noisy})
    if noisy.get("clean"):
        rows.append({"system": "clean reference", **noisy["clean"]})
    for peer in args.peers:
        t0 = time.perf_counter()
        res = peer_reference(peer, test, out, metrics, sr, keep=[], num_workers=args.num_workers, noisy_ref=noisy)
        timing[f"peer_{peer}_s"] = time.perf_counter() - t0
        rows.append({"system": res["label"], **res})
    for spec in args.point or ["edm_heun:1", "edm_heun:8"]:
        name, _, steps = spec.partition(":")
        node = sampler_from_name(name)
        if steps:
            node.num_steps = int(steps)
        t0 = time.perf_counter()
        res = evaluate_point(model, test, node, t_start=1.0, seed=0, metrics=metrics, keep=[],
                             audio_dir=out / "audio", num_workers=args.num_workers, noisy_ref=noisy)
        timing[f"diffusion_{spec}_s"] = time.perf_counter() - t0
        rows.append({"system": f"diffusion (bundled), {name} {node.num_steps} steps, NFE {res['nfe']}", **res})

    ckpt = checkpoint_identity(args.ckpt or default_checkpoint_path())
    ident = test.identity()
    header = ["system", *[TITLES.get(m, m) for m in metrics], "RTF"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        vals = [_fmt(r["metrics"].get(m), m) for m in metrics]
        lines.append("| " + " | ".join([r["system"], *vals, f"{r['rtf']:.3f}" if r.get("rtf") else ""]) + " |")
    lines += ["", "Paired per-file improvement over the noisy input (system - noisy; WER: difference of corpus "
              "WERs, negative = fewer errors), mean ± 95% CI:", ""]
    lines += ["| " + " | ".join(["system", *[f"Δ {TITLES.get(m, m)}" for m in metrics]]) + " |",
              "|" + "---|" * (1 + len(metrics))]
    for r in rows[1:]:
        vals = [_fmt((r.get("improvement") or {}).get(m), m, signed=True) for m in metrics]
        lines.append("| " + " | ".join([r["system"], *vals]) + " |")
    snrs = sorted({s for s in test.snr_db if s is not None})
    if snrs:
        lines += ["", "Per SNR, paired improvement over the noisy input (mean):", ""]
        lines += ["| system | metric | " + " | ".join(f"{s:g} dB" for s in snrs) + " |",
                  "|" + "---|" * (2 + len(snrs))]
        for r in rows[2 if noisy.get("clean") else 1:]:
            for m in metrics:
                per = (r.get("improvement_per_snr") or {}).get(m) or {}
                d = 1 if m.startswith("wer") else 2 if m == "si_sdr" else 3
                lines.append(f"| {r['system']} | {TITLES.get(m, m)} | "
                             + " | ".join(f"{per[f'{s:g}']:+.{d}f}" if f"{s:g}" in per else "" for s in snrs) + " |")
    head = (f"Test set {ident['root']} ({ident['n']} files, sha256 {ident['sha256'][:12]}); checkpoint "
            f"{Path(ckpt['path']).name} (sha256 {ckpt['sha256'][:12]}, step {ckpt['step']}); "
            f"{torch.get_num_threads()} torch threads, {args.num_workers} metric workers.")
    text = head + "\n\n" + "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", text)
    atomic_write_json(out / "table.json", {
        "checkpoint": ckpt, "test_set": {k: ident[k] for k in ("root", "n", "sha256", "transcripts_sha256")
                                         if k in ident},
        "metrics": metrics, "threads": torch.get_num_threads(), "timing_s": timing, **run_info(),
        "rows": [{k: r.get(k) for k in ("system", "nfe", "rtf", "metrics", "improvement", "per_snr",
                                        "improvement_per_snr", "version")} for r in rows]})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
