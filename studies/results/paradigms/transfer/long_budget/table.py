"""Per-seed and per-voice accuracy of the speed-perturbed M5 at 3000 steps (../speed_perturb/speed3k_s*.json) and
12000 steps (speed12k_s*.json here), with the paired difference (95% t-interval). Usage: python table.py"""
import json
from pathlib import Path

from edm_se.metrics import mean_ci95

here = Path(__file__).parent
rows, diffs = [], []
for s in range(5):
    a, b = here.parent / "speed_perturb" / f"speed3k_s{s}.json", here / f"speed12k_s{s}.json"
    if not (a.exists() and b.exists()):
        continue
    ta, tb = (json.loads(p.read_text())["splits"] for p in (a, b))
    cell = [f"{t['test'][v]['mean']:.1f}" for t in (ta, tb) for v in ("all", "slt", "awb", "allison")]
    cell += [f"{t['valid']['all']['mean']:.1f}" for t in (ta, tb)] + [f"{t['train']['all']['mean']:.1f}" for t in (ta, tb)]
    rows.append(f"| {s} | " + " | ".join(cell) + " |")
    diffs.append(tb["test"]["all"]["mean"] - ta["test"]["all"]["mean"])
print("| seed | test 3k | slt 3k | awb 3k | Allison 3k | test 12k | slt 12k | awb 12k | Allison 12k | rms 3k | rms 12k "
      "| train 3k | train 12k |")
print("|" + "---|" * 13)
print("\n".join(rows))
d = mean_ci95(diffs)
mean, half, n = d["mean"], d["ci95"], d["n"]
print(f"\nPaired difference (12000 - 3000 steps) on the test voices: {mean:+.1f} ± {half:.1f} points (95% t, n = {n}); "
      "per seed " + ", ".join(f"{d:+.1f}" for d in diffs))
