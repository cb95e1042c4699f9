"""Tests of edm_se.data.corpus: split logic, manifest writer, a build over a local fake source, idempotency,
errors (no network: the registry is replaced by local sources)."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edm_se.audio import AudioError
from edm_se.data import corpus as C
from edm_se.data import sources
from edm_se.data import fetch as F


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------

def _tone(seconds: float, sr: int, freq: float, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def _make_local_tree(root: Path) -> Path:
    """Speech: 12 utterances at 22.05 kHz stereo, one silent, one too short; noise: one 25 s and two short."""
    rng = np.random.default_rng(0)
    (root / "speech").mkdir(parents=True)
    (root / "noise").mkdir(parents=True)
    for i in range(12):
        sf.write(root / "speech" / f"utt{i:02d}.wav", _tone(0.8, 22050, 200 + 20 * i, channels=2), 22050)
    sf.write(root / "speech" / "silent.wav", np.zeros(22050, np.float32), 22050)
    sf.write(root / "speech" / "short.wav", _tone(0.1, 22050, 300), 22050)
    sf.write(root / "noise" / "long.flac", (0.1 * rng.standard_normal(25 * 44100)).astype(np.float32), 44100)
    for i in range(4):
        sf.write(root / "noise" / f"n{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    return root


def _registry(local: Path) -> dict[str, C.Source]:
    reg: dict[str, C.Source] = {}

    def speech_items(root: Path) -> list[C.Item]:
        return [C.Item(p, p.stem, f"spk{int(p.stem[3:]) % 3}" if p.stem.startswith("utt") else "x",
                       f"text {p.stem}") for p in sorted((root / "speech").glob("*.wav"))]

    def noise_items(root: Path) -> list[C.Item]:
        return [C.Item(p, p.stem) for p in sorted((root / "noise").iterdir())]

    C.register_source(C.Source("fake_speech", "speech", "CC0", lambda f: local, speech_items), reg)
    C.register_source(C.Source("fake_noise", "noise", "CC0", lambda f: local, noise_items), reg)
    return reg


@pytest.fixture()
def local_tree(tmp_path: Path) -> Path:
    return _make_local_tree(tmp_path / "src")


# ---------------------------------------------------------------------------------------------------------------
# split logic
# ---------------------------------------------------------------------------------------------------------------

def test_split_groups_deterministic_and_near_80_10_10():
    weights = {f"r{i}": 1.0 for i in range(200)}
    a = C.split_groups(weights, seed=3, salt="src")
    b = C.split_groups(dict(reversed(list(weights.items()))), seed=3, salt="src")
    assert a == b  # independent of input order
    counts = {s: sum(v == s for v in a.values()) for s in C.SPLITS}
    assert 150 <= counts["train"] <= 170 and 12 <= counts["valid"] <= 28 and 12 <= counts["test"] <= 28
    c = C.split_groups(weights, seed=4, salt="src")
    assert c != a  # another seed re-splits
    assert C.split_groups(weights, seed=3, salt="other") != a  # sources shuffled independently


def test_split_groups_every_split_nonempty_with_three_groups():
    for seed in range(10):
        out = C.split_groups({"a": 10.0, "b": 1.0, "c": 1.0}, seed=seed)
        assert sorted(out.values()) == ["test", "train", "valid"]


def test_assign_splits_keeps_recording_pieces_together():
    rows = []
    for rec in range(30):
        for piece in range(3):
            rows.append({"path": f"noise/s/r{rec}_p{piece}.flac", "kind": "noise", "source": "s", "speaker": "",
                         "duration_s": 10.0, "transcript": "", "licence": "x", "recording": f"r{rec}"})
    C.assign_splits(rows, seed=1)
    by_rec: dict[str, set[str]] = {}
    for r in rows:
        by_rec.setdefault(r["recording"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_rec.values())
    assert {r["split"] for r in rows} == set(C.SPLITS)


def _speech_rows(durations: dict[str, float], utterances: int = 5) -> list[dict]:
    return [{"path": f"speech/s/{k}_{u}.flac", "kind": "speech", "source": "s", "speaker": k,
             "duration_s": d / utterances, "transcript": "", "licence": "x", "recording": f"{k}_{u}"}
            for k, d in durations.items() for u in range(utterances)]


def _src(split_by: str, fractions) -> C.Source:
    return C.Source("s", "speech", "x", lambda f: Path("."), lambda r: [], split_by=split_by, fractions=fractions)


def test_assign_splits_by_speaker_keeps_every_speaker_in_one_split_and_dominant_ones_in_train():
    durations = {f"spk{k}": 10.0 for k in range(30)}
    durations.update(big1=200.0, big2=150.0)  # each > 10% of the source
    rows = C.assign_splits(_speech_rows(durations), seed=0, sources={"s": _src("speaker", (0.8, 0.1, 0.1))})
    per_spk: dict[str, set[str]] = {}
    for r in rows:
        per_spk.setdefault(r["speaker"], set()).add(r["split"])
    assert all(len(s) == 1 for s in per_spk.values())
    assert per_spk["big1"] == per_spk["big2"] == {"train"}
    minutes = {s: sum(r["duration_s"] for r in rows if r["split"] == s) for s in C.SPLITS}
    total = sum(minutes.values())
    assert 0.05 <= minutes["valid"] / total <= 0.15 and 0.05 <= minutes["test"] / total <= 0.15


def test_heldout_source_never_reaches_train_and_zero_fractions_are_respected():
    rows = C.assign_splits(_speech_rows({"allison": 100.0}, utterances=40), seed=3,
                           sources={"s": _src("recording", (0.0, 0.2, 0.8))})
    splits = [r["split"] for r in rows]
    assert "train" not in splits and {"valid", "test"} == set(splits)
    rows = C.assign_splits(_speech_rows({f"k{i}": 5.0 for i in range(20)}), seed=1,
                           sources={"s": _src("speaker", (0.9, 0.1, 0.0))})
    assert "test" not in {r["split"] for r in rows}
    with pytest.raises(ValueError, match="fractions"):
        C.Source("bad", "speech", "x", lambda f: Path("."), lambda r: [], fractions=(0.5, 0.5, 0.5))


def test_the_registered_english_speakers_are_held_out():
    assert C.SOURCES["allison"].fractions[0] == 0.0 and C.SOURCES["arctic"].fractions[0] == 0.0
    for name, src in C.SOURCES.items():
        if src.kind == "speech" and src.fractions[0] > 0:
            assert src.split_by == "speaker", name


def test_drop_train_copies_finds_a_renamed_relevelled_copy(tmp_path: Path):
    """The same sound under another name and level in train is left out; unrelated train audio stays."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    held = (0.3 * np.sin(2 * np.pi * 440 * t * (1 + 0.3 * np.sin(2 * np.pi * 0.7 * t)))
            * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    other = (0.2 * rng.standard_normal(len(t))).astype(np.float32)
    for name, x in (("noise/a/held.flac", held), ("noise/b/copy.flac", 0.25 * held[8000:40000]),
                    ("noise/b/other.flac", other)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / name, x, 16000, subtype="PCM_16")
    rows = [{"path": "noise/a/held.flac", "split": "test", "source": "a", "recording": "held"},
            {"path": "noise/b/copy.flac", "split": "train", "source": "b", "recording": "copy"},
            {"path": "noise/b/other.flac", "split": "train", "source": "b", "recording": "other"}]
    kept, dropped = C.drop_train_copies(rows, tmp_path, tmp_path / "fp_cache")
    assert [r["path"] for r in dropped] == ["noise/b/copy.flac"] and dropped[0]["matched"] == "noise/a/held.flac"
    assert [r["path"] for r in kept] == ["noise/a/held.flac", "noise/b/other.flac"]
    assert list((tmp_path / "fp_cache").rglob("*.npz"))  # cached for the next build
    # one corpus build shares a memo between its steps: each file is fingerprinted or loaded once, so the second
    # step works with the files (and the cache) gone
    memo: dict = {}
    first = C.drop_train_copies(rows, tmp_path, None, memo)
    assert sorted(memo) == sorted(r["path"] for r in rows)
    for r in rows:
        (tmp_path / r["path"]).unlink()
    assert C.drop_train_copies(rows, tmp_path, None, memo) == first
    with pytest.raises(AudioError, match="held.flac: no such file"):
        C.drop_train_copies(rows, tmp_path, None)  # without the memo the files are read again


