"""The benchmark scripts' own arithmetic and a short real run (the timings themselves are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def sampler_overhead(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import importlib

    return importlib.import_module("sampler_overhead")


def test_sampler_only_fits_the_line_and_the_break_even(sampler_overhead):
    """A fake run whose time outside the denoiser is exactly 3 ms + 2 ms per NFE (and 5 ms at NFE 4 for a sampler
    with one point): the fit recovers both, and the break-even call is where (3 + 2 n) / (n call) = 0.10."""
    points = [("a", 1, 1), ("a", 4, 4), ("a", 16, 16), ("b", 4, 2)]
    nfe = {("a", 1): 1, ("a", 4): 4, ("a", 16): 16, ("b", 2): 4}

    def run(name, steps):
        n = nfe[(name, steps)]
        outside = (3.0 + 2.0 * n) if name == "a" else 5.0
        inside = 0.25 * n  # seconds in the "network"; only the difference is the sampler's
        return SimpleNamespace(seconds=inside + outside / 1e3, nfe=n), inside

    out = sampler_overhead.sampler_only(points, run, repeats=3)
    a, b = out["a"], out["b"]
    assert a["fixed_ms"] == pytest.approx(3.0, abs=1e-9) and a["per_nfe_ms"] == pytest.approx(2.0, abs=1e-9)
    assert a["break_even_call_ms"] == pytest.approx({4: 27.5, 16: 21.875})
    assert [p["nfe"] for p in a["points"]] == [1, 4, 16]
    assert b["fixed_ms"] is None and b["per_nfe_ms"] is None
    assert b["break_even_call_ms"] == pytest.approx({4: 12.5})


def test_sampler_overhead_runs_on_real_audio(tmp_path):
    """The benchmark end to end on a short real input: every grid row and the zero-cost section, consistent with
    each other (NFE counted, in-run ratio >= 1, the sampler's time outside the network positive)."""
    out = tmp_path / "o.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sampler_overhead.py"), "--seconds", "0.5",
                          "--repeats", "1", "--nfe", "1", "4", "--threads", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    rows = {(r["sampler"], r["nfe"]) for r in data["rows"]}
    assert rows == {("euler", 1), ("euler", 4), ("dpmpp_2m", 1), ("dpmpp_2m", 4), ("posterior", 1), ("posterior", 4),
                    ("edm_heun", 1), ("edm_heun", 3), ("edm_heun_churn", 1), ("edm_heun_churn", 3), ("pc", 4)}
    assert all(r["in_run_ratio"] > 1.0 for r in data["rows"])
    zero = data["zero_cost_denoiser"]
    assert set(zero) == {"euler", "dpmpp_2m", "posterior", "edm_heun", "edm_heun_churn", "pc"}
    assert all(p["outside_ms"] > 0 for z in zero.values() for p in z["points"])
    assert zero["pc"]["per_nfe_ms"] is None and set(zero["pc"]["break_even_call_ms"]) == {"4"}
    assert data["cpu"] and data["ckpt"] == "bundled"


def test_noise_draw_runs_and_uses_the_vectorised_path(tmp_path):
    """The noise benchmark end to end: every timing present and positive, and on this PyTorch the vectorised float64
    path is the one ``randn_like`` takes (its check on first use passed)."""
    out = tmp_path / "n.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "noise_draw.py"), "--seconds", "0.5",
                          "--repeats", "3", "--threads", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["vectorised_path_used"] is True
    assert set(data["ms"]) == {"randn_like_complex128", "torch_randn_complex128", "torch_rand_float64", "box_muller",
                               "torch_randn_complex64", "call", "call_then_draw", "call_with_draw_on_a_thread"}
    assert all(v > 0 for x in data["ms"].values() for v in (x if isinstance(x, list) else [x]))
    assert data["values"] == 2 * 256 * data["state_shape"][-1]


