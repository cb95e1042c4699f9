"""Bad values get one line naming the key, the value and what is allowed, exit status 2, and nothing is created;
a resumed run refuses a changed config unless resume=force; no Karras grid repeats a noise level."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_TRAIN, run_cli, run_cli_many
from hydra import compose, initialize_config_dir

from edm_se import validate, validate_overrides, validate_study
from edm_se.cli import conf_dir
from edm_se.validate import ConfigError


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose(config_name=name, overrides=overrides)


@pytest.mark.parametrize("override, key", [
    ("trainer.max_steps=-5", "trainer.max_steps=-5"),
    ("trainer.max_steps=0", "trainer.max_steps=0"),
    ("trainer.grad_clip=0", "trainer.grad_clip=0"),
    ("trainer.log_every=0", "trainer.log_every=0"),
    ("trainer.ckpt_every=0", "trainer.ckpt_every=0"),
    ("trainer.lr_schedule=linear", "trainer.lr_schedule=linear"),
    ("trainer.ema_decay=1.0", "trainer.ema_decay=1.0"),
    ("trainer.batch_size=0", "trainer.batch_size=0"),
    ("resume=maybe", "resume=maybe"),
    ("data.train.rir_prob=1.5", "data.train.rir_prob=1.5"),
    ("data.train.snr_db=[20,5]", "data.train.snr_db="),
    # shorter than one STFT window (510 samples): torch.stft's padding error traceback in the first step
    ("data.train.segment_seconds=0.01", "data.train.segment_seconds=0.01: must be at least one STFT window long "
                                        "(stft.n_fft=510 samples = 0.03188 s at sample_rate=16000)"),
    ("sampler.num_steps=0", "sampler.num_steps=0"),
    ("sampler.s_noise=0", "sampler.s_noise=0"),
    ("trainer.progress=no", "trainer.progress=no: must be true or false"),  # ran as true
    ("trainer.amp=1", "trainer.amp=1: must be true or false"),
])
def test_train_config_values_are_checked(override, key):
    cfg = _compose("train", [override])
    with pytest.raises(ConfigError) as info:
        validate.train_config(cfg)
    assert str(info.value).startswith(key) and "must be" in str(info.value)


def test_a_crop_of_one_stft_window_is_enough():
    validate.train_config(_compose("train", ["data.train.segment_seconds=0.032"]))  # 512 samples >= 510
    validate.train_config(_compose("train", ["data.train.segment_seconds=0.04", "stft.n_fft=640"]))
    with pytest.raises(ConfigError, match=r"^data.train.segment_seconds=0.04: .*stft.n_fft=1022 samples"):
        validate.train_config(_compose("train", ["data.train.segment_seconds=0.04", "stft.n_fft=1022"]))


def test_speakers_must_be_lists():
    """`data.valid_speakers=p226` was read letter by letter (speakers p, 2, 2, 6); `[p226]` and numeric IDs pass."""
    paired = ["data=paired", "data.root=/vbd"]
    for override, why in (("data.valid_speakers=p226", "data.valid_speakers=p226: must be a list of speakers "
                                                       "(data.valid_speakers=[p226,p287])"),
                          ("data.train.exclude_speakers=p226", "data.train.exclude_speakers=p226: must be a list of "
                                                               "speakers (data.train.exclude_speakers=[p226]) or null")):
        with pytest.raises(ConfigError) as info:
            validate.train_config(_compose("train", [*paired, override]))
        assert str(info.value) == why
    validate.train_config(_compose("train", [*paired, "data.valid_speakers=[p226,19]"]))


def test_a_task_models_keys_must_be_its_constructors():
    """`paradigm.task.name=ctc` kept M5's `num_classes`, and training ended in CTCRecognizer's TypeError traceback;
    the key is named with the override that drops it, and the CTC node the paradigms study uses passes."""
    base = ["data=sentences", "paradigm=multi_task"]
    with pytest.raises(ConfigError) as info:
        validate.train_config(_compose("train", [*base, "paradigm.task.name=ctc"]))
    assert str(info.value).startswith("paradigm.task.num_classes: the ctc task model takes no num_classes (it takes "
                                      "n_mels, channels, hidden,")
    assert str(info.value).endswith("drop the other model's keys: '~paradigm.task.num_classes'")
    validate.train_config(_compose("train", [*base, "paradigm.task.name=ctc", "~paradigm.task.num_classes"]))
    with pytest.raises(ConfigError, match=r"^paradigm.task.hidden: the m5 task model takes no hidden"):
        validate.train_config(_compose("train", ["data=keywords", "paradigm=multi_task", "+paradigm.task.hidden=64"]))
    # a size of 0 was a convolution's RuntimeError traceback in the first training step; masks may be 0
    for extra, message in ((["paradigm.task.channels=0"], "paradigm.task.channels=0: must be an integer >= 1"),
                           (["+paradigm.task.stride=1.5"], "paradigm.task.stride=1.5: must be an integer >= 1"),
                           (["paradigm.task.name=ctc", "~paradigm.task.num_classes", "+paradigm.task.time_masks=-1"],
                            "paradigm.task.time_masks=-1: must be an integer >= 0")):
        with pytest.raises(ConfigError) as info:
            validate.train_config(_compose("train", ["data=keywords", "paradigm=multi_task", *extra]))
        assert str(info.value) == message
    validate.train_config(_compose("train", [*base, "paradigm.task.name=ctc", "~paradigm.task.num_classes",
                                             "+paradigm.task.time_masks=0"]))


def test_churn_window_must_not_be_empty():
    """s_min above s_max leaves churn no sigma to act on: refused, naming both (equal bounds are a window)."""
    cfg = _compose("enhance", ["input=x.wav", "output=out", "sampler=edm_heun_churn", "sampler.s_min=2",
                               "sampler.s_max=1"])
    with pytest.raises(ConfigError, match=r"^sampler\.s_min=2 is above s_max=1: churn applies to sigma in "
                                          r"\[s_min, s_max\], which would be empty$"):
        validate.enhance_config(cfg)
    validate.enhance_config(_compose("enhance", ["input=x.wav", "output=out", "sampler=edm_heun_churn",
                                                 "sampler.s_min=1", "sampler.s_max=1"]))


_PRESETS = [
    ("train", [], validate.train_config, "trainer.max_steps=0"),
    ("train", ["+experiment=cpu_demo", "data=corpus"], validate.train_config, "trainer.batch_size=0"),
    ("enhance", ["input=x.wav", "output=out"], validate.enhance_config, "num_steps=0"),
    ("heldout", [], validate.heldout_config, "max_files=0"),
    *[("study", [f"study={name}"], validate_study.study_config, "metrics=[pesq,nope]")
      for name in ("steps", "churn", "design", "few_step", "oa", "recipes", "t_start")],
]


@pytest.mark.parametrize("name, overrides, check, bad", _PRESETS,
                         ids=[" ".join([n, *o]) for n, o, _, _ in _PRESETS])
def test_every_shipped_preset_passes_validation_and_one_bad_value_does_not(name, overrides, check, bad):
    """The presets the README names validate as shipped (a validator too strict for its own defaults would refuse
    the main job); the same preset with one bad value is refused naming that key, so the check above ran."""
    assert check(_compose(name, overrides)) is None
    with pytest.raises(ConfigError) as info:
        check(_compose(name, [*overrides, bad]))
    assert str(info.value).startswith(bad.split("=")[0])


@pytest.mark.parametrize("override, key", [("t_start=1.5", "t_start=1.5"), ("t_start=0", "t_start=0"),
                                           ("num_steps=0", "num_steps=0"),
                                           ("on_rate_mismatch=drop", "on_rate_mismatch=drop"),
                                           ("sampler=pc", None)])
def test_enhance_config_values_are_checked(override, key):
    extra = ["sampler.num_steps=-1"] if override == "sampler=pc" else []
    cfg = _compose("enhance", ["input=x.wav", "output=out", override, *extra])
    with pytest.raises(ConfigError) as info:
        validate.enhance_config(cfg)
    assert str(info.value).startswith(key or "sampler.num_steps=-1")


def test_cli_bad_values_exit_2_with_one_line_and_create_nothing(tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "out"
    noisy = Path(__file__).resolve().parents[1] / "edm_se" / "data" / "builtin" / "testset" / "noisy"
    steps, root, t_start = run_cli_many(
        ["train", f"run_dir={run_dir}", "trainer.max_steps=-5", *TINY_TRAIN],
        # a missing paired-data root: one line naming it, no run directory left behind
        ["train", f"run_dir={run_dir}", "data=paired", f"data.root={tmp_path / 'missing'}", "trainer.max_steps=1",
         *TINY_TRAIN],
        # enhance t_start=1.5: one line, no output directory
        ["enhance", f"input={next(noisy.iterdir())}", f"output={out}", "t_start=1.5"])
    assert steps.returncode == 2 and "Traceback" not in steps.stderr
    assert steps.stderr.strip().splitlines()[-1] == \
        "edm-se train: error: trainer.max_steps=-5: must be an integer >= 1"
    assert root.returncode == 2 and "Traceback" not in root.stderr and "missing" in root.stderr.splitlines()[-1]
    assert not run_dir.exists()
    res = t_start
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == \
        "edm-se enhance: error: t_start=1.5: must be a number in (0, 1]"
    assert not out.exists()


def test_a_metric_named_twice_is_one_line_before_any_work(tmp_path):
    """`metrics=[pesq,pesq]` failed every study cell with pandas' AttributeError (two columns of one name) and made
    `edm-se evaluate` print its row twice: both commands now refuse it in one line, before any work."""
    study, evaluate = run_cli_many(
        ["study", "metrics=[pesq,pesq]", f"hydra.sweep.dir={tmp_path / 's'}", "max_files=1", "peers=[]"],
        ["evaluate", f"estimates={tmp_path}", f"references={tmp_path / 'r'}", "metrics=[pesq,si_sdr,pesq]"])
    for res, command, listed in ((study, "study", "['pesq', 'pesq']"), (evaluate, "evaluate", "['pesq', 'si_sdr', "
                                                                                              "'pesq']")):
        assert res.returncode == 2 and res.stderr.strip() == (
            f"edm-se {command}: error: metrics={listed}: pesq named twice; name each metric once"), res.stderr[-2000:]
    assert not (tmp_path / "s").exists()


def test_python_dash_m_edm_se_runs_the_cli():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "edm_se", "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("edm-se ")


def test_resume_refuses_a_changed_config_unless_forced(tiny_checkpoint, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint.parent.parent, run_dir)
    base = ["train", f"run_dir={run_dir}", "trainer.max_steps=4", "trainer.ckpt_every=4", *TINY_TRAIN]
    # the same config (only where it runs may change): accepted, nothing to do at step 4
    res = run_cli(*base, "resume=true", "trainer.threads=1")
    assert res.returncode == 0, res.stderr[-2000:]
    # a changed config names the differing keys and refuses
    res = run_cli(*base[:3], "trainer.max_steps=6", *base[4:], "resume=true", "data.train.snr_db=[0,5]")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert "data.train.snr_db" in line and "trainer.max_steps" in line and "resume=force" in line
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["step"] == 4
    # resume=force continues and records what changed
    res = run_cli(*base[:3], "trainer.max_steps=6", *base[4:], "resume=force", "data.train.snr_db=[0,5]")
    assert res.returncode == 0, res.stderr[-2000:]
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["step"] == 6
    note = (run_dir / "resume.log").read_text()
    assert "resume=force" in note and "data.train.snr_db" in note and "trainer.max_steps" in note


# --------------------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("t_start", [1.0, 0.9, 0.8, 0.6, 0.5, 0.3])
def test_karras_grid_never_repeats_a_noise_level(t_start):
    from edm_se.schedules import Karras
    from edm_se.sde import OUCosine

    sde = OUCosine(theta=0.0, sigma_max=2.5, sigma_shift=0.1)
    ts = Karras(sigma_min=0.3)(8, sde, t_start)
    sig = sde.sigma(ts)
    assert torch.all(sig[1:] < sig[:-1]) and torch.all(ts[1:] < ts[:-1])
    assert float(ts[0]) == pytest.approx(t_start)
    # the grid is the full grid scaled to its start: same ratio sigma_last / sigma_first
    assert float(sig[-2] / sig[0]) == pytest.approx(min(1.0, 0.3 / float(sig[0])) if t_start == 1.0 else 0.3 / 2.5,
                                                   rel=1e-6)


def test_karras_refuses_sigma_min_above_the_sde_range():
    from edm_se.schedules import Karras
    from edm_se.sde import OUCosine

    with pytest.raises(ValueError, match="sigma_min=5"):
        Karras(sigma_min=5.0)(4, OUCosine(theta=0.0, sigma_max=2.5, sigma_shift=0.1), 1.0)


def test_unknown_config_option_exits_2_with_a_summary_line(tmp_path):
    res = run_cli("train", "sde=nonexistent", f"run_dir={tmp_path / 'r'}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "edm-se train: error: sde=nonexistent: sde has no option 'nonexistent' (options: bbed, edm, flow, oucosine, "
        "ouve, ouve_decoupled, ouvp, sbve, sbvp, ve, vp)"]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("override, key", [("t_start=1.5", "t_start=1.5"), ("num_workers=0", "num_workers=0"),
                                           ("max_files=0", "max_files=0"), ("metrics=[pesq,mos]", "metrics="),
                                           ("progress=maybe", "progress=maybe: must be true or false")])
def test_study_config_values_are_checked(override, key):
    with pytest.raises(ConfigError) as info:
        validate_study.study_config(_compose("study", [override]))
    assert str(info.value).startswith(key)
    validate_study.study_config(_compose("study", []))


def test_evaluate_config_values_are_checked():
    with pytest.raises(ConfigError, match="required"):
        validate.evaluate_config(_compose("evaluate", []))
    with pytest.raises(ConfigError, match=r"^metrics=\['wer'\]: unknown metric 'wer' \(did you mean wer_whisper or "
                                          r"wer_sphinx\? known: pesq, "):
        validate.evaluate_config(_compose("evaluate", ["estimates=a", "references=b", "metrics=[wer]"]))
    # the unknown one is named even after known ones, with the nearest spelling
    with pytest.raises(ConfigError, match=r"unknown metric 'sisdr' \(did you mean si_sdr\? known"):
        validate.evaluate_config(_compose("evaluate", ["estimates=a", "references=b", "metrics=[pesq,sisdr]"]))
    with pytest.raises(ConfigError, match="^metrics=pesq: must be a non-empty list"):  # a name, not a list
        validate.evaluate_config(_compose("evaluate", ["estimates=a", "references=b", "metrics=pesq"]))
    validate.evaluate_config(_compose("evaluate", ["estimates=a", "references=b"]))
    # a transcripts path that does not exist was never read (no WER metric asked for) and so never named
    with pytest.raises(ConfigError, match="^transcripts=/nope.csv: no such file or directory$"):
        validate.evaluate_config(_compose("evaluate", ["estimates=a", "references=b", "transcripts=/nope.csv"]))


def test_data_build_config_values_are_checked():
    with pytest.raises(ConfigError, match="^max_minutes=-1"):
        validate.data_build_config(_compose("data_build", ["max_minutes=-1"]))
    with pytest.raises(ConfigError, match="^seed=-2"):
        validate.data_build_config(_compose("data_build", ["seed=-2"]))
    validate.data_build_config(_compose("data_build", []))


def test_a_device_this_machine_lacks_is_one_line_before_any_work(tmp_path):
    """device=tpu and, on a machine without CUDA, device=cuda ended in torch's traceback (a study failed every
    cell with it): now one line, exit status 2, nothing written; auto and cpu pass."""
    import torch

    from edm_se.config import select_device

    assert select_device("cpu") == torch.device("cpu") and select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match=r"^device=tpu: not a device torch knows; use auto, cpu or cuda\[:N\]$"):
        select_device("tpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=rf"^device=cuda:{count}: this machine has {count} CUDA device\(s\)"):
        select_device(f"cuda:{count}")
    out = tmp_path / "o.wav"
    for res in run_cli_many(["enhance", f"input={tmp_path / 'x.wav'}", f"output={out}", "device=tpu"],
                            ["study", "device=tpu", f"hydra.sweep.dir={tmp_path / 'study'}"]):
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert res.stderr.strip().splitlines()[-1].endswith("device=tpu: not a device torch knows; use auto, cpu or "
                                                            "cuda[:N]")
    assert not out.exists() and not any((tmp_path / "study").glob("*/metrics.json"))


def test_a_value_a_model_constructor_refuses_is_one_line_naming_its_group(tmp_path):
    """`sde.c=-1` reached the SDE's constructor, whose ValueError Hydra wrapped into a multi-line error with exit
    status 1; the group, the constructor's message and exit status 2, and no run directory."""
    cases = {"sde": (["sde=sbvp", "sde.c=-1"], "sde: need 0 <= beta_0 < beta_1, c > 0, 0 < t_max < 1; got 0.01, 20.0, "
                                                "-1, 0.999"),
             "precond": (["precond.sigma_data=-1"], "precond: sigma_data must be > 0, got -1"),
             "stft": (["stft.n_fft=0"], "stft: need 0 < hop_length <= n_fft, got n_fft=0, hop_length=128")}
    results = run_cli_many(*(["train", *TINY_TRAIN, *ov, f"run_dir={tmp_path / name}"]
                             for name, (ov, _) in cases.items()))
    for (name, (_, message)), res in zip(cases.items(), results):
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert res.stderr.strip().splitlines()[-1] == f"edm-se train: error: {message}"
        assert not (tmp_path / name).exists()


