"""edm_se.metrics: PESQ/ESTOI/SI-SDR sanity, parallel scoring equals in-process, summary statistics."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from scipy import stats

from conftest import speech_like as _speech_like

from edm_se import metrics as M

SR = 16000


def _noise(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def _at_snr(ref: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    ref0, noise0 = ref - ref.mean(), noise - noise.mean()
    noise0 = noise0 - np.dot(noise0, ref0) / np.dot(ref0, ref0) * ref0  # orthogonal to ref: exact SI-SDR
    gain = np.sqrt(np.sum(ref0 ** 2) / np.sum(noise0 ** 2) / 10 ** (snr_db / 10))
    return ref + gain * noise0


@pytest.fixture(scope="module")
def ref():
    return _speech_like()


def test_si_sdr_known_value_and_invariances(ref):
    for snr_db in (-5.0, 0.0, 12.5):
        est = _at_snr(ref.astype(np.float64), _noise(ref.size).astype(np.float64), snr_db)
        assert M.si_sdr(ref, est) == pytest.approx(snr_db, abs=1e-6)
        assert M.si_sdr(ref, 0.01 * est) == pytest.approx(snr_db, abs=1e-6)  # scale invariance
        assert M.si_sdr(ref, est + 0.3) == pytest.approx(snr_db, abs=1e-6)  # offset removed (zero mean)
    assert M.si_sdr(ref, 3.0 * ref) > 100.0
    # a plain (non-orthogonal) noisy version lands near its nominal SNR too
    noise = 0.05 * _noise(ref.size, seed=5)
    nominal = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))
    assert M.si_sdr(ref, ref + noise) == pytest.approx(nominal, abs=0.3)


def test_si_sdr_errors(ref):
    with pytest.raises(ValueError):
        M.si_sdr(ref, ref[:-1])
    with pytest.raises(ValueError):
        M.si_sdr(np.zeros(100), np.ones(100))
    # an all-zero (or constant) estimate: target and residual both vanish; it was scored +inf, "perfect"
    for est in (np.zeros_like(ref), np.full_like(ref, 0.25)):
        with pytest.raises(ValueError, match="the estimate has zero energy"):
            M.si_sdr(ref, est)
    assert M.si_sdr(ref, ref) == math.inf  # a perfect copy still is


def test_a_silent_estimate_is_refused_by_name(ref):
    """PESQ of an all-zero estimate failed inside the `pesq` package ("cannot convert float NaN to integer") and
    SI-SDR called it perfect; both now refuse it, and score_pairs names the file before any worker starts."""
    with pytest.raises(ValueError, match="pesq: the estimate is silent"):
        M.pesq_wb(ref, np.zeros_like(ref), SR)
    assert M.pesq_wb(ref, 1e-6 * _noise(ref.size), SR) < 1.1  # nearly silent: PESQ's floor
    with pytest.raises(ValueError, match=r"^b: the estimate is silent \(all samples zero\); PESQ and SI-SDR"):
        M.score_pairs([ref, ref], [ref, np.zeros_like(ref)], names=["a", "b"], metrics=("si_sdr",), num_workers=0,
                      progress=False)
    with pytest.raises(ValueError, match=r"^b: the estimate is constant; SI-SDR is undefined for it"):
        M.score_pairs([ref, ref], [ref, np.full_like(ref, 0.25)], names=["a", "b"], metrics=("si_sdr",),
                      num_workers=2, progress=False)  # named before the workers, whose error would not name it
    frame, _ = M.score_pairs([ref], [np.zeros_like(ref)], metrics=("estoi",), num_workers=0, progress=False)
    assert frame["estoi"].iloc[0] < 0.1  # ESTOI is defined for silence: near 0


def test_pesq_identical_high_noise_low(ref):
    assert M.pesq_wb(ref, ref, SR) > 4.4
    noisy = _at_snr(ref, _noise(ref.size), 0.0)
    assert M.pesq_wb(ref, noisy, SR) < 2.0
    assert M.pesq_wb(ref, 0.1 * _noise(ref.size), SR) < 1.5


def test_pesq_resamples_other_rates():
    ref8k = _speech_like(sample_rate=8000)
    assert M.pesq_wb(ref8k, ref8k, 8000) > 4.4


def test_pesq_no_utterance_gives_nan_and_warning(caplog):
    silent_ref = np.zeros(SR, dtype=np.float32)  # PESQ's voice activity detector finds nothing
    with caplog.at_level(logging.WARNING, logger="edm_se.metrics"):
        value = M.pesq_wb(silent_ref, 0.1 * _noise(SR), SR)
    assert math.isnan(value)
    assert any("utterance" in r.getMessage() for r in caplog.records)


def test_estoi_identity_and_noise(ref):
    assert M.estoi(ref, ref, SR) == pytest.approx(1.0, abs=1e-6)
    assert M.estoi(ref, _at_snr(ref, _noise(ref.size), -5.0), SR) < 0.6


def test_mean_ci95_matches_t_interval():
    values = [1.0, 2.0, 4.0, float("nan"), 7.0]
    out = M.mean_ci95(values)
    finite = np.array([1.0, 2.0, 4.0, 7.0])
    assert out["n"] == 4 and out["mean"] == pytest.approx(3.5)
    assert out["ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * finite.std(ddof=1) / 2.0)
    assert math.isnan(M.mean_ci95([1.0])["ci95"])


def test_score_pairs_parallel_equals_in_process():
    refs = [_speech_like(1.0, seed=i) for i in range(3)]
    ests = [_at_snr(r, _noise(r.size, seed=10 + i), 5.0 * i) for i, r in enumerate(refs)]
    names = ["a", "b", "c"]
    serial, summary = M.score_pairs(refs, ests, names=names, num_workers=0, progress=False)
    parallel, summary_par = M.score_pairs(refs, ests, names=names, num_workers=2, progress=False)
    assert list(serial.columns) == ["name", "pesq", "estoi", "si_sdr"]
    assert serial["name"].tolist() == names
    # atol: the SI-SDR at 0 dB is about 5e-8 dB, and one OpenBLAS thread (the workers) against two (this process)
    # sums its dot products in another order (5e-14 apart)
    np.testing.assert_allclose(parallel[["pesq", "estoi", "si_sdr"]].to_numpy(),
                               serial[["pesq", "estoi", "si_sdr"]].to_numpy(), rtol=1e-6, atol=1e-9)
    for m in ("pesq", "estoi", "si_sdr"):
        assert summary[m]["n"] == 3
        assert summary[m]["mean"] == pytest.approx(float(serial[m].mean()))
        assert summary_par[m]["mean"] == pytest.approx(summary[m]["mean"])
        assert summary[m]["ci95"] > 0
    # higher SNR -> better SI-SDR, in order
    assert serial["si_sdr"].is_monotonic_increasing
    assert serial["si_sdr"].iloc[2] == pytest.approx(10.0, abs=1e-3)


def test_a_scoring_pool_starts_its_workers_single_threaded_and_restores_the_environment(monkeypatch):
    """Numerical libraries read their thread counts once, at load: a spawned worker has loaded numpy before its
    initializer runs, so two workers each ran a 2-thread OpenBLAS on 2 cores (2.4x the CPU time per file). The
    pool's workers are now started with OMP/MKL/OPENBLAS_NUM_THREADS=1 (where unset), and the parent's environment
    is as it was afterwards."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    seen = []

    class Spy(ProcessPoolExecutor):
        def submit(self, *args, **kwargs):  # workers are spawned on submit
            seen.append({v: os.environ.get(v) for v in M._WORKER_THREAD_VARS})
            return super().submit(*args, **kwargs)

    for var in M._WORKER_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # a user's own setting is kept
    monkeypatch.setattr(M, "ProcessPoolExecutor", Spy)
    refs = [_speech_like(1.0, seed=i) for i in range(2)]
    frame, _ = M.score_pairs(refs, [r + 0.01 for r in refs], metrics=("si_sdr",), num_workers=2, progress=False)
    assert seen and all(s == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"}
                        for s in seen)
    assert "OMP_NUM_THREADS" not in os.environ and "OPENBLAS_NUM_THREADS" not in os.environ
    assert os.environ["MKL_NUM_THREADS"] == "3" and np.isfinite(frame["si_sdr"]).all()


