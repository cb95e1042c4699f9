"""Tests of edm_se.data: the shipped corpus, its fixed test set, MixingDataset, PairedDataset and the data configs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from edm_se.audio import AudioError, save_audio
from edm_se.data import (MixingDataset, PairedDataset, builtin_files, builtin_manifest, builtin_root,
                         builtin_test_set, make_test_set, resolve_files)

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noisy, dtype=np.float64) - clean
    return float(10 * np.log10(np.sum(clean ** 2) / np.sum(noise ** 2)))


@pytest.fixture(scope="module")
def train_ds() -> MixingDataset:
    return MixingDataset("builtin:train", "builtin:train", snr_db=(-5.0, 20.0), segment_seconds=2.04, seed=7)


# ------------------------------------------------------------------------------------------- shipped corpus
def test_manifest_matches_files_on_disk():
    root = builtin_root()
    rows = builtin_manifest()
    assert rows, "empty manifest"
    listed = set()
    for r in rows:
        path = root / r["path"]
        assert path.is_file(), r["path"]
        info = sf.info(str(path))
        assert info.samplerate == 16000 and info.channels == 1, r["path"]
        assert info.format == "FLAC" and info.subtype == "PCM_16", r["path"]
        assert abs(info.frames / info.samplerate - r["duration_s"]) < 0.01, r["path"]
        assert r["kind"] in ("speech", "noise", "rir") and r["split"] in ("train", "valid", "test")
        assert r["licence"] and r["source"]
        if r["kind"] == "speech":
            assert r["transcript"] and r["speaker"]
        listed.add(path.resolve())
    on_disk = {p.resolve() for d in ("speech", "noise", "rir") for p in (root / d).rglob("*") if p.is_file()}
    assert on_disk == listed, "files on disk and manifest rows differ"
    for kind in ("speech", "noise"):
        for split in ("train", "valid", "test"):
            assert builtin_files(kind, split), (kind, split)
    with pytest.raises(AudioError):
        builtin_files("speech", "nonsense")


def test_splits_disjoint_by_utterance_and_noise_recording():
    rows = builtin_manifest()
    by_split = {}
    for r in rows:
        by_split.setdefault((r["kind"], r["split"]), []).append(r)
    speech_stems = [Path(r["path"]).stem for r in rows if r["kind"] == "speech"]
    assert len(speech_stems) == len(set(speech_stems)), "an utterance appears twice"
    recordings = {split: {(r["source"], r["recording"]) for r in by_split[("noise", split)]}
                  for split in ("train", "valid", "test")}
    assert not recordings["test"] & recordings["train"]
    assert not recordings["test"] & recordings["valid"]
    assert not recordings["valid"] & recordings["train"]
    # the English speakers are held out: ARCTIC only in test, Allison never in train
    for r in rows:
        if r["speaker"].startswith("cmu_arctic"):
            assert r["split"] == "test"
        if r["speaker"] == "allison":
            assert r["split"] in ("valid", "test")
    minutes = {k: sum(r["duration_s"] for r in v) / 60 for k, v in by_split.items()}
    assert minutes[("speech", "train")] > 2.0 and minutes[("noise", "train")] > 1.0


def test_corpus_size_and_licence():
    root = builtin_root()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total <= 10 * 1000 * 1000, f"built-in corpus is {total / 1e6:.2f} MB"
    text = (root / "LICENSE.md").read_text(encoding="utf-8")
    for needle in ("CC-BY-SA-3.0", "CC0", "Allison Smith", "MegaGlest", "CMU ARCTIC", "Sonic Pi"):
        assert needle in text
    for r in builtin_manifest():
        assert r["licence"] in text, r["licence"]


def test_builtin_test_set_snrs_and_layout():
    root = builtin_test_set()
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 25
    snrs = [float(r["snr_db"]) for r in rows]
    assert sorted(set(snrs)) == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert all(snrs.count(s) == 5 for s in set(snrs))
    test_speech = {p.resolve() for p in builtin_files("speech", "test")}
    test_noise = {p.resolve() for p in builtin_files("noise", "test")}
    base = builtin_root()
    for r in rows:
        assert (base / r["speech"]).resolve() in test_speech
        assert (base / r["noise"]).resolve() in test_noise
        clean, sr_c = sf.read(str(root / "clean" / f"{r['name']}.flac"))
        noisy, sr_n = sf.read(str(root / "noisy" / f"{r['name']}.flac"))
        assert sr_c == sr_n == 16000 and clean.shape == noisy.shape and clean.ndim == 1
        assert 2.0 <= len(clean) / 16000 <= 4.0
        assert abs(_snr_db(clean, noisy) - float(r["snr_db"])) < 0.1, r["name"]
    assert sorted(p.name for p in (root / "clean").iterdir()) == sorted(p.name for p in (root / "noisy").iterdir())


# ------------------------------------------------------------------------------------------- MixingDataset
def test_mixing_deterministic_and_varied(train_ds):
    a, b = train_ds[3], train_ds[3]
    assert torch.equal(a["clean"], b["clean"]) and torch.equal(a["noisy"], b["noisy"])
    assert a["name"] == b["name"] and a["snr_db"] == b["snr_db"]
    c = train_ds[4]
    assert not torch.equal(a["noisy"], c["noisy"])
    other_seed = MixingDataset("builtin:train", "builtin:train", segment_seconds=2.04, seed=8)
    assert not torch.equal(a["noisy"], other_seed[3]["noisy"])
    assert a["clean"].dtype == torch.float32 and a["noisy"].dtype == torch.float32
    assert len(train_ds) == len(builtin_files("speech", "train"))


def test_mixing_segment_length_and_snr_range(train_ds):
    snrs = []
    for i in range(50):
        item = train_ds[i]
        assert item["clean"].shape == item["noisy"].shape == (int(round(2.04 * 16000)),)
        assert -5.0 <= item["snr_db"] <= 20.0
        measured = _snr_db(item["clean"].numpy(), item["noisy"].numpy())
        assert abs(measured - item["snr_db"]) < 0.05
        assert float(item["noisy"].abs().max()) <= 1.0 + 1e-6
        snrs.append(measured)
    assert min(snrs) < 1.0 and max(snrs) > 14.0, "SNRs do not cover the requested range"


def test_mixing_unbounded_index(train_ds):
    assert MixingDataset.unbounded_index is True
    big = 10 ** 9 + 17
    x, y = train_ds[big], train_ds[big]
    assert torch.equal(x["noisy"], y["noisy"])
    assert x["clean"].shape[0] == int(round(2.04 * 16000))
    with pytest.raises(IndexError):
        train_ds[-1]


def test_mixing_full_utterance_and_padding():
    files = builtin_files("speech", "valid")
    ds = MixingDataset("builtin:valid", "builtin:valid", snr_db=(0.0, 15.0), segment_seconds=None, length=8,
                       seed=1234, gain_db=None)
    assert len(ds) == 8
    for i in range(3):
        item = ds[i]
        n = sf.info(str(files[i])).frames
        assert item["clean"].shape[0] == n
        # no gain, no clipping: the clean target is the file itself
        ref = torch.from_numpy(sf.read(str(files[i]), dtype="float32")[0])
        assert torch.allclose(item["clean"], ref, atol=1e-6)
    long = MixingDataset(files[:2], "builtin:valid", segment_seconds=6.0, seed=0)
    assert long[0]["clean"].shape[0] == 96000 and long[1]["noisy"].shape[0] == 96000


def test_a_silent_stretch_of_a_noise_recording_is_replaced_by_its_loudest_crop(tmp_path):
    # 4 s of noise that is silent except for 0.25 s: most 40 ms crops land in silence, which raised
    # "<noise>: silent noise segment" inside the DataLoader (`edm-se train data.train.segment_seconds=0.032`);
    # every item now mixes at its drawn SNR with noise from the loud stretch
    noise = np.zeros(64000, dtype=np.float32)
    noise[30000:34000] = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    save_audio(tmp_path / "noise.wav", noise, 16000)
    ds = MixingDataset(builtin_files("speech", "valid")[:3], [tmp_path / "noise.wav"], snr_db=(0.0, 10.0),
                       segment_seconds=0.04, seed=3, gain_db=None)
    fell_back = 0
    for i in range(30):
        item = ds[i]
        clean, noisy = item["clean"].numpy(), item["noisy"].numpy()
        if not np.any(clean):
            continue
        residual = noisy - clean
        assert np.any(residual), f"item {i}: no noise"
        assert abs(_snr_db(clean, noisy) - item["snr_db"]) < 0.05
        if np.count_nonzero(residual) >= 0.95 * len(residual):  # the crop lies inside the loud stretch
            fell_back += 1
    # items whose random crop hit silence (most of them) took the loudest crop: all inside the 0.25 s stretch
    assert fell_back >= 20


def test_mixing_rir(tmp_path):
    rir = np.zeros(1600, dtype=np.float32)
    rir[0], rir[400], rir[1200] = 1.0, 0.5, 0.25
    save_audio(tmp_path / "rir.wav", rir, 16000)
    speech = builtin_files("speech", "valid")[:2]
    dry = MixingDataset(speech, "builtin:valid", segment_seconds=1.0, seed=0)
    wet = MixingDataset(speech, "builtin:valid", segment_seconds=1.0, seed=0, rir=[tmp_path / "rir.wav"],
                        rir_prob=1.0)
    assert wet[0]["clean"].shape == dry[0]["clean"].shape
    assert not torch.allclose(wet[0]["clean"], dry[0]["clean"])
    with pytest.raises(ValueError):
        MixingDataset(speech, "builtin:valid", rir_prob=0.5)


def test_mixing_speed_perturb_resamples_the_utterance_and_keeps_the_other_draws(tmp_path):
    # a 200 Hz tone played f times faster becomes a 200 f Hz tone of len / f samples; with the option off (or at
    # 1.0) every item is the same as without it
    t = np.arange(16000) / 16000
    save_audio(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    plain = MixingDataset([tmp_path / "tone.wav"], "builtin:valid", segment_seconds=None, seed=3, gain_db=None)
    same = MixingDataset([tmp_path / "tone.wav"], "builtin:valid", segment_seconds=None, seed=3, gain_db=None,
                         speed_perturb=(1.0, 1.0))
    fast = MixingDataset([tmp_path / "tone.wav"], "builtin:valid", segment_seconds=None, seed=3, gain_db=None,
                         speed_perturb=(1.25, 1.25))
    assert torch.equal(plain[0]["noisy"], same[0]["noisy"])
    clean = fast[0]["clean"].numpy()
    assert clean.shape[0] == 12800  # 16000 / 1.25
    spectrum = np.abs(np.fft.rfft(clean))
    assert abs(np.argmax(spectrum) * 16000 / len(clean) - 250.0) <= 2.0
    assert fast[0]["snr_db"] == plain[0]["snr_db"]
    varied = MixingDataset([tmp_path / "tone.wav"], "builtin:valid", segment_seconds=None, seed=3, gain_db=None,
                           speed_perturb=(0.85, 1.15), length=20)
    assert len({varied[i]["clean"].shape[0] for i in range(20)}) > 5
    with pytest.raises(ValueError, match="speed_perturb"):
        MixingDataset([tmp_path / "tone.wav"], "builtin:valid", speed_perturb=(1.2, 0.9))


def test_resolve_files_specs(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "speech").mkdir(parents=True)
    src = builtin_files("speech", "test")[0]
    target = corpus / "speech" / "a.flac"
    target.write_bytes(src.read_bytes())
    with open(corpus / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "kind", "split", "source", "speaker", "duration_s", "transcript", "licence"])
        w.writerow(["speech/a.flac", "speech", "valid", "x", "y", "1.0", "t", "CC0"])
    assert resolve_files(f"corpus:{corpus}:valid", "speech") == [target]
    assert resolve_files(corpus / "manifest.csv", "speech") == [target]
    assert resolve_files(corpus / "speech", "speech") == [target]
    with pytest.raises(AudioError):
        resolve_files(f"corpus:{corpus}:train", "speech")
    with pytest.raises(AudioError):
        resolve_files(tmp_path / "missing", "noise")


# ------------------------------------------------------------------------------------------- PairedDataset
def _write_pairs(root: Path, names, length=8000, seed=0, clean="clean", noisy="noisy"):
    rng = np.random.default_rng(seed)
    for n in names:
        x = (0.1 * rng.standard_normal(length)).astype(np.float32)
        save_audio(root / clean / f"{n}.wav", x, 16000)
        save_audio(root / noisy / f"{n}.wav", x + 0.05 * rng.standard_normal(length).astype(np.float32), 16000)


def test_paired_dataset(tmp_path):
    _write_pairs(tmp_path, ["p1_001", "p1_002", "p2_001"])
    ds = PairedDataset(tmp_path / "clean", tmp_path / "noisy")
    assert len(ds) == 3 and ds[0]["name"] == "p1_001"
    item = ds[2]
    ref = sf.read(str(tmp_path / "clean" / "p2_001.wav"), dtype="float32")[0]
    assert np.allclose(item["clean"].numpy(), ref, atol=1e-4)
    assert item["noisy"].shape == item["clean"].shape == (8000,)
    cropped = PairedDataset(tmp_path / "clean", tmp_path / "noisy", segment_seconds=0.25, seed=3)
    a, b = cropped[1], cropped[1]
    assert a["clean"].shape == (4000,) and torch.equal(a["clean"], b["clean"])
    # the crop is taken at the same place in clean and noisy
    full = ds[1]
    start = int(np.argmin([float((full["clean"][s:s + 4000] - a["clean"]).abs().sum()) for s in range(4001)]))
    assert torch.allclose(full["noisy"][start:start + 4000], a["noisy"])
    padded = PairedDataset(tmp_path / "clean", tmp_path / "noisy", segment_seconds=1.0)
    assert padded[0]["clean"].shape == (16000,)


def test_paired_dataset_errors(tmp_path):
    _write_pairs(tmp_path, ["a", "b"])
    save_audio(tmp_path / "clean" / "extra.wav", np.full(800, 0.1, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no noisy partner"):
        PairedDataset(tmp_path / "clean", tmp_path / "noisy")
    (tmp_path / "clean" / "extra.wav").unlink()
    save_audio(tmp_path / "noisy" / "b.wav", np.full(900, 0.1, dtype=np.float32), 16000)
    ds = PairedDataset(tmp_path / "clean", tmp_path / "noisy")
    with pytest.raises(AudioError, match="differs"):
        ds[1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError):
        PairedDataset(tmp_path / "empty", tmp_path / "noisy")
    with pytest.raises(AudioError):
        PairedDataset(tmp_path / "nope", tmp_path / "noisy")


# ------------------------------------------------------------------------------------------- make_test_set
def test_make_test_set_idempotent(tmp_path):
    speech = builtin_files("speech", "test")[:3]
    noise = builtin_files("noise", "test")[:2]
    out = make_test_set(speech, noise, tmp_path / "ts", snrs_db=(0, 10), per_snr=2, seed=1)
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["snr_db"] for r in rows} == {"0", "10"}
    for r in rows:
        clean = sf.read(str(out / "clean" / f"{r['name']}.flac"))[0]
        noisy = sf.read(str(out / "noisy" / f"{r['name']}.flac"))[0]
        assert abs(_snr_db(clean, noisy) - float(r["snr_db"])) < 0.1
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    make_test_set(speech, noise, tmp_path / "ts", snrs_db=(0, 10), per_snr=2, seed=1)
    assert stamp == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------- configs
def test_builtin_config_instantiates():
    cfg = OmegaConf.create({"seed": 5, "sample_rate": 16000, "data": OmegaConf.load(CONF / "builtin.yaml")})
    train = instantiate(cfg.data.train, _partial_=False)
    valid = instantiate(cfg.data.valid, _partial_=False)
    assert isinstance(train, MixingDataset) and isinstance(valid, MixingDataset)
    assert train.seed == 5 and train.segment_seconds == pytest.approx(2.04)
    assert train[0]["clean"].shape == (int(round(2.04 * 16000)),)
    assert valid.segment_seconds is None and len(valid) == 8
    assert "test" not in cfg.data and cfg.data.sample_rate == 16000  # the test set is the study's, never training's


def test_paired_config_validates_on_held_out_training_speakers_never_on_the_test_set(tmp_path):
    _write_pairs(tmp_path, ["p226_001", "p287_002", "p230_001", "p230_002"], clean="clean_trainset_28spk_wav",
                 noisy="noisy_trainset_28spk_wav")
    _write_pairs(tmp_path, ["p232_001"], clean="clean_testset_wav", noisy="noisy_testset_wav")
    cfg = OmegaConf.create({"seed": 0, "sample_rate": 16000, "data": OmegaConf.load(CONF / "paired.yaml")})
    cfg.data.root = str(tmp_path)
    train = instantiate(cfg.data.train, _partial_=False)
    valid = instantiate(cfg.data.valid, _partial_=False)
    assert isinstance(train, PairedDataset) and train.names == ["p230_001", "p230_002"]
    assert valid.names == ["p226_001", "p287_002"]  # SGMSE+'s validation speakers, from the training directories
    assert "testset" not in str(valid.clean_dir) and "trainset" in str(valid.clean_dir)
    assert train[0]["clean"].shape == (int(round(2.04 * 16000)),)
    assert valid[0]["clean"].shape == (8000,)
    with pytest.raises(AudioError, match="no file left"):
        PairedDataset(tmp_path / "clean_testset_wav", tmp_path / "noisy_testset_wav", speakers=["p226"])


def test_builtin_maker_drops_a_left_out_noise_file_and_keeps_the_other_draws(tmp_path):
    """``make_builtin.build_noise`` with a corpus row left out of the held-out split (a near copy): the pool and
    the random draws stay those of the build without it, so only that file goes."""
    from edm_se.data import make_builtin as M

    corpus = tmp_path / "corpus"
    rows = []
    for k, p in enumerate(builtin_files("noise", "train")[:6]):
        x = sf.read(str(p))[0]
        rel = f"noise/src{k % 2}/n{k}.flac"
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(corpus / rel), x, 16000)
        rows.append({"path": rel, "kind": "noise", "split": "test", "source": f"src{k % 2}", "speaker": "",
                     "duration_s": len(x) / 16000, "transcript": "", "licence": "CC0", "recording": f"n{k}"})
    full = M.build_noise(corpus, rows, tmp_path / "a", np.random.default_rng(5))
    assert len(full) >= 3
    gone = full[1]["recording"]
    left = [r for r in rows if r["recording"] == gone]
    part = M.build_noise(corpus, [r for r in rows if r["recording"] != gone], tmp_path / "b",
                         np.random.default_rng(5), left_out=left)
    assert [r["recording"] for r in part] == [r["recording"] for r in full if r["recording"] != gone]
    for r in part:  # the same crops of the same files
        assert np.array_equal(sf.read(str(tmp_path / "a" / r["path"]))[0], sf.read(str(tmp_path / "b" / r["path"]))[0])