def test_a_sampler_node_its_target_does_not_take_is_one_line_and_the_documented_swap_works(tmp_path):
    """`sampler.schedule._target_=...Uniform` kept Karras's keys; Uniform's TypeError, wrapped by Hydra, came out as a
    multi-line error with exit status 1. Now one line and exit 2, with nothing written; replacing the node as the
    README says enhances."""
    import soundfile as sf
    from conftest import speech_like

    noisy = tmp_path / "n.wav"
    sf.write(noisy, speech_like(1.0), 16000)
    bad, good = run_cli_many(
        ["enhance", f"input={noisy}", f"output={tmp_path / 'bad'}", "sampler=dpmpp_2m", "num_steps=3",
         "sampler.schedule._target_=edm_se.schedules.Uniform"],
        ["enhance", f"input={noisy}", f"output={tmp_path / 'good'}", "sampler=dpmpp_2m", "num_steps=3",
         "~sampler.schedule", "+sampler.schedule={_target_:edm_se.schedules.Uniform,t_min:null}", "progress=false"])
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert bad.stderr.strip().splitlines()[-1] == ("edm-se enhance: error: sampler: Uniform.__init__() got an "
                                                   "unexpected keyword argument 'sigma_min'")
    assert not (tmp_path / "bad").exists()
    assert good.returncode == 0, good.stderr[-2000:]
    assert list((tmp_path / "good").glob("*.wav"))