# ---------------------------------------------------------------------------------------------------------------
# manifest writer and parsers
# ---------------------------------------------------------------------------------------------------------------

def test_write_manifest_sorted_atomic_and_validated(tmp_path: Path):
    rows = [{"path": "b.flac", "kind": "noise", "split": "train", "source": "s", "speaker": "", "duration_s": 1.5,
             "transcript": "", "licence": "CC0", "recording": "b"},
            {"path": "a.flac", "kind": "speech", "split": "test", "source": "s", "speaker": "k",
             "duration_s": 2.0, "transcript": 'hello, "world"', "licence": "CC0", "recording": "a"}]
    out = C.write_manifest(tmp_path / "manifest.csv", rows)
    back = C.read_manifest(out)
    assert [r["path"] for r in back] == ["a.flac", "b.flac"]
    assert back[0]["transcript"] == 'hello, "world"' and back[1]["duration_s"] == 1.5
    assert list(back[0]) == list(C.MANIFEST_COLUMNS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv"]  # no temp file left behind
    with pytest.raises(C.CorpusError, match="misses columns"):
        C.write_manifest(tmp_path / "bad.csv", [{"path": "x"}])
    assert not (tmp_path / "bad.csv").exists()


def test_transcript_parsers(tmp_path: Path):
    txt = tmp_path / "core-sounds-en.txt.gz"
    with gzip.open(txt, "wt") as fh:
        fh.write("; comment\n\nvm-login: Comedian Mail.  Mailbox?\nbeep: [a beep]\ndigits/1: One.\n")
    assert C.read_asterisk_transcripts(txt) == {"vm-login": "Comedian Mail.  Mailbox?", "beep": "[a beep]",
                                               "digits/1": "One."}
    lua = ('dialogId("vit-a", "font_small", "Welcome.")\ndialogStr("Vítejte.")\n\n'
           'dialogId("vit-b", "font_statue", "Calm.")\ndialogStr("Klid \\"prosím\\".")\n')
    assert C.read_fillets_dialogs(lua) == {"vit-a": ("font_small", "Vítejte."),
                                           "vit-b": ("font_statue", 'Klid "prosím".')}


def test_allison_items_skip_tones_and_silence(tmp_path: Path):
    base = tmp_path / sources._ALLISON_DIR
    (base / "digits").mkdir(parents=True)
    (base / "silence").mkdir()
    for name in ("vm-login", "beep", "digits/1", "silence/1"):
        (base / f"{name}.g722").write_bytes(b"\0")
    with gzip.open(tmp_path / "core-sounds-en.txt.gz", "wt") as fh:
        fh.write("vm-login: Mailbox?\nbeep: [a beep]\ndigits/1: One.\n")
    items = sources._items_allison(tmp_path)
    assert [(i.recording, i.transcript) for i in items] == [("digits/1", "One."), ("vm-login", "Mailbox?")]


def test_fetcher_reuses_extracted_deb_and_records_version(tmp_path: Path, monkeypatch):
    f = C.Fetcher(tmp_path)
    (tmp_path / "debs").mkdir()
    deb = tmp_path / "debs" / "sonic-pi-samples_3.2.2~repack-8_all.deb"
    deb.write_bytes(b"x")
    (tmp_path / "debs" / "sonic-pi-samples-extra_1.0_all.deb").write_bytes(b"x")  # another package
    dest = tmp_path / "extract" / "sonic-pi-samples"
    dest.mkdir(parents=True)
    (dest / ".done").write_text(deb.name + "\n")
    monkeypatch.setattr(F.subprocess, "run", lambda *a, **k: pytest.fail("must not run apt-get/dpkg"))
    assert f.deb("sonic-pi-samples") == dest
    assert f.versions == {"sonic-pi-samples": "3.2.2~repack-8"}


# ---------------------------------------------------------------------------------------------------------------
# builds over a local fake source
# ---------------------------------------------------------------------------------------------------------------

def test_build_local_source(tmp_path: Path, local_tree: Path):
    reg = _registry(local_tree)
    out = tmp_path / "corpus"
    manifest = C.build_corpus(out, seed=0, registry=reg, progress=False)
    assert manifest == out / "manifest.csv"
    rows = C.read_manifest(manifest)
    speech = [r for r in rows if r["kind"] == "speech"]
    noise = [r for r in rows if r["kind"] == "noise"]
    assert sorted(r["recording"] for r in speech) == [f"utt{i:02d}" for i in range(12)]  # silent/short skipped
    assert {r["split"] for r in speech} == set(C.SPLITS)
    assert all(r["transcript"] == f"text {r['recording']}" and r["licence"] == "CC0" for r in speech)
    long_pieces = [r for r in noise if r["recording"] == "long"]
    assert len(long_pieces) == 3 and len({r["split"] for r in long_pieces}) == 1
    assert all(r["duration_s"] <= C.NOISE_PIECE_SECONDS for r in noise)
    assert abs(sum(r["duration_s"] for r in long_pieces) - 25.0) < 0.01
    for r in rows:
        info = sf.info(out / r["path"])
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
        assert abs(info.duration - r["duration_s"]) < 1e-3
        assert r["path"].startswith(f"{r['kind']}/{r['source']}/")
    build_info = json.loads((out / "build_info.json").read_text())
    assert build_info["seed"] == 0 and build_info["sources"] == ["fake_speech", "fake_noise"]
    assert build_info["split_rule"] == C.SPLIT_RULE == C.corpus_split_rule(out)
    assert build_info["counts"]["speech"]["train"] == sum(r["split"] == "train" for r in speech)
    assert build_info["minutes"]["noise"]["train"] + build_info["minutes"]["noise"]["valid"] \
        + build_info["minutes"]["noise"]["test"] == pytest.approx(sum(r["duration_s"] for r in noise) / 60, abs=0.02)


def test_a_held_out_split_of_an_older_split_rule_is_warned_about_once(tmp_path: Path, local_tree: Path, caplog):
    from edm_se.audio import AudioError
    from edm_se.data.datasets import resolve_files

    out = tmp_path / "corpus"
    C.build_corpus(out, seed=0, registry=_registry(local_tree), progress=False)
    with caplog.at_level(logging.WARNING, logger="edm_se.data.corpus"):
        resolve_files(f"corpus:{out}:test", "speech")
    assert not caplog.records  # built by this rule
    info = json.loads((out / "build_info.json").read_text())
    del info["split_rule"]  # as a build before session 38 wrote it
    (out / "build_info.json").write_text(json.dumps(info))
    assert C.corpus_split_rule(out) == 1
    with caplog.at_level(logging.WARNING, logger="edm_se.data.corpus"):
        resolve_files(f"corpus:{out}:train", "speech")  # the training side is what it was
        assert not caplog.records
        resolve_files(f"corpus:{out}:test", "speech")
        resolve_files(f"corpus:{out}:test", "noise")
    assert len(caplog.records) == 1 and "older split rule (1 < 2)" in caplog.text and "edm-se data build" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edm_se.data.corpus"), pytest.raises(AudioError, match="manifest"):
        resolve_files(f"corpus:{tmp_path / 'nowhere'}:test", "noise")  # no corpus: its error alone, no warning
    assert not caplog.records


def test_build_is_idempotent_and_reseed_only_resplits(tmp_path: Path, local_tree: Path, monkeypatch):
    reg = _registry(local_tree)
    out = tmp_path / "corpus"
    first = (C.build_corpus(out, seed=0, registry=reg, progress=False)).read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}

    def boom(*a, **k):
        raise AssertionError("re-run converted a file again")

    monkeypatch.setattr(C, "_convert_item", boom)
    second = C.build_corpus(out, seed=0, registry=reg, progress=False).read_text()
    assert second == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == mtimes
    other = C.read_manifest(C.build_corpus(out, seed=7, registry=reg, progress=False))
    rows0 = {r["path"]: r for r in _read_text_manifest(first)}
    assert set(rows0) == {r["path"] for r in other}
    assert any(rows0[r["path"]]["split"] != r["split"] for r in other)
    assert json.loads((out / "build_info.json").read_text())["seed"] == 7


