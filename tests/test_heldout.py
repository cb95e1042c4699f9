"""Held out means held out: no valid/test recording, speaker or sound reaches a training split.

Checked on content, not only on names: by speaker, by source + recording id, and by audio fingerprint
(:mod:`edm_se.data.fingerprint`), over the shipped built-in corpus and its fixed test set and over the real corpus of
``edm-se data build`` (built into ``$EDM_SE_CORPUS`` or ``data_cache/corpus`` when missing; about 3 minutes with
downloads on the reference machine, seconds when present).
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from conftest import shared_lock
from edm_se.audio import load_audio
from edm_se.data import builtin_manifest, builtin_root, builtin_test_set
from edm_se.data.builtin import builtin_files
from edm_se.data.corpus import fingerprint_rows
from edm_se.data.fingerprint import (HOP, SHIFTS, cached_fingerprint, cached_fingerprints, find_matches,
                                     find_matches_any_phase, fingerprint, fingerprints_shifted)

REPO = Path(__file__).resolve().parents[1]
HELD = ("valid", "test")


def _builtin_prints(split_filter) -> dict:
    rows = [r for r in builtin_manifest() if split_filter(r["split"])]
    return {f"builtin/{k}": v for k, v in fingerprint_rows(rows, builtin_root()).items()}


def _testset_prints() -> dict:
    root = builtin_test_set()
    return {f"testset/clean/{p.name}": fingerprint(load_audio(p).numpy()) for p in sorted((root / "clean").iterdir())}


def _speakers(rows, splits) -> set[str]:
    return {r["speaker"] for r in rows if r["kind"] == "speech" and r["split"] in splits and r["speaker"]}


def _recordings(rows, splits) -> set[tuple[str, str]]:
    return {(r["source"], r["recording"]) for r in rows if r["split"] in splits}


# ------------------------------------------------------------------------------------------ the fingerprint itself
def test_fingerprint_finds_a_renamed_relevelled_resampled_crop_and_nothing_else():
    files = [builtin_root() / r["path"] for r in builtin_manifest() if r["split"] == "train"][:30]
    prints = {p.name: fingerprint(load_audio(p).numpy()) for p in files}
    x = load_audio(files[3]).numpy()
    crop = x[2777:2777 + 16000] * 0.2  # another crop at another level, through a 22.05 kHz round trip
    crop = AF.resample(AF.resample(torch.from_numpy(crop), 16000, 22050), 22050, 16000).numpy()
    noisy = crop + 0.02 * np.random.default_rng(0).standard_normal(len(crop)).astype(np.float32) * crop.std()
    matches = find_matches({"copy": fingerprint(noisy)}, prints)
    assert [m.b for m in matches] == [files[3].name]
    assert matches[0].ber < 0.1 and abs(matches[0].start_b - 2777 // 64) <= 1
    # unrelated audio: no pair of different training files matches
    assert find_matches(prints) == []


def test_fingerprint_is_gain_invariant_and_refuses_other_rates():
    x = load_audio(builtin_root() / builtin_manifest()[0]["path"]).numpy()
    a, b = fingerprint(x), fingerprint(x * 0.01)
    assert np.array_equal(a.bits, b.bits)
    with pytest.raises(ValueError, match="16000 Hz"):
        fingerprint(x, 8000)


# ------------------------------------------------------------------------------------------- the built-in corpus
def test_builtin_heldout_by_speaker_recording_and_fingerprint():
    rows = builtin_manifest()
    train_spk, held_spk = _speakers(rows, ("train",)), _speakers(rows, HELD)
    assert train_spk and held_spk and not train_spk & held_spk
    assert not _recordings(rows, ("train",)) & _recordings(rows, HELD)
    # the English test speakers are never training speakers
    assert {"allison", "cmu_arctic_awb", "cmu_arctic_slt"} <= _speakers(rows, ("test",))
    train = _builtin_prints(lambda s: s == "train")
    held = {**_builtin_prints(lambda s: s in HELD), **_testset_prints()}
    assert find_matches(train, held) == []


def test_builtin_test_set_mixtures_come_from_test_files_only():
    root = builtin_test_set()
    rows = {r["path"]: r for r in builtin_manifest()}
    with open(root / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            assert rows[r["speech"]]["split"] == "test" and rows[r["noise"]]["split"] == "test"


# --------------------------------------------------------------------------------------------- the real corpus
@pytest.fixture(scope="module")
def corpus() -> Path:
    root = Path(os.environ.get("EDM_SE_CORPUS", REPO / "data_cache" / "corpus"))
    with shared_lock("corpus"):  # another worker may be building it
        from edm_se.data.corpus import SPLIT_RULE, corpus_split_rule

        # a corpus of an older split rule is built again (seconds from its cache): its held-out split is stale
        if not (root / "manifest.csv").exists() or corpus_split_rule(root) < SPLIT_RULE:
            if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
                pytest.skip("no built corpus and no apt-get/dpkg to build one (edm-se data build)")
            from edm_se.data.corpus import build_corpus

            build_corpus(root, progress=False)
    return root


@pytest.mark.slow
def test_real_corpus_heldout_by_speaker_and_recording(corpus: Path):
    from edm_se.data.corpus import read_manifest

    rows = read_manifest(corpus / "manifest.csv")
    assert not _speakers(rows, ("train",)) & _speakers(rows, HELD)
    assert not _recordings(rows, ("train",)) & _recordings(rows, HELD)
    assert {"allison", "cmu_arctic_awb", "cmu_arctic_slt"} <= _speakers(rows, HELD)
    assert not {"allison", "cmu_arctic_awb", "cmu_arctic_slt"} & _speakers(rows, ("train",))
    # the built-in set's held-out speakers and recordings are not in the corpus's train split, and vice versa
    brows = builtin_manifest()
    assert not _speakers(brows, HELD) & _speakers(rows, ("train",))
    assert not _speakers(brows, ("train",)) & _speakers(rows, HELD)
    assert not _recordings(brows, HELD) & _recordings(rows, ("train",))
    assert not _recordings(brows, ("train",)) & _recordings(rows, HELD)


@pytest.mark.slow
def test_real_corpus_heldout_by_fingerprint(corpus: Path):
    from edm_se.data.corpus import read_manifest

    rows = read_manifest(corpus / "manifest.csv")
    cache = corpus / ".cache" / "fingerprints"
    train = fingerprint_rows([r for r in rows if r["split"] == "train"], corpus, cache)
    held = fingerprint_rows([r for r in rows if r["split"] in HELD], corpus, cache)
    assert len(train) > 1000 and len(held) > 100
    assert find_matches(train, held) == [] and find_matches(held, train) == []  # both orders: the rule is symmetric
    # nor at any frame phase within the corpus's guard band, against the train split and every file the bundled
    # model trained on (two of which this build left out of train)
    from edm_se.data.corpus import bundled_training_files
    from edm_se.data.splits import NEAR_COPY_MAX_BER

    bundled = sorted(bundled_training_files())
    audio = {r["path"] for r in rows if r["split"] == "train" and r["kind"] in ("speech", "noise")}
    assert audio <= set(bundled) and len(bundled) - len(audio) == 2  # the split the bundled model trained on
    trained = fingerprint_rows([{"path": p} for p in bundled], corpus, cache)

    def shifted(path):
        return cached_fingerprints(corpus / path, cache, key=path, shifts=SHIFTS[1:])

    assert find_matches_any_phase(held, trained, shifted, max_ber=NEAR_COPY_MAX_BER) == []
    # nothing of the built-in valid/test files or test mixtures is in the corpus's train split either
    builtin_held = {**_builtin_prints(lambda s: s in HELD), **_testset_prints()}
    assert find_matches(train, builtin_held) == []


def test_heldout_rows_of_a_speaker_with_training_rows_are_left_out_and_train_is_untouched():
    from edm_se.data.corpus import drop_heldout_shared_speakers

    def row(path, split, speaker, source="fillets_cs"):
        return {"path": path, "split": split, "speaker": speaker, "source": source, "kind": "speech"}

    rows = [row("a", "train", "font_parrot"), row("b", "valid", "font_parrot"),  # one character, two levels
            row("c", "valid", "font_crab"), row("d", "test", "font_parrot", source="other"),  # other source
            row("e", "train", ""), row("f", "valid", "")]  # no speaker id: nothing to match
    kept, dropped = drop_heldout_shared_speakers(rows)
    assert [r["path"] for r in dropped] == ["b"] and dropped[0]["matched"] == "speaker font_parrot in train"
    assert [r["path"] for r in kept] == ["a", "c", "d", "e", "f"]
    # only the sources split by speaker are checked when they are named (a source split by recording declares
    # its speaker not to be the unit)
    kept, dropped = drop_heldout_shared_speakers(rows, by_speaker=["other"])
    assert dropped == [] and len(kept) == len(rows)


@pytest.mark.slow
def test_real_corpus_fillets_characters_are_one_speaker_across_levels(corpus: Path):
    from edm_se.data.corpus import read_manifest

    rows = [r for r in read_manifest(corpus / "manifest.csv") if r["source"] == "fillets_cs"]
    # the speaker is the character (font), never "<level>/<font>", so a recurring role is one speaker
    assert rows and not any("/" in r["speaker"] for r in rows)
    by_split = {s: {r["speaker"] for r in rows if r["split"] == s} for s in ("train", "valid", "test")}
    assert "font_parrot" in by_split["train"] | by_split["valid"]
    assert not by_split["train"] & (by_split["valid"] | by_split["test"])


@pytest.mark.slow
def test_the_match_rule_is_symmetric_on_a_near_copy_that_one_order_missed(corpus: Path):
    """Two MegaGlest effects sharing audio (bit error rate 0.20): with offsets binned in one phase only, the match was
    found with the held-out file first and missed with the training file first, so the corpus kept the copy in
    train (until session 37)."""
    sounds = corpus / "noise" / "megaglest" / "techs" / "megapack" / "commondata" / "sounds"
    a, b = sounds / "summoner_attack6.flac", sounds / "summoner_attack7.flac"
    if not (a.is_file() and b.is_file()):
        pytest.skip("this corpus build lacks the MegaGlest effects")
    pa, pb = {"6": fingerprint(load_audio(a).numpy())}, {"7": fingerprint(load_audio(b).numpy())}
    ab, ba = find_matches(pa, pb), find_matches(pb, pa)
    assert len(ab) == len(ba) == 1
    assert (ab[0].ber, ab[0].frames) == (ba[0].ber, ba[0].frames) and ab[0].ber < 0.3
    assert (ab[0].start_a, ab[0].start_b) == (ba[0].start_b, ba[0].start_a)
    from edm_se.data.corpus import read_manifest

    split = {r["path"]: r["split"] for r in read_manifest(corpus / "manifest.csv")}
    rel = [p.relative_to(corpus).as_posix() for p in (a, b)]
    assert "train" not in [split.get(r) for r in rel]  # one held out, the other left out of train


def test_find_matches_finds_the_same_pairs_whichever_set_comes_first():
    """Crops of real recordings at every sample offset within a frame hop, against their sources, both orders."""
    files = builtin_files("noise", "train")[:4] + builtin_files("speech", "train")[:4]
    sources = {p.name: fingerprint(load_audio(p).numpy()) for p in files}
    crops = {}
    for k, p in enumerate(files[:4]):
        x = load_audio(p).numpy()
        for shift in (0, 17, 32, 63, 64 * 7 + 5):
            start = shift + 1600 * k
            crops[f"{p.name}@{start}"] = fingerprint(0.5 * x[start:start + 24000])
    ab = {(m.a, m.b, m.ber, m.frames) for m in find_matches(crops, sources)}
    ba = {(m.b, m.a, m.ber, m.frames) for m in find_matches(sources, crops)}
    assert ab == ba
    assert {(a.split("@")[0], b) for a, b, _, _ in ab} >= {(p.name, p.name) for p in files[:4]}


# ------------------------------------------------------------------------------------ matching at any frame phase
def test_shifted_fingerprints_are_the_crops_and_the_cache_keeps_each_phase(tmp_path, monkeypatch):
    path = builtin_files("noise", "train")[0]
    x = load_audio(path).numpy()
    prints = fingerprints_shifted(x, shifts=(0, 16, 48))
    for s, fp in zip((0, 16, 48), prints):
        ref = fingerprint(x[s:])
        assert np.array_equal(fp.bits, ref.bits) and np.array_equal(fp.loud, ref.loud)
    assert not np.array_equal(prints[0].bits[:50], prints[1].bits[:50])  # another phase, other frames
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        fingerprints_shifted(x, shifts=(0, HOP))
    # offset 0 is kept where cached_fingerprint keeps it (caches written before phases stay valid)
    first = cached_fingerprints(path, tmp_path, key="k")
    assert len(first) == len(SHIFTS) and np.array_equal(cached_fingerprint(path, tmp_path, key="k").bits,
                                                        first[0].bits)
    assert len(list(tmp_path.rglob("*.npz"))) == len(SHIFTS)

    def no_read(*a, **k):
        raise AssertionError("read again although every phase is cached")

    monkeypatch.setattr("edm_se.audio.load_audio", no_read)
    again = cached_fingerprints(path, tmp_path, key="k")
    assert all(np.array_equal(a.bits, b.bits) for a, b in zip(first, again))


@pytest.mark.slow
def test_a_short_effect_missed_at_one_frame_phase_is_found_at_another(corpus: Path):
    """Wesnoth's sling.ogg is the start of sling-miss.ogg (bit error rate 0.07) but offers only 11 identical frames
    at offset 0, one under the rule's 12: file against file the corpus's check missed it and a test mixture cut at
    another sample found it (session 38). At any phase it is found, and the corpus leaves the held-out copy out."""
    a, b = corpus / "noise" / "wesnoth" / "sling.ogg.flac", corpus / "noise" / "wesnoth" / "sling-miss.ogg.flac"
    if not (a.is_file() and b.is_file()):
        pytest.skip("this corpus build lacks the Wesnoth effects")
    x = load_audio(a).numpy()
    pa, pb = {"sling": fingerprint(x)}, {"sling-miss": fingerprint(load_audio(b).numpy())}
    assert find_matches(pa, pb) == []  # offset 0 alone misses it
    found = find_matches_any_phase(pa, pb, lambda k: fingerprints_shifted(x, shifts=SHIFTS[1:]))
    assert [(m.a, m.b) for m in found] == [("sling", "sling-miss")] and found[0].ber < 0.1 and found[0].votes >= 12
    # an unrelated file stays unmatched at every phase
    other = {"rumble": fingerprint(load_audio(corpus / "noise" / "wesnoth" / "rumble.ogg.flac").numpy())}
    assert find_matches_any_phase(pa, other, lambda k: fingerprints_shifted(x, shifts=SHIFTS[1:])) == []
    from edm_se.data.corpus import read_manifest

    split = {r["path"]: r["split"] for r in read_manifest(corpus / "manifest.csv")}
    assert split.get("noise/wesnoth/sling-miss.ogg.flac") == "train"
    assert "noise/wesnoth/sling.ogg.flac" not in split  # left out of test, not out of train
    import json

    info = json.loads((corpus / "build_info.json").read_text())
    left = {r["path"]: r["matched"] for r in info["left_out_of_heldout"]}
    assert left["noise/wesnoth/sling.ogg.flac"].startswith("noise/wesnoth/sling-miss.ogg.flac (near copy")


def test_heldout_near_copies_leave_valid_and_test_and_train_is_untouched(tmp_path):
    """Crops of training files at offsets that fall between frames, in valid/test, are left out; the training
    rows and an unrelated held-out file stay; a file named in ``trained`` counts as training data."""
    import soundfile as sf

    from edm_se.data.splits import drop_heldout_near_copies

    src = builtin_files("noise", "train")[:3]
    waves = [load_audio(p).numpy() for p in src]
    rows = []
    for i, x in enumerate(waves):
        sf.write(tmp_path / f"train{i}.wav", x, 16000)
        rows.append({"path": f"train{i}.wav", "split": "train"})
    sf.write(tmp_path / "crop.wav", 0.3 * waves[0][16000 + 37:16000 + 37 + 12000], 16000)
    sf.write(tmp_path / "other.wav", load_audio(builtin_files("noise", "test")[0]).numpy(), 16000)
    sf.write(tmp_path / "extra.wav", waves[2], 16000)  # a training file outside the train split
    sf.write(tmp_path / "crop2.wav", waves[2][8000 + 21:8000 + 21 + 12000], 16000)
    rows += [{"path": "crop.wav", "split": "test"}, {"path": "other.wav", "split": "valid"},
             {"path": "crop2.wav", "split": "test"}]
    rows = [r for r in rows if r["path"] != "train2.wav"]
    kept, dropped = drop_heldout_near_copies(rows, tmp_path, tmp_path / "cache")
    assert [r["path"] for r in dropped] == ["crop.wav"] and dropped[0]["matched"].startswith("train0.wav (near copy")
    assert [r["path"] for r in kept] == ["train0.wav", "train1.wav", "other.wav", "crop2.wav"]
    kept, dropped = drop_heldout_near_copies(rows, tmp_path, tmp_path / "cache", trained=["extra.wav"])
    assert [r["path"] for r in dropped] == ["crop.wav", "crop2.wav"]
    assert dropped[1]["matched"].startswith("extra.wav (near copy")


@pytest.mark.slow
def test_the_check_of_a_test_set_matches_at_any_frame_phase(corpus: Path):
    """A clean reference that is sling.ogg, and a mixture whose noise is sling.ogg, against a model that trained on
    sling-miss.ogg: both are found, though offset 0 alone finds neither (the phase is the file's own)."""
    from edm_se.heldout import OVERLAP, check_pairs
    from edm_se.trained_on import TrainingData

    a, b = corpus / "noise" / "wesnoth" / "sling.ogg.flac", corpus / "noise" / "wesnoth" / "sling-miss.ogg.flac"
    if not (a.is_file() and b.is_file()):
        pytest.skip("this corpus build lacks the Wesnoth effects")
    x = load_audio(a).numpy()
    speech = load_audio(builtin_files("speech", "test")[0]).numpy()[:len(x)]
    data = TrainingData("m.pt", [("noise", [str(b)], "m.pt")])
    report = check_pairs([("effect", x, None), ("mixture", speech, speech + 0.5 * x)], "t", data, cache=None,
                         progress=False)
    assert report.status == OVERLAP
    assert sorted((m["test"], m["train"]) for m in report.matches) == [("clean/effect", str(b)),
                                                                       ("noise of mixture", str(b))]