def test_an_override_of_the_wrong_kind_is_one_line_before_any_work(tmp_path):
    """A section given a value, a constructor's number given a text and a `_target_` that cannot be imported each
    ended in Hydra's multi-line instantiation error with exit status 1 (some after the run directory was made); now
    one line naming the override, status 2, nothing written. The command's own keys keep their own checks."""
    run = ["train", "net=tiny", "trainer.max_steps=1", f"run_dir={tmp_path / 'r'}"]
    cases = [
        ([*run, "trainer.optimizer=5"], "edm-se train: error: trainer.optimizer=5: `trainer.optimizer` is a section "
         "with keys (_target_, _partial_, lr, weight_decay), not a value; set one of them (trainer.optimizer.lr=...)"),
        ([*run, "sde.theta=abc"], "edm-se train: error: sde.theta=abc: must be a number (the default is 0.0)"),
        ([*run, "trainer.optimizer._target_=torch.optim.Nope"],
         "edm-se train: error: trainer.optimizer._target_=torch.optim.Nope: torch.optim has no 'Nope'"),
        ([*run, "net._target_=nope.Net"], "edm-se train: error: net._target_=nope.Net: no module named 'nope'"),
        ([*run, "trainer.max_steps=abc"], "edm-se train: error: trainer.max_steps=abc: must be an integer >= 1"),
        (["enhance", f"input={tmp_path}/x.wav", f"output={tmp_path / 'e'}", "sampler=euler", "sampler.num_steps=abc"],
         "edm-se enhance: error: sampler.num_steps=abc: must be an integer (the default is 16)"),
        (["study", f"hydra.sweep.dir={tmp_path / 's'}", "max_files=1", "peers=[]", "sampler.schedule._target_=x.Y"],
         "edm-se study: error: sampler.schedule._target_=x.Y: no module named 'x'"),
    ]
    for res, (args, expected) in zip(run_cli_many(*(args for args, _ in cases)), cases):
        assert res.returncode == 2, (args, res.stderr[-2000:])
        assert res.stderr.strip().splitlines()[-1] == expected
        assert "Traceback" not in res.stderr and "HYDRA_FULL_ERROR" not in res.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists() and not (tmp_path / "e").exists()


