"""The held-out check of a test set against a model's training data (:mod:`edm_se.heldout`), and the study's use of
it (:mod:`edm_se.study_heldout`): a test set cut from the training data is refused on content, whatever its file
names, and a held-out one passes; what cannot be checked says so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO, run_cli
from edm_se.data.builtin import builtin_files
from edm_se.data.datasets import make_test_set
from edm_se.heldout import HELD_OUT, OVERLAP, UNCHECKED, HeldOutError, Report, check_test_set, enforce
from edm_se.trained_on import TrainingData, checkpoint_training_data, rebase, training_data
from edm_se.testset import load_test_set

BUILTIN_TRAIN = TrainingData("model.pt", [("speech", "builtin:train", "model.pt"), ("noise", "builtin:train",
                                                                                    "model.pt")])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fingerprints")


@pytest.fixture(scope="module")
def leaky(tmp_path_factory) -> Path:
    """A test set mixed from the built-in TRAINING speech and noise, renamed and re-levelled by the mixing."""
    out = tmp_path_factory.mktemp("leaky") / "testset"
    make_test_set(builtin_files("speech", "train")[:3], builtin_files("noise", "train")[:2], out, snrs_db=[0, 10],
                  per_snr=2, seed=3)
    return out


@pytest.fixture(scope="module")
def noise_only_leak(tmp_path_factory) -> Path:
    """Held-out (test) speech mixed with TRAINING noise: only the noise was seen."""
    out = tmp_path_factory.mktemp("noise_leak") / "testset"
    make_test_set(builtin_files("speech", "test")[:2], builtin_files("noise", "train")[:1], out, snrs_db=[5],
                  per_snr=2, seed=1)
    return out


def test_a_test_set_cut_from_the_training_data_is_found_by_content(leaky, cache):
    report = check_test_set(load_test_set(leaky, None), BUILTIN_TRAIN, cache=cache, progress=False)
    assert report.status == OVERLAP
    names = load_test_set(leaky, None).names
    assert {m["mixture"] for m in report.matches} == set(names)  # every mixture, by its speech and by its noise
    train_speech = {str(p) for p in builtin_files("speech", "train")}
    train_noise = {str(p) for p in builtin_files("noise", "train")}
    for m in report.matches:
        if m["test"].startswith("clean/"):
            assert m["kind"] == "speech" and m["train"] in train_speech
        else:
            assert m["test"].startswith("noise of ") and m["kind"] == "noise" and m["train"] in train_noise
        assert m["ber"] <= 0.1 and m["seconds"] > 1.0
    assert {m["test"].split("/")[0].split(" ")[0] for m in report.matches} == {"clean", "noise"}
    assert report.training == [{"kind": "speech", "spec": "builtin:train", "model": "model.pt",
                                "files": len(train_speech)},
                               {"kind": "noise", "spec": "builtin:train", "model": "model.pt",
                                "files": len(train_noise)}]
    assert f"{len(names)} of {len(names)} test mixtures share audio" in report.line()


def test_training_noise_under_held_out_speech_is_found_as_noise(noise_only_leak, cache):
    report = check_test_set(load_test_set(noise_only_leak, None), BUILTIN_TRAIN, cache=cache, progress=False)
    assert report.status == OVERLAP
    assert {m["kind"] for m in report.matches} == {"noise"}
    assert all(m["test"].startswith("noise of ") for m in report.matches)


def test_the_builtin_test_set_is_held_out_of_the_builtin_training_split(cache):
    report = check_test_set(load_test_set(None, None), BUILTIN_TRAIN, cache=cache, progress=False)
    assert report.status == HELD_OUT and report.matches == [] and report.reason is None
    assert report.test_files == 25
    assert report.line().startswith("held out: no audio of the 25 test mixtures")


def test_a_renamed_copy_of_one_training_file_in_a_held_out_test_set_is_caught(tmp_path, cache):
    """One mixture of a real held-out set replaced by a training recording under the held-out file's name."""
    src = load_test_set(None, None)
    root = tmp_path / "ts"
    (root / "clean").mkdir(parents=True)
    (root / "noisy").mkdir()
    for name in src.names[:3]:
        for d in ("clean", "noisy"):
            (root / d / name).write_bytes((src.root / d / name).read_bytes())
    x, sr = sf.read(builtin_files("speech", "train")[5])
    victim = src.names[1]
    sf.write(root / "clean" / victim, 0.3 * x, sr)  # another level, the held-out file's name
    sf.write(root / "noisy" / victim, 0.3 * x + 0.01 * np.random.default_rng(0).standard_normal(len(x)), sr)
    report = check_test_set(load_test_set(root, None), BUILTIN_TRAIN, cache=cache, progress=False)
    assert report.status == OVERLAP
    assert {m["mixture"] for m in report.matches} == {victim}
    assert report.line().startswith("1 of 3 test mixtures")


