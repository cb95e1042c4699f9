"""`edm-se data testset`: a task's held-out sentences written as a study test set. The files are the paradigms study's
mixtures bit for bit, at the SNR the manifest says, with the transcripts a study's WER needs; the directory is made
atomically, kept when the recipe is the same and never overwritten by another; a training split is refused."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, run_cli, run_cli_many

from edm_se.tasks.data import make_task_test_set
from edm_se.tasks.testset import TestSetExportError, export_task_test_set
from edm_se.testset import load_test_set

NOISE = "builtin:test"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A sentences manifest of 3 held-out (test) clips and 1 training clip: real speech of the built-in test set,
    1.5 s each, with its transcript."""
    src = load_test_set(None)
    root = tmp_path_factory.mktemp("tasks") / "sentences"
    rows = []
    for i, name in enumerate(src.names[:4]):
        wave, sr = sf.read(src.clean(name), dtype="float32")
        voice = "trainvoice" if i == 3 else ("slt" if i % 2 == 0 else "awb")
        path = f"{voice}/clip{i}.flac"
        (root / voice).mkdir(parents=True, exist_ok=True)
        sf.write(root / path, wave[: int(1.5 * sr)], sr)
        rows.append({"path": path, "split": "train" if i == 3 else "test", "voice": voice, "engine": "rec",
                     "text": src.transcripts[i], "label": "", "variant": "base", "duration_s": "1.5",
                     "licence": "test"})
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "manifest.csv"


def test_export_writes_the_paradigms_mixtures_with_snr_and_transcripts(manifest, tmp_path):
    out = tmp_path / "ts"
    res = export_task_test_set(manifest, NOISE, out, snrs_db=[0, 10], max_clips=2, seed=7)
    assert res["n"] == 4 and not res["reused"] and res["words"] > 0
    ts = load_test_set(out)
    assert len(ts.names) == 4 and ts.has_transcripts()
    assert sorted(ts.snr_db) == [0.0, 0.0, 10.0, 10.0]
    assert all("trainvoice" not in n for n in ts.names)  # the training clip is not in a test set
    # the same clips at both SNRs (evenly spread: the first and the last test clip), each the study's mixture
    items = make_task_test_set(manifest, NOISE, snrs_db=[0, 10], split="test", target="text", seed=7)
    kept = [it for i, it in enumerate(items) if i % 3 in (0, 2)]
    by_name = {f"{it['name'].split('#')[0].replace('/', '_')}_snr{float(it['snr_db']):g}.wav": it for it in kept}
    assert sorted(by_name) == ts.names
    rows = {r["name"]: r for r in csv.DictReader(open(out / "manifest.csv", encoding="utf-8"))}
    for name, it in by_name.items():
        clean, sr = sf.read(ts.clean(name), dtype="float32")
        noisy, _ = sf.read(ts.noisy(name), dtype="float32")
        assert sr == 16000
        np.testing.assert_array_equal(clean, it["clean"].numpy())  # bit for bit: 32-bit float files
        np.testing.assert_array_equal(noisy, it["noisy"].numpy())
        snr = 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((noisy - clean).astype(np.float64) ** 2))
        assert snr == pytest.approx(float(rows[name]["snr_db"]), abs=0.05)
        assert rows[name]["transcript"] == it["text"] and rows[name]["voice"] in ("slt", "awb")
    recipe = json.loads((out / "testset.json").read_text())
    assert recipe["snrs_db"] == [0.0, 10.0] and recipe["seed"] == 7 and recipe["n"] == 4 and recipe["noise"] == NOISE
    assert len(recipe["manifest_sha256"]) == 64


def test_the_same_recipe_is_kept_and_another_never_overwrites(manifest, tmp_path):
    out = tmp_path / "ts"
    export_task_test_set(manifest, NOISE, out, snrs_db=[5], max_clips=None)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = export_task_test_set(manifest, NOISE, out, snrs_db=[5], max_clips=None)
    assert again["reused"] and again["n"] == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # another export of the same recipe writes the same bytes: the test set's SHA-256 is reproducible (libsndfile's
    # float WAVs carry a PEAK chunk with a timestamp, which gave every export another hash)
    time.sleep(1.1)  # the PEAK chunk's timestamp counts seconds
    export_task_test_set(manifest, NOISE, tmp_path / "twin", snrs_db=[5], max_clips=None)
    assert load_test_set(tmp_path / "twin").identity()["sha256"] == load_test_set(out).identity()["sha256"]
    with pytest.raises(TestSetExportError, match="not made by this recipe .another recipe: snrs_db."):
        export_task_test_set(manifest, NOISE, out, snrs_db=[0], max_clips=None)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    (tmp_path / "other").mkdir()
    with pytest.raises(TestSetExportError, match="no testset.json"):
        export_task_test_set(manifest, NOISE, tmp_path / "other", snrs_db=[0])
    with pytest.raises(TestSetExportError, match="split=train: a test set must come from a held-out split"):
        export_task_test_set(manifest, NOISE, tmp_path / "train", split="train")
    assert not (tmp_path / "train").exists() and not list(tmp_path.glob(".*.tmp"))


