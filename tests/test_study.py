"""Studies: every preset composes (and its swept options exist); a tiny end-to-end study through the real CLI
writes metrics.json per cell, results.csv/md and figures; a re-run skips finished cells; a failing cell records
error.json while the others finish; a training cell trains (resumably) and writes several points."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import run_cli, run_cli_many
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from edm_se import study
from edm_se.checkpoint import FORMAT, atomic_torch_save
from edm_se.cli import conf_dir

PRESETS = sorted(p.stem for p in (Path(conf_dir()) / "study").glob("*.yaml"))


def _compose(name: str, overrides: list[str] = (), hydra_cfg: bool = False):
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=hydra_cfg)


# ----------------------------------------------------------------------------------------------- composition
def test_all_presets_are_tested():
    assert {"steps", "churn", "t_start", "design", "recipes"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_sweeps_existing_options(preset):
    cfg = _compose("study", [f"study={preset}"], hydra_cfg=True)
    assert cfg.study.name == preset
    assert cfg.hydra.mode.name == "MULTIRUN"
    raw = OmegaConf.load(Path(conf_dir()) / "study.yaml")  # compose() resolves hydra.* for a single run
    assert OmegaConf.to_container(raw.hydra.sweep, resolve=False)["subdir"] == (
        "${edm_se_cell:${hydra.job.override_dirname},${ckpt},${study.kind}}")  # stable; model=<label> with ckpt=
    assert "now:" not in str(OmegaConf.to_container(cfg.hydra.sweep)["dir"])  # stable: a re-run finds its cells
    assert cfg.hydra.callbacks.gather._target_ == "edm_se.study.GatherCallback"
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert params, "a study must sweep something"
    samplers = {p.stem for p in (Path(conf_dir()) / "sampler").glob("*.yaml")}
    for name in params.get("sampler", []):
        assert name in samplers
    if cfg.study.kind == "sampler":
        # every swept value composes into a cell config with that value
        for key, values in params.items():
            for value in values:
                cell = _compose("study", [f"study={preset}", f"{key}={value}"])
                if key != "sampler":
                    assert str(OmegaConf.select(cell, key)) == value
    else:
        assert cfg.study.kind == "train"
        assert set(params["cell"]) == set(cfg.study.cells)
        for name in params["cell"]:
            spec = cfg.study.cells[name]
            train_cfg = _compose(cfg.study.train_config, [*cfg.study.train_overrides, *spec.overrides])
            assert "_target_" in train_cfg.sde and "_target_" in train_cfg.precond
            for entry in spec.get("eval") or cfg.study.eval:
                assert entry.sampler in samplers


def test_design_cells_are_the_intended_pairs():
    cfg = _compose("study", ["study=design"])
    pairs = {}
    for name, spec in cfg.study.cells.items():
        ov = dict(o.split("=", 1) for o in spec.overrides)
        pairs[name] = (ov["sde"], ov["precond"])
    assert set(pairs.values()) == {("ouve", "sgmse"), ("oucosine", "edm"), ("bbed", "edm"), ("ve", "edm"),
                                   ("ouve", "edm"), ("oucosine", "sgmse"), ("sbve", "edm"), ("sbvp", "edm"),
                                   ("flow", "edm")}
    assert all(name == f"{sde}+{precond}" for name, (sde, precond) in pairs.items())
    for spec in cfg.study.cells.values():
        ov = dict(o.split("=", 1) for o in spec.overrides)
        assert ov["loss"] == ov["precond"]                  # each preconditioning trains with its own loss
        if ov["sde"] == "oucosine":
            assert ov["sde.theta"] == "0.0"                # the seed paper's choice


# ----------------------------------------------------------------------------------------------- helpers
def test_mean_ci95_matches_student_t():
    from edm_se.metrics import mean_ci95  # what study summaries use

    x = np.array([1.0, 2.0, 4.0, 7.0])
    out = mean_ci95(x)
    assert out["n"] == 4 and out["mean"] == pytest.approx(3.5)
    assert out["ci95"] == pytest.approx(3.182446 * x.std(ddof=1) / 2, rel=1e-5)
    assert mean_ci95([float("nan"), 2.0])["n"] == 1
    assert math.isnan(mean_ci95([])["mean"])


def test_kept_files_are_spread_and_stable(tmp_path):
    ts = study.TestSet(root=tmp_path, names=[f"f{i}.flac" for i in range(10)], snr_db=[None] * 10)
    assert ts.kept(2) == ["f0.flac", "f9.flac"]
    assert ts.kept(3) == ["f0.flac", "f5.flac", "f9.flac"] or ts.kept(3) == ["f0.flac", "f4.flac", "f9.flac"]
    assert ts.kept(0) == [] and len(ts.kept(20)) == 10


def test_cell_config_ignores_keys_that_do_not_change_results():
    a = OmegaConf.create({"sampler": {"num_steps": 2}, "device": "cpu", "threads": 1, "seed": 0})
    b = OmegaConf.create({"sampler": {"num_steps": 2}, "device": "cuda", "threads": 4, "seed": 0,
                          "heldout_check": "warn"})  # a cell finished before the check existed stands
    c = OmegaConf.create({"sampler": {"num_steps": 3}, "device": "cpu", "threads": 1, "seed": 0})
    assert study.cell_config(a) == study.cell_config(b) != study.cell_config(c)


def test_cell_config_of_a_training_cell_ignores_the_other_cells():
    def cfg(cells, cell="a", description="x"):
        return OmegaConf.create({"cell": cell, "seed": 0, "study": {
            "name": "s", "description": description, "kind": "train", "cells": cells}})
    a = {"overrides": ["sde=ve"]}
    base = study.cell_config(cfg({"a": a}))
    assert study.cell_config(cfg({"a": a, "b": {"overrides": ["sde=bbed"]}}, description="y")) == base
    assert study.cell_config(cfg({"a": {"overrides": ["sde=bbed"]}})) != base      # this cell's own entry counts
    assert study.cell_config(cfg({"a": a, "b": a}, cell="b")) != base


# ----------------------------------------------------------------------------------------------- fixtures
def _save_tiny(path: Path, seed: int = 0) -> Path:
    """A random tiny model (no training): build_model(net=tiny) saved in the checkpoint format."""
    from edm_se.config import build_model

    cfg = _compose("train", ["net=tiny"])
    torch.manual_seed(seed)
    parts = build_model(cfg)
    full = OmegaConf.to_container(cfg, resolve=True)
    config = {k: full[k] for k in ("sde", "precond", "net", "stft", "sampler")}
    config["sample_rate"] = int(full.get("sample_rate", 16000))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"format": FORMAT, "config": config, "ema": parts.denoiser.state_dict(), "step": 0}, path)
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def tiny_test_set(tmp_path_factory) -> Path:
    """Two 1.2 s clean/noisy pairs cut from the built-in test set, with a manifest giving their SNRs."""
    src = study.load_test_set(None)
    root = tmp_path_factory.mktemp("testset")
    rows = []
    for i, name in enumerate(src.names[:2]):
        out = f"utt{i}.flac"
        for sub, path in (("clean", src.clean(name)), ("noisy", src.noisy(name))):
            wave, sr = sf.read(path, dtype="float32")
            (root / sub).mkdir(exist_ok=True)
            sf.write(root / sub / out, wave[: int(1.2 * sr)], sr)
        rows.append({"name": out, "snr_db": 5.0 * i})
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["name", "snr_db"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def _mtimes(paths):
    return {p: p.stat().st_mtime_ns for p in paths}


# ----------------------------------------------------------------------------------------------- end to end
def test_study_end_to_end_resume_and_failure(tiny_ckpt, tiny_test_set, tmp_path):
    args = ["study", "study=steps", f"ckpt={tiny_ckpt}", f"test_set={tiny_test_set}", "study.name=e2e",
            f"hydra.sweep.dir={tmp_path / 'e2e'}", "sampler=edm_heun", "sampler.num_steps=2,3",
            "sampler.schedule.sigma_min=0.3,1000", "keep_audio=1", "num_workers=1", "threads=1",
            "peers=[]"]  # peers: see the WER + peer study test
    res = run_cli(*args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    sweep = tmp_path / "e2e"
    cell = "model=tiny,sampler.num_steps={},sampler.schedule.sigma_min={},sampler=edm_heun"  # ckpt=.../tiny.pt
    good = [sweep / cell.format(n, 0.3) for n in (2, 3)]
    # sigma_min = 1000 passes the config checks (a number > 0) and fails in the cell, against the model's SDE (from
    # 2 steps on: one step uses sigma_max alone)
    bad, bad2 = (sweep / cell.format(n, 1000) for n in (2, 3))
    # the failing cells recorded their error and did not stop the sweep
    err = json.loads((bad / "error.json").read_text())
    assert err["type"] and "sigma_min=1000 must be below" in err["message"] and "Traceback" in err["traceback"]
    assert not (bad / "metrics.json").exists() and (bad2 / "error.json").exists()
    nfes = []
    for cell in good:
        m = json.loads((cell / "metrics.json").read_text())
        assert m["format"] == study.FORMAT and m["config"]["sampler"]["num_steps"] in (2, 3)
        (point,) = m["points"]
        assert point["n"] == 2 and point["nfe"] >= 1 and point["rtf"] > 0
        assert set(point["metrics"]) == {"pesq", "estoi", "si_sdr"}
        assert all(math.isfinite(v["mean"]) for v in point["metrics"].values())
        assert set(point["per_snr"]["pesq"]) == {"0", "5"}
        assert len(list((cell / "audio").glob("*.flac"))) == 1
        nfes.append(point["nfe"])
    assert nfes[1] > nfes[0]
    assert (sweep / "noisy_metrics.json").exists()
    table = pd.read_csv(sweep / "results.csv")
    cells = table[(table.kind == "cell") & table.snr_db.isna()]
    assert len(cells) == 2 * 3  # 2 cells x 1 point x 3 metrics
    assert sorted(cells.nfe.unique()) == sorted(nfes)
    assert set(table[table.kind == "noisy"].metric) == {"pesq", "estoi", "si_sdr"}
    assert "Failed cells" in (sweep / "results.md").read_text()
    assert (sweep / "metric_vs_nfe.png").stat().st_size > 1000
    assert (sweep / "spectrograms.png").exists()
    assert "results:" in res.stdout and "failed cell" in res.stdout
    # one NFE (spectrogram.nfe=3, not a list, crashed the figure): the nearest NFE with audio, beside clean and noisy
    from edm_se import plots

    fig = plots.plot_spectrograms(plots.load_results(sweep / "results.csv"), sweep, nfe=nfes[1] + 0.4)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["clean", "noisy", f"enhanced, NFE={nfes[1]:g}"]

    # a re-run skips both finished cells (files untouched) and retries the failed one
    before = _mtimes([c / "metrics.json" for c in good] + [c / "audio" for c in good])
    res2 = run_cli(*args)
    assert res2.returncode == 0, res2.stderr[-3000:]
    log = res2.stdout + res2.stderr
    assert log.count("skipping finished cell") == 2
    assert _mtimes(before) == before
    assert (bad / "error.json").exists()

    # gather() alone rebuilds the same table
    out = study.gather(sweep, plot=False)
    assert out["cells"] == 2 and len(out["failed"]) == 2
    again = pd.read_csv(out["results"])
    pd.testing.assert_frame_equal(again, table)


def test_missing_checkpoint_or_unreadable_test_file_stops_the_study_with_one_line(tiny_test_set, tmp_path):
    # a test set with a file that is not audio (text named .flac, which FFmpeg opened as FLAC and decoded to nothing:
    # "holds no samples"); every cell failed on it, one by one
    broken = tmp_path / "broken"
    shutil.copytree(tiny_test_set, broken)
    (broken / "noisy" / "utt1.flac").write_text("not audio\n")
    missing, unreadable, no_metric = run_cli_many(
        ["study", "study=steps", f"ckpt={tmp_path / 'nope.pt'}", f"test_set={tiny_test_set}",
         f"hydra.sweep.dir={tmp_path / 's'}", "sampler.num_steps=1"],
        ["study", "study=steps", f"test_set={broken}", f"hydra.sweep.dir={tmp_path / 'b'}", "sampler=euler",
         "sampler.num_steps=1,2", "peers=[]"],
        # WER alone on a test set without transcripts: every cell ran and scored nothing ("No finished cell yet")
        ["study", "study=steps", f"test_set={tiny_test_set}", f"hydra.sweep.dir={tmp_path / 'w'}", "sampler=euler",
         "sampler.num_steps=1", "peers=[]", "metrics=[wer_whisper]"])
    assert no_metric.returncode == 2 and no_metric.stderr.strip().splitlines()[-1] == (
        "edm-se study: error: metrics=['wer_whisper']: none can be computed on this test set (the warning above says "
        "why); add one that can, e.g. metrics=[pesq,estoi,si_sdr]")
    assert not (tmp_path / "w").exists()
    assert missing.returncode == 2
    assert "checkpoint not found" in missing.stderr and "Traceback" not in missing.stderr
    assert unreadable.returncode == 2 and unreadable.stderr.strip().splitlines() == [
        f"edm-se study: error: {broken / 'noisy' / 'utt1.flac'}: not a readable audio file (Error opening "
        f"'{broken / 'noisy' / 'utt1.flac'}': Format not recognised.)"]
    assert not (tmp_path / "b").exists()
    # a clean reference 0.5 s shorter than its noisy file (not its recording) was scored on the first samples alone
    from edm_se.audio import AudioError

    short = tmp_path / "short"
    shutil.copytree(tiny_test_set, short)
    wave, sr = sf.read(short / "clean" / "utt1.flac", dtype="float32")
    sf.write(short / "clean" / "utt1.flac", wave[: len(wave) - sr // 2], sr)
    with pytest.raises(AudioError, match=r"utt1.flac: its length differs from its clean reference's by more than "
                                         r"10% \(11200/19200 samples at 16000 Hz: clean/noisy\); not the same "
                                         r"recording\?$"):
        study.load_test_set(short).check_audio()
    study.load_test_set(tiny_test_set).check_audio()


def test_training_cell_trains_then_evaluates_several_points(tiny_test_set, tmp_path):
    """A training-study cell (run in-process): trains a tiny model into the cell dir, resumes, writes 2 points."""
    cfg = _compose("study", ["study=recipes", "cell=seed_recipe", f"test_set={tiny_test_set}", "num_workers=1",
                             "keep_audio=0", "peers=[]"])
    cfg.study.train_overrides = ["net=tiny", "trainer.max_steps=2", "trainer.batch_size=2", "trainer.val_every=0",
                                 "trainer.num_workers=0", "trainer.tensorboard=false", "trainer.progress=false",
                                 "trainer.warmup_steps=1", "trainer.log_every=1", "data.train.segment_seconds=0.51"]
    cfg.study.cells.seed_recipe.eval = [{"sampler": "edm_heun", "num_steps": [1, 2]}]
    out_dir = tmp_path / "cell=seed_recipe"  # the real sweep layout: "=" in the path must survive the override
    result = study.run_cell(cfg, out_dir, tmp_path, "cell=seed_recipe", ["cell=seed_recipe"])
    assert result is not None, (out_dir / "error.json").read_text()
    assert (out_dir / "checkpoints" / "last.pt").exists()
    points = result["points"]
    assert [p["num_steps"] for p in points] == [1, 2]
    assert all(p["design"] == "seed_recipe" and p["sde"] == "oucosine" and p["precond"] == "edm" for p in points)
    # finished: a second call skips it
    mtime = (out_dir / "metrics.json").stat().st_mtime_ns
    assert study.run_cell(cfg, out_dir, tmp_path, "cell=seed_recipe", ["cell=seed_recipe"]) == result
    assert (out_dir / "metrics.json").stat().st_mtime_ns == mtime

    # a second study cell with the same training config reuses the finished checkpoint instead of training
    other = tmp_path / "other" / "cell=seed_recipe"
    cfg.reuse_checkpoints = [str(tmp_path)]
    again = study.run_cell(cfg, other, tmp_path / "other", "cell=seed_recipe", ["cell=seed_recipe"])
    assert again is not None, (other / "error.json").read_text()
    assert json.loads((other / "reused_checkpoint.json").read_text())["source"] == \
        str((out_dir / "checkpoints" / "last.pt").resolve())
    assert (other / "checkpoints" / "last.pt").read_bytes() == (out_dir / "checkpoints" / "last.pt").read_bytes()
    assert not (other / "log.csv").exists()  # nothing was trained
    assert [p["metrics"]["si_sdr"]["mean"] for p in again["points"]] == \
        pytest.approx([p["metrics"]["si_sdr"]["mean"] for p in points], abs=1e-4)
    # a different training config (seed, budget) is not a match
    base = study.compose_train_config(cfg, [*cfg.study.train_overrides, *cfg.study.cells.seed_recipe.overrides,
                                            "seed=0"])
    assert study.find_reusable_checkpoint(base, [tmp_path]) is not None
    for changed in ("seed=1", "trainer.max_steps=3"):
        probe = study.compose_train_config(cfg, [*cfg.study.train_overrides,
                                                 *cfg.study.cells.seed_recipe.overrides, changed])
        assert study.find_reusable_checkpoint(probe, [tmp_path]) is None, changed


# ----------------------------------------------------------------------------------------------- provenance
def test_cell_records_provenance_and_reruns_when_checkpoint_or_test_set_content_changes(tiny_ckpt, tiny_test_set,
                                                                                        tmp_path):
    """Same paths, new content: a retrained checkpoint or an edited test file re-runs the cell (not 'skipping')."""
    import shutil

    from edm_se.provenance import file_sha256

    ckpt, ts = tmp_path / "model.pt", tmp_path / "ts"
    shutil.copyfile(tiny_ckpt, ckpt)
    shutil.copytree(tiny_test_set, ts)
    cfg = _compose("study", ["study=steps", f"ckpt={ckpt}", f"test_set={ts}", "sampler=edm_heun",
                             "sampler.num_steps=1", "num_workers=1", "keep_audio=0", "peers=[]"])
    out_dir, sweep = tmp_path / "sweep" / "cell", tmp_path / "sweep"
    first = study.run_cell(cfg, out_dir, sweep, "cell", [])
    assert first is not None, (out_dir / "error.json").read_text()
    prov = first["provenance"]
    assert prov["checkpoint"]["sha256"] == file_sha256(ckpt) and prov["checkpoint"]["step"] == 0
    assert len(prov["test_set"]["sha256"]) == 64 and prov["test_set"]["n"] == 2
    assert prov["edm_se_version"] and "git_commit" in prov and prov["torch_version"]
    # the paired improvement is the mean of the per-file differences to the noisy input
    (point,) = first["points"]
    noisy = json.loads((sweep / "noisy_metrics.json").read_text())["per_file"]
    deltas = [e - n for e, n in zip(point["per_file"]["si_sdr"], noisy["si_sdr"])]
    assert point["improvement"]["si_sdr"]["mean"] == pytest.approx(float(np.mean(deltas)), abs=1e-9)
    assert point["improvement"]["si_sdr"]["ci95"] > 0
    # unchanged: skipped (same object back, file untouched)
    mtime = (out_dir / "metrics.json").stat().st_mtime_ns
    assert study.run_cell(cfg, out_dir, sweep, "cell", []) == first
    assert (out_dir / "metrics.json").stat().st_mtime_ns == mtime
    # a "retrained" checkpoint at the same path (other weights, other step): re-run, new hash recorded
    obj = torch.load(ckpt, weights_only=False)
    obj["ema"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in obj["ema"].items()}
    obj["step"] = 7
    atomic_torch_save(obj, ckpt)
    second = study.run_cell(cfg, out_dir, sweep, "cell", [])
    assert second["provenance"]["checkpoint"]["step"] == 7
    assert second["provenance"]["checkpoint"]["sha256"] != prov["checkpoint"]["sha256"]
    assert second["points"][0]["per_file"]["si_sdr"] != point["per_file"]["si_sdr"]
    # an edited test file (same name): re-run, new test-set hash, noisy reference re-scored
    wave, sr = sf.read(ts / "noisy" / "utt0.flac", dtype="float32")
    sf.write(ts / "noisy" / "utt0.flac", wave * 0.5 + 0.01 * np.sin(np.arange(len(wave)) / 3.0), sr)
    third = study.run_cell(cfg, out_dir, sweep, "cell", [])
    assert third["provenance"]["test_set"]["sha256"] != second["provenance"]["test_set"]["sha256"]
    assert json.loads((sweep / "noisy_metrics.json").read_text())["test_set"]["sha256"] == \
        third["provenance"]["test_set"]["sha256"]
    # results.csv / results.md carry the paired improvement
    out = study.gather(sweep, plot=True)
    table = pd.read_csv(out["results"])
    row = table[(table.kind == "cell") & (table.metric == "si_sdr") & table.snr_db.isna()].iloc[0]
    assert row.delta_mean == pytest.approx(third["points"][0]["improvement"]["si_sdr"]["mean"])
    assert "Δ SI-SDR (dB)" in out["markdown"].read_text()
    assert (sweep / "improvement_vs_nfe.png").stat().st_size > 1000


def test_training_cell_with_changed_train_overrides_does_not_rescore_the_old_model(tiny_test_set, tmp_path):
    """Changing study.train_overrides re-runs the cell, and resuming its checkpoint under the new training config is
    refused (error.json names the changed key) instead of scoring the old model as if it were the new one."""
    cfg = _compose("study", ["study=recipes", "cell=seed_recipe", f"test_set={tiny_test_set}", "num_workers=1",
                             "keep_audio=0", "peers=[]"])
    base = ["net=tiny", "trainer.max_steps=2", "trainer.batch_size=2", "trainer.val_every=0", "trainer.num_workers=0",
            "trainer.tensorboard=false", "trainer.progress=false", "trainer.warmup_steps=1", "trainer.log_every=1",
            "data.train.segment_seconds=0.51"]
    cfg.study.train_overrides = base
    cfg.study.cells.seed_recipe.eval = [{"sampler": "edm_heun", "num_steps": [1]}]
    out_dir = tmp_path / "cell=seed_recipe"
    assert study.run_cell(cfg, out_dir, tmp_path, "cell=seed_recipe", ["cell=seed_recipe"]) is not None
    cfg.study.train_overrides = [*base, "data.train.snr_db=[0,5]"]
    assert study.run_cell(cfg, out_dir, tmp_path, "cell=seed_recipe", ["cell=seed_recipe"]) is None
    err = json.loads((out_dir / "error.json").read_text())
    assert err["type"] == "CheckpointError" and "data.train.snr_db" in err["message"]
    assert "resume=force" in err["message"]


# ----------------------------------------------------------------------------------------------- WER and peers
@pytest.fixture(scope="module")
def whole_test_set(tmp_path_factory) -> Path:
    """The two shortest whole utterances of the built-in test set, with their transcripts in manifest.csv."""
    src = study.load_test_set(None)
    order = sorted(range(len(src.names)), key=lambda i: sf.info(src.clean(src.names[i])).frames)[:2]
    root = tmp_path_factory.mktemp("whole")
    rows = []
    for i in order:
        name = src.names[i]
        for sub, path in (("clean", src.clean(name)), ("noisy", src.noisy(name))):
            (root / sub).mkdir(exist_ok=True)
            (root / sub / name).write_bytes(path.read_bytes())
        rows.append({"name": name, "snr_db": src.snr_db[i], "transcript": src.transcripts[i]})
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["name", "snr_db", "transcript"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_study_with_a_wer_metric_and_a_peer_writes_both_to_the_table_and_the_figure(tiny_ckpt, whole_test_set,
                                                                                      tmp_path):
    from edm_se import plots

    sweep = tmp_path / "wer"
    args = ["study", "study=steps", f"ckpt={tiny_ckpt}", f"test_set={whole_test_set}", "study.name=wer",
            f"hydra.sweep.dir={sweep}", "sampler=euler", "sampler.num_steps=1,2", "keep_audio=1",
            "num_workers=1", "threads=1", "metrics=[si_sdr,wer_whisper]", "peers=[rnnoise]"]
    res = run_cli(*args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = pd.read_csv(sweep / "results.csv")
    overall = table[table.snr_db.isna()]
    kinds = {k: set(g.metric) for k, g in overall.groupby("kind")}
    assert kinds == {"cell": {"si_sdr", "wer_whisper"}, "noisy": {"si_sdr", "wer_whisper"},
                     "clean": {"wer_whisper"}, "peer": {"si_sdr", "wer_whisper"}}
    assert set(overall[overall.kind == "peer"].cell) == {"RNNoise"}
    clean = overall[(overall.kind == "clean")]["mean"].iloc[0]
    noisy = overall[(overall.kind == "noisy") & (overall.metric == "wer_whisper")]["mean"].iloc[0]
    assert 0.0 <= clean <= noisy  # the recogniser does no worse on the clean speech than on the noisy input
    peer = overall[(overall.kind == "peer") & (overall.metric == "si_sdr")]
    assert peer["delta_mean"].iloc[0] > 0 and peer["rtf"].iloc[0] > 0  # RNNoise improves SI-SDR here
    # the per-file hypotheses are kept with the cell's scores
    m = json.loads((sweep / "model=tiny,sampler.num_steps=1,sampler=euler" / "metrics.json").read_text())
    assert len(m["points"][0]["per_file"]["hyp_whisper"]) == 2
    md = (sweep / "results.md").read_text()
    assert "WER Whisper (%)" in md and "| RNNoise |" in md and "| clean reference |" in md
    # the figure: the WER panel holds the cell's line and the three reference lines, each labelled
    fig = plots.plot_metric_curves(plots.load_results(sweep / "results.csv"), x="nfe")
    wer_ax = next(ax for ax in fig.axes if "Whisper" in ax.get_title())
    labels = [ln.get_label() for ln in wer_ax.get_lines()]
    assert sorted(labels) == sorted(["euler", "noisy input", "clean reference", "RNNoise"])
    si_ax = next(ax for ax in fig.axes if ax.get_title() == "SI-SDR")
    assert len(si_ax.get_lines()) == 3  # no clean line outside the WER panels
    assert "lower is better" in wer_ax.get_ylabel()
    # against cost the peer is one point at its own real-time factor, inside the axis
    fig = plots.plot_metric_curves(plots.load_results(sweep / "results.csv"), x="rtf")
    si_ax = next(ax for ax in fig.axes if ax.get_title() == "SI-SDR")
    (star,) = [ln for ln in si_ax.get_lines() if ln.get_label() == "RNNoise"]
    peer_rtf = float(peer["rtf"].iloc[0])
    assert list(star.get_xdata()) == [pytest.approx(peer_rtf)]
    assert si_ax.get_xlim()[0] < peer_rtf < si_ax.get_xlim()[1]
    assert (sweep / "metric_vs_nfe.png").stat().st_size > 1000
    # the peer and the noisy/clean transcripts are scored once per test set, not once per cell
    log = res.stdout + res.stderr
    assert log.count("scoring peer rnnoise") == 1 and log.count("scoring the noisy input") == 1, log[-3000:]


# ----------------------------------------------------------------------------------------------- few_step (CRP)
def test_few_step_study_fine_tunes_scores_and_pairs_each_point_with_the_untuned_model(tiny_test_set, tmp_path):
    """`study=few_step` through the CLI with a tiny model: the `none` cell is the starting model (0 steps, weights
    unchanged), `crp_n2` fine-tunes it through 2 Euler steps, and best.md pairs crp_n2's point with none's."""
    from conftest import TINY_TRAIN

    start = tmp_path / "start"
    res = run_cli("train", f"run_dir={start}", "trainer.max_steps=2", *TINY_TRAIN)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = start / "checkpoints" / "last.pt"
    overrides = ",".join(f'"{o}"' for o in [*TINY_TRAIN, "paradigm=crp", f"paradigm.enhancer_checkpoint={ckpt}",
                                            "trainer.max_steps=2"])
    sweep = tmp_path / "fs"
    res = run_cli("study", "study=few_step", f"test_set={tiny_test_set}", f"hydra.sweep.dir={sweep}",
                  f"study.train_overrides=[{overrides}]", "cell=none,crp_n2",
                  "metrics=[si_sdr,estoi]", "peers=[]", "num_workers=1", "keep_audio=0", timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    none = json.loads((sweep / "cell=none" / "metrics.json").read_text())
    tuned = json.loads((sweep / "cell=crp_n2" / "metrics.json").read_text())
    assert [(p["sampler"], p["nfe"]) for p in none["points"]][:5] == [("euler", n) for n in range(1, 6)]
    assert [(p["sampler"], p["num_steps"]) for p in tuned["points"]] == [("euler", 2)]
    from edm_se.checkpoint import load_checkpoint

    untuned = load_checkpoint(sweep / "cell=none" / "checkpoints" / "last.pt")
    src = load_checkpoint(ckpt)
    assert untuned["step"] == 0 and all(torch.equal(untuned["ema"][k], v) for k, v in src["ema"].items())
    moved = load_checkpoint(sweep / "cell=crp_n2" / "checkpoints" / "last.pt")
    assert moved["step"] == 2 and not all(torch.equal(moved["model"][k], v) for k, v in src["ema"].items())
    best = json.loads((sweep / "best.json").read_text())
    assert best["compare_to"] == "none" and set(best["metrics"]) == {"estoi", "si_sdr"}
    (pair,) = [c for c in best["comparisons"] if c["metric"] == "si_sdr"]
    assert pair["label"].startswith("crp_n2 / euler 2") and pair["baseline"].startswith("none / euler 2")
    base_sdr = next(p for p in none["points"] if p["sampler"] == "euler" and p["num_steps"] == 2)
    want = np.mean(np.subtract(tuned["points"][0]["per_file"]["si_sdr"], base_sdr["per_file"]["si_sdr"]))
    assert pair["mean"] == pytest.approx(want)
    assert "## Against `none`" in (sweep / "best.md").read_text()
    assert "best point per metric" in res.stdout


def test_compare_to_must_name_a_cell(tiny_test_set, tmp_path):
    res = run_cli("study", "study=few_step", f"test_set={tiny_test_set}", f"hydra.sweep.dir={tmp_path / 'x'}",
                  "study.compare_to=nothing", "peers=[]")
    assert res.returncode == 2
    assert "study.compare_to=nothing: must be null, a cell of this study (none, crp_n1" in res.stderr


def test_timing_splits_each_cells_time_and_counts_cells_per_minute(tmp_path):
    from edm_se.study_common import FORMAT
    from edm_se.study_timing import timing_markdown, timing_summary

    for i, (elapsed, wall, io, score) in enumerate([(60.0, 20.0, 1.0, 30.0), (120.0, 50.0, 2.0, 40.0)]):
        d = tmp_path / f"cell={i}"
        d.mkdir()
        points = [{"wall_s": wall / 2, "io_s": io / 2, "score_s": score / 2,
                   "score_cpu_s": {"metrics_s": 3.0, "recognisers_s": 10.0}}] * 2
        (d / "metrics.json").write_text(json.dumps({"format": FORMAT, "cell": f"cell={i}", "points": points,
                                                    "started": 1000.0, "finished": 1000.0 + elapsed}))
    out = timing_summary(tmp_path)
    assert out["cells"] == 2 and out["points"] == 4 and out["elapsed_s"] == 180.0
    assert out["cells_per_minute"] == pytest.approx(2 / 3)
    assert out["totals"] == {"network_s": 70.0, "io_s": 3.0, "scoring_wall_s": 70.0, "other_s": 37.0}
    assert sum(out["fractions"].values()) == pytest.approx(1.0)
    assert out["scoring_cpu_s"] == {"metrics_s": 12.0, "recognisers_s": 40.0}
    assert "0.67 cells/min" in timing_markdown(out)


# ----------------------------------------------------------------------------------------------- compare_to KEY=VALUE
def _sampler_cell(root, overrides: str, sampler: str, steps: int, sdr: list[float]):
    from edm_se.study_common import FORMAT

    d = root / overrides  # a sampler study's cell directory is Hydra's override dirname
    d.mkdir(parents=True)
    point = {"sampler": sampler, "num_steps": steps, "nfe": steps,
             "metrics": {"si_sdr": {"mean": float(np.mean(sdr)), "ci95": 1.0, "n": len(sdr)}},
             "per_file": {"names": ["a", "b", "c"], "si_sdr": sdr}}
    (d / "metrics.json").write_text(json.dumps({"format": FORMAT, "cell": overrides, "points": [point]}))


def test_a_sweep_directory_of_another_study_is_refused(tmp_path):
    """`study=churn hydra.sweep.dir=<the steps study's>` ran, and its results.csv, results.md and figures mixed the
    two studies' cells under the title "Study churn"; refused before any cell, naming the other study."""
    from edm_se.study_common import studies_in

    _sampler_cell(tmp_path, "sampler=euler", "euler", 1, [1.0, 2.0, 3.0])
    cell = json.loads((tmp_path / "sampler=euler" / "metrics.json").read_text())
    (tmp_path / "sampler=euler" / "metrics.json").write_text(json.dumps({**cell, "study": "steps"}))
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "error.json").write_text(json.dumps({"format": study.FORMAT, "study": "oa"}))
    assert studies_in(tmp_path) == {"steps", "oa"}
    (res,) = run_cli_many(["study", "study=churn", f"hydra.sweep.dir={tmp_path}", "sampler.num_steps=1"])
    assert res.returncode == 2 and res.stderr.strip() == (
        f"edm-se study: error: hydra.sweep.dir={tmp_path}: holds the cells of study oa; give study.name=churn a "
        "directory of its own (by default studies/runs/<study.name>)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failed", "sampler=euler"]