def test_unresolvable_or_unrecorded_training_data_is_reported_unchecked(tmp_path, cache):
    gone = TrainingData("m.pt", [("speech", str(tmp_path / "nowhere"), "m.pt")])
    report = check_test_set(load_test_set(None, None), gone, cache=cache, progress=False)
    assert report.status == UNCHECKED and report.training[0]["files"] is None
    assert "not on this machine" in report.reason and "nowhere" in report.reason
    none = training_data(None, "imported.pt")
    assert none.sources == [] and "records no training config" in none.unknown
    report = check_test_set(load_test_set(None, None), none, cache=cache, progress=False)
    assert report.status == UNCHECKED and "records no training config" in report.line()
    # one source found, one not: checked against what was found, the rest named
    part = TrainingData("m.pt", [("speech", "builtin:train", "m.pt"), ("noise", str(tmp_path / "gone"), "m.pt")])
    report = check_test_set(load_test_set(None, None), part, cache=cache, progress=False)
    assert report.status == HELD_OUT and "gone" in report.reason


def test_training_data_follows_the_config_and_the_model_fine_tuned_from(tmp_path):
    mix = {"data": {"train": {"speech": "corpus:data_cache/corpus:train", "noise": ["a.wav", "b.wav"]}},
           "paradigm": {"_target_": "edm_se.paradigms.Denoising"}}
    d = training_data(mix, "m.pt")
    assert d.sources == [("speech", "corpus:data_cache/corpus:train", "m.pt"), ("noise", ["a.wav", "b.wav"], "m.pt")]
    assert d.unknown is None
    paired = training_data({"data": {"train": {"clean_dir": "vb/clean", "noisy_dir": "vb/noisy"}}}, "p.pt")
    assert paired.sources == [("speech", "vb/clean", "p.pt")]
    # CRP without enhancer_checkpoint fine-tunes the bundled model: its training data comes along
    from edm_se.model import default_checkpoint_path

    crp = training_data({"data": {"train": {"speech": "builtin:train", "noise": "builtin:train"}},
                         "paradigm": {"_target_": "edm_se.crp.CRP", "enhancer_checkpoint": None}}, "crp.pt")
    bundled = str(default_checkpoint_path())
    assert ("speech", "corpus:data_cache/corpus:train", bundled) in crp.sources
    assert ("speech", "builtin:train", "crp.pt") in crp.sources
    assert str(REPO) in crp.bases  # the bundled model's data_cache/ is at the checkout's root
    # a chain that loops on itself stops, saying so
    ckpt = tmp_path / "loop.pt"
    bundle = torch.load(default_checkpoint_path(), weights_only=True)
    bundle["train_config"] = {"data": {"train": {"speech": "builtin:train"}},
                              "paradigm": {"_target_": "x.Y", "enhancer_checkpoint": str(ckpt)}}
    torch.save(bundle, ckpt)
    loop = checkpoint_training_data(ckpt)
    assert loop.sources == [("speech", "builtin:train", str(ckpt))] and "more than 8 deep" in loop.unknown


