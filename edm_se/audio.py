"""Audio file I/O with one-line, user-facing errors.

Every problem with an input file raises :class:`AudioError` (a ``ValueError``) whose message is a single line
``"<path>: <problem>"``, so the command line can print it without a traceback.

* :func:`load_audio` reads any format libsndfile knows (WAV, FLAC, OGG, ...) with ``soundfile``, down-mixes
  multi-channel audio to mono (logged notice), resamples to the requested rate with
  ``torchaudio.functional.resample`` (logged notice) and refuses missing, empty, non-audio, too-short, silent
  (all-zero) and non-finite (NaN/Inf) files.
* :func:`save_audio` writes atomically: a temporary file in the destination directory is renamed over the
  destination with ``os.replace``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edm_se.atomic import atomic_path

log = logging.getLogger(__name__)

#: Suffixes treated as audio files when scanning directories.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au")

#: Shortest accepted file, in seconds (16 ms = 256 samples at 16 kHz: one centred STFT frame of n_fft 510 needs
#: more than n_fft // 2 samples for its reflect padding).
MIN_SECONDS = 0.016

# Container format and default sub-type written for each suffix (soundfile names).
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
#: Suffixes :func:`save_audio` writes (others, such as ``.mp3``, are read only).
WRITABLE_SUFFIXES = tuple(_FORMATS)


class AudioError(ValueError):
    """A user-facing audio input/output problem; the message is one line ``"<path>: <problem>"``."""

    def __init__(self, path: Any, problem: str | None = None):
        message = str(path) if problem is None else f"{path}: {problem}"
        super().__init__(" ".join(message.split()))  # one line, whatever the problem text contained


# The largest length difference of two files of one recording (clean/noisy, reference/estimate), as a fraction of
# the longer: an STFT's padding or a peer's delay compensation is within it; a file of another recording is not.
MAX_LENGTH_MISMATCH = 0.1


def lengths_too_different(lengths: Sequence[int], max_fraction: float | None = MAX_LENGTH_MISMATCH) -> bool:
    """Whether the longest of ``lengths`` (samples) exceeds the shortest by more than ``max_fraction`` of the
    longest (None: never): then the files are not one recording, and scoring their first samples would mislead."""
    return max_fraction is not None and max(lengths) - min(lengths) > max_fraction * max(lengths)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def resample(x: Any, orig_rate: int, new_rate: int) -> Any:
    """Band-limited (windowed-sinc) resampling with ``torchaudio.functional.resample``: the one resampler of edm_se.

    Args:
        x: (..., L) float waveform, numpy array or torch tensor.
        orig_rate, new_rate: rates in Hz (> 0).

    Returns:
        The same type as ``x`` (numpy float32 for numpy input), length about ``L * new_rate / orig_rate``; ``x``
        itself when the rates are equal.
    """
    if int(orig_rate) <= 0 or int(new_rate) <= 0:
        raise ValueError(f"sample rates must be > 0 Hz, got {orig_rate} and {new_rate}")
    if int(orig_rate) == int(new_rate):
        return x
    import torchaudio.functional as AF

    if isinstance(x, torch.Tensor):
        return AF.resample(x, int(orig_rate), int(new_rate))
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return AF.resample(t, int(orig_rate), int(new_rate)).numpy()


def decode_av(path: str | os.PathLike, format: str | None = None) -> tuple[np.ndarray, int]:
    """Decode any audio file FFmpeg reads with PyAV (the one PyAV decoder of edm_se), averaged to mono.

    Args:
        path: the file.
        format: container format when it cannot be guessed (``"g722"`` for raw G.722).

    Returns:
        (wave (L,) float32, sample rate in Hz).

    Raises:
        AudioError: PyAV cannot open or decode the file, or it has no audio stream.
    """
    import av

    p = Path(path)
    try:
        with av.open(str(p), format=format) as container:
            if not container.streams.audio:
                raise AudioError(p, "no audio stream")
            rate = int(container.streams.audio[0].rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = [out.to_ndarray().reshape(-1) for fr in container.decode(audio=0)
                      for out in resampler.resample(fr)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV raises many error types
        raise AudioError(p, f"not a readable audio file ({_one_line(exc)})") from None
    x = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return x, rate


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, on_mismatch: str = "resample",
               min_seconds: float = MIN_SECONDS) -> torch.Tensor:
    """Read an audio file as a mono float32 waveform at ``sample_rate`` Hz.

    Args:
        path: audio file (any format libsndfile reads: WAV, FLAC, OGG, ...).
        sample_rate: wanted rate in Hz.
        on_mismatch: what to do when the file's rate differs from ``sample_rate``: ``"resample"`` (band-limited
            sinc resampling with ``torchaudio.functional.resample``, logged at INFO) or ``"error"`` (refuse).
        min_seconds: shortest accepted duration in seconds (after resampling).

    Returns:
        torch.Tensor of shape (L,), dtype float32, values as stored (full scale = 1.0). Multi-channel files are
        averaged over channels (logged at INFO).

    Raises:
        AudioError: the path is missing or a directory; the file is empty (0 bytes), not audio / unreadable, has
            no samples, is shorter than ``min_seconds``, is all zeros (silent), or holds NaN/Inf; its rate differs
            and ``on_mismatch="error"``.
        ValueError: ``on_mismatch`` or ``sample_rate`` is invalid (a programming error, not an input problem).
    """
    import soundfile as sf

    if on_mismatch not in ("resample", "error"):
        raise ValueError(f"on_mismatch must be 'resample' or 'error', got {on_mismatch!r}")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    p = Path(path)
    if not p.exists():
        raise AudioError(p, "no such file")
    if p.is_dir():
        raise AudioError(p, "is a directory, not an audio file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise AudioError(p, f"cannot read file ({_one_line(exc)})") from None
    if size == 0:
        raise AudioError(p, "empty file (0 bytes)")
    try:
        data, file_rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # sf.LibsndfileError subclasses RuntimeError
        try:  # what libsndfile cannot read (e.g. AAC, Opus in some containers), FFmpeg may
            mono, file_rate = decode_av(p)
            data = mono[:, None]
        except AudioError:
            raise AudioError(p, f"not a readable audio file ({_one_line(exc)})") from None
        if mono.size == 0:  # FFmpeg trusts the suffix (text named x.flac opens as FLAC) and decodes nothing
            raise AudioError(p, f"not a readable audio file ({_one_line(exc)})")
    if data.shape[0] == 0:
        raise AudioError(p, "audio file holds no samples (zero length)")
    if not np.isfinite(data).all():
        raise AudioError(p, "audio holds NaN or Inf values")
    if data.shape[1] > 1:
        log.info("%s: down-mixing %d channels to mono (channel average)", p, data.shape[1])
        data = data.mean(axis=1)
    else:
        data = data[:, 0]
    wave = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    if int(file_rate) != sample_rate:
        if on_mismatch == "error":
            raise AudioError(p, f"sample rate is {file_rate} Hz, expected {sample_rate} Hz")
        log.info("%s: resampling %d Hz -> %d Hz", p, file_rate, sample_rate)
        wave = resample(wave, int(file_rate), sample_rate).to(torch.float32).contiguous()
    if wave.numel() < max(1, int(round(min_seconds * sample_rate))):
        raise AudioError(p, f"too short ({wave.numel()} samples at {sample_rate} Hz; at least {min_seconds:g} s "
                            "needed)")
    if not bool(torch.any(wave != 0)):
        raise AudioError(p, "audio is silent (all samples are zero)")
    return wave


def _as_numpy(wave: Any) -> np.ndarray:
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(wave, dtype=np.float32)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    return arr


def save_audio(path: str | os.PathLike, wave: Any, sample_rate: int, subtype: str | None = None) -> Path:
    """Write a mono waveform atomically (temporary file in the same directory, then ``os.replace``).

    The format follows the suffix: ``.wav`` (PCM_16, or 32-bit FLOAT when the peak exceeds 1 so nothing clips),
    ``.flac`` (PCM_16; samples beyond [-1, 1] are clipped with a logged warning, as FLAC stores integers) and
    ``.ogg`` (VORBIS). Parent directories are created.

    Args:
        path: destination file.
        wave: (L,) (or (1, L) / (L, 1)) float waveform, torch tensor or numpy array, full scale = 1.0.
        sample_rate: rate in Hz.
        subtype: soundfile sub-type to force (e.g. ``"PCM_24"``, ``"FLOAT"``); None picks as above.

    Returns:
        The destination path.

    Raises:
        AudioError: the suffix is not a writable audio format, the waveform is not 1-D, is empty or holds
            NaN/Inf, or the file cannot be written.
    """
    import soundfile as sf

    p = Path(path)
    fmt = _FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise AudioError(p, f"cannot write suffix {p.suffix!r} (use one of {', '.join(_FORMATS)})")
    data = _as_numpy(wave)
    if data.ndim != 1:
        raise AudioError(p, f"expected a 1-D (mono) waveform, got shape {tuple(data.shape)}")
    if data.size == 0:
        raise AudioError(p, "refusing to write an empty waveform")
    if not np.isfinite(data).all():
        raise AudioError(p, "refusing to write a waveform holding NaN or Inf values")
    peak = float(np.max(np.abs(data)))
    if subtype is None:
        if fmt == "WAV":
            subtype = "FLOAT" if peak > 1.0 else "PCM_16"
        elif fmt == "FLAC":
            subtype = "PCM_16"
        else:
            subtype = "VORBIS"
    if subtype.startswith("PCM") and peak > 1.0:
        log.warning("%s: peak %.3f exceeds full scale; clipping to [-1, 1] for %s %s", p, peak, fmt, subtype)
        data = np.clip(data, -1.0, 1.0)
    try:
        with atomic_path(p) as tmp:
            sf.write(str(tmp), data, int(sample_rate), subtype=subtype, format=fmt)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioError(p, f"cannot write audio ({_one_line(exc)})") from None
    return p