def test_results_md_names_the_rows_whose_mean_leaves_files_out(tmp_path):
    """An exact copy of the reference scores SI-SDR +inf; the mean leaves it out (n = 2 of 3) and results.md said
    "over 3 test files" for every row; the shorter rows are now named."""
    from edm_se.study_report import gather

    _sampler_cell(tmp_path, "sampler=euler", "euler", 1, [1.0, 2.0, 3.0])
    assert "Fewer files" not in gather(tmp_path, plot=False)["markdown"].read_text()
    _sampler_cell(tmp_path, "sampler=pc", "pc", 1, [1.0, 2.0, 3.0])
    cell = json.loads((tmp_path / "sampler=pc" / "metrics.json").read_text())
    cell["points"][0]["metrics"]["si_sdr"]["n"] = 2  # as mean_ci95 reports [1, 2, inf]
    (tmp_path / "sampler=pc" / "metrics.json").write_text(json.dumps(cell))
    text = gather(tmp_path, plot=False)["markdown"].read_text()
    assert "Mean ± 95% confidence half-width over 3 test files." in text
    assert ("Fewer files in 1 row(s): sampler=pc si_sdr (n=2); the other files' scores are not finite (e.g. SI-SDR: "
            "+inf for an exact copy of the reference) and are left out of the mean.") in text


