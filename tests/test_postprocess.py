"""Observation adding (OA, Iwamoto et al. 2022): the interpolation itself, its equivalence with the papers' form up to
a gain, its effect on the signal-to-artifact ratio, and ``oa_weight`` through the Python API, ``edm-se enhance``
(diffusion and a peer, with its resume record) and a study, where ``oa_weight=1`` must score as the noisy input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import run_cli, run_cli_many

from edm_se.model import EnhancementModel
from edm_se.postprocess import check_oa_weight, observation_adding


@pytest.fixture(scope="module")
def real_pair():
    """(clean, noise) of one built-in test mixture (16 kHz float32 tensors, same length)."""
    from edm_se.data import builtin_test_set

    root = builtin_test_set()
    name = sorted((root / "noisy").glob("*.flac"))[3].name
    clean, sr = sf.read(root / "clean" / name, dtype="float32")
    noisy, sr2 = sf.read(root / "noisy" / name, dtype="float32")
    assert sr == sr2 == 16000
    n = min(len(clean), len(noisy))
    return torch.from_numpy(clean[:n]), torch.from_numpy(noisy[:n] - clean[:n])


def test_observation_adding_interpolates_and_checks_its_input():
    enhanced, noisy = torch.randn(2, 800), torch.randn(2, 800)
    assert observation_adding(enhanced, noisy, 0.0) is enhanced
    assert torch.equal(observation_adding(enhanced, noisy, 1.0), noisy)
    torch.testing.assert_close(observation_adding(enhanced, noisy, 0.25), 0.75 * enhanced + 0.25 * noisy,
                               rtol=0, atol=1e-6)
    half = observation_adding(enhanced.double(), noisy.float(), 0.5)
    assert half.dtype == torch.float64
    with pytest.raises(ValueError, match="aligned sample by sample"):
        observation_adding(enhanced, noisy[:, :-1], 0.5)
    for bad in (-0.1, 1.5, float("nan"), "abc", None):
        with pytest.raises(ValueError, match="oa_weight"):
            check_oa_weight(bad)


def test_the_papers_form_is_the_same_signal_up_to_a_gain(real_pair):
    """``x + a * y`` (Iwamoto et al.) and ``(1 - w) x + w y`` with ``w = a / (1 + a)`` are proportional, so every
    scale-invariant metric (here SI-SDR) gives them the same score."""
    from edm_se.metrics import si_sdr

    clean, noise = real_pair
    noisy = clean + noise
    enhanced = 0.8 * clean + 0.1 * noise + 0.05 * torch.randn_like(clean)
    for a in (0.1, 0.5, 2.0):
        papers = enhanced + a * noisy
        ours = observation_adding(enhanced, noisy, a / (1 + a))
        torch.testing.assert_close(papers / (1 + a), ours, rtol=0, atol=1e-6)
        assert si_sdr(clean.numpy(), papers.numpy()) == pytest.approx(si_sdr(clean.numpy(), ours.numpy()), abs=1e-4)


def _signal_to_artifact_db(estimate: np.ndarray, clean: np.ndarray, noise: np.ndarray) -> float:
    """Orthogonal projection decomposition (Iwamoto et al. 2022): the part of ``estimate`` in span{clean, noise}
    over the rest (the artifact), in dB."""
    basis = np.stack([clean, noise], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(basis, estimate.astype(np.float64), rcond=None)
    inside = basis @ coef
    return float(10 * np.log10(np.sum(inside ** 2) / np.sum((estimate - inside) ** 2)))


def test_more_of_the_observation_raises_the_signal_to_artifact_ratio(real_pair):
    """The papers' property on real speech and noise: an estimate with an artifact (a component outside the span
    of speech and noise) gains signal-to-artifact ratio with every increase of ``w``; the plain enhanced signal
    (``w = 0``) has the lowest."""
    clean, noise = real_pair
    noisy = clean + noise
    gen = torch.Generator().manual_seed(0)
    artifact = 0.2 * clean.abs().max() * torch.randn(clean.shape, generator=gen)
    enhanced = 0.9 * clean + 0.2 * noise + artifact
    sar = [_signal_to_artifact_db(observation_adding(enhanced, noisy, w).numpy(), clean.numpy(), noise.numpy())
           for w in (0.0, 0.1, 0.2, 0.3, 0.5, 0.8)]
    assert all(b > a + 0.3 for a, b in zip(sar, sar[1:])), sar  # strictly rising, by more than rounding
    # w = 0.5 halves the artifact and keeps the in-span part about as large: +6 dB give or take the mix
    assert 4.0 < sar[4] - sar[0] < 12.0, sar


def test_model_output_and_estimates_mix_in_the_input_at_the_models_rate(tiny_checkpoint):
    from edm_se.audio import resample

    model = EnhancementModel.from_checkpoint(tiny_checkpoint, device="cpu")
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(12000).astype(np.float32)) * 0.1
    for chunk in (30.0, 0.3):  # one block, and cross-faded chunks
        plain = model.enhance(wave, 8000, sampler="edm_heun", num_steps=2, chunk_seconds=chunk,
                              overlap_seconds=0.1, return_estimates=True)
        mixed = model.enhance(wave, 8000, sampler="edm_heun", num_steps=2, chunk_seconds=chunk,
                              overlap_seconds=0.1, return_estimates=True, oa_weight=0.3)
        at_rate = resample(wave[None], 8000, 16000)[0]
        assert mixed.waveform.shape == plain.waveform.shape == at_rate.shape
        torch.testing.assert_close(mixed.waveform, 0.7 * plain.waveform + 0.3 * at_rate, rtol=0, atol=1e-6)
        for e_mixed, e_plain in zip(mixed.estimates, plain.estimates):
            torch.testing.assert_close(e_mixed["waveform"], 0.7 * e_plain["waveform"] + 0.3 * at_rate, rtol=0,
                                       atol=1e-6)
        torch.testing.assert_close(mixed.estimates[-1]["waveform"], mixed.waveform, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="oa_weight"):
        model.enhance(wave, 8000, oa_weight=2.0)


def _noisy_dir(root):
    from edm_se.data import builtin_test_set

    root.mkdir()
    for f in sorted((builtin_test_set() / "noisy").glob("*.flac"))[:2]:
        wave, sr = sf.read(f, dtype="float32")
        sf.write(root / f"{f.stem}.wav", wave[: 2 * sr], sr, subtype="FLOAT")
    return root


def _assert_mixed(inputs, plain_dir, mixed_dir, weight):
    """Every file of ``mixed_dir`` is ``(1 - weight)`` times the one of ``plain_dir`` plus ``weight`` times the input
    (to the 16-bit files' rounding)."""
    names = sorted(p.name for p in inputs.iterdir())
    assert names and sorted(p.name for p in mixed_dir.glob("*.wav")) == names
    for name in names:
        noisy, _ = sf.read(inputs / name, dtype="float32")
        plain, _ = sf.read(plain_dir / name, dtype="float32")
        mixed, _ = sf.read(mixed_dir / name, dtype="float32")
        np.testing.assert_allclose(mixed, (1 - weight) * plain + weight * noisy, rtol=0, atol=1e-4)


def test_enhance_cli_oa_weight_for_the_model_and_a_peer_with_its_record(tiny_checkpoint, tmp_path):
    inputs = _noisy_dir(tmp_path / "in")
    common = [f"ckpt={tiny_checkpoint}", f"input={inputs}", "sampler=euler", "sampler.num_steps=2", "progress=false"]
    peer = ["enhancer=noisereduce", f"input={inputs}", "progress=false"]
    plain, oa, other, same, bad, nr, nr_oa = run_cli_many(
        ["enhance", *common, f"output={tmp_path / 'plain'}"],
        ["enhance", *common, f"output={tmp_path / 'oa'}", "oa_weight=0.4"],
        # the record refuses another weight into the same directory, naming it; the same one resumes
        ["enhance", *common, f"output={tmp_path / 'oa'}", "oa_weight=0.2"],
        ["enhance", *common, f"output={tmp_path / 'oa'}", "oa_weight=0.4"],
        ["enhance", *common, f"output={tmp_path / 'bad'}", "oa_weight=1.5"],
        # a peer: noisereduce's output with 40% of the input added back
        ["enhance", *peer, f"output={tmp_path / 'nr'}"],
        ["enhance", *peer, f"output={tmp_path / 'nr_oa'}", "oa_weight=0.4"])
    assert plain.returncode == 0 and oa.returncode == 0, plain.stderr[-2000:] + oa.stderr[-2000:]
    _assert_mixed(inputs, tmp_path / "plain", tmp_path / "oa", 0.4)
    assert json.loads((tmp_path / "oa" / "enhance.json").read_text())["config"]["oa_weight"] == 0.4
    assert "oa_weight" not in json.loads((tmp_path / "plain" / "enhance.json").read_text())["config"]
    assert other.returncode == 2 and "oa_weight" in other.stderr and "Traceback" not in other.stderr, (
        other.stderr[-2000:])
    assert same.returncode == 0 and "nothing to enhance" in same.stdout, same.stdout + same.stderr[-2000:]
    assert bad.returncode == 2 and "oa_weight=1.5: must be a number in [0, 1]" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
    assert nr.returncode == 0 and nr_oa.returncode == 0, nr.stderr[-2000:] + nr_oa.stderr[-2000:]
    _assert_mixed(inputs, tmp_path / "nr", tmp_path / "nr_oa", 0.4)


def test_a_study_over_oa_weight_scores_weight_one_as_the_noisy_input(tiny_checkpoint, tmp_path):
    """``oa_weight=1`` outputs the noisy input itself: its per-file scores equal the noisy reference's and its paired
    improvement is 0 exactly; the axis of the figures is ``oa_weight``; ``results.csv`` has the column."""
    from edm_se import study
    from edm_se.study_common import model_label

    sweep = tmp_path / "oa"
    model = f"model={model_label(tiny_checkpoint)}"
    res = run_cli("study", "study=oa", f"ckpt={tiny_checkpoint}", "max_files=2", f"hydra.sweep.dir={sweep}",
                  "sampler.num_steps=1", "oa_weight=0.0,1.0", "metrics=[pesq,si_sdr]", "peers=[]", "num_workers=1",
                  "keep_audio=0", "threads=1")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    cells = {p.name: json.loads((p / "metrics.json").read_text()) for p in sweep.iterdir()
             if (p / "metrics.json").exists()}
    assert sorted(cells) == [f"{model},oa_weight={w},sampler.num_steps=1,sampler=edm_heun" for w in ("0.0", "1.0")]
    noisy = json.loads((sweep / "noisy_metrics.json").read_text())
    (one,) = cells[f"{model},oa_weight=1.0,sampler.num_steps=1,sampler=edm_heun"]["points"]
    (zero,) = cells[f"{model},oa_weight=0.0,sampler.num_steps=1,sampler=edm_heun"]["points"]
    assert one["oa_weight"] == 1.0 and zero["oa_weight"] == 0.0
    for metric in ("pesq", "si_sdr"):
        assert one["per_file"][metric] == pytest.approx(noisy["per_file"][metric], abs=1e-6)
        assert one["improvement"][metric]["mean"] == pytest.approx(0.0, abs=1e-6)
        assert zero["per_file"][metric] != pytest.approx(noisy["per_file"][metric], abs=1e-3)
    table = pd.read_csv(sweep / "results.csv")
    assert sorted(table[table.kind == "cell"].oa_weight.unique()) == [0.0, 1.0]
    assert (sweep / "metric_vs_oa_weight.png").stat().st_size > 1000
    best = json.loads((sweep / "best.json").read_text())
    assert {(c["label"].split(" / ")[0], c["baseline"].split(" / ")[0]) for c in best["comparisons"]} == {
        (f"{model},oa_weight=1.0,sampler.num_steps=1,sampler=edm_heun",
         f"{model},oa_weight=0.0,sampler.num_steps=1,sampler=edm_heun")}  # study=oa compares to oa_weight=0.0
    # a finished cell stored before oa_weight existed (no key) is the cell of oa_weight=0: it stands
    stored = dict(cells[f"{model},oa_weight=0.0,sampler.num_steps=1,sampler=edm_heun"]["config"])
    assert "oa_weight" not in stored
    assert study.cell_config({**stored, "oa_weight": 0.0}) == study.cell_config(stored)
    assert study.cell_config({**stored, "oa_weight": 0.5}) != study.cell_config(stored)


def test_every_swept_weight_and_start_time_is_checked_before_any_cell(tmp_path):
    """`oa_weight=0,2` ran the first cell and recorded the second's failure in its error.json; a value out of range
    anywhere in the sweep (t_start and the sampler's fields too) now stops the study with one line before any cell runs."""
    cases = ((["study=oa", "oa_weight=0,2"], "oa_weight=2: must be a number in [0, 1]"),
             (["study=oa", "oa_weight=1e-1,2"], "oa_weight=2: must be a number in [0, 1]"),  # 1e-1 is 0.1
             (["study=t_start", "t_start=0.5,0"], "t_start=0: must be a number in (0, 1]"),
             (["study=t_start", "t_start=0.5,abc"], "t_start=abc: must be a number in (0, 1]"),
             # swept sampler fields: `sampler.num_steps=0,1` recorded a ValueError in every num_steps=0 cell
             (["sampler.num_steps=0,1"], "sampler.num_steps=0: must be an integer >= 1"),
             (["study=churn", "sampler.s_churn=-1,0"], "sampler.s_churn=-1: must be a number >= 0"),
             (["sampler.schedule.rho=7,0"], "sampler.schedule.rho=0: must be a number > 0"))
    runs = run_cli_many(*(["study", *args, f"hydra.sweep.dir={tmp_path / 's'}", "max_files=1", "peers=[]"]
                          for args, _ in cases))
    for res, (args, message) in zip(runs, cases):
        assert res.returncode == 2 and res.stderr.strip().splitlines() == [f"edm-se study: error: {message}"], (
            res.stderr[-2000:])
        assert not (tmp_path / "s").exists()
