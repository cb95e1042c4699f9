"""Paired differences against the noisy-input baseline, per training seed: for every row, the mean over the 420 test
mixtures of (row correct - baseline correct) in accuracy points, with its 95% t-interval over the mixtures (every
row scores the same mixtures, so the pairing removes the clips' difficulty). Reads the study's cached scores.

    python studies/results/paradigms/keywords_s26_12k/paired.py [studies/runs/paradigms_kw12k/keywords] > paired.md

``--against ROW`` pairs every row with another row than the baseline (e.g. ``--against cold_cascade``: what D4AM's
fine-tuning adds to the bundled enhancer it starts from; session 39).

Since session 40 the study writes these tables itself (``paired.csv``, ``results.md``; ``edm_se/tasks/paired.py``,
with the difference over seeds as well); this script stays to re-read the runs made before.
"""
import argparse
import json
from pathlib import Path

from edm_se.metrics import mean_ci95

ROWS = ["data_augmentation", "cold_cascade", "multi_task", "iterative", "d4am", "dfn3", "rnnoise", "clean"]


def scores(path: Path) -> dict[str, int]:
    return {f["name"] + f"@{f['snr_db']:g}": int(f["correct"]) for f in json.loads(path.read_text())["result"]["per_file"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="studies/runs/paradigms_kw12k/keywords",
                        help="the study's <out_dir>/keywords")
    parser.add_argument("--against", default="baseline", choices=["baseline", *ROWS],
                        help="the row every other row is paired with")
    args = parser.parse_args()
    against, root = args.against, Path(args.root)
    seeds = {0: root, **{int(p.name[4:]): p for p in sorted(root.glob("seed[0-9]*"))}}
    rows = [r for r in ["baseline", *ROWS] if r != against]
    table: dict[str, dict[int, str]] = {r: {} for r in rows}
    for k, d in sorted(seeds.items()):
        files = {r: d / "cells" / r / "eval.json" for r in ["baseline", *ROWS[:5]]}
        files.update(dfn3=d / "peer_dfn3.json", rnnoise=d / "peer_rnnoise.json", clean=d / "references_clean.json")
        base_file = files[against]
        if not base_file.exists():
            continue
        base = scores(base_file)
        for r, f in ((r, f) for r, f in files.items() if r in rows):
            if f.exists():
                row = scores(f)
                assert set(row) == set(base), f"{f}: other mixtures than {against}'s"
                s = mean_ci95([100.0 * (row[n] - base[n]) for n in base])
                table[r][k] = f"{s['mean']:+.1f} ± {s['ci95']:.1f}"
    ks = sorted({k for v in table.values() for k in v})
    print(f"| row - {against} (points) | " + " | ".join(f"seed {k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for r in rows:
        print(f"| {r} | " + " | ".join(table[r].get(k, "–") for k in ks) + " |")


if __name__ == "__main__":
    main()
