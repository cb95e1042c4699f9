"""Training: logs and checkpoints, exact resume after SIGKILL, and 2-process DDP (gloo) replicas in sync."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess

import pytest
import torch
from conftest import REPO, TINY_TRAIN, edm_se_cmd, run_cli, run_two_processes, sigkill_at_checkpoint

from edm_se.checkpoint import load_checkpoint


def _log_rows(run_dir):
    with open(run_dir / "log.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("loss")]


def test_training_writes_logs_and_loadable_checkpoints(tiny_checkpoint):
    run_dir = tiny_checkpoint.parent.parent
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt["step"] == 4
    assert {"model", "ema", "optimizer", "scheduler", "config", "train_config"} <= set(ckpt)
    assert {"sde", "precond", "net", "stft", "sampler", "sample_rate"} <= set(ckpt["config"])
    rows = _log_rows(run_dir)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert (run_dir / "checkpoints" / "best.pt").exists()
    assert (run_dir / "config.yaml").exists()


def test_existing_run_dir_needs_resume_flag(tiny_checkpoint, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint.parent.parent, run_dir)
    res = run_cli("train", f"run_dir={run_dir}", "trainer.max_steps=5", *TINY_TRAIN)
    assert res.returncode == 2
    assert "resume=true" in res.stderr and "Traceback" not in res.stderr


def _train_args(run_dir, max_steps):
    return ["train", f"run_dir={run_dir}", f"trainer.max_steps={max_steps}", "trainer.ckpt_every=3",
            "trainer.optimizer.lr=2e-3", *TINY_TRAIN]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    steps = 18
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # Reference: one uninterrupted run.
    ref_dir = tmp_path / "ref"
    res = subprocess.run(edm_se_cmd(*_train_args(ref_dir, steps)), capture_output=True, text=True, env=env,
                         timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    # Interrupted: SIGKILL once a checkpoint past step 3 exists, then resume=true.
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(edm_se_cmd(*_train_args(run_dir, steps)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    last = run_dir / "checkpoints" / "last.pt"
    killed_at = sigkill_at_checkpoint(proc, last, 3, steps)
    if killed_at is None:
        pytest.skip("training finished before it could be killed (machine too fast for this test's polling)")
    assert proc.returncode == -signal.SIGKILL
    res = subprocess.run(edm_se_cmd(*_train_args(run_dir, steps), "resume=true"), capture_output=True, text=True,
                         env=env, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    resumed = load_checkpoint(last)
    reference = load_checkpoint(ref_dir / "checkpoints" / "last.pt")
    assert resumed["step"] == steps == reference["step"]
    # Same data order, noise, optimizer and EMA state: the resumed run ends where the uninterrupted one does.
    for key in ("model", "ema"):
        for name, value in reference[key].items():
            torch.testing.assert_close(resumed[key][name], value, rtol=1e-5, atol=1e-6, msg=f"{key}.{name}")
    rows = _log_rows(run_dir)
    assert [int(r["step"]) for r in rows] == list(range(1, steps + 1))
    losses = [float(r["loss"]) for r in rows]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_process_ddp_keeps_replicas_identical(tmp_path):
    run_dir = tmp_path / "ddp"
    res = run_two_processes(29517, run_dir, *_train_args(run_dir, 4)[2:], "device=cpu")
    assert res.returncode == 0, res.stderr[-3000:]
    check = json.loads((run_dir / "ddp_check.json").read_text())
    assert check["world_size"] == 2
    assert len(check["checksums"]) == 2 and check["identical"], check
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 4


def test_ema_warmup_forgets_the_initial_weights():
    """decay_n = min(decay, (1 + n) / (10 + n)): early updates follow the model, later ones average slowly."""
    import torch

    from edm_se.train_optim import ema_with_warmup

    update = ema_with_warmup(0.999)
    ema, cur = [torch.zeros(3)], [torch.ones(3)]
    update(ema, cur, torch.tensor(0))
    torch.testing.assert_close(ema[0], torch.full((3,), 0.9))  # decay 0.1 at the first averaged update
    ema = [torch.zeros(3)]
    update(ema, cur, torch.tensor(100000))
    torch.testing.assert_close(ema[0], torch.full((3,), 0.001))  # capped at the configured decay


# ------------------------------------------------------------------- LR schedule, clipping, best.pt (in process)
def _tiny_cfg(run_dir, *overrides):
    from hydra import compose, initialize_config_dir

    from edm_se.cli import conf_dir

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose(config_name="train", overrides=[*TINY_TRAIN, f"run_dir={run_dir}", *overrides])


def test_lr_schedule_warmup_then_cosine_to_a_tenth():
    from edm_se.train_optim import lr_lambda

    fn = lr_lambda(10, 110, "cosine")
    assert [fn(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert fn(60) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert fn(110) == pytest.approx(0.1) and fn(500) == pytest.approx(0.1)
    const = lr_lambda(4, 100, "constant")
    assert [const(s) for s in (0, 3, 50, 99)] == pytest.approx([0.25, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_lambda(0, 10, "linear")


def test_gradient_is_clipped_to_grad_clip(tmp_path):
    """One plain SGD step with lr 1: the parameter change is the gradient clipped to norm grad_clip."""
    from edm_se.train import Trainer

    clip = 1e-3
    cfg = _tiny_cfg(tmp_path / "run", "trainer.max_steps=1", "trainer.optimizer._target_=torch.optim.SGD",
                    "trainer.optimizer.lr=1.0", "trainer.optimizer.weight_decay=0.0", "trainer.warmup_steps=0",
                    "trainer.lr_schedule=constant", f"trainer.grad_clip={clip}")
    trainer = Trainer(cfg)
    before = [p.detach().clone() for p in trainer.denoiser.parameters()]
    trainer.fit()
    delta = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(trainer.denoiser.parameters(), before)))
    grad_norm = float(_log_rows(tmp_path / "run")[0]["grad_norm"])  # the norm before clipping
    assert grad_norm > 10 * clip
    assert float(delta) == pytest.approx(clip, rel=1e-4)


def test_without_a_progress_bar_the_trainer_logs_progress_lines(tmp_path, monkeypatch, caplog):
    """trainer.progress=false (a worker process, a log file): a line with step, loss, steps/s and the time left at
    the first log interval after every PROGRESS_LINE_SECONDS; with the bar, none."""
    import logging

    from edm_se import train as T

    monkeypatch.setattr(T, "PROGRESS_LINE_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="edm_se.train"):
        T.Trainer(_tiny_cfg(tmp_path / "a", "trainer.max_steps=4", "trainer.log_every=2",
                            "trainer.progress=false")).fit()
    lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert [ln.split()[1] for ln in lines] == ["2/4", "4/4"], lines
    assert all(re.fullmatch(r"step \d/4  loss=\d+\.\d{4}  \d+\.\d\d steps/s  about \d+ min left", ln)
               for ln in lines), lines
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edm_se.train"):
        T.Trainer(_tiny_cfg(tmp_path / "b", "trainer.max_steps=4", "trainer.log_every=2",
                            "trainer.progress=true")).fit()
    assert not [r for r in caplog.records if "steps/s" in r.getMessage()]


def test_best_checkpoint_is_the_best_validation_pesq(tmp_path, monkeypatch):
    from edm_se.train import Trainer

    cfg = _tiny_cfg(tmp_path / "run", "trainer.max_steps=4", "trainer.val_every=1", "trainer.ckpt_every=1")
    scores = iter([1.2, 1.6, 1.4, 1.5])
    monkeypatch.setattr(Trainer, "validate", lambda self: {"val_pesq": next(scores), "val_estoi": 0.5,
                                                           "val_si_sdr": 1.0})
    Trainer(cfg).fit()
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["step"] == 2 and best["best"] == pytest.approx(1.6)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 4


def test_a_silent_validation_output_is_nan_not_a_crash(tmp_path, monkeypatch, caplog):
    """PESQ and SI-SDR refuse an all-zero estimate (SI-SDR used to call it perfect, +inf); validation records NaN
    for them with a warning and goes on, and a NaN never becomes the best checkpoint's score."""
    import logging

    import dataclasses

    from edm_se.model import EnhancementModel
    from edm_se.train import Trainer

    real = EnhancementModel.enhance

    def silent(self, waveform, sample_rate, **kwargs):  # noqa: ANN001
        res = real(self, waveform, sample_rate, **kwargs)
        return dataclasses.replace(res, waveform=torch.zeros_like(res.waveform))

    monkeypatch.setattr(EnhancementModel, "enhance", silent)
    cfg = _tiny_cfg(tmp_path / "run", "trainer.max_steps=1", "trainer.val_files=2", "trainer.val_num_steps=1")
    with caplog.at_level(logging.WARNING, logger="edm_se.train"):
        scores = Trainer(cfg).validate()
    assert math.isnan(scores["val_pesq"]) and math.isnan(scores["val_si_sdr"])
    assert abs(scores["val_estoi"]) < 0.2  # ESTOI is defined for silence: about 0
    assert sum("output is silent" in r.getMessage() for r in caplog.records) == 2