def test_relative_specs_are_resolved_where_training_ran(tmp_path, cache, monkeypatch):
    assert rebase("corpus:data_cache/corpus:train", Path("/r")) == "corpus:/r/data_cache/corpus:train"
    assert rebase("corpus:/abs/c:test", Path("/r")) == "corpus:/abs/c:test"
    assert rebase(["a.wav", "/b.wav"], Path("/r")) == ["/r/a.wav", "/b.wav"]
    assert rebase("builtin:train", Path("/r")) == "builtin:train"
    speech = tmp_path / "run" / "speech"
    speech.mkdir(parents=True)
    for p in builtin_files("speech", "train")[:2]:
        (speech / p.name).write_bytes(p.read_bytes())
    monkeypatch.chdir(tmp_path)  # "speech" does not resolve here, only where training ran
    data = TrainingData("m.pt", [("speech", "speech", "m.pt")], bases=[str(tmp_path / "run")])
    report = check_test_set(load_test_set(None, None), data, cache=cache, progress=False)
    assert report.status == HELD_OUT and report.training[0]["files"] == 2
    assert report.training[0]["resolved"] == str(speech)


def test_enforce_refuses_an_overlap_and_warns_otherwise(caplog):
    overlap = Report(OVERLAP, "m.pt", "/ts", 4, [{"files": 3}], [{"test": "clean/a.flac", "mixture": "a.flac",
                                                                  "train": "/t/x.flac", "kind": "speech",
                                                                  "seconds": 2.0, "ber": 0.01}])
    with pytest.raises(HeldOutError, match=r"test_set=/ts: 1 of 4 test mixtures share audio .* clean/a\.flac = "
                                           r"/t/x\.flac.*heldout_check=warn"):
        enforce(overlap, "refuse")
    with pytest.raises(HeldOutError, match=r"edm-se heldout test_set=/ts \[ckpt=\.\.\.\] held_out_subset=DIR"):
        enforce(overlap, "refuse")  # a test set directory: its held-out part can be written
    with pytest.raises(HeldOutError) as err:
        enforce(overlap, "refuse", key="tasks.keywords")  # in-memory mixtures: no directory to take a part of
    assert "held_out_subset" not in str(err.value) and "heldout_check=warn" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="edm_se.heldout"):
        enforce(overlap, "warn")
        enforce(Report(UNCHECKED, "m.pt", "/ts", 4, [], [], reason="no data"), "refuse")
    assert "its scores measure training data" in caplog.text and "no data" in caplog.text
    with pytest.raises(ValueError, match="heldout_check must be one of refuse, warn, off"):
        enforce(overlap, "maybe")