def test_results_md_names_the_runaway_transcripts_of_every_system(tmp_path):
    """A recogniser looping on one file ("day day day ...") moved a cell's corpus WER by 25 points with nothing in
    results.md to say why; the file is named under its system, and a study without one has no such section."""
    from edm_se.study_report import gather

    _sampler_cell(tmp_path, "sampler=euler", "euler", 1, [1.0, 2.0, 3.0])
    assert "Runaway" not in (gather(tmp_path, plot=False)["markdown"]).read_text()
    cell = json.loads((tmp_path / "sampler=euler" / "metrics.json").read_text())
    cell["points"][0]["per_file"].update({"ref_words": [3, 4, 2], "hyp_whisper": ["a b c", "day " * 40, "x y"]})
    (tmp_path / "sampler=euler" / "metrics.json").write_text(json.dumps(cell))
    (tmp_path / "noisy_metrics.json").write_text(json.dumps({"metrics": {}, "per_file": {
        "names": ["a", "b", "c"], "ref_words": [3, 4, 2], "hyp_whisper": ["a b c", "d e f g", "uh " * 12]}}))
    text = gather(tmp_path, plot=False)["markdown"].read_text()
    section = text.split("## Runaway transcripts", 1)[1].strip().splitlines()
    assert section[1:] == ["- noisy input, whisper: `c` (12 words for 2)",
                           "- sampler=euler, whisper: `b` (40 words for 4)"]