def test_unimportable_names_the_missing_part():
    assert validate_overrides._unimportable("torch.optim.AdamW") is None and validate_overrides._unimportable("edm_se.sde.OUVE") is None
    assert validate_overrides._unimportable("edm_se.sde.OUVE.nope") == "edm_se.sde.OUVE has no 'nope'"
    assert validate_overrides._unimportable("edm_se") == "edm_se is a module or a value, not a class or function"
    assert validate_overrides._unimportable("a b") == "not a dotted Python path (module.Class)"


def test_a_peer_refuses_the_diffusion_models_settings():
    """`enhancer=rnnoise sampler=euler` (or ckpt=, num_steps=, t_start=) ran the peer and ignored them: the output was
    not what the command line asked for. Each is now named; the peer alone passes."""
    peer = ["input=x.wav", "output=o", "enhancer=rnnoise"]
    for extra, named in ((["sampler=euler"], "sampler: "), (["num_steps=4"], "num_steps=4: "),
                         (["t_start=0.5"], "t_start=0.5: "), (["ckpt=a.pt"], "ckpt=a.pt: ")):
        with pytest.raises(ConfigError) as info:
            validate.enhance_config(_compose("enhance", [*peer, *extra]))
        assert str(info.value) == (named + "enhancer=rnnoise is a pretrained peer with no checkpoint, sampler, steps "
                                   "or start time (those are the diffusion model's; drop them or use "
                                   "enhancer=diffusion)")
    validate.enhance_config(_compose("enhance", peer))
    validate.enhance_config(_compose("enhance", ["input=x.wav", "output=o", "t_start=0.5", "sampler=euler"]))