def test_scoring_16_khz_audio_never_imports_torch():
    """A scoring worker process (spawned: a fresh interpreter) imports only what it scores with. At 16 kHz nothing
    is resampled, so PESQ, ESTOI and SI-SDR run without PyTorch (its import took 3 of the 4 s a 2-worker pool
    needed to start on 2 cores); at 8 kHz the one resampler (torchaudio) is imported and used."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from edm_se.metrics import _score_one\n"
            "rng = np.random.default_rng(0)\n"
            "t = np.arange(16000) / 16000\n"
            "ref = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)\n"
            "est = (ref + 0.05 * rng.standard_normal(ref.size)).astype(np.float32)\n"
            "row = _score_one((ref, est, 16000, ('pesq', 'estoi', 'si_sdr'), None))\n"
            "assert 'torch' not in sys.modules, 'torch imported at 16 kHz'\n"
            "assert all(np.isfinite(row[m]) for m in ('pesq', 'estoi', 'si_sdr')), row\n"
            "_score_one((ref[::2].copy(), est[::2].copy(), 8000, ('pesq',), None))\n"
            "assert 'torchaudio.functional' in sys.modules, 'PESQ at 8 kHz did not resample'\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_score_pairs_validation(ref):
    with pytest.raises(ValueError, match=r"metrics \['pesq', 'si_sdr', 'pesq'\]: each metric may be named once"):
        M.score_pairs([ref], [ref], metrics=("pesq", "si_sdr", "pesq"), num_workers=0, progress=False)
    with pytest.raises(ValueError, match="unknown metric"):
        M.score_pairs([ref], [ref], metrics=("pesq", "psq"), num_workers=0, progress=False)
    with pytest.raises(ValueError):
        M.score_pairs([ref, ref], [ref], num_workers=0, progress=False)
    with pytest.raises(ValueError, match="x:"):
        M.score_pairs([ref], [ref[:-5]], names=["x"], num_workers=0, progress=False)


def test_dnsmos_missing_package_is_a_clear_error(ref, monkeypatch):
    """speechmos imports librosa without declaring it: a missing one is named with the extra that adds it."""
    import importlib.util

    from edm_se.asr import MissingExtra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "librosa" else real(name, *a))
    for call in (lambda: M.score_pairs([ref], [ref], metrics=("dnsmos_ovrl",), num_workers=0, progress=False),
                 lambda: M.dnsmos(ref, SR)):
        with pytest.raises(MissingExtra, match=r"DNSMOS needs the optional package\(s\) librosa: "
                                               r"pip install 'edm_se\[dnsmos\]'"):
            call()


def test_dnsmos_on_real_speech_ranks_clean_above_noisy_and_resamples():
    """DNSMOS P.835 (Microsoft's ONNX models in speechmos; the `test` extra installs the `dnsmos` one) on a real
    utterance of the built-in test set: clean speech above the same speech with white noise at 20 dB, above 0 dB,
    in OVRL and BAK (measured: OVRL 3.24 / 2.54 / 1.48, BAK 3.98 / 2.72 / 1.43), and in SIG and P.808 above 0 dB;
    every score in [1, 5]; the same
    numbers through score_pairs; an 8 kHz copy is resampled to 16 kHz and scored, not refused."""
    import soundfile as sf

    from edm_se.data import builtin_test_set

    clean, sr = sf.read(sorted((builtin_test_set() / "clean").glob("*.flac"))[0], dtype="float32")
    assert sr == SR
    noise = _noise(clean.size, seed=0)
    scores = {name: M.dnsmos(x, SR) for name, x in
              (("clean", clean), ("20 dB", _at_snr(clean, noise, 20.0)), ("0 dB", _at_snr(clean, noise, 0.0)))}
    for s in scores.values():
        assert set(s) == set(M.DNSMOS_METRICS) and all(1.0 <= v <= 5.0 for v in s.values())
    for m in ("dnsmos_ovrl", "dnsmos_bak"):
        assert scores["clean"][m] > scores["20 dB"][m] + 0.2 and scores["20 dB"][m] > scores["0 dB"][m] + 0.5
    assert scores["clean"]["dnsmos_p808"] > scores["0 dB"]["dnsmos_p808"] + 0.5
    assert scores["clean"]["dnsmos_sig"] > scores["0 dB"]["dnsmos_sig"] + 0.5
    frame, _ = M.score_pairs([clean], [_at_snr(clean, noise, 0.0)], metrics=M.DNSMOS_METRICS, num_workers=0,
                             progress=False)
    for m in M.DNSMOS_METRICS:
        assert frame[m].iloc[0] == pytest.approx(scores["0 dB"][m], abs=1e-6)
    import torch

    from edm_se.audio import resample

    low = M.dnsmos(resample(torch.from_numpy(clean)[None], SR, 8000)[0].numpy(), 8000)
    assert 1.0 <= low["dnsmos_ovrl"] <= 5.0 and low["dnsmos_ovrl"] > scores["0 dB"]["dnsmos_ovrl"] + 0.5


def test_pesq_is_wide_band_and_resamples_with_torchaudio(ref):
    """pesq_wb is P.862.2 (mode 'wb'), not narrow band, and a 48 kHz pair is scored as its 16 kHz resampling."""
    from pesq import pesq

    from edm_se.audio import resample

    noisy = _at_snr(ref, _noise(ref.size), 5.0)
    wb, nb = pesq(SR, ref, noisy, "wb"), pesq(SR, ref, noisy, "nb")
    assert M.pesq_wb(ref, noisy, SR) == pytest.approx(wb, abs=1e-9)
    assert abs(wb - nb) > 0.05  # the two modes differ on this pair: a narrow-band implementation would fail
    ref48, noisy48 = resample(ref, SR, 48000), resample(noisy, SR, 48000)
    expected = pesq(SR, resample(ref48, 48000, SR), resample(noisy48, 48000, SR), "wb")
    assert M.pesq_wb(ref48, noisy48, 48000) == pytest.approx(expected, abs=1e-9)


def test_estoi_is_the_extended_stoi(ref):
    from pystoi import stoi

    noisy = _at_snr(ref, _noise(ref.size), 0.0)
    e, s = stoi(ref, noisy, SR, extended=True), stoi(ref, noisy, SR, extended=False)
    assert M.estoi(ref, noisy, SR) == pytest.approx(e, abs=1e-12)
    assert abs(e - s) > 0.02  # STOI would not pass