def test_compare_to_a_factor_level_pairs_each_cell_with_its_twin_at_that_level(tmp_path):
    """`KEY=VALUE`: every cell against the one whose overrides differ only in KEY (values equal as numbers)."""
    from edm_se.study_best import best_markdown, best_points

    base = [5.0, 6.0, 7.0]
    for steps, shift in ((4, 0.0), (8, 10.0)):
        _sampler_cell(tmp_path, f"sampler.num_steps={steps},sampler.s_churn=0", "edm_heun_churn", steps,
                      [b + shift for b in base])
        _sampler_cell(tmp_path, f"sampler.num_steps={steps},sampler.s_churn=0.5", "edm_heun_churn", steps,
                      [b + shift + d for b, d in zip(base, (1.0, 1.2, 0.8))])
    _sampler_cell(tmp_path, "sampler.num_steps=16,sampler.s_churn=2", "edm_heun_churn", 16, base)  # no twin at 0
    summary = best_points(tmp_path, compare_to="sampler.s_churn=0.0")
    pairs = {(c["label"].split(" / ")[0], c["baseline"].split(" / ")[0]): c for c in summary["comparisons"]}
    assert set(pairs) == {("sampler.num_steps=4,sampler.s_churn=0.5", "sampler.num_steps=4,sampler.s_churn=0"),
                          ("sampler.num_steps=8,sampler.s_churn=0.5", "sampler.num_steps=8,sampler.s_churn=0")}
    for c in pairs.values():  # the +10 dB of the 8-step cells cancels: only the churn's effect is left
        assert c["mean"] == pytest.approx(1.0) and c["significant"] is True
    md = best_markdown(summary)
    assert "## Against `sampler.s_churn=0.0`, everything else the same" in md
    assert "| sampler.num_steps=4,sampler.s_churn=0.5 / edm_heun_churn 4 (NFE 4) | sampler.num_steps=4" in md
    assert "**+1.000 ± " in md
    # the factor may be the sampler itself: cells of one point pair whatever their sampler
    other = tmp_path / "samplers"
    _sampler_cell(other, "sampler.num_steps=2,sampler=edm_heun", "edm_heun", 2, base)
    _sampler_cell(other, "sampler.num_steps=2,sampler=euler", "euler", 2, [b - 2 for b in base])
    (c,) = best_points(other, compare_to="sampler=edm_heun")["comparisons"]
    assert c["label"].startswith("sampler.num_steps=2,sampler=euler") and c["mean"] == pytest.approx(-2.0)


