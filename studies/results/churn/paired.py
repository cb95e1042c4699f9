"""Paired effect of churn: every cell of the `churn` study against the same number of steps without churn
(s_churn = 0, s_noise = 1), file by file (edm_se.study_best.paired_difference: mean and 95% CI of the per-file
differences; WER: the difference of corpus WERs with a word-weighted CI).

    python studies/results/churn/paired.py [STUDY_DIR] > studies/results/churn/paired.md

STUDY_DIR defaults to studies/runs/churn (where `edm-se study study=churn` writes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edm_se.study_best import paired_difference

METRICS = (("pesq", "ΔPESQ", 3), ("estoi", "ΔESTOI", 3), ("si_sdr", "ΔSI-SDR (dB)", 2), ("wer_whisper", "ΔWER (points)", 1))


def main(study_dir: Path) -> None:
    points = {}
    for path in sorted(study_dir.glob("*/metrics.json")):
        p = json.loads(path.read_text())["points"][0]
        points[(int(p["num_steps"]), float(p["s_churn"]), float(p["s_noise"]))] = p
    print("# Churn against no churn at the same steps (paired over the 25 test files)\n")
    print("| num_steps (NFE) | s_churn | s_noise | " + " | ".join(label for _, label, _ in METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    for (steps, churn, noise), p in sorted(points.items()):
        base = points.get((steps, 0.0, 1.0))
        if base is None or churn == 0.0:
            continue
        cells = []
        for metric, _, digits in METRICS:
            d = paired_difference(p, base, metric)
            mark = "**" if d and abs(d["mean"]) > d["ci95"] else ""
            cells.append(f"{mark}{d['mean']:+.{digits}f} ± {d['ci95']:.{digits}f}{mark}" if d else "")
        print(f"| {steps} ({p['nfe']}) | {churn:g} | {noise:g} | " + " | ".join(cells) + " |")
    print("\nBold: the 95% CI excludes 0. Positive is better for PESQ, ESTOI and SI-SDR; negative for WER.")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("studies/runs/churn"))
