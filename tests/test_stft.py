"""edm_se.stft: shapes, exact inverse, SGMSE+ compression, frame padding, config."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from edm_se.stft import SpecTransform, crop_frames, pad_frames

CONF = Path(__file__).resolve().parents[1] / "conf" / "stft" / "default.yaml"


def _speech_like(seconds: float = 1.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Voiced harmonic signal with a gliding pitch, formant-like tilt and syllabic on/off envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120.0 + 30.0 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wave = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 40))
    wave = wave * np.clip(np.sin(2 * np.pi * 3.0 * t), 0.0, None) ** 0.5
    return (0.3 * wave / np.max(np.abs(wave))).astype(np.float32)


@pytest.mark.parametrize("length", [16000, 16127, 3001])
def test_shapes_dtype(length):
    stft = SpecTransform()
    spec = stft(torch.zeros(2, length) + 0.1)
    assert spec.shape == (2, 1, 256, 1 + length // 128)
    assert spec.dtype == torch.complex64
    assert stft(torch.ones(length)).shape == (1, 1, 256, 1 + length // 128)  # (L,) -> batch of one


def test_round_trip_random_is_exact():
    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(3, 16000 + 77, generator=gen)
    stft = SpecTransform()
    back = stft.inverse(stft(wave), wave.shape[-1])
    assert back.shape == wave.shape and back.dtype == torch.float32
    assert torch.max(torch.abs(back - wave)) < 1e-4


def test_round_trip_speech_file_is_exact(tmp_path):
    # a 16-bit FLAC file as read from disk, through the package's own loader
    from edm_se.audio import load_audio

    sf.write(str(tmp_path / "s.flac"), _speech_like(1.3), 16000, subtype="PCM_16")
    wave = load_audio(tmp_path / "s.flac")
    stft = SpecTransform()
    back = stft.inverse(stft(wave), wave.numel())[0]
    assert torch.max(torch.abs(back - wave)) < 1e-4


def test_compression_magnitude_of_sinusoid():
    # A bin-centred sinusoid of amplitude A has |X| = A * sum(window) / 2 at its bin (periodic Hann: sum = n_fft/2)
    n_fft, hop, alpha, beta = 510, 128, 0.5, 0.15
    k, amp, length = 40, 0.8, 8192
    n = torch.arange(length, dtype=torch.float64)
    wave = amp * torch.cos(2 * math.pi * k * n / n_fft)
    stft = SpecTransform(n_fft, hop, alpha, beta)
    spec = stft(wave)[0, 0]
    mid = spec[:, 5:-5]  # frames away from the reflect-padded edges
    expected = beta * (amp * (n_fft / 2) / 2) ** alpha
    torch.testing.assert_close(mid[k].abs(), torch.full_like(mid[k].abs(), expected), rtol=1e-6, atol=1e-6)
    assert mid[k + 3].abs().max() < 1e-3 * expected  # no leakage beyond the Hann main lobe


def test_other_compression_parameters_still_invert():
    stft = SpecTransform(alpha=0.3, beta=0.5)
    wave = torch.randn(1, 4000, generator=torch.Generator().manual_seed(1))
    spec = stft(wave)
    plain = torch.stft(wave, 510, 128, window=torch.hann_window(510), center=True, return_complex=True)
    torch.testing.assert_close(spec[:, 0].abs(), 0.5 * plain.abs() ** 0.3, rtol=1e-4, atol=1e-5)
    assert torch.max(torch.abs(stft.inverse(spec, 4000) - wave)) < 1e-4


@pytest.mark.parametrize("frames,multiple", [(126, 16), (128, 16), (1, 8), (37, 1)])
def test_pad_crop_round_trip(frames, multiple):
    spec = torch.randn(2, 1, 256, frames, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    padded, num_frames = pad_frames(spec, multiple)
    assert num_frames == frames
    assert padded.shape[-1] % multiple == 0 and frames <= padded.shape[-1] < frames + multiple
    assert padded.dtype == spec.dtype
    assert torch.all(padded[..., frames:] == 0)
    assert torch.equal(crop_frames(padded, num_frames), spec)


def test_bad_arguments():
    with pytest.raises(ValueError):
        pad_frames(torch.zeros(1, 4), 0)
    with pytest.raises(ValueError):
        crop_frames(torch.zeros(1, 4), 5)
    with pytest.raises(ValueError):
        SpecTransform().inverse(torch.zeros(1, 1, 100, 3, dtype=torch.complex64), 256)
    with pytest.raises(ValueError):
        SpecTransform(beta=0.0)


def test_config_instantiates_defaults():
    stft = instantiate(OmegaConf.load(CONF))
    assert isinstance(stft, SpecTransform)
    assert (stft.n_fft, stft.hop_length, stft.alpha, stft.beta) == (510, 128, 0.5, 0.15)