def test_compare_to_a_factor_level_on_the_command_line(tiny_ckpt, tiny_test_set, tmp_path):
    """Through the CLI: the level names a swept key and value (else one line, exit 2); asking for another comparison
    re-writes best.md without re-running a finished cell."""
    args = ["study", "study=steps", f"ckpt={tiny_ckpt}", f"test_set={tiny_test_set}", f"hydra.sweep.dir={tmp_path}",
            "sampler=edm_heun,euler", "sampler.num_steps=1,2", "metrics=[si_sdr]", "num_workers=1", "keep_audio=0",
            "threads=1", "peers=[]"]
    refused = (("sampler.s_churn=0", "sampler.s_churn is not swept by this study"),
               ("sampler.num_steps=3", "3 is not one of the swept values of sampler.num_steps (1, 2)"))
    *bad, res = run_cli_many(*([*args, f'study.compare_to="{level}"'] for level, _ in refused),
                             [*args, 'study.compare_to="sampler=edm_heun"'])
    for res_bad, (level, message) in zip(bad, refused):
        assert res_bad.returncode == 2 and f"study.compare_to={level}: {message}" in res_bad.stderr, (
            res_bad.stderr[-2000:])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if (p / "metrics.json").exists()) == [
        f"model=tiny,sampler.num_steps={n},sampler={s}" for n in (1, 2) for s in ("edm_heun", "euler")]  # no compare_to
    best = json.loads((tmp_path / "best.json").read_text())
    assert sorted((c["label"].split(" / ")[0], c["baseline"].split(" / ")[0]) for c in best["comparisons"]) == [
        (f"model=tiny,sampler.num_steps={n},sampler=euler", f"model=tiny,sampler.num_steps={n},sampler=edm_heun")
        for n in (1, 2)]
    res = run_cli(*args, 'study.compare_to="sampler.num_steps=1"')
    assert res.returncode == 0, res.stderr[-3000:]
    assert (res.stdout + res.stderr).count("skipping finished cell") == 4
    best = json.loads((tmp_path / "best.json").read_text())
    assert {c["baseline"].split(" / ")[0] for c in best["comparisons"]} == {
        "model=tiny,sampler.num_steps=1,sampler=edm_heun", "model=tiny,sampler.num_steps=1,sampler=euler"}


