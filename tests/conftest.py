"""Shared fixtures: a tiny trained-from-scratch checkpoint and a tiny real-audio test set."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Small, fast training overrides shared by the tests that run `edm-se train` (tiny net, short crops).
TINY_TRAIN = [
    "net=tiny",
    "trainer.batch_size=2",
    "trainer.log_every=1",
    "trainer.val_every=0",
    "trainer.warmup_steps=2",
    "trainer.num_workers=0",
    "trainer.tensorboard=false",
    "trainer.progress=false",
    "trainer.threads=1",
    "data.train.segment_seconds=0.51",
]


@contextlib.contextmanager
def shared_lock(name: str):
    """An inter-process lock on ``data_cache/.locks/<name>.lock``: the tests run in parallel workers (pytest-xdist),
    and the real corpus, its download cache and the sgmse wheel are built once, by whichever worker comes first."""
    from filelock import FileLock

    locks = REPO / "data_cache" / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{name}.lock")):
        yield


def edm_se_cmd(*args: str) -> list[str]:
    """The console script run through the current interpreter (works without the venv's bin/ on PATH)."""
    return [sys.executable, "-m", "edm_se.cli", *args]


def _cli_env(**extra: str) -> dict:
    """The environment of a CLI run in the tests: unbuffered output, one OpenMP thread."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path | None = None):
    full_env = _cli_env(**(env or {}))
    return subprocess.run(edm_se_cmd(*args), capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or REPO)


# The program of run_cli_many: every command line through edm_se.cli.main in one interpreter, each with its own
# stdout/stderr; an uncaught exception is printed as the console script would print it (a traceback, status 1).
_CLI_MANY = r"""
import contextlib, io, json, sys, traceback
from edm_se.cli import main
out = []
for argv in json.load(sys.stdin):
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(argv)
        except SystemExit as exit_:  # as the interpreter ends on it: a message goes to stderr with status 1
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if exit_.code is not None and not isinstance(exit_.code, int):
                print(exit_.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
    out.append({"args": argv, "returncode": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()})
print("\n@@RESULTS@@" + json.dumps(out))
"""


def run_cli_many(*argvs: list[str], timeout: float = 300, env: dict | None = None) -> list:
    """Several ``edm-se`` command lines in one Python process, one after another; one result per command line, with
    ``args``, ``returncode``, ``stdout`` and ``stderr`` as from :func:`run_cli`.

    For the tests of refused command lines: each separate ``edm-se`` process spends about 3 s importing PyTorch
    before it can refuse anything, and a test of ten refusals spent 30 s on that. The commands run through the
    console script's own ``main`` (its error handler, its exit statuses); only the interpreter is shared."""
    import json
    from types import SimpleNamespace

    res = subprocess.run([sys.executable, "-c", _CLI_MANY], input=json.dumps([list(a) for a in argvs]),
                         capture_output=True, text=True, timeout=timeout, env=_cli_env(**(env or {})), cwd=REPO)
    _, sep, tail = res.stdout.rpartition("\n@@RESULTS@@")
    assert res.returncode == 0 and sep, f"the command runner failed: {res.stderr[-3000:]}"
    return [SimpleNamespace(**r) for r in json.loads(tail)]


def run_two_processes(port: int, run_dir: Path, *train_args: str, timeout: float = 600):
    """``python -m torch.distributed.run --nproc_per_node=2 -m edm_se.cli train run_dir=RUN_DIR ARGS...`` on the CPU.

    Run once more, from an empty ``run_dir``, only when the first failing rank was killed by a signal (CI once saw
    rank 1 abort in C++, "terminate called without an active exception", in one run of many; an error of edm_se
    itself exits with a Python traceback and status 1, and is never retried). The retry is reported as a warning."""
    import re
    import shutil
    import warnings

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "-m",
           "edm_se.cli", "train", f"run_dir={run_dir}", *train_args]
    env = _cli_env()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    root = res.stderr.rpartition("Root Cause")[2]
    crash = re.search(r"exitcode\s*:\s*-(\d+)", root)
    if res.returncode != 0 and crash:
        warnings.warn(f"a rank of the two-process run died of signal {crash.group(1)}; ran it again: "
                      f"{res.stderr.strip().splitlines()[0][:200]}")
        shutil.rmtree(run_dir, ignore_errors=True)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    return res


def trainer_and_batches(cfg):
    """A :class:`edm_se.train.Trainer` for a composed train config, with its training data loaded, and the iterator
    of its batches (what ``fit`` would draw), for stepping a paradigm by hand."""
    from edm_se.train import Trainer, instantiate_data

    tr = Trainer(cfg)
    tr._train_set = instantiate_data(cfg.data.train)
    return tr, tr._loader()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint trained for 4 steps with the tiny net (real training code path, seconds on a CPU)."""
    run_dir = tmp_path_factory.mktemp("tiny_run")
    res = run_cli("train", f"run_dir={run_dir}", "trainer.max_steps=4", "trainer.ckpt_every=4", *TINY_TRAIN)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / "last.pt"
    assert ckpt.exists()
    return ckpt


def speech_like(seconds: float = 2.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Voiced harmonic signal with a gliding pitch, 1/k spectral tilt and a syllabic on/off envelope (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 110.0 + 40.0 * rng.uniform() + 30.0 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wave = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 40))
    wave = wave * np.clip(np.sin(2 * np.pi * 3.0 * t), 0.0, None) ** 0.5
    return (0.3 * wave / np.max(np.abs(wave))).astype(np.float32)


def _sde_factories() -> dict:
    from edm_se import sde as S

    return {
        "edm": lambda: S.EDM(sigma_max=1.5),
        "ve": lambda: S.VE(sigma_min=0.01, sigma_max=1.5),
        "vp": lambda: S.VP(),
        "ouve": lambda: S.OUVE(),
        "ouve_decoupled": lambda: S.OUVEDecoupled(),
        "ouvp": lambda: S.OUVP(theta=1.0),
        "ouvp_theta0": lambda: S.OUVP(theta=0.0),
        "oucosine": lambda: S.OUCosine(theta=0.0),
        "oucosine_theta": lambda: S.OUCosine(theta=1.5),
        "bbed": lambda: S.BBED(),
        "sbve": lambda: S.SBVE(),
        "sbvp": lambda: S.SBVP(),
        "flow": lambda: S.FlowMatching(),
    }


SDES = _sde_factories()  # every SDE class, with theta = 0 variants: name -> factory


def sigkill_at_checkpoint(proc: subprocess.Popen, last: Path, min_step: int, max_step: int,
                          timeout: float = 300) -> int | None:
    """SIGKILL ``proc`` once its checkpoint ``last`` holds a step in ``[min_step, max_step)``; returns that step, or
    None when the run ended first. Waits for the process to die."""
    from edm_se.checkpoint import load_checkpoint

    deadline = time.time() + timeout
    killed = None
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                step = load_checkpoint(last)["step"]
            except Exception:  # noqa: BLE001 - being written (atomic rename makes this rare)
                step = 0
            if min_step <= step < max_step:
                proc.send_signal(signal.SIGKILL)
                killed = step
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    return killed