def test_study_refuses_a_leaky_test_set_and_marks_it_when_told_to_score_it(tiny_checkpoint, leaky, tmp_path):
    """End to end on the CLI: a model trained on builtin:train, a test set mixed from builtin:train."""
    sweep = tmp_path / "sweep"
    common = ["study", "study=steps", f"ckpt={tiny_checkpoint}", f"test_set={leaky}", "metrics=[si_sdr]", "peers=[]",
              "sampler=euler", "sampler.num_steps=1", "max_files=2", "keep_audio=0", f"hydra.sweep.dir={sweep}"]
    env = {"EDM_SE_CACHE": str(tmp_path / "cache")}
    res = run_cli(*common, env=env)
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith(f"edm-se study: error: test_set={leaky}: ") and "share audio with the training data" in err
    assert "Traceback" not in res.stderr and not sweep.exists()  # refused before any cell
    res = run_cli(*common, "heldout_check=warn", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    md = (sweep / "results.md").read_text()
    assert "**NOT held out**" in md and "share audio with the training data" in md
    cell = json.loads(next(sweep.glob("*/metrics.json")).read_text())
    assert cell["provenance"]["held_out"]["status"] == OVERLAP
    assert cell["provenance"]["held_out"]["shared_mixtures"] == 2  # max_files=2 of the leaky set


def test_study_records_a_held_out_test_set_in_every_cell(tiny_checkpoint, tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli("study", "study=steps", f"ckpt={tiny_checkpoint}", "metrics=[si_sdr]", "peers=[]",
                  "sampler=euler", "sampler.num_steps=1", "max_files=2", "keep_audio=0", f"hydra.sweep.dir={sweep}",
                  env={"EDM_SE_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr[-2000:]
    record = json.loads((sweep / "held_out.json").read_text())
    (report,) = record["reports"].values()
    assert report["status"] == HELD_OUT and report["test_files"] == 2
    assert [t["spec"] for t in report["training"]] == ["builtin:train", "builtin:train"]
    cell = json.loads(next(sweep.glob("*/metrics.json")).read_text())
    assert cell["provenance"]["held_out"]["status"] == HELD_OUT
    assert cell["provenance"]["held_out"]["training_files"] == len(builtin_files("speech", "train")) + len(
        builtin_files("noise", "train"))
    assert "- Held out: no audio of the 2 test mixtures" in (sweep / "results.md").read_text()


def test_heldout_command_reports_refuses_and_writes_json(tiny_checkpoint, leaky, tmp_path):
    from conftest import run_cli_many

    report = tmp_path / "report.json"
    env = {"EDM_SE_CACHE": str(tmp_path / "cache")}
    victim = leaky / "clean" / sorted(p.name for p in (leaky / "clean").iterdir())[0]
    before = victim.read_bytes()
    leak, clean, warn, bad_out, bad_ckpt, bad_mode, over_audio = run_cli_many(
        ["heldout", f"ckpt={tiny_checkpoint}", f"test_set={leaky}", f"output={report}"],
        ["heldout", f"ckpt={tiny_checkpoint}"],
        ["heldout", f"ckpt={tiny_checkpoint}", f"test_set={leaky}", "heldout_check=warn"],
        ["heldout", f"output={tmp_path}"],
        ["heldout", f"ckpt={tmp_path / 'none.pt'}"],
        ["heldout", "heldout_check=off"],
        ["heldout", f"ckpt={tiny_checkpoint}", f"test_set={leaky}", "heldout_check=warn", f"output={victim}"],
        env=env)
    assert leak.returncode == 2 and "Traceback" not in leak.stderr
    assert leak.stderr.strip().splitlines()[-1].startswith(f"edm-se heldout: error: test_set={leaky}: 4 of 4 test "
                                                           "mixtures share audio")
    assert leak.stdout.count("shared: ") == 8  # each mixture by its speech and by its noise
    saved = json.loads(report.read_text())
    assert saved["status"] == OVERLAP and saved["checkpoint"] == str(tiny_checkpoint) and len(saved["matches"]) == 8
    assert clean.returncode == 0 and "held out: no audio of the 25 test mixtures" in clean.stdout
    assert warn.returncode == 0 and "its scores measure training data" in warn.stdout
    assert bad_out.returncode == 2 and f"output={tmp_path}: is a directory" in bad_out.stderr
    assert bad_ckpt.returncode == 2 and "checkpoint not found" in bad_ckpt.stderr
    assert bad_mode.returncode == 2 and "heldout_check" in bad_mode.stderr
    # output= a file of the test set itself was overwritten with the report
    assert over_audio.returncode == 2 and "give a path ending in .json" in over_audio.stderr
    assert victim.read_bytes() == before


def test_a_training_study_checks_each_cell_by_the_data_it_trains_on():
    """few_step's cells train on the corpus (`data.train.speech: corpus:${..root}:train`, resolved) and fine-tune
    the bundled model (CRP), whose own training data comes along."""
    from hydra import compose, initialize_config_dir

    from edm_se.cli import conf_dir
    from edm_se.model import default_checkpoint_path
    from edm_se.study_heldout import _models, model_key

    for cell in ("crp_n1", "none"):
        with initialize_config_dir(config_dir=conf_dir(), version_base=None):
            cfg = compose(config_name="study", overrides=["study=few_step", f"cell={cell}"], return_hydra_config=True)
        models = _models(cfg)
        assert list(models) == [f"cell {cell}"] == [model_key(cfg)]
        data = models[f"cell {cell}"]
        assert data.model == f"cell {cell}" and data.unknown is None
        assert ("speech", "corpus:data_cache/corpus:train", f"cell {cell}") in data.sources
        assert ("noise", "corpus:data_cache/corpus:train", str(default_checkpoint_path())) in data.sources


def test_evaluate_checks_the_references_against_the_model_that_made_the_estimates(tiny_checkpoint, leaky, tmp_path):
    from conftest import run_cli_many
    from edm_se.model import default_checkpoint_path

    enhanced = tmp_path / "enhanced"
    res = run_cli("enhance", f"ckpt={tiny_checkpoint}", f"input={leaky / 'noisy'}", f"output={enhanced}",
                  "sampler=euler", "sampler.num_steps=1")
    assert res.returncode == 0, res.stderr[-2000:]
    common = ["evaluate", f"estimates={enhanced}", f"references={leaky / 'clean'}", "metrics=[si_sdr]",
              "num_workers=1", "progress=false"]
    unnamed, refused, warned, other_model, off = run_cli_many(
        [*common, f"output={tmp_path / 'a'}"],
        [*common, f"noisy={leaky / 'noisy'}", f"ckpt={tiny_checkpoint}", f"output={tmp_path / 'b'}"],
        [*common, f"noisy={leaky / 'noisy'}", f"ckpt={tiny_checkpoint}", "heldout_check=warn",
         f"output={tmp_path / 'c'}"],
        [*common, f"ckpt={default_checkpoint_path()}", f"output={tmp_path / 'd'}"],
        [*common, "heldout_check=off", f"output={tmp_path / 'e'}"], env={"EDM_SE_CACHE": str(tmp_path / "cache")})
    # enhance.json names a model other than the bundled one: scored, "not checked" said in the log and the summary
    assert unnamed.returncode == 0, unnamed.stderr[-2000:]
    assert "not checked against any model's training data" in unnamed.stdout + unnamed.stderr
    held = json.loads((tmp_path / "a" / "summary.json").read_text())["provenance"]["held_out"]
    assert held["status"] == UNCHECKED and "ckpt=PATH" in held["reason"]
    assert refused.returncode == 2 and not (tmp_path / "b" / "summary.json").exists()
    assert refused.stderr.strip().splitlines()[-1].startswith(f"edm-se evaluate: error: references={leaky / 'clean'}:"
                                                              " 4 of 4 test mixtures share audio")
    assert warned.returncode == 0 and "NOT HELD OUT: 4 of 4 test mixtures" in warned.stdout
    held = json.loads((tmp_path / "c" / "summary.json").read_text())["provenance"]["held_out"]
    assert held["status"] == OVERLAP and held["checkpoint"] == str(tiny_checkpoint) and held["noise_checked"]
    assert {m["kind"] for m in held["matches"]} == {"speech", "noise"}
    assert other_model.returncode == 2 and "not the model that made" in other_model.stderr
    assert off.returncode == 0
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["provenance"]["held_out"]["status"] == "off"


def test_the_check_tells_whether_the_training_files_found_are_those_the_model_recorded(tiny_checkpoint, tmp_path,
                                                                                      cache):
    from edm_se.trained_on import files_identity

    data = checkpoint_training_data(tiny_checkpoint)  # trained on builtin:train; info.train_data records its files
    assert data.recorded[("speech", str(tiny_checkpoint))]["files"] == len(builtin_files("speech", "train"))
    report = check_test_set(load_test_set(None, None), data, cache=cache, progress=False)
    assert report.status == HELD_OUT and report.reason is None
    assert [t["as_recorded"] for t in report.training] == [True, True]
    # the same names and sizes elsewhere: the same identity; one file more or one changed: another
    files = builtin_files("noise", "train")[:3]
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in files:
        (moved / p.name).write_bytes(p.read_bytes())
    assert files_identity(files) == files_identity(sorted(moved.iterdir()))
    (moved / files[0].name).write_bytes(files[0].read_bytes() + b"\0")
    assert files_identity(sorted(moved.iterdir()))["sha256"] != files_identity(files)["sha256"]
    assert files_identity(files[:2])["files"] == 2
    # a rebuilt corpus with other files: still checked, and the report says these are not the model's files
    other = TrainingData("m.pt", [("noise", str(moved), "m.pt")], recorded={("noise", "m.pt"): files_identity(files)})
    report = check_test_set(load_test_set(None, None), other, cache=cache, progress=False)
    assert report.training[0]["as_recorded"] is False
    assert "not those the model trained on: noise" in report.reason and "3 files here, 3 when m.pt trained" in \
        report.reason


def test_an_unreadable_training_file_is_named_as_the_models(tmp_path, cache):
    speech = tmp_path / "speech"
    speech.mkdir()
    (speech / "a.flac").write_bytes(builtin_files("speech", "train")[0].read_bytes())
    (speech / "b.flac").write_text("not audio")
    data = TrainingData("m.pt", [("speech", str(speech), "m.pt")])
    from edm_se.audio import AudioError

    with pytest.raises(AudioError, match=r"b\.flac: not a readable audio file .*a training file of the model"):
        check_test_set(load_test_set(None, None), data, cache=cache, progress=False)


def test_a_checkpoints_list_of_its_training_files_is_what_it_is_checked_against(tmp_path, cache, caplog):
    """``<name>.train_files.json`` beside a checkpoint (the bundled model's: it trained on files a later corpus
    build leaves out of the split) is checked instead of what the spec resolves to today."""
    import shutil

    from edm_se.data.builtin import builtin_root
    from edm_se.model import default_checkpoint_path
    from edm_se.provenance import file_sha256

    ckpt = tmp_path / "m.pt"
    shutil.copy(default_checkpoint_path(), ckpt)
    root = builtin_root()
    speech = [p.relative_to(root).as_posix() for p in builtin_files("speech", "train")[:2]]
    noise = [p.relative_to(root).as_posix() for p in builtin_files("noise", "train")[:3]]
    listing = {"format": "edm_se.train_files/1", "checkpoint_sha256": file_sha256(ckpt), "corpus": str(root),
               "speech": speech, "noise": [*noise, "noise/gone.flac"]}
    (tmp_path / "m.train_files.json").write_text(json.dumps(listing))
    data = checkpoint_training_data(ckpt)
    assert data.listed[("noise", str(ckpt))] == (str(root), [*noise, "noise/gone.flac"], "m.train_files.json")
    report = check_test_set(load_test_set(None, None), data, cache=cache, progress=False)
    assert [(t["kind"], t["files"], t["listed_in"]) for t in report.training] == [
        ("speech", 2, "m.train_files.json"), ("noise", 3, "m.train_files.json")]
    assert report.status == HELD_OUT and "1 of the 4 noise files listed in m.train_files.json are not in" in \
        report.reason
    assert not (root / ".cache").exists()  # the fingerprints went to the cache, not into the package
    # a list written for another checkpoint is not used
    listing["checkpoint_sha256"] = "0" * 64
    (tmp_path / "m.train_files.json").write_text(json.dumps(listing))
    with caplog.at_level(logging.WARNING, logger="edm_se.heldout"):
        assert checkpoint_training_data(ckpt).listed == {}
    assert "not a training-file list of" in caplog.text


def test_the_bundled_models_list_is_its_own():
    from edm_se.trained_on import LIST_FORMAT
    from edm_se.model import default_checkpoint_path
    from edm_se.provenance import file_sha256

    path = default_checkpoint_path()
    listing = json.loads(path.with_name(path.stem + ".train_files.json").read_text())
    assert listing["format"] == LIST_FORMAT and listing["checkpoint_sha256"] == file_sha256(path)
    assert (len(listing["speech"]), len(listing["noise"])) == (2861, 626)
    data = checkpoint_training_data(path)
    assert set(data.listed) == {("speech", str(path)), ("noise", str(path))}
    # names and sizes of the listed files: what the check compares the local corpus's with
    assert [data.recorded[(k, str(path))]["files"] for k in ("speech", "noise")] == [2861, 626]


def test_training_files_named_in_a_list_that_are_gone_are_said_not_a_traceback(tmp_path, cache):
    keep = builtin_files("speech", "train")[0]
    data = TrainingData("m.pt", [("speech", [str(keep), str(tmp_path / "gone.flac")], "m.pt"),
                                 ("noise", [str(tmp_path / "gone2.flac")], "m.pt")])
    report = check_test_set(load_test_set(None, None), data, cache=cache, progress=False)
    assert report.status == HELD_OUT and report.training[0]["files"] == 1 and report.training[1]["files"] is None
    assert "1 speech file(s) of m.pt are gone" in report.reason and "gone2.flac" in report.reason


def test_heldout_command_checks_training_data_itself_before_any_model(leaky, tmp_path):
    from conftest import run_cli_many

    leak, clean, gone, both = run_cli_many(
        ["heldout", "train=builtin:train", f"test_set={leaky}"],
        ["heldout", "train=builtin:train"],
        ["heldout", f"train={tmp_path / 'nope'}"],
        ["heldout", "train=builtin:train", "ckpt=x.pt"], env={"EDM_SE_CACHE": str(tmp_path / "cache")})
    assert leak.returncode == 2 and "share audio with the training data of train=builtin:train" in leak.stderr
    assert clean.returncode == 0 and "held out: no audio of the 25 test mixtures" in clean.stdout
    n = len(builtin_files("speech", "train")) + len(builtin_files("noise", "train"))
    assert f"{n} training files of train=builtin:train" in clean.stdout  # read as speech and as noise
    assert gone.returncode == 2 and f"train={tmp_path / 'nope'}: " in gone.stderr and "not found" in gone.stderr
    assert both.returncode == 2 and "give one, a model's training data or the data itself" in both.stderr


def test_training_checks_its_validation_data_against_its_training_data(tiny_checkpoint, tmp_path):
    """A validation split that shares audio with the training split makes best.pt's choice measure training data:
    the trainer says so and keeps the outcome in its checkpoints (training goes on)."""
    from conftest import TINY_TRAIN

    info = torch.load(tiny_checkpoint, weights_only=True)["info"]
    assert info["valid_held_out"]["status"] == HELD_OUT  # builtin:valid against builtin:train
    run = tmp_path / "run"
    res = run_cli("train", f"run_dir={run}", "trainer.max_steps=2", "trainer.ckpt_every=2", *TINY_TRAIN,
                  "data.valid.speech=builtin:train", env={"EDM_SE_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr[-2000:]
    n_speech = len(builtin_files("speech", "train"))
    assert f"data.valid: {n_speech} of" in res.stdout + res.stderr
    assert "its validation scores (and best.pt) partly measure training data" in res.stdout + res.stderr
    held = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["info"]["valid_held_out"]
    assert held["status"] == OVERLAP and held["shared"] == n_speech


@pytest.fixture(scope="module")
def partly_leaky(tmp_path_factory, leaky) -> Path:
    """3 mixtures of the built-in (held-out) test set and the 4 of ``leaky`` (training speech and noise), one set."""
    import shutil

    from edm_se.data import builtin_test_set

    src, out = load_test_set(builtin_test_set()), tmp_path_factory.mktemp("partly") / "testset"
    rows = []
    for ts, names in ((src, src.names[:3]), (load_test_set(leaky), load_test_set(leaky).names)):
        for n in names:
            for sub, path in (("clean", ts.clean(n)), ("noisy", ts.noisy(n))):
                (out / sub).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, out / sub / n)
            i = ts.names.index(n)
            rows.append(f"{n},{ts.snr_db[i]:g},{(ts.transcripts or [''] * len(ts.names))[i] or ''}")
    (out / "manifest.csv").write_text("name,snr_db,transcript\n" + "\n".join(rows) + "\n")
    return out


def test_the_held_out_part_of_a_test_set_is_written_as_a_test_set_of_its_own(partly_leaky, leaky, tmp_path, cache):
    from edm_se.heldout import check_test_set, write_held_out_subset

    ts = load_test_set(partly_leaky)
    report = check_test_set(ts, BUILTIN_TRAIN, cache=cache, progress=False)
    leaked = set(load_test_set(leaky).names)
    assert report.status == OVERLAP and {m["mixture"] for m in report.matches} == leaked
    line = write_held_out_subset(ts, report, tmp_path / "sub")
    assert line.startswith(f"wrote {tmp_path / 'sub'}: the 3 of 7 mixtures held out") and "4 left out" in line
    sub = load_test_set(tmp_path / "sub")
    assert sub.names == [n for n in ts.names if n not in leaked]
    for n in sub.names:  # the same bytes, SNR and transcript
        i = ts.names.index(n)
        assert sub.clean(n).read_bytes() == ts.clean(n).read_bytes()
        assert sub.noisy(n).read_bytes() == ts.noisy(n).read_bytes()
        assert sub.snr_db[sub.names.index(n)] == ts.snr_db[i]
        assert sub.transcripts[sub.names.index(n)] == ts.transcripts[i]
    note = json.loads((tmp_path / "sub" / "subset.json").read_text())
    assert note["left_out"] == sorted(leaked) and note["from"]["sha256"] == ts.identity()["sha256"]
    assert check_test_set(sub, BUILTIN_TRAIN, cache=cache, progress=False).status == HELD_OUT
    # never over a directory; nothing held out or nothing checked: nothing written
    with pytest.raises(FileExistsError, match="never written over"):
        write_held_out_subset(ts, report, tmp_path / "sub")
    all_leak = check_test_set(load_test_set(leaky), BUILTIN_TRAIN, cache=cache, progress=False)
    with pytest.raises(HeldOutError, match="every one of the 4 mixtures"):
        write_held_out_subset(load_test_set(leaky), all_leak, tmp_path / "none")
    unchecked = check_test_set(ts, TrainingData("m.pt", []), cache=cache, progress=False)
    with pytest.raises(HeldOutError, match="nothing was checked"):
        write_held_out_subset(ts, unchecked, tmp_path / "none")
    assert not (tmp_path / "none").exists() and not list(tmp_path.glob(".*tmp*"))


def test_heldout_command_writes_the_held_out_subset_and_exits_0(tiny_checkpoint, partly_leaky, tmp_path):
    from conftest import run_cli_many

    out = tmp_path / "sub"
    written, again = run_cli_many(
        ["heldout", f"ckpt={tiny_checkpoint}", f"test_set={partly_leaky}", f"held_out_subset={out}"],
        ["heldout", f"ckpt={tiny_checkpoint}", f"test_set={partly_leaky}", f"held_out_subset={out}"],
        env={"EDM_SE_CACHE": str(tmp_path / "cache")})
    assert written.returncode == 0, written.stderr
    assert f"wrote {out}: the 3 of 7 mixtures held out" in written.stdout and len(load_test_set(out).names) == 3
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines()[-1] == (f"edm-se heldout: error: held_out_subset={out}: exists; a test "
                                                     "set is never written over (name a new directory)")