def test_a_training_study_refuses_an_unknown_cell_and_a_checkpoint(tmp_path):
    """`study=recipes cell=nope` made a cell directory and an error.json, and a training study given `ckpt=` or
    `sampler=` trained its own models and ignored them; all are refused before any directory is made, the cell with its nearest name.
    One value of a key the preset sweeps (`cell=nope`) replaces the preset's values in the check."""
    sweep = [f"hydra.sweep.dir={tmp_path / 's'}"]
    one, two, ckpt, smp = run_cli_many(["study", "study=recipes", "cell=nope", *sweep],
                                       ["study", "study=recipes", "cell=seed_recipe,sgmse_recip", *sweep],
                                       ["study", "study=design", "ckpt=a.pt", *sweep],
                                       ["study", "study=recipes", "sampler=pc,euler", "cell=seed_recipe", *sweep])
    assert one.returncode == 2 and one.stderr.strip().splitlines()[-1] == (
        "edm-se study: error: cell=nope: no such cell in study=recipes (cells: sgmse_recipe, seed_recipe)")
    assert two.returncode == 2 and two.stderr.strip().splitlines()[-1] == (
        "edm-se study: error: cell=sgmse_recip: no such cell in study=recipes (did you mean cell=sgmse_recipe? "
        "cells: sgmse_recipe, seed_recipe)")
    assert ckpt.returncode == 2 and ckpt.stderr.strip().splitlines()[-1] == (
        "edm-se study: error: ckpt=a.pt: study=design trains every cell's own model; a checkpoint is for the "
        "sampler studies (steps, churn, t_start, oa)")
    # a swept sampler trained the cell once per sampler and scored it with the cell's own grid each time
    assert smp.returncode == 2 and smp.stderr.strip().splitlines()[-1] == (
        "edm-se study: error: sampler=pc,euler: study=recipes scores each cell with its evaluation grid (study.eval, "
        "study.cells.<cell>.eval), not with sampler=")
    assert not (tmp_path / "s").exists()
    with pytest.raises(ConfigError, match="^cell=nope: no such cell in study=recipes"):  # composed without Hydra
        validate_study.study_config(_compose("study", ["study=recipes", "cell=nope"]))
    validate_study.study_config(_compose("study", ["study=recipes", "cell=seed_recipe"]))
    with pytest.raises(ConfigError, match=r"^cell=foo: study=steps sweeps samplers on one checkpoint and has no "
                                          r"cells; cell= picks"):  # it only renamed the cell directories
        validate_study.study_config(_compose("study", ["cell=foo"]))
    # one directory where a list goes was read letter by letter ('/', 't', ...: every checkpoint under /); a
    # directory that does not exist was a warning in a cell's log, and the cell trained from scratch
    with pytest.raises(ConfigError, match=r"^reuse_checkpoints=/tmp: must be a list of directories "
                                          r"\(reuse_checkpoints=\[DIR\]\) or \[\]$"):
        validate_study.study_config(_compose("study", ["study=recipes", "reuse_checkpoints=/tmp"]))
    with pytest.raises(ConfigError, match=rf"^reuse_checkpoints: {tmp_path / 'nope'} is not a directory$"):
        validate_study.study_config(_compose("study", ["study=recipes", f"reuse_checkpoints=[{tmp_path / 'nope'}]"]))
    validate_study.study_config(_compose("study", ["study=recipes", f"reuse_checkpoints=[{tmp_path}]"]))


