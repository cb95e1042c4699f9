"""edm_se.evaluate: directory scoring writes metrics.csv / summary.json with the right rows and delta columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import speech_like as _speech_like

from edm_se.audio import AudioError, save_audio
from edm_se.evaluate import evaluate_dirs, format_summary

SR = 16000


@pytest.fixture
def dirs(tmp_path):
    """clean/, noisy/ (white noise, 0 dB) and enhanced/ (same noise at -15 dB relative) with 3 files + 1 extra."""
    names = ["a", "b", "sub/c"]
    for i, name in enumerate(names):
        clean = _speech_like(1.0, seed=i)
        noise = np.random.default_rng(100 + i).standard_normal(clean.size).astype(np.float32)
        noise *= np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2))
        save_audio(tmp_path / "clean" / f"{name}.wav", clean, SR)
        save_audio(tmp_path / "noisy" / f"{name}.wav", clean + noise, SR)
        save_audio(tmp_path / "enhanced" / f"{name}.flac", clean + 0.18 * noise, SR)  # suffix may differ
    save_audio(tmp_path / "enhanced" / "orphan.wav", _speech_like(1.0, seed=9), SR)  # no reference: skipped
    return tmp_path


def test_evaluate_dirs_with_noisy_writes_csv_and_json(dirs):
    out = dirs / "eval"
    summary = evaluate_dirs(dirs / "enhanced", dirs / "clean", noisy=dirs / "noisy", output_dir=out,
                            num_workers=0, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "summary.json"]  # no temp files left
    table = pd.read_csv(out / "metrics.csv")
    assert table["name"].tolist() == ["a", "b", "sub/c"]
    for m in ("pesq", "estoi", "si_sdr"):
        for col in (m, f"noisy_{m}", f"delta_{m}"):
            assert col in table.columns
        np.testing.assert_allclose(table[f"delta_{m}"], table[m] - table[f"noisy_{m}"], atol=1e-4)
        assert (table[f"delta_{m}"] > 0).all()  # less noise scores better on every metric
    np.testing.assert_allclose(table["noisy_si_sdr"], 0.0, atol=0.3)  # 0 dB mixtures
    np.testing.assert_allclose(table["si_sdr"], -20 * np.log10(0.18), atol=0.3)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["num_files"] == summary["num_files"] == 3
    for key in ("scores", "noisy_scores", "delta"):
        for m in ("pesq", "estoi", "si_sdr"):
            assert on_disk[key][m]["n"] == 3
            assert on_disk[key][m]["mean"] == pytest.approx(summary[key][m]["mean"])
    assert summary["scores"]["si_sdr"]["mean"] == pytest.approx(table["si_sdr"].mean(), abs=1e-4)
    prov = on_disk["provenance"]
    assert len(prov["estimates_sha256"]) == len(prov["references_sha256"]) == len(prov["noisy_sha256"]) == 64
    assert len({prov["estimates_sha256"], prov["references_sha256"], prov["noisy_sha256"]}) == 3
    assert prov["edm_se_version"] and "git_commit" in prov
    text = format_summary(summary)
    assert "noisy" in text and "delta" in text and "pesq" in text
    assert f"{summary['delta']['si_sdr']['mean']:+.3f}" in text


def test_evaluate_dirs_default_output_without_noisy(dirs):
    summary = evaluate_dirs(dirs / "enhanced", dirs / "clean", num_workers=0, metrics=("si_sdr",),
                            progress=False)
    table = pd.read_csv(dirs / "enhanced" / "metrics.csv")
    assert list(table.columns) == ["name", "si_sdr"]
    np.testing.assert_allclose(table["si_sdr"], -20 * np.log10(0.18), atol=0.3)
    assert summary["scores"]["si_sdr"]["n"] == 3
    assert "noisy_scores" not in summary and "delta" not in format_summary(summary)
    assert "the mean is over" not in format_summary(summary)
    assert (dirs / "enhanced" / "summary.json").is_file()
    # an exact copy of a reference scores SI-SDR +inf, which the mean leaves out: the table says so
    exact = dirs / "exact"
    (exact / "sub").mkdir(parents=True)
    (exact / "a.flac").write_bytes((dirs / "enhanced" / "a.flac").read_bytes())
    for rel in ("b.wav", "sub/c.wav"):
        (exact / rel).write_bytes((dirs / "clean" / rel).read_bytes())
    copied = evaluate_dirs(exact, dirs / "clean", num_workers=0, metrics=("si_sdr",), progress=False)
    assert copied["scores"]["si_sdr"]["n"] == 1 and copied["num_files"] == 3
    assert format_summary(copied).splitlines()[-1] == (
        "si_sdr (estimate): the mean is over 1 of 3 files; the others' scores are not finite (e.g. SI-SDR: +inf for "
        "an exact copy of the reference, -inf for an orthogonal estimate)")


def test_evaluate_dirs_errors(dirs, tmp_path):
    with pytest.raises(AudioError) as info:
        evaluate_dirs(dirs / "nope", dirs / "clean", num_workers=0, progress=False)
    assert str(dirs / "nope") in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(AudioError):
        evaluate_dirs(dirs / "enhanced", dirs / "missing_refs", num_workers=0, progress=False)
    other = tmp_path / "other"
    save_audio(other / "zzz.wav", _speech_like(1.0, seed=3), SR)
    with pytest.raises(AudioError, match="no estimate"):
        evaluate_dirs(dirs / "enhanced", other, num_workers=0, progress=False)
    with pytest.raises(AudioError, match="noisy"):
        evaluate_dirs(dirs / "enhanced", dirs / "clean", noisy=other, num_workers=0, progress=False)


def test_evaluate_dirs_refuses_a_reference_without_estimate_unless_partial(dirs):
    """A system that failed on a file must not get the mean of the files it did produce: an error by default;
    ``partial=True`` scores the others and names what was left out, in the summary and its printed table."""
    (dirs / "enhanced" / "b.flac").unlink()
    with pytest.raises(AudioError, match=r"no estimate for 1 of 3 reference\(s\).*e\.g\. b \(partial=true"):
        evaluate_dirs(dirs / "enhanced", dirs / "clean", num_workers=0, metrics=("si_sdr",), progress=False)
    assert not (dirs / "enhanced" / "metrics.csv").exists()  # nothing written
    summary = evaluate_dirs(dirs / "enhanced", dirs / "clean", num_workers=0, metrics=("si_sdr",),
                            progress=False, partial=True)
    assert summary["num_files"] == summary["scores"]["si_sdr"]["n"] == 2
    assert summary["missing_estimates"] == ["b"]
    assert json.loads((dirs / "enhanced" / "summary.json").read_text())["missing_estimates"] == ["b"]
    assert pd.read_csv(dirs / "enhanced" / "metrics.csv")["name"].tolist() == ["a", "sub/c"]
    assert "PARTIAL: 1 reference(s) without an estimate left out (e.g. b)" in format_summary(summary)
    full = evaluate_dirs(dirs / "enhanced", dirs / "enhanced", num_workers=0, metrics=("si_sdr",), progress=False)
    assert "missing_estimates" not in full and "PARTIAL" not in format_summary(full)


def test_a_pair_of_very_different_lengths_is_refused_unless_allowed(dirs, caplog):
    """An estimate half as long as its reference was scored on that half (here a near-perfect copy): more
    than 10% apart is now an error naming the file; a few samples apart (an STFT's padding) is scored with a
    warning; max_length_mismatch=None scores any pair."""
    import logging

    clean = _speech_like(1.0, seed=1)
    save_audio(dirs / "enhanced" / "b.flac", clean[: clean.size // 2], SR)  # b's first half, exactly
    with pytest.raises(AudioError, match=r"b\.flac: its length differs from its reference's by more than 10% "
                                         r"\(16000/8000 samples: reference/estimate\)"):
        evaluate_dirs(dirs / "enhanced", dirs / "clean", num_workers=0, metrics=("si_sdr",), progress=False)
    assert not (dirs / "enhanced" / "metrics.csv").exists()
    anyway = evaluate_dirs(dirs / "enhanced", dirs / "clean", num_workers=0, metrics=("si_sdr",), progress=False,
                           max_length_mismatch=None)
    assert anyway["scores"]["si_sdr"]["n"] == 3
    per_file = pd.read_csv(dirs / "enhanced" / "metrics.csv").set_index("name")["si_sdr"]
    assert per_file["b"] > 40.0  # half of the file, and a score as if nothing were missing
    save_audio(dirs / "enhanced" / "b.flac", clean[:-200], SR)  # 200 samples short: 1.25%
    with caplog.at_level(logging.WARNING, logger="edm_se.evaluate"):
        near = evaluate_dirs(dirs / "enhanced", dirs / "clean", num_workers=0, metrics=("si_sdr",), progress=False)
    assert near["scores"]["si_sdr"]["n"] == 3
    assert any("b: lengths differ (16000/15800 samples); scoring the first 15800" in r.getMessage()
               for r in caplog.records)


def test_evaluate_cli_missing_estimate_is_one_line_unless_partial(dirs, tmp_path):
    from conftest import run_cli_many

    (dirs / "enhanced" / "b.flac").unlink()
    args = ["evaluate", f"estimates={dirs / 'enhanced'}", f"references={dirs / 'clean'}", "metrics=[si_sdr]",
            "num_workers=1", "progress=false"]
    res, ok, bad = run_cli_many([*args, f"output={tmp_path / 'eval'}"],
                                [*args, f"output={tmp_path / 'eval_partial'}", "partial=true"],
                                [*args, f"output={tmp_path / 'eval_bad'}", "partial=yes please"])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("edm-se evaluate: error: ")
    assert "no estimate for 1 of 3 reference(s)" in res.stderr and not (tmp_path / "eval").exists()
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "PARTIAL: 1 reference(s) without an estimate left out (e.g. b)" in ok.stdout
    assert "scoring" not in ok.stderr  # progress=false: no bar
    assert bad.returncode == 2 and "partial=yes please: must be true or false" in bad.stderr


def test_evaluate_refuses_references_as_estimates_and_a_file_as_output(dirs):
    """The references given as the estimates used to score every file against itself (PESQ 4.64, ESTOI 1) and an
    existing file as output ended in a traceback: both are one line, exit status 2, nothing written."""
    from omegaconf import OmegaConf

    from edm_se.validate import ConfigError, evaluate_config

    clean = dirs / "clean"
    with pytest.raises(ConfigError, match=r"are one directory: every file would be scored against itself"):
        evaluate_config(OmegaConf.create({"estimates": str(clean), "references": f"{clean}/", "num_workers": 1,
                                          "partial": False, "progress": False}))
    with pytest.raises(ConfigError, match=r"^references=.*clean and noisy=.*clean/\. are one directory"):
        evaluate_config(OmegaConf.create({"estimates": str(dirs / "enhanced"), "references": str(clean),
                                          "noisy": f"{clean}/.", "num_workers": 1, "partial": False,
                                          "progress": False}))
    from conftest import run_cli

    before = sorted(p.name for p in clean.iterdir())
    res = run_cli("evaluate", f"estimates={clean}", f"references={clean}", "progress=false")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().endswith("every file would be scored against itself")
    res = run_cli("evaluate", f"estimates={dirs / 'enhanced'}", f"references={clean}", "progress=false",
                  f"output={clean / 'a.wav'}")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == (f"edm-se evaluate: error: output={clean / 'a.wav'}: is a file; the results "
                                  "(metrics.csv, summary.json) go into a directory")
    assert sorted(p.name for p in clean.iterdir()) == before


def test_an_enhance_output_directory_is_scored_without_its_per_call_estimates(dirs, caplog):
    """`edm-se enhance estimates=true` leaves estimates/nfe<k>/ beside the outputs; evaluating that directory scores
    the outputs only (no "no reference" warning for every estimate); without enhance.json nothing is skipped."""
    import logging
    import shutil

    enhanced = dirs / "enhanced"
    (enhanced / "orphan.wav").unlink()
    shutil.copytree(enhanced, dirs / "copy")
    shutil.copytree(dirs / "copy", enhanced / "estimates" / "nfe001")
    (enhanced / "enhance.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="edm_se.evaluate"):
        summary = evaluate_dirs(enhanced, dirs / "clean", num_workers=0, metrics=("si_sdr",), progress=False)
    assert summary["num_files"] == 3 and "no reference" not in caplog.text
    assert summary["provenance"]["enhance"] is None  # an unreadable record is no provenance
    config = {"enhancer": "diffusion", "checkpoint_sha256": "ab" * 32, "sampler": "Euler", "sampler.num_steps": "4"}
    (enhanced / "enhance.json").write_text(json.dumps({"format": "edm_se.enhance/1", "config": config}))
    summary = evaluate_dirs(enhanced, dirs / "clean", num_workers=0, metrics=("si_sdr",), progress=False)
    assert summary["provenance"]["enhance"] == config  # the scores name the checkpoint and sampler that made them
    assert json.loads((enhanced / "summary.json").read_text())["provenance"]["enhance"] == config
    (enhanced / "enhance.json").unlink()
    with caplog.at_level(logging.WARNING, logger="edm_se.evaluate"):
        evaluate_dirs(enhanced, dirs / "clean", num_workers=0, metrics=("si_sdr",), progress=False)
    assert "3 estimate(s)" in caplog.text and "have no reference" in caplog.text


def test_an_interrupted_evaluation_resumes_from_the_pairs_it_scored(dirs, tmp_path, monkeypatch):
    """Each pair's scores go to output/.evaluate_scores.jsonl as they come: after an interruption a re-run scores
    only the pairs it lacks (a torn last line is ignored) and writes the numbers of an uninterrupted run; the log
    is removed once the results are written. Another metric set scores everything again."""
    from edm_se import metrics as M
    from edm_se.evaluate import RESUME_LOG

    args = dict(noisy=dirs / "noisy", num_workers=0, metrics=("si_sdr", "estoi"), progress=False)
    whole = evaluate_dirs(dirs / "enhanced", dirs / "clean", output_dir=tmp_path / "whole", **args)
    assert not (tmp_path / "whole" / RESUME_LOG).exists()
    real, calls = M._score_one, []

    def interrupted(job):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(job)
        return real(job)

    monkeypatch.setattr(M, "_score_one", interrupted)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        evaluate_dirs(dirs / "enhanced", dirs / "clean", output_dir=out, **args)
    log_lines = (out / RESUME_LOG).read_text().splitlines()
    assert len(log_lines) == 4 and not (out / "summary.json").exists()  # 3 estimates + 3 noisy = 6 pairs
    with open(out / RESUME_LOG, "a") as fh:
        fh.write('{"key": "torn')
    calls.clear()
    monkeypatch.setattr(M, "_score_one", lambda job: calls.append(job) or real(job))
    resumed = evaluate_dirs(dirs / "enhanced", dirs / "clean", output_dir=out, **args)
    assert len(calls) == 2 and not (out / RESUME_LOG).exists()
    for part in ("scores", "noisy_scores", "delta"):  # ESTOI itself varies by ~1e-16 from call to call
        for m, stat in whole[part].items():
            assert resumed[part][m] == pytest.approx(stat, rel=1e-12), (part, m)
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"), pd.read_csv(tmp_path / "whole" / "metrics.csv"))
    calls.clear()
    evaluate_dirs(dirs / "enhanced", dirs / "clean", output_dir=out, **{**args, "metrics": ("si_sdr",)})
    assert len(calls) == 6


def test_runaway_transcripts_are_named_in_the_summary_and_the_printed_table(dirs, tmp_path, monkeypatch):
    """A recogniser looping on one estimate ("day day day ...") adds its words to the corpus WER as insertions; the
    summary and the printed table name that file (the noisy input's transcripts are checked too) and nothing else."""
    from edm_se import asr
    from edm_se.evaluate import format_summary

    transcripts = tmp_path / "t.csv"
    transcripts.write_text("name,transcript\na,one two\nb,one two\nsub/c,one two\n")
    from edm_se.audio import load_audio

    loud = float(np.sqrt(np.mean(np.square(load_audio(dirs / "enhanced" / "b.flac", sample_rate=SR).numpy()))))

    def transcribe(name, waveform, sample_rate, **_):  # loops on b's estimate only (told apart by its level)
        rms = float(np.sqrt(np.mean(np.square(waveform))))
        return "day " * 30 if abs(rms - loud) < 1e-4 else "one two"

    monkeypatch.setattr(asr, "transcribe", transcribe)
    summary = evaluate_dirs(dirs / "enhanced", dirs / "clean", noisy=dirs / "noisy", output_dir=tmp_path / "o",
                            num_workers=0, metrics=("wer_whisper",), transcripts=transcripts, progress=False)
    assert summary["runaway_transcripts"] == {"hyp_whisper": [["b", 30, 2]]}
    assert summary["scores"]["wer_whisper"]["mean"] == pytest.approx(100 * 30 / 6)  # 28 insertions + 2 subs, of 6
    assert format_summary(summary).splitlines()[-1] == (
        "runaway transcript(s) in hyp_whisper (a hypothesis longer than 3 x its reference + 5 words: a recogniser "
        "looping on a phrase, whose extra words each count as an insertion in the WER): b (30 words for 2)")