def test_other_noise_files_under_the_same_spec_are_another_recipe(manifest, tmp_path):
    """A corpus rebuilt with other held-out noise (session 38 left near copies of training sounds out of its test
    split) keeps its spec, ``corpus:DIR:test``; the set written from the old files is not kept as if it were new."""
    import shutil

    from edm_se.data import builtin_files

    noise = tmp_path / "noise"
    noise.mkdir()
    for p in builtin_files("noise", "test")[:3]:
        shutil.copy(p, noise / p.name)
    out = tmp_path / "ts"
    export_task_test_set(manifest, str(noise), out, snrs_db=[5], max_clips=2)
    assert export_task_test_set(manifest, str(noise), out, snrs_db=[5], max_clips=2)["reused"]
    assert json.loads((out / "testset.json").read_text())["noise_files"]["files"] == 3
    sorted(noise.iterdir())[0].unlink()  # one file left the noise split
    with pytest.raises(TestSetExportError, match="another recipe: noise_files"):
        export_task_test_set(manifest, str(noise), out, snrs_db=[5], max_clips=2)


def test_cli_makes_a_test_set_a_study_reads_and_refuses_bad_requests_in_one_line(manifest, tmp_path):
    out = tmp_path / "ts"
    res = run_cli("data", "testset", f"manifest={manifest}", f"noise={NOISE}", f"out_dir={out}", "snrs_db=[5,15]",
                  "max_clips=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "4 mixtures" in res.stdout and f"test_set={out}" in res.stdout
    assert len(load_test_set(out).names) == 4
    # checked when made: the test voices against the task's train clips (held out here) ...
    assert "held out: no audio of the 4 test mixtures (clean speech, noisy - clean)" in res.stdout
    # ... and noise drawn from a corpus's TRAIN split against that split: said at once
    from edm_se.data.builtin import builtin_root

    res = run_cli("data", "testset", f"manifest={manifest}", f"noise=corpus:{builtin_root()}:train",
                  f"out_dir={tmp_path / 'leaky'}", "snrs_db=[5]", "max_clips=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "WARNING, not held out: 2 of 2 test mixtures share audio" in res.stdout and "noise of" in res.stdout
    (tmp_path / "afile").write_text("x")
    (tmp_path / "bad_numbers.csv").write_text("path,split,voice,text,label,duration_s\na.flac,test,v,hi,,abc\n")
    not_a_manifest, binary = REPO / "README.md", REPO / "edm_se" / "checkpoints" / "default.pt"
    cases = ((["split=train"], "split=train: a test set must come from a held-out split"),
            ([f"manifest={not_a_manifest}"], "not a task manifest of `edm-se data tasks` (no column "
                                             "path, split, voice, text, label, duration_s)"),
            ([f"manifest={binary}"], "not a task manifest (a CSV file): UnicodeDecodeError"),
            ([f"manifest={tmp_path / 'bad_numbers.csv'}"],
             "line 2: label '' / duration_s 'abc' must be numbers"),
            ([f"out_dir={tmp_path / 'afile' / 'sub'}"], "afile: is a file where a directory is needed"),
            (["snrs_db=[]"], "snrs_db=[]: must be a non-empty list of numbers (dB)"),
            (["snrs_db=[0,0.0]"], "snrs_db=[0.0, 0.0]: an SNR named twice would write one mixture over"),
            (["max_clips=0"], "max_clips=0: must be an integer >= 1"),
            ([f"manifest={tmp_path / 'none.csv'}"], "no such task manifest"))
    # a later manifest= or out_dir= overrides the first
    runs = run_cli_many(*(["data", "testset", f"manifest={manifest}", f"noise={NOISE}", f"out_dir={tmp_path / 'bad'}",
                           *args] for args, _ in cases))
    for bad, (args, message) in zip(runs, cases):
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, (args, bad.stderr[-2000:])
        assert len(bad.stderr.strip().splitlines()) == 1 and message in bad.stderr, bad.stderr
        assert bad.stderr.startswith("edm-se data testset: error: ")  # the sub-command is named
    assert not (tmp_path / "bad").exists()


def test_an_interrupted_export_leaves_nothing_and_a_finished_one_is_whole(manifest, tmp_path, monkeypatch):
    """`atomic_dir` under the export: a failure midway removes the temporary directory and writes no out_dir."""
    import edm_se.tasks.testset as T

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(T, "_write_float_wav", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_task_test_set(manifest, NOISE, tmp_path / "ts", snrs_db=[5], max_clips=1)
    assert not (tmp_path / "ts").exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    export_task_test_set(manifest, NOISE, tmp_path / "ts", snrs_db=[5], max_clips=1)
    assert sorted(p.name for p in (tmp_path / "ts").iterdir()) == ["clean", "manifest.csv", "noisy", "testset.json"]
    assert list(tmp_path.iterdir()) == [tmp_path / "ts"]
