"""edm_se.audio: load/save round trips, notices, and one-line AudioError for every bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from edm_se.audio import AudioError, load_audio, save_audio


def _tone(n: int, sample_rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(n) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _assert_one_line(exc: AudioError, path) -> None:
    msg = str(exc)
    assert str(path) in msg
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_load_round_trip(tmp_path, suffix):
    gen = torch.Generator().manual_seed(0)
    wave = 0.5 * torch.rand(8000, generator=gen) - 0.25
    path = save_audio(tmp_path / "sub" / "dir" / f"a{suffix}", wave, 16000)  # parents are created
    back = load_audio(path, sample_rate=16000)
    assert back.dtype == torch.float32 and back.shape == wave.shape
    assert torch.max(torch.abs(back - wave)) < 1.0 / 2 ** 14  # PCM_16 quantisation
    assert sf.info(str(path)).samplerate == 16000


def test_save_accepts_numpy_and_keeps_peaks_above_one_in_wav(tmp_path):
    wave = _tone(4000, 16000, amp=1.5)
    save_audio(tmp_path / "loud.wav", wave, 16000)
    back = load_audio(tmp_path / "loud.wav").numpy()
    np.testing.assert_allclose(back, wave, atol=1e-6)


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "x.flac"
    save_audio(path, _tone(4000, 16000), 16000)
    save_audio(path, _tone(4000, 16000, freq=220.0), 16000)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.flac"]
    np.testing.assert_allclose(load_audio(path).numpy(), _tone(4000, 16000, freq=220.0), atol=1e-4)


def test_save_refuses_non_finite_and_leaves_nothing(tmp_path):
    wave = _tone(4000, 16000)
    wave[10] = np.nan
    with pytest.raises(AudioError) as info:
        save_audio(tmp_path / "bad.wav", wave, 16000)
    _assert_one_line(info.value, tmp_path / "bad.wav")
    assert list(tmp_path.iterdir()) == []


def test_resample_logs_notice_and_gives_right_length(tmp_path, caplog):
    sf.write(str(tmp_path / "a8k.wav"), _tone(8000, 8000), 8000)  # 1 s at 8 kHz
    with caplog.at_level(logging.INFO, logger="edm_se.audio"):
        wave = load_audio(tmp_path / "a8k.wav", sample_rate=16000)
    assert wave.shape == (16000,)
    assert any("resampl" in r.getMessage() for r in caplog.records)
    # still a 440 Hz tone: its spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / wave.numel() - 440.0) <= 2.0


def test_on_mismatch_error_refuses_other_rate(tmp_path):
    path = tmp_path / "a8k.wav"
    sf.write(str(path), _tone(8000, 8000), 8000)
    with pytest.raises(AudioError) as info:
        load_audio(path, sample_rate=16000, on_mismatch="error")
    _assert_one_line(info.value, path)
    assert "8000" in str(info.value)


def test_stereo_is_down_mixed_with_notice(tmp_path, caplog):
    left, right = _tone(4000, 16000, amp=0.4), _tone(4000, 16000, freq=300.0, amp=0.2)
    sf.write(str(tmp_path / "st.wav"), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    with caplog.at_level(logging.INFO, logger="edm_se.audio"):
        wave = load_audio(tmp_path / "st.wav")
    np.testing.assert_allclose(wave.numpy(), 0.5 * (left + right), atol=1e-6)
    assert any("mono" in r.getMessage() for r in caplog.records)


def _write_case(tmp_path, case):
    path = tmp_path / f"{case}.wav"
    if case == "missing":
        pass
    elif case == "directory":
        path.mkdir()
    elif case == "empty_bytes":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("this is not audio\n")
    elif case == "zero_length":
        sf.write(str(path), np.zeros(0, dtype=np.float32), 16000)
    elif case == "silent":
        sf.write(str(path), np.zeros(4000, dtype=np.float32), 16000)
    elif case in ("nan", "inf"):
        wave = _tone(4000, 16000)
        wave[100] = np.nan if case == "nan" else np.inf
        sf.write(str(path), wave, 16000, subtype="FLOAT")
    elif case == "too_short":
        sf.write(str(path), _tone(20, 16000), 16000)
    return path


@pytest.mark.parametrize("case", ["missing", "directory", "empty_bytes", "text", "zero_length", "silent", "nan",
                                  "inf", "too_short"])
def test_bad_inputs_raise_one_line_audio_error(tmp_path, case):
    path = _write_case(tmp_path, case)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert isinstance(info.value, ValueError)
    _assert_one_line(info.value, path)