def test_a_training_study_checks_every_evaluation_point_before_any_training():
    """A bad evaluation grid (an unknown sampler, 0 steps, a parameter the sampler lacks or refuses) failed its cell
    after the training; each is now one line naming the entry, and nested params merge into the sampler's node."""
    from edm_se.study_train import eval_points

    grid = "study.cells.seed_recipe.eval"
    cases = (("x", f"{grid}=x: must be a list of {{sampler: NAME, num_steps: [N, ...]}} entries"),
             ("[{sampler:nope,num_steps:[1]}]", f"{grid}[0].sampler: unknown sampler 'nope'; choose from ["),
             ("[{sampler:pc},{sampler:euler,num_steps:[2,0]}]",
              f"{grid}[1].num_steps=[2, 0]: must be a step count >= 1 or a non-empty list of them"),
             ("[{sampler:euler,steps:[2]}]", f"{grid}[0].steps: an entry has sampler, num_steps and params only"),
             ("[{sampler:euler,params:{churn:1}}]", f"{grid}[0].params.churn: sampler euler has no parameter 'churn' "
                                                   "(it has num_steps, s_churn, "),
             ("[{sampler:euler,params:{s_churn:-1}}]", f"{grid}[0].params.s_churn=-1: must be a number >= 0"),
             ("[{sampler:euler,params:{schedule:{sigma_mn:1}}}]",
              f"{grid}[0].params: Karras.__init__() got an unexpected keyword argument 'sigma_mn'"))
    for value, why in cases:
        with pytest.raises(ConfigError) as err:
            validate_study.study_config(_compose("study", ["study=recipes", "cell=seed_recipe", f"{grid}={value}"]))
        assert str(err.value).startswith(why), (value, str(err.value))
    # the other cell's grid is not checked when only this one runs; both are when no cell is named
    bad = "study.cells.sgmse_recipe.eval=[{sampler:nope}]"
    validate_study.study_config(_compose("study", ["study=recipes", "cell=seed_recipe", bad]))
    with pytest.raises(ConfigError, match=r"^study.cells.sgmse_recipe.eval\[0\].sampler: unknown sampler"):
        validate_study.study_config(_compose("study", ["study=recipes", bad]))
    # one point per entry and step count; a nested mapping keeps the schedule's other keys
    points = eval_points("c", {"eval": [{"sampler": "euler", "num_steps": [2, 3],
                                         "params": {"schedule": {"sigma_min": 0.1}}}]}, None)
    assert [(key, name, node["num_steps"]) for key, name, node in points] == [
        ("study.cells.c.eval[0]", "euler", 2), ("study.cells.c.eval[0]", "euler", 3)]
    assert points[0][2]["schedule"] == {"_target_": "edm_se.schedules.Karras", "sigma_min": 0.1, "sigma_max": None,
                                        "rho": 7.0}
    assert eval_points("c", {}, [{"sampler": "pc"}])[0][0] == "study.eval[0]"