def _read_text_manifest(text: str) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_build_resumes_when_a_converted_file_is_missing(tmp_path: Path, local_tree: Path):
    reg = _registry(local_tree)
    out = tmp_path / "corpus"
    first = C.build_corpus(out, seed=0, registry=reg, progress=False).read_text()
    victim = out / "speech" / "fake_speech" / "utt03.flac"
    victim.unlink()
    assert C.build_corpus(out, seed=0, registry=reg, progress=False).read_text() == first
    assert victim.exists()


def test_max_minutes_caps_each_source(tmp_path: Path, local_tree: Path):
    reg = _registry(local_tree)
    rows = C.read_manifest(C.build_corpus(tmp_path / "c", max_minutes=0.05, registry=reg, progress=False))
    for source in ("fake_speech", "fake_noise"):
        durs = [r["duration_s"] for r in rows if r["source"] == source]
        assert durs
        # stops at the first recording that reaches 3 s; the last one may cross the cap
        assert sum(durs) - max(durs) < 0.05 * 60 + 1e-6
    assert len([r for r in rows if r["source"] == "fake_speech"]) < 12


def test_sources_subset_and_errors(tmp_path: Path, local_tree: Path):
    reg = _registry(local_tree)
    rows = C.read_manifest(C.build_corpus(tmp_path / "c", sources=["fake_noise"], registry=reg, progress=False))
    assert {r["source"] for r in rows} == {"fake_noise"}
    with pytest.raises(C.CorpusError, match="unknown corpus source.*nope"):
        C.build_corpus(tmp_path / "d", sources=["nope"], registry=reg)
    empty = tmp_path / "empty"
    empty.mkdir()
    reg2 = {"e": C.Source("e", "noise", "CC0", lambda f: empty, lambda root: [])}
    with pytest.raises(C.CorpusError, match="no audio files"):
        C.build_corpus(tmp_path / "e", registry=reg2, progress=False)