def test_gpu_suite_keeps_to_its_budget(tmp_path):
    """benchmarks/gpu/run.sh (issue 14's one device call): with no budget left every step is skipped, named in
    the order the issue needs them, and the suite still ends with its log."""
    import os

    env = {**os.environ, "DEVICE": "cpu", "QUICK": "1", "SKIP_WHEELS": "1", "BUDGET": "0", "PYTHON": sys.executable,
           "OUT": str(tmp_path)}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu" / "run.sh")], capture_output=True, text=True,
                         env=env, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    log = (tmp_path / "suite.log").read_text()
    skipped = [line.split()[1].rstrip(":") for line in log.splitlines() if "skipped" in line]
    assert skipped == ["ncsnpp_vs_sgmse", "sampler_overhead", "sampler_overhead_big", "train_eager", "train_amp",
                       "train_compile", "train_amp_compile"], log
    assert "of the 0 s budget left" in log and "== done" in log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.log"]  # nothing ran, nothing else written


def test_scoring_pool_benchmark_runs_and_its_workers_import_no_torch(tmp_path):
    """benchmarks/scoring_pool.py end to end on 2 real test files: every time positive; a scoring worker of a
    16 kHz job imports neither PyTorch nor torchaudio (what makes the pool start in about 1.7 s, not 4.3 s), and its
    native thread pools run one thread (two 2-thread workers on 2 cores took 2.4x the CPU time per file)."""
    out = tmp_path / "pool.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scoring_pool.py"), "--files", "2",
                          "--repeats", "1", "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["worker_imports"] == [] and data["pool_start_s"] > 0
    assert data["worker_native_threads"] in (1, None)  # None: threadpoolctl is not installed
    (row,) = data["rows"]
    assert row["files"] == 2 and row["audio_seconds"] > 1 and row["workers_0_s"] > 0 and row["workers_2_s"] > 0


def test_estimates_table_scores_every_call_and_its_last_row_is_the_output(tiny_checkpoint, tmp_path):
    """benchmarks/estimates_table.py on 2 real test mixtures with EDM Heun, 2 steps: one row per call (NFE 3), its
    provenance, and the last call's scores equal those of the run's own output files."""
    import shutil

    from edm_se.data import builtin_test_set
    from edm_se.evaluate import evaluate_dirs

    test = tmp_path / "test"
    for sub in ("clean", "noisy"):
        (test / sub).mkdir(parents=True)
        for f in sorted((builtin_test_set() / sub).glob("*.flac"))[:2]:
            shutil.copy(f, test / sub / f.name)
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "estimates_table.py"), "--ckpt",
                          str(tiny_checkpoint), "--test-set", str(test), "--num-steps", "2", "--work",
                          str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--workers", "1"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "table.json").read_text())
    assert [r["nfe"] for r in record["rows"]] == [1, 2, 3] and record["nfe"] == 3
    assert record["test_set"]["n"] == 2 and len(record["checkpoint"]["sha256"]) == 64
    assert record["rows"][0]["sigma"] > record["rows"][-1]["sigma"]
    output = evaluate_dirs(tmp_path / "work" / "edm_heun_2", test / "clean", output_dir=tmp_path / "final",
                           metrics=("pesq", "estoi", "si_sdr"), num_workers=0, progress=False)
    for m in ("pesq", "estoi", "si_sdr"):
        assert record["rows"][-1]["scores"][m]["mean"] == pytest.approx(output["scores"][m]["mean"], abs=1e-3)
    again = subprocess.run(res.args, capture_output=True, text=True, timeout=600, cwd=REPO)  # resumed: no audio
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((tmp_path / "out" / "table.json").read_text())
    assert resumed["nfe"] == 3 and resumed["files_enhanced_now"] == 0 and record["files_enhanced_now"] == 2
    for a, b in zip(resumed["rows"], record["rows"]):
        for m in ("pesq", "estoi", "si_sdr"):
            assert a["scores"][m]["mean"] == pytest.approx(b["scores"][m]["mean"], abs=1e-9)
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.count("\n| ") == 5  # header, noisy input and 3 calls
    assert (tmp_path / "out" / "estimates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_count_of_zero_is_a_usage_error_not_a_traceback():
    """--repeats 0 (and --rounds, --steps, --files) ended in statistics.median's traceback after the set-up; it is
    argparse's one-line usage error (status 2) before any work."""
    for script, option in (("scoring_pool.py", "--files"), ("sampler_overhead.py", "--repeats"),
                           ("train_throughput.py", "--steps")):
        res = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), option, "0"], capture_output=True,
                             text=True, timeout=120, cwd=REPO)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert res.stderr.strip().splitlines()[-1] == f"{script}: error: argument {option}: 0 is not >= 1"