def test_compare_to_cell_level_asks_for_the_cell_name():
    from edm_se import validate, validate_study

    cfg = _compose("study", ["study=few_step", 'study.compare_to="cell=none"'], hydra_cfg=True)
    with pytest.raises(validate.ConfigError, match=r"^study.compare_to=cell=none: name the cell itself "
                                                   r"\(study.compare_to=none\)$"):
        validate_study.study_config(cfg)
    bad = _compose("study", ["study=churn", 'study.compare_to="sampler.s_noise=2"'], hydra_cfg=True)
    with pytest.raises(validate.ConfigError, match=r"2 is not one of the swept values of sampler.s_noise \(1.0, "):
        validate_study.study_config(bad)
    validate_study.study_config(_compose("study", ["study=churn"], hydra_cfg=True))  # the preset's own level is valid


def test_model_labels_and_cell_names():
    from edm_se.study_common import cell_dir_name, model_label

    assert model_label("runs/ve/checkpoints/best.pt") == "ve-best"
    assert model_label("/x/sgmse vbdmd.ckpt") == "sgmse_vbdmd"
    assert model_label("~/m,odel=1.pt") == "m_odel_1"  # a cell name is k=v,k=v
    assert cell_dir_name("sampler=euler", "runs/ve/checkpoints/best.pt", "sampler") == "model=ve-best,sampler=euler"
    assert cell_dir_name("", "a.pt", "sampler") == "model=a"
    assert cell_dir_name("sampler=euler", None, "sampler") == "sampler=euler"  # the bundled model: as before
    assert cell_dir_name("cell=x", "a.pt", "train") == "cell=x"  # a training study trains its own models


