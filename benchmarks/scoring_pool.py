"""What a pool of scoring workers costs to start, against scoring in-process.

``edm_se.metrics.score_pairs`` scores in spawned worker processes (``num_workers``; one recogniser each). A spawned
worker is a fresh interpreter: it pays for every import the scoring needs before its first file. This measures,
on N files of the built-in test set (PESQ-WB, ESTOI, SI-SDR; beyond its 25 files, its files again), the wall time of
``score_pairs`` in-process (``num_workers=0``) and with a pool (``num_workers=2``) and the CPU seconds spent inside
the metrics, for several N, the pool's start (a pool that scores one
tiny pair per worker), which heavy modules a worker imports (PyTorch, torchaudio) and how many threads its native
libraries run (OpenBLAS, OpenMP: 1, since each worker scores one file at a time). Writes JSON.

    python benchmarks/scoring_pool.py [--files 2 25 100] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from _env import positive_int  # benchmarks/ (the script's own directory)


def _worker_modules(_: int) -> tuple[list[str], int | None]:
    """Runs in a worker: scores one short pair, then names the heavy modules the worker has imported and the most
    threads of its native thread pools (OpenBLAS, OpenMP; ``threadpoolctl``, None without it)."""
    import numpy as np

    from edm_se.metrics import _score_one

    t = np.arange(16000) / 16000
    ref = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    est = (ref + 0.05 * np.random.default_rng(0).standard_normal(ref.size)).astype(np.float32)
    _score_one((ref, est, 16000, ("pesq", "estoi", "si_sdr"), None))
    try:
        from threadpoolctl import threadpool_info

        threads = max((int(p["num_threads"]) for p in threadpool_info()), default=None)
    except ImportError:
        threads = None
    return sorted(m for m in ("torch", "torchaudio") if m in sys.modules), threads


def pool_start_seconds(workers: int = 2) -> tuple[float, list[str], int | None]:
    """Wall time to start ``workers`` spawned workers (``score_pairs``' own pool) and have each score one 1 s pair;
    the heavy modules a worker imported; its native threads (see :func:`_worker_modules`)."""
    from edm_se.metrics import scoring_pool

    start = time.perf_counter()
    with scoring_pool(workers) as pool:
        found = list(pool.map(_worker_modules, range(workers)))
    return time.perf_counter() - start, found[0][0], found[0][1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=positive_int, nargs="+", default=[2, 25, 100], help="numbers of files")
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs per point (the median is reported)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    import soundfile as sf

    from _env import environment  # benchmarks/ (the script's own directory)
    from edm_se.data import builtin_test_set
    from edm_se.metrics import score_pairs

    root = builtin_test_set()
    clean, noisy = sorted((root / "clean").glob("*.flac")), sorted((root / "noisy").glob("*.flac"))
    refs = [sf.read(f, dtype="float32")[0] for f in clean]
    ests = [sf.read(f, dtype="float32")[0] for f in noisy]
    metrics = ("pesq", "estoi", "si_sdr")
    score_pairs(refs[:1], ests[:1], metrics=metrics, num_workers=0, progress=False)  # imports, first-call costs
    starts = [pool_start_seconds() for _ in range(args.repeats)]
    rows = []
    for n in args.files:
        idx = [i % len(refs) for i in range(n)]  # more files than the test set's 25: its files again
        row = {"files": n, "audio_seconds": round(sum(len(refs[i]) for i in idx) / 16000, 2)}
        for workers in (0, 2):
            times, cpu = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                frame, _ = score_pairs([refs[i] for i in idx], [ests[i] for i in idx], metrics=metrics,
                                       num_workers=workers, progress=False)
                times.append(time.perf_counter() - t0)
                cpu.append(frame.attrs["seconds"]["metrics_s"])
            row[f"workers_{workers}_s"] = statistics.median(times)
            row[f"workers_{workers}_metrics_cpu_s"] = statistics.median(cpu)  # summed over files
        rows.append(row)
        print(f"{n:3d} files ({row['audio_seconds']:6.1f} s of audio): in-process {row['workers_0_s']:.2f} s, "
              f"2 workers {row['workers_2_s']:.2f} s; CPU seconds in the metrics "
              f"{row['workers_0_metrics_cpu_s']:.2f} / {row['workers_2_metrics_cpu_s']:.2f}", flush=True)
    record = {"metrics": list(metrics), "repeats": args.repeats,
              "pool_start_s": statistics.median(s for s, _, _ in starts), "worker_imports": starts[0][1],
              "worker_native_threads": starts[0][2],
              "rows": rows, **environment()}
    print(f"pool of 2 workers, started and one pair each: {record['pool_start_s']:.2f} s; heavy modules in a "
          f"worker: {', '.join(record['worker_imports']) or 'none'}; its native threads: "
          f"{record['worker_native_threads']}")
    if args.json:
        from edm_se.atomic import atomic_write_json

        atomic_write_json(args.json, record, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