def test_a_training_study_composes_and_checks_every_cells_training_before_any_cell_runs():
    """A bad `study.train_overrides` or cell override failed every cell (error.json), after the noisy input and the
    peers had been scored; now one line naming the cell. A cell that trains nothing (trainer.max_steps=0, few_step's
    `none`: its starting weights as they are) passes."""
    cases = (('study.train_overrides=["net=nope"]',
              "cell seed_recipe: its training overrides do not compose (In 'train': Could not find 'net/nope'); they "
              "are study.train_overrides + study.cells.seed_recipe.overrides"),
             ('study.train_overrides=["trainer.max_steps=-1"]',
              "cell seed_recipe: trainer.max_steps=-1: must be an integer >= 1"),
             ('study.cells.seed_recipe.overrides=["precond.sigma_data=-1"]',
              "cell seed_recipe: precond: sigma_data must be > 0, got -1"))
    for override, why in cases:
        with pytest.raises(ConfigError) as err:
            validate_study.study_config(_compose("study", ["study=recipes", "cell=seed_recipe", override]))
        assert str(err.value) == why
    validate_study.study_config(_compose("study", ["study=few_step"]))


def test_a_samplers_flags_must_be_bools():
    """`sampler.float64=2` or `sampler.steps_in_sigma=maybe` ran as true; swept, `true,false` are bools."""
    io = ["input=x.wav", "output=o"]
    for sampler, key, value in (("euler", "float64", "2"), ("euler", "steps_in_sigma", "maybe"),
                                ("pc", "final_denoise", "1"), ("pc", "predictor_in_sigma", "no")):
        with pytest.raises(ConfigError, match=rf"^sampler\.{key}={value}: must be true or false$"):
            validate.enhance_config(_compose("enhance", [*io, f"sampler={sampler}", f"sampler.{key}={value}"]))
    validate.enhance_config(_compose("enhance", [*io, "sampler=euler", "sampler.float64=false"]))
    assert [validate_study._swept_number(v) for v in ("true", "False", "2", "0.5", "x")] == [True, False, 2, 0.5, "x"]