def test_a_sweep_over_checkpoints_keeps_one_set_of_cells_per_model(tiny_test_set, tmp_path):
    """`ckpt=a.pt,b.pt` is one more axis: each model's cells (model=<label>,...) and rows (design = the label), a
    comparison against one model; before, both models wrote one cell directory and the second replaced the first.
    Two checkpoints with one label, a null among them or a missing one stop the study before any cell."""
    a = _save_tiny(tmp_path / "runs" / "a" / "checkpoints" / "last.pt", seed=0)
    b = _save_tiny(tmp_path / "b.pt", seed=1)
    sweep = tmp_path / "sweep"
    args = ["study", "study=steps", f"test_set={tiny_test_set}", f"hydra.sweep.dir={sweep}", "sampler=euler",
            "sampler.num_steps=1,2", "metrics=[si_sdr]", "num_workers=1", "keep_audio=0", "threads=1", "peers=[]"]
    res = run_cli(*args, f"ckpt={a},{b}", 'study.compare_to="model=a-last"')
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    cells = sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert cells == [f"model={m},sampler.num_steps={n},sampler=euler" for m in ("a-last", "b") for n in (1, 2)]
    table = pd.read_csv(sweep / "results.csv")
    rows = table[(table.kind == "cell") & table.snr_db.isna()].set_index(["design", "num_steps"])["mean"]
    assert sorted(rows.index) == [("a-last", 1), ("a-last", 2), ("b", 1), ("b", 2)]
    assert rows[("a-last", 1)] != rows[("b", 1)]  # two models, two results
    shas = {json.loads((sweep / c / "metrics.json").read_text())["provenance"]["checkpoint"]["sha256"] for c in cells}
    assert len(shas) == 2
    best = json.loads((sweep / "best.json").read_text())
    assert sorted((c["label"].split(" / ")[0], c["baseline"].split(" / ")[0]) for c in best["comparisons"]) == [
        (f"model=b,sampler.num_steps={n},sampler=euler", f"model=a-last,sampler.num_steps={n},sampler=euler")
        for n in (1, 2)]
    other = _save_tiny(tmp_path / "elsewhere" / "b.pt", seed=2)
    refused = (((b, other), f"ckpt: {b} and {other} would both be model=b"),
               (("null", b), "name every checkpoint of the sweep"),
               ((a, tmp_path / "missing.pt"), f"{tmp_path / 'missing.pt'}: checkpoint not found"))
    again, *bad = run_cli_many([*args, f"ckpt={a},{b}"],
                               *([*args, f"hydra.sweep.dir={tmp_path / 'refused'}", "ckpt=" + ",".join(map(str, c))]
                                 for c, _ in refused))
    assert again.returncode == 0 and (again.stdout + again.stderr).count("skipping finished cell") == 4
    for res, (_, message) in zip(bad, refused):
        assert res.returncode == 2 and message in res.stderr.strip().splitlines()[-1], res.stderr[-2000:]
        assert not any((tmp_path / "refused").glob("*/metrics.json"))