# ------------------------------------------------------------------- data order, run log (the trainer's parts)
def test_ranks_split_the_single_process_order_without_overlap():
    """Two ranks of batch 3 see, step by step, the examples one process of batch 6 sees, each exactly once."""
    from itertools import islice

    from edm_se.train_data import PositionSampler, RankBatches

    base = PositionSampler(7, seed=5, start=0)
    one = list(islice(iter(RankBatches(base, 0, 6, 1, 0)), 4))
    ranks = [list(islice(iter(RankBatches(PositionSampler(7, seed=5, start=0), 0, 3, 2, r)), 4)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == one
    flat = [i for batch in one for i in batch]  # 24 positions = 3 epochs of 7 + 3
    for epoch in range(3):
        assert sorted(flat[7 * epoch:7 * epoch + 7]) == list(range(7))  # each epoch a permutation
    assert flat[:7] != flat[7:14]  # reshuffled per epoch
    # resuming at step 2 continues the same order
    assert list(islice(iter(RankBatches(PositionSampler(7, seed=5, start=0), 2, 6, 1, 0)), 2)) == one[2:]
    # an unbounded dataset gets epoch * N + index, so on-the-fly mixing draws anew every epoch
    unbounded = PositionSampler(7, seed=5, start=0, unbounded=True)
    assert [unbounded.index(p) for p in range(14)] == [i + 7 * (p // 7) for p, i in enumerate(flat[:14])]
    with pytest.raises(ValueError, match="empty"):
        PositionSampler(0, seed=0, start=0)


def test_collate_refuses_examples_of_different_lengths():
    from edm_se.train_data import collate

    items = [{"clean": torch.zeros(4), "noisy": torch.ones(4), "label": 1, "text": "a"},
             {"clean": torch.zeros(4), "noisy": torch.ones(4), "label": 2, "text": "b"}]
    batch = collate(items)
    assert batch["clean"].shape == (2, 4) and batch["label"].tolist() == [1, 2] and batch["text"] == ["a", "b"]
    with pytest.raises(ValueError, match=r"different lengths \[4, 5\]"):
        collate([items[0], {"clean": torch.zeros(5), "noisy": torch.zeros(5)}])


def test_run_log_rows_average_the_steps_and_resume_drops_later_rows(tmp_path):
    from edm_se.train_log import RunLog

    run_log = RunLog(tmp_path, 0, tensorboard=False)
    run_log.record({"loss": 1.0, "grad_norm": 5.0, "task_loss": 2.0})
    run_log.record({"loss": 3.0, "grad_norm": 7.0, "task_loss": 4.0})
    row = run_log.flush(2, lr=0.1)
    assert (row["loss"], row["grad_norm"], row["task_loss"], row["lr"]) == (2.0, 7.0, 3.0, 0.1)
    assert row["steps_per_s"] > 0
    run_log.validation(2, {"val_pesq": 1.5})
    run_log.record({"loss": 5.0})
    assert run_log.flush(3, lr=0.1)["loss"] == 5.0  # only the steps since the last row
    with open(tmp_path / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["2", "2", "3"] and rows[1]["val_pesq"] == "1.5"
    assert list(rows[0]) == ["step", "loss", "lr", "grad_norm", "task_loss", "steps_per_s", "val_pesq"]
    RunLog(tmp_path, 2, tensorboard=False)  # a run resumed from step 2 logs step 3 again
    with open(tmp_path / "log.csv", newline="") as fh:
        assert [r["step"] for r in csv.DictReader(fh)] == ["2", "2"]


def test_a_resume_compares_the_config_and_the_start_checkpoints_by_content_not_path(tmp_path, caplog):
    from omegaconf import OmegaConf

    from edm_se.checkpoint import CheckpointError
    from edm_se.provenance import file_sha256
    from edm_se.train_resume import refuse_changed_config

    a, b, c = tmp_path / "a.pt", tmp_path / "moved" / "a.pt", tmp_path / "other.pt"
    b.parent.mkdir()
    a.write_bytes(b"enhancer weights")
    b.write_bytes(b"enhancer weights")  # the same file in another checkout
    c.write_bytes(b"other weights")
    last = tmp_path / "last.pt"

    def cfg(path, lr=1e-3, resume="true"):
        return OmegaConf.create({"resume": resume, "run_dir": "x", "trainer": {"lr": lr, "threads": 1},
                                 "paradigm": {"_target_": "P", "enhancer_checkpoint": str(path)}})

    def ckpt(path, recorded=True):
        info = {"input_checkpoints": {"paradigm.enhancer_checkpoint": file_sha256(path)}} if recorded else {}
        stored = OmegaConf.to_container(cfg(path))
        stored["run_dir"], stored["trainer"]["threads"] = "elsewhere", 2  # where and how fast: ignored
        return {"train_config": stored, "info": info}

    assert refuse_changed_config(last, ckpt(a), cfg(a)) == []
    assert refuse_changed_config(last, ckpt(a), cfg(b)) == []  # moved: same content
    with pytest.raises(CheckpointError, match=r"last\.pt: was trained with another config \(changed: trainer\.lr\)"):
        refuse_changed_config(last, ckpt(a), cfg(b, lr=2e-3))
    with pytest.raises(CheckpointError, match=r"changed: paradigm\.enhancer_checkpoint\)"):
        refuse_changed_config(last, ckpt(a), cfg(c))  # another enhancer
    old = ckpt(a)
    a.write_bytes(b"overwritten")  # the same path, other content than the run started from
    with pytest.raises(CheckpointError, match=r"changed: paradigm\.enhancer_checkpoint\)"):
        refuse_changed_config(last, old, cfg(a))
    # runs from before the content was recorded: the old file decides while it exists, a gone one is taken as moved
    legacy = ckpt(c, recorded=False)
    with pytest.raises(CheckpointError, match=r"changed: paradigm\.enhancer_checkpoint\)"):
        refuse_changed_config(last, legacy, cfg(b))
    assert refuse_changed_config(last, ckpt(b, recorded=False), cfg(b)) == []
    legacy["train_config"]["paradigm"]["enhancer_checkpoint"] = str(tmp_path / "gone.pt")
    with caplog.at_level("WARNING", logger="edm_se.train"):
        assert refuse_changed_config(last, legacy, cfg(b)) == []
    assert "gone.pt then" in caplog.text and "taken as a move" in caplog.text
    # resume=force lists the changes instead of refusing them
    assert refuse_changed_config(last, ckpt(b), cfg(c, lr=2e-3, resume="force")) == [
        "paradigm.enhancer_checkpoint", "trainer.lr"]
    assert refuse_changed_config(last, {"model": {}}, cfg(c)) == []  # an imported checkpoint: no config to compare