def test_optional_source_failure_is_skipped_only_when_not_named(tmp_path: Path, local_tree: Path):
    reg = _registry(local_tree)

    def broken(f):
        raise C.CorpusError("pip download ghost==1 failed: no network")

    C.register_source(C.Source("ghost", "rir", "x", broken, lambda r: [], optional=True), reg)
    C.build_corpus(tmp_path / "c", registry=reg, progress=False)
    info = json.loads((tmp_path / "c" / "build_info.json").read_text())
    assert "ghost" in info["skipped_sources"] and "ghost" not in info["sources"]
    with pytest.raises(C.CorpusError, match="ghost==1"):
        C.build_corpus(tmp_path / "c", sources=["ghost"], registry=reg, progress=False)


def test_missing_apt_get_is_a_one_line_corpus_error(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(F.shutil, "which", lambda name: None)
    reg = {"deb": C.Source("deb", "noise", "x", lambda f: pytest.fail("fetched"), lambda r: [], debian=True)}
    with pytest.raises(C.CorpusError) as err:
        C.build_corpus(tmp_path / "c", registry=reg)
    msg = str(err.value)
    assert msg.startswith("apt-get not found") and "\n" not in msg
    with pytest.raises(C.CorpusError, match="apt-get not found"):  # the default registry's Debian sources
        C.build_corpus(tmp_path / "c", sources=["allison"])


def test_default_registry_has_required_sources():
    assert {"allison", "fillets_cs", "megaglest", "sonic_pi", "piper_rir"} <= set(C.SOURCES)
    assert C.SOURCES["allison"].kind == "speech" and C.SOURCES["megaglest"].kind == "noise"
    assert C.SOURCES["piper_rir"].kind == "rir"
    with pytest.raises(ValueError, match="kind"):
        C.Source("bad", "music", "x", lambda f: Path("."), lambda r: [])


def test_cli_unknown_source_exits_2_with_one_line(tmp_path: Path):
    res = subprocess.run([sys.executable, "-m", "edm_se.cli", "data", "build", f"out_dir={tmp_path / 'x'}",
                          "sources=[nonexistent]"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nonexistent" in lines[0] and "Traceback" not in res.stderr