def test_the_diffusion_model_refuses_an_output_rate_of_its_own(tmp_path):
    """`sample_rate=8000` sets a peer's output rate; the diffusion model ignored it without a word (16 kHz out)."""
    noisy = sorted((REPO / "edm_se" / "data" / "builtin" / "testset" / "noisy").iterdir())[0]
    (res,) = run_cli_many(["enhance", f"input={noisy}", f"output={tmp_path / 'o'}", "sample_rate=8000"])
    assert res.returncode == 2 and res.stderr.strip() == (
        "edm-se enhance: error: sample_rate=8000: the diffusion model enhances at its checkpoint's rate, 16000 Hz "
        "(inputs at other rates are resampled, see on_rate_mismatch); sample_rate= sets a peer's output rate "
        "(enhancer=dfn3|rnnoise|noisereduce)")
    assert not (tmp_path / "o").exists()


def test_two_step_counts_for_enhance_are_refused(tmp_path):
    """`num_steps=4 sampler.num_steps=8` ran 4 steps without a word; two different counts are now refused, the
    same count twice passes the check (it fails later here only because the input does not exist)."""
    io = [f"input={tmp_path}/x.wav", f"output={tmp_path / 'o'}", "sampler=euler"]
    two, same = run_cli_many(["enhance", *io, "sampler.num_steps=8", "num_steps=4"],
                             ["enhance", *io, "sampler.num_steps=4", "num_steps=4"])
    assert two.returncode == 2 and two.stderr.strip().splitlines() == [
        "edm-se enhance: error: num_steps=4 and sampler.num_steps=8: two step counts; give one (num_steps= is the "
        "shortcut for sampler.num_steps=)"]
    assert same.returncode == 2 and "x.wav: no such file" in same.stderr and "two step counts" not in same.stderr