def test_parallel_launcher_cells_score_in_worker_processes(tiny_ckpt, tiny_test_set, tmp_path):
    """`hydra/launcher=joblib` (the `parallel` extra) runs cells in loky processes, whose global start method is
    `loky`: each cell's spawned scoring workers died with "cannot find context for 'loky'" (BrokenProcessPool in
    every cell). The cells finish, with the same numbers as the basic launcher's."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    args = ["study", "study=steps", f"ckpt={tiny_ckpt}", f"test_set={tiny_test_set}", "sampler=euler",
            "sampler.num_steps=1,2", "metrics=[si_sdr]", "num_workers=2", "keep_audio=0", "threads=1", "peers=[]"]
    res, basic = run_cli_many([*args, f"hydra.sweep.dir={tmp_path / 'joblib'}", "hydra/launcher=joblib",
                               "hydra.launcher.n_jobs=2"], [*args, f"hydra.sweep.dir={tmp_path / 'basic'}"])
    assert res.returncode == 0 and "2 finished cell(s), 0 failed" in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]
    assert basic.returncode == 0, basic.stderr[-3000:]
    means = [pd.read_csv(tmp_path / d / "results.csv").query("kind == 'cell'").sort_values(["cell", "snr_db"])
             ["mean"].to_numpy() for d in ("joblib", "basic")]
    np.testing.assert_allclose(means[0], means[1], rtol=1e-6)


def test_study_x_sets_the_figures_axis_without_re_running_cells(tiny_ckpt, tiny_test_set, tmp_path):
    """`study.x` was declared and never read (the figures always took `auto`): it now names the axis of
    metric_vs_<x> / improvement_vs_<x>, is checked, and is the report's, not the cell's (no re-run, same names)."""
    args = ["study", "study=steps", f"ckpt={tiny_ckpt}", f"test_set={tiny_test_set}", f"hydra.sweep.dir={tmp_path}",
            "sampler=euler", "sampler.num_steps=1,2", "metrics=[si_sdr]", "num_workers=1", "keep_audio=0",
            "threads=1", "peers=[]"]
    bad, res = run_cli_many([*args, "study.x=steps"], [*args, "study.x=t_start"])
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith(
        "study.x=steps: must be one of auto, nfe, t_start, s_churn, s_noise, oa_weight, rtf")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "metric_vs_t_start.png").is_file() and (tmp_path / "improvement_vs_t_start.png").is_file()
    assert not (tmp_path / "metric_vs_nfe.png").exists()
    again = run_cli(*args)  # study.x: auto -> nfe here
    assert again.returncode == 0 and (again.stdout + again.stderr).count("skipping finished cell") == 2
    assert (tmp_path / "metric_vs_nfe.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if (p / "metrics.json").exists()) == [
        f"model=tiny,sampler.num_steps={n},sampler=euler" for n in (1, 2)]


def test_a_voicebank_demand_directory_is_a_test_set_as_downloaded(tiny_ckpt, tiny_test_set, tmp_path):
    """VoiceBank-DEMAND's own layout (clean_testset_wav/, noisy_testset_wav/, testset_txt/, 48 kHz) is read as it
    is: the study scores it (resampled to the model's rate) with the same numbers as the same audio in clean/ +
    noisy/; a directory of neither layout names both."""
    import torchaudio.functional as AF

    vbd, plain = tmp_path / "vbd", tmp_path / "plain"
    for i, name in enumerate(["p232_001", "p232_002"]):
        for sub, target in (("clean", "clean_testset_wav"), ("noisy", "noisy_testset_wav")):
            wave, sr = sf.read(tiny_test_set / sub / f"utt{i}.flac", dtype="float32")
            wave48 = AF.resample(torch.from_numpy(wave), sr, 48000).numpy()
            for root, folder in ((vbd, target), (plain, sub)):
                (root / folder).mkdir(parents=True, exist_ok=True)
                sf.write(root / folder / f"{name}.wav", wave48, 48000, subtype="FLOAT")
        (vbd / "testset_txt").mkdir(exist_ok=True)
        (vbd / "testset_txt" / f"{name}.txt").write_text(f"Sentence number {i}.\n")
    test = study.load_test_set(vbd)
    assert test.names == ["p232_001.wav", "p232_002.wav"] and test.transcripts == ["Sentence number 0.",
                                                                                   "Sentence number 1."]
    assert test.clean(test.names[0]) == vbd.resolve() / "clean_testset_wav" / "p232_001.wav"
    assert test.noisy(test.names[1]) == vbd.resolve() / "noisy_testset_wav" / "p232_002.wav"
    assert test.identity()["sha256"] != study.load_test_set(plain).identity()["sha256"]  # the layout is hashed
    results = []
    runs = run_cli_many(*(["study", "study=steps", f"ckpt={tiny_ckpt}", f"test_set={root}",
                           f"hydra.sweep.dir={root}_run", "sampler=euler", "sampler.num_steps=1",
                           "metrics=[si_sdr,pesq]", "num_workers=1", "keep_audio=0", "threads=1", "peers=[]"]
                          for root in (vbd, plain)))
    for root, res in zip((vbd, plain), runs):
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        frame = pd.read_csv(f"{root}_run/results.csv")
        results.append(frame[frame.kind == "cell"].sort_values(["metric", "snr_db"])["mean"].to_numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
    from edm_se.audio import AudioError

    (tmp_path / "neither" / "clean").mkdir(parents=True)
    with pytest.raises(AudioError, match=r"expected clean/ and noisy/ .* or VoiceBank-DEMAND's clean_testset_wav/ "
                                         r"and noisy_testset_wav/"):
        study.load_test_set(tmp_path / "neither")
