"""Downstream recognisers and WER (edm_se.asr): closed-form WER cases, the normaliser, corpus WER, the recognisers on
real built-in speech, and the one-line error of a missing extra."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from edm_se import asr
from edm_se.audio import AudioError
from edm_se.testset import load_test_set


# ----------------------------------------------------------------------------------------------- WER
def test_wer_of_a_transcript_against_itself_is_zero():
    text = "Please re-enter your password, followed by the pound key."
    assert asr.wer(text, text) == 0.0
    assert asr.word_errors(text, text.upper()).errors == 0


@pytest.mark.parametrize("ref, hyp, s, d, i", [
    ("a b c d", "a x c d", 1, 0, 0),           # one substitution
    ("a b c d", "a c d", 0, 1, 0),             # one deletion
    ("a b c d", "a b y c d", 0, 0, 1),         # one insertion
    ("a b c d", "b c x d z", 0, 1, 2),         # delete a, insert x and z: 3 edits (4 substitutions otherwise)
    ("a b c d", "", 0, 4, 0),                  # empty hypothesis: every word deleted
])
def test_wer_equals_its_closed_form(ref, hyp, s, d, i):
    counts = asr.word_errors(ref, hyp)
    n = len(ref.split())
    assert counts.errors == s + d + i
    assert counts.reference_words == n
    assert asr.wer(ref, hyp) == pytest.approx(100.0 * (s + d + i) / n)


def test_wer_of_an_empty_reference_is_undefined_and_counts_insertions():
    counts = asr.word_errors("", "hello there")
    assert counts.insertions == 2 and math.isnan(counts.wer)


@pytest.mark.parametrize("text, expected", [
    ("Press 5 to repeat.", "press five to repeat"),
    ("Please re-enter your PASSWORD!", "please re enter your password"),
    ("...to increase the audio volume", "to increase the audio volume"),
    ("Login incorrect.  Mailbox?", "login incorrect mailbox"),
    ("don't stop", "don't stop"),
    ("'quoted' words", "quoted words"),
    ("[noise] hello <unk> (laughs) world", "hello world"),
    ("1,000 and 2.5", "one thousand and two point five"),
    ("", ""),
])
def test_normaliser_cases(text, expected):
    assert asr.normalise_text(text) == expected


def test_digits_and_words_for_numbers_are_the_same_word():
    assert asr.wer("press five to repeat", "Press 5 to repeat.") == 0.0


def test_corpus_wer_is_total_errors_over_total_words_and_the_weighted_mean_of_file_wers():
    refs = ["a b c d", "e f", "g h i j k l"]
    hyps = ["a b c", "e x", "g h i j k l"]
    assert asr.corpus_wer(refs, hyps) == pytest.approx(100.0 * (1 + 1 + 0) / (4 + 2 + 6))
    per_file = [asr.wer(r, h) for r, h in zip(refs, hyps)]
    words = [asr.reference_words(r) for r in refs]
    stat = asr.weighted_mean_ci95(per_file, words)
    assert stat["mean"] == pytest.approx(asr.corpus_wer(refs, hyps))
    assert stat["n"] == 3 and stat["ci95"] > 0
    # the unweighted mean differs (a short file with one error weighs more there)
    assert np.mean(per_file) != pytest.approx(stat["mean"])


def test_runaway_transcripts_are_hypotheses_longer_than_three_references_plus_five():
    """The limit is exact: 3 x 4 + 5 = 17 words passes, 18 is a runaway; digits count as the words they are."""
    names = ["ok", "edge", "loop", "digits", "empty_ref"]
    hyps = ["a b c d", " ".join(["day"] * 17), " ".join(["day"] * 18), "1999 1999", "uh " * 6]
    found = asr.runaway_transcripts(hyps, [4, 4, 4, 1, 0], names)
    assert found == [("loop", 18, 4), ("digits", 14, 1), ("empty_ref", 6, 0)]  # 1999: seven words each; 14 > 8
    with pytest.raises(ValueError, match="2 hypotheses, 1 reference counts"):
        asr.runaway_transcripts(["a", "b"], [1], ["x", "y"])


def test_bootstrap_ci_covers_the_truth_for_iid_files():
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(40):
        words = rng.integers(3, 12, size=25)
        errors = rng.binomial(words, 0.2)
        stat = asr.weighted_mean_ci95(100.0 * errors / words, words, n_boot=500, seed=trial)
        hits += abs(stat["mean"] - 20.0) <= stat["ci95"]
    assert 30 <= hits <= 40  # nominal 95%: a wrong (e.g. 10x too small) interval covers far less often


# ----------------------------------------------------------------------------------------------- recognisers
@pytest.fixture(scope="module")
def arctic():
    """The CMU ARCTIC awb utterance of the built-in test set (clean, whole) and its transcript."""
    test = load_test_set(None)
    i = next(k for k, n in enumerate(test.names) if "arctic_a0007" in n)
    wave, sr = sf.read(test.clean(test.names[i]), dtype="float32")
    assert sr == 16000
    return wave, test.transcripts[i]


@pytest.mark.parametrize("name, clean_bound", [("whisper", 10.0), ("sphinx", 20.0)])
def test_recogniser_transcribes_clean_speech_and_fails_on_heavy_noise(arctic, name, clean_bound):
    wave, text = arctic
    hyp = asr.transcribe(name, wave, 16000)
    clean_wer = asr.wer(text, hyp)
    assert clean_wer <= clean_bound, (name, hyp)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(wave)).astype(np.float32)
    noise *= np.sqrt(np.sum(wave ** 2) / np.sum(noise ** 2) / 10 ** (-10 / 10))  # SNR -10 dB
    noisy_wer = asr.wer(text, asr.transcribe(name, np.clip(wave + noise, -1, 1), 16000))
    assert noisy_wer >= clean_wer + 30.0, (name, noisy_wer, clean_wer)


def test_transcribe_resamples_other_rates(arctic):
    from edm_se.audio import resample

    wave, text = arctic
    hyp = asr.transcribe("whisper", resample(wave, 16000, 8000), 8000)
    assert asr.wer(text, hyp) <= 20.0, hyp


def test_unknown_recogniser_is_refused():
    with pytest.raises(ValueError, match="unknown recogniser"):
        asr.get_recogniser("kaldi")


def test_test_sets_carry_transcripts_from_the_manifest_or_txt_files(tmp_path):
    test = load_test_set(None)
    assert test.has_transcripts() and len(test.transcripts) == len(test.names) == 25
    # VoiceBank-DEMAND style: testset_txt/<name>.txt beside clean/ and noisy/
    for sub in ("clean", "noisy"):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "p232_001.wav", np.zeros(16000, dtype=np.float32) + 0.01, 16000)
    (tmp_path / "testset_txt").mkdir()
    (tmp_path / "testset_txt" / "p232_001.txt").write_text("Please call Stella.\n")
    other = load_test_set(tmp_path)
    assert other.transcripts == ["Please call Stella."]
    assert "transcripts_sha256" in other.identity()
    # a manifest a spreadsheet saved with a byte-order mark: its `name` column is still found (it was '\ufeffname')
    (tmp_path / "manifest.csv").write_bytes("\ufeffname,snr_db,transcript\np232_001,5,Ask her.\n".encode("utf-8"))
    bom = load_test_set(tmp_path)
    assert bom.transcripts == ["Ask her."] and bom.snr_db == [5.0]
    (tmp_path / "manifest.csv").write_text("name,snr_db\np232_001,nan\n")
    assert load_test_set(tmp_path).snr_db == [None]  # NaN is no SNR (each one made a per-SNR group named "nan")
    # one saved in Latin-1: one line naming the file and the byte (every cell of a study failed on it)
    (tmp_path / "manifest.csv").write_bytes("name,transcript\np232_000,a\np232_001,caf\xe9\n".encode("latin-1"))
    with pytest.raises(AudioError, match=r"manifest.csv: not UTF-8 text \(byte 0xe9 on line 3\); save it as UTF-8$"):
        load_test_set(tmp_path)


# ----------------------------------------------------------------------------------------------- missing extra
def _hide_modules_env(tmp_path, modules):
    """An environment whose interpreter cannot find ``modules`` (a sitecustomize that hides them)."""
    site = tmp_path / "hide"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import importlib.util, sys
        _HIDDEN = {tuple(modules)!r}
        _orig = importlib.util.find_spec
        def _find_spec(name, package=None):
            return None if name.split(".")[0] in _HIDDEN else _orig(name, package)
        importlib.util.find_spec = _find_spec
    """))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_missing_asr_extra_is_a_one_line_error_naming_the_extra(tmp_path):
    test = load_test_set(None)
    env = _hide_modules_env(tmp_path, ["faster_whisper"])
    res = subprocess.run([sys.executable, "-m", "edm_se", "evaluate", f"estimates={test.root / 'noisy'}",
                          f"references={test.root / 'clean'}", "metrics=[pesq,wer_whisper]",
                          f"output={tmp_path / 'ev'}"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "pip install 'edm_se[asr]'" in err[0] and "faster_whisper" in err[0]
    assert "Traceback" not in res.stderr
