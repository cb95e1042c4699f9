"""Paired differences against the noisy-input baseline, per training seed: for every row, the mean over the 420 test
mixtures of (row correct - baseline correct) in accuracy points, with its 95% t-interval over the mixtures (every
row scores the same mixtures, so the pairing removes the clips' difficulty). Reads the study's cached scores.

    python studies/results/paradigms/keywords_s26_12k/paired.py [studies/runs/paradigms_kw12k/keywords] > paired.md
"""
import json
import sys
from pathlib import Path

from edm_se.metrics import mean_ci95

ROWS = ["data_augmentation", "cold_cascade", "multi_task", "iterative", "d4am", "dfn3", "rnnoise", "clean"]


def scores(path: Path) -> dict[str, int]:
    return {f["name"] + f"@{f['snr_db']:g}": int(f["correct"]) for f in json.loads(path.read_text())["result"]["per_file"]}


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "studies/runs/paradigms_kw12k/keywords")
    seeds = {0: root, **{int(p.name[4:]): p for p in sorted(root.glob("seed[0-9]*"))}}
    table: dict[str, dict[int, str]] = {r: {} for r in ROWS}
    for k, d in sorted(seeds.items()):
        base_file = d / "cells" / "baseline" / "eval.json"
        if not base_file.exists():
            continue
        base = scores(base_file)
        files = {r: d / "cells" / r / "eval.json" for r in ROWS[:5]}
        files.update(dfn3=d / "peer_dfn3.json", rnnoise=d / "peer_rnnoise.json", clean=d / "references_clean.json")
        for r, f in files.items():
            if f.exists():
                row = scores(f)
                assert set(row) == set(base), f"{f}: other mixtures than the baseline's"
                s = mean_ci95([100.0 * (row[n] - base[n]) for n in base])
                table[r][k] = f"{s['mean']:+.1f} ± {s['ci95']:.1f}"
    ks = sorted({k for v in table.values() for k in v})
    print("| row - baseline (points) | " + " | ".join(f"seed {k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for r in ROWS:
        print(f"| {r} | " + " | ".join(table[r].get(k, "–") for k in ks) + " |")


if __name__ == "__main__":
    main()
