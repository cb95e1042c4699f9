"""Speech-enhancement datasets: on-the-fly mixing, paired directories, and the fixed test-set builder.

Every dataset yields dicts of 1-D float32 torch waveforms at ``sample_rate`` Hz:
``{"clean": (L,), "noisy": (L,), "name": str}`` (:class:`MixingDataset` adds ``"snr_db": float``). The STFT is
applied batched by the trainer.

SNR convention (all of this module): ``snr_db = 10 log10(sum(clean**2) / sum(noise**2))`` over the whole (cropped)
utterance, ``noise = noisy - clean``.

Sources (``speech``, ``noise``, ``rir`` arguments) may be given as

* a list/tuple of audio file paths,
* a directory (scanned recursively for audio files, sorted),
* a ``manifest.csv`` (all rows of the matching kind; paths relative to the manifest's directory),
* a single audio file,
* ``"builtin:<split>"`` -- the shipped corpus (:func:`edm_se.data.builtin.builtin_files`),
* ``"corpus:<dir>:<split>"`` -- a corpus built by ``edm-se data build`` (``<dir>/manifest.csv``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from edm_se.audio import AUDIO_SUFFIXES, AudioError, load_audio, save_audio
from edm_se.data.builtin import builtin_files, manifest_files, read_manifest

_CACHE: dict[tuple[str, int, int], np.ndarray] = {}
_CACHE_MAX_SAMPLES = 200_000_000  # 800 MB of float32; beyond that files are not cached across datasets


def _cached_load(path: Path, sample_rate: int) -> np.ndarray:
    """Load a file as a read-only float32 numpy array, cached by (path, mtime, sample_rate)."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = -1  # load_audio raises the user-facing error
    key = (str(path.resolve()), mtime, int(sample_rate))
    x = _CACHE.get(key)
    if x is None:
        x = load_audio(path, sample_rate=sample_rate).numpy().astype(np.float32, copy=False)
        x.setflags(write=False)
        if sum(v.size for v in _CACHE.values()) + x.size <= _CACHE_MAX_SAMPLES:
            _CACHE[key] = x
    return x


SPLIT_SPECS = ("corpus", "task")  # <prefix>:<corpus dir | task manifest.csv>:<split>


def split_spec(spec: Any) -> tuple[str, str, str] | None:
    """``(prefix, location, split)`` of a ``corpus:<dir>:<split>`` or ``task:<manifest.csv>:<split>`` source spec
    (the location may itself hold ``:``; the split is after the last one); None for any other spec, or for one
    without a split."""
    if not isinstance(spec, str):
        return None
    prefix, sep, body = spec.partition(":")
    if not sep or prefix not in SPLIT_SPECS or ":" not in body:
        return None
    location, split = body.rsplit(":", 1)
    return prefix, location, split


def resolve_files(spec: Any, kind: str) -> list[Path]:
    """Turn a source spec (see module docstring) into a list of audio file paths.

    Args:
        spec: list of paths, directory, manifest.csv, audio file, ``"builtin:<split>"`` or
            ``"corpus:<dir>:<split>"``.
        kind: ``"speech"``, ``"noise"`` or ``"rir"`` (selects manifest rows).

    Returns:
        Non-empty list of paths.

    Raises:
        edm_se.audio.AudioError: missing path, unknown spec, or no files found.
    """
    if isinstance(spec, (list, tuple)) or (hasattr(spec, "__iter__") and not isinstance(spec, (str, os.PathLike))):
        files = [Path(p) for p in spec]
        if not files:
            raise AudioError(f"<{kind} list>", "no files given")
        return files
    text = str(spec)
    if text.startswith("builtin:"):
        return builtin_files(kind, text.split(":", 1)[1])
    if text.startswith("corpus:"):
        parts = split_spec(text)
        if parts is None:
            raise AudioError(text, "expected corpus:<dir>:<split>")
        from edm_se.data.corpus import warn_if_old_split

        warn_if_old_split(parts[1], parts[2])
        return manifest_files(Path(parts[1]) / "manifest.csv", kind, parts[2])
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise AudioError(path, "no audio files in directory")
        return files
    if path.is_file() and path.suffix.lower() == ".csv":
        rows = [r for r in read_manifest(path) if r["kind"] == kind]
        if not rows:
            raise AudioError(path, f"no {kind} rows in manifest")
        return [path.parent / r["path"] for r in rows]
    if path.is_file():
        return [path]
    raise AudioError(path, "not found (expected audio files, a directory, a manifest.csv, builtin:<split> or "
                           "corpus:<dir>:<split>)")


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])


def _fit(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Random crop of ``x`` to ``length`` samples, or loop it (from a random phase) when shorter."""
    if len(x) >= length:
        start = int(rng.integers(0, len(x) - length + 1))
        return x[start:start + length]
    start = int(rng.integers(0, len(x)))
    reps = int(np.ceil((length + start) / len(x)))
    return np.tile(x, reps)[start:start + length]


def _scale_to_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Noise scaled so that ``10 log10(sum clean^2 / sum noise^2) == snr_db`` (float64 arithmetic)."""
    p_clean = float(np.sum(clean.astype(np.float64) ** 2))
    p_noise = float(np.sum(noise.astype(np.float64) ** 2))
    if p_noise <= 0.0:
        raise AudioError("<noise>", "silent noise segment")
    return noise * np.sqrt(p_clean / (p_noise * 10.0 ** (snr_db / 10.0)))


class MixingDataset(torch.utils.data.Dataset):
    """On-the-fly mixtures of clean speech and noise at random SNRs, deterministic per index.

    Each item ``i`` draws from ``numpy.random.default_rng([seed, i])``: speech file ``i % len(speech)``, a random
    crop of ``segment_seconds`` (zero-padded at a random position when the utterance is shorter; the whole
    utterance when ``segment_seconds`` is None), a random noise file cropped or looped to the same length, with
    probability ``rir_prob`` a random room impulse response convolved with the speech
    (``scipy.signal.fftconvolve``; the reverberant speech is then the clean TARGET, i.e. the task stays denoising),
    an SNR uniform in ``snr_db`` and a gain uniform in ``gain_db`` applied to clean and noisy alike. Mixtures whose
    peak exceeds 1 are scaled down (clean and noisy by the same factor, so the SNR is unchanged). With
    ``speed_perturb`` the utterance is first resampled by a factor uniform in that range (Ko et al. 2015, "Audio
    augmentation for speech recognition": tempo, pitch and formants move together, as between speakers).

    ``unbounded_index`` is True: any int index >= 0 is valid (``len`` is only the epoch size).

    Args:
        speech: speech source (see module docstring).
        noise: noise source.
        snr_db: (low, high) SNR range in dB.
        segment_seconds: crop length in seconds, or None for full utterances (validation).
        sample_rate: Hz; files are resampled on load.
        rir: optional room-impulse-response source.
        rir_prob: probability of reverberating an example (needs ``rir``).
        length: epoch length (default: number of speech files).
        seed: base seed.
        gain_db: (low, high) random gain in dB, or None for no gain.
        high_snr_fraction: share of examples mixed at a nearly clean SNR drawn uniformly from ``high_snr_db``
            instead of ``snr_db``, so that the model learns to leave clean speech alone (0 disables).
        high_snr_db: (low, high) SNR range in dB of those examples.
        speed_perturb: (low, high) speed factors, e.g. (0.9, 1.1), or None. A factor ``f`` plays the utterance
            ``f`` times faster (``scipy.signal.resample_poly`` to ``len / f`` samples, ``f`` rounded to 1/40);
            drawn after every other draw, so the other draws of an item do not depend on this option.

    Raises:
        edm_se.audio.AudioError: unreadable sources (at construction, audio is preloaded).
        ValueError: inconsistent arguments.
    """

    unbounded_index = True

    def __init__(self, speech: Any, noise: Any, snr_db: Sequence[float] = (-5.0, 20.0),
                 segment_seconds: float | None = 2.0, sample_rate: int = 16000, rir: Any = None,
                 rir_prob: float = 0.0, length: int | None = None, seed: int = 0,
                 gain_db: Sequence[float] | None = (-6.0, 6.0), high_snr_fraction: float = 0.0,
                 high_snr_db: Sequence[float] = (30.0, 50.0), speed_perturb: Sequence[float] | None = None):
        snr_db = tuple(float(v) for v in snr_db)
        if len(snr_db) != 2 or snr_db[0] > snr_db[1]:
            raise ValueError(f"snr_db must be (low, high) with low <= high, got {snr_db}")
        if segment_seconds is not None and segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive or None, got {segment_seconds}")
        if not 0.0 <= rir_prob <= 1.0:
            raise ValueError(f"rir_prob must be in [0, 1], got {rir_prob}")
        if rir_prob > 0 and rir is None:
            raise ValueError("rir_prob > 0 needs rir files")
        if length is not None and length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if gain_db is not None:
            gain_db = tuple(float(v) for v in gain_db)
            if len(gain_db) != 2 or gain_db[0] > gain_db[1]:
                raise ValueError(f"gain_db must be (low, high) or None, got {gain_db}")
        if not 0.0 <= float(high_snr_fraction) <= 1.0:
            raise ValueError(f"high_snr_fraction must be in [0, 1], got {high_snr_fraction}")
        high_snr_db = tuple(float(v) for v in high_snr_db)
        if len(high_snr_db) != 2 or high_snr_db[0] > high_snr_db[1]:
            raise ValueError(f"high_snr_db must be (low, high) with low <= high, got {high_snr_db}")
        if speed_perturb is not None:
            speed_perturb = tuple(float(v) for v in speed_perturb)
            if len(speed_perturb) != 2 or not 0.5 <= speed_perturb[0] <= speed_perturb[1] <= 2.0:
                raise ValueError(f"speed_perturb must be (low, high) with 0.5 <= low <= high <= 2, got "
                                 f"{speed_perturb}")
        self.speed_perturb = speed_perturb
        self.snr_db = snr_db
        self.high_snr_fraction = float(high_snr_fraction)
        self.high_snr_db = high_snr_db
        self.segment_seconds = segment_seconds
        self.sample_rate = int(sample_rate)
        self.rir_prob = float(rir_prob)
        self.length = length
        self.seed = int(seed)
        self.gain_db = gain_db
        self.speech_files = resolve_files(speech, "speech")
        self.noise_files = resolve_files(noise, "noise")
        self.rir_files = resolve_files(rir, "rir") if rir is not None else []
        self.speech = [_cached_load(p, self.sample_rate) for p in self.speech_files]
        self.noise = [_cached_load(p, self.sample_rate) for p in self.noise_files]
        self.rir = [_cached_load(p, self.sample_rate) for p in self.rir_files]
        for path, x in zip(self.noise_files, self.noise):
            if not np.any(x):
                raise AudioError(path, "silent noise file")

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.speech)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            raise IndexError(f"index must be >= 0, got {index}")
        rng = _rng(self.seed, index)
        k = index % len(self.speech)
        x = self.speech[k]
        # fixed draw order keeps every draw deterministic whatever the branch taken
        u_speech, u_pad = rng.random(2)
        noise_idx = int(rng.integers(len(self.noise)))
        noise_rng = np.random.default_rng(rng.integers(2 ** 63))
        use_rir = bool(self.rir) and rng.random() < self.rir_prob
        rir_idx = int(rng.integers(len(self.rir))) if self.rir else 0
        snr = float(rng.uniform(*self.snr_db))
        gain = float(rng.uniform(*self.gain_db)) if self.gain_db is not None else 0.0
        if self.high_snr_fraction > 0.0:  # drawn last, so the other draws do not depend on this option
            u_high, snr_high = rng.random(), float(rng.uniform(*self.high_snr_db))
            if u_high < self.high_snr_fraction:
                snr = snr_high
        if self.speed_perturb is not None:  # drawn last too
            factor = round(float(rng.uniform(*self.speed_perturb)) * 40) / 40
            if factor != 1.0:
                from scipy.signal import resample_poly  # imported here: scipy.signal costs 1-2 s to import

                x = resample_poly(np.asarray(x, dtype=np.float64), 40, int(round(factor * 40)))

        if use_rir:
            h = self.rir[rir_idx].astype(np.float64)
            h = h / (np.sqrt(np.sum(h ** 2)) + 1e-12)
            from scipy.signal import fftconvolve

            x = fftconvolve(x.astype(np.float64), h)[:len(x)]
        if self.segment_seconds is None:
            clean = np.asarray(x, dtype=np.float64)
        else:
            seg = int(round(self.segment_seconds * self.sample_rate))
            if len(x) >= seg:
                start = int(u_speech * (len(x) - seg + 1))
                clean = np.asarray(x[start:start + seg], dtype=np.float64)
            else:
                pad = int(u_pad * (seg - len(x) + 1))
                clean = np.zeros(seg)
                clean[pad:pad + len(x)] = x
        if not np.any(clean):  # all-zero crop: fall back to the loudest crop position (coarse search)
            seg = len(clean)
            starts = np.linspace(0, max(0, len(x) - seg), num=16).astype(int)
            best = max(starts, key=lambda s0: float(np.sum(np.square(x[s0:s0 + seg], dtype=np.float64))))
            clean = np.zeros(seg)
            clean[:len(x[best:best + seg])] = x[best:best + seg]
        noise = _fit(self.noise[noise_idx], len(clean), noise_rng).astype(np.float64)
        if not np.any(noise):  # an all-zero stretch of a noise recording (short crops): its loudest crop position
            src = np.asarray(self.noise[noise_idx], dtype=np.float64)
            energy = np.concatenate([[0.0], np.cumsum(src ** 2)])
            best = int(np.argmax(energy[len(clean):] - energy[:-len(clean)]))
            noise = src[best:best + len(clean)]
        noise = _scale_to_snr(clean, noise, snr) if np.any(clean) else noise * 0.0
        g = 10.0 ** (gain / 20.0)
        clean, noisy = clean * g, (clean + noise) * g
        peak = max(np.abs(noisy).max(), np.abs(clean).max())
        if peak > 1.0:
            clean, noisy = clean / peak, noisy / peak
        return {"clean": torch.from_numpy(clean.astype(np.float32)),
                "noisy": torch.from_numpy(noisy.astype(np.float32)),
                "name": f"{self.speech_files[k].stem}_{index:06d}", "snr_db": snr}


class PairedDataset(torch.utils.data.Dataset):
    """Clean/noisy file pairs matched by relative path (VoiceBank-DEMAND layout), loaded on access.

    Args:
        clean_dir: directory of clean files.
        noisy_dir: directory of noisy files with the same relative names.
        segment_seconds: random crop length in seconds (deterministic per index from ``(seed, index)``; shorter
            pairs are zero-padded at the end), or None for full files.
        sample_rate: Hz; files are resampled on load.
        seed: base seed of the crops.
        speakers: keep only files whose speaker is in this list (the speaker of ``p226_001.wav`` is ``p226``: the
            file name up to its first ``_``), e.g. a validation split carved from the training directories.
        exclude_speakers: leave out files of these speakers (the same validation speakers, from training).

    Raises:
        edm_se.audio.AudioError: missing/empty directory, unmatched files, no file left after the speaker
            selection (at construction), or a pair whose lengths differ (on access).
    """

    unbounded_index = False

    def __init__(self, clean_dir: str | Path, noisy_dir: str | Path, segment_seconds: float | None = None,
                 sample_rate: int = 16000, seed: int = 0, speakers: Sequence[str] | None = None,
                 exclude_speakers: Sequence[str] | None = None):
        if segment_seconds is not None and segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive or None, got {segment_seconds}")
        self.clean_dir, self.noisy_dir = Path(clean_dir), Path(noisy_dir)
        self.segment_seconds = segment_seconds
        self.sample_rate = int(sample_rate)
        self.seed = int(seed)
        clean = self._scan(self.clean_dir)
        noisy = self._scan(self.noisy_dir)
        only_clean = sorted(set(clean) - set(noisy))
        only_noisy = sorted(set(noisy) - set(clean))
        if only_clean:
            raise AudioError(self.noisy_dir, f"{len(only_clean)} clean file(s) have no noisy partner, e.g. "
                                             f"{only_clean[0]}")
        if only_noisy:
            raise AudioError(self.clean_dir, f"{len(only_noisy)} noisy file(s) have no clean partner, e.g. "
                                             f"{only_noisy[0]}")
        names = sorted(clean)
        if speakers is not None:
            keep = {str(k) for k in speakers}
            names = [n for n in names if self.speaker_of(n) in keep]
        if exclude_speakers:
            drop = {str(k) for k in exclude_speakers}
            names = [n for n in names if self.speaker_of(n) not in drop]
        if not names:
            raise AudioError(self.clean_dir, f"no file left after selecting speakers {list(speakers or [])} and "
                                             f"excluding {list(exclude_speakers or [])}")
        self.names = names
        self.pairs = [(clean[n], noisy[n]) for n in self.names]

    @staticmethod
    def speaker_of(name: str) -> str:
        """Speaker of a file name: the base name up to its first ``_`` (``p226_001`` -> ``p226``)."""
        return Path(name).name.split("_", 1)[0]

    @staticmethod
    def _scan(directory: Path) -> dict[str, Path]:
        if not directory.is_dir():
            raise AudioError(directory, "directory not found")
        files = {p.relative_to(directory).with_suffix("").as_posix(): p for p in sorted(directory.rglob("*"))
                 if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES}
        if not files:
            raise AudioError(directory, "no audio files in directory")
        return files

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self.pairs):
            raise IndexError(f"index {index} out of range for {len(self.pairs)} pairs")
        clean_path, noisy_path = self.pairs[index]
        clean = load_audio(clean_path, sample_rate=self.sample_rate)
        noisy = load_audio(noisy_path, sample_rate=self.sample_rate)
        if clean.shape != noisy.shape:
            raise AudioError(noisy_path, f"length {noisy.shape[0]} differs from clean {clean.shape[0]} "
                                         f"({clean_path})")
        if self.segment_seconds is not None:
            seg = int(round(self.segment_seconds * self.sample_rate))
            if clean.shape[0] >= seg:
                start = int(_rng(self.seed, index).integers(0, clean.shape[0] - seg + 1))
                clean, noisy = clean[start:start + seg], noisy[start:start + seg]
            else:
                pad = seg - clean.shape[0]
                clean = torch.nn.functional.pad(clean, (0, pad))
                noisy = torch.nn.functional.pad(noisy, (0, pad))
        return {"clean": clean.float().contiguous(), "noisy": noisy.float().contiguous(), "name": self.names[index]}


TEST_SET_FIELDS = ("name", "snr_db", "speech", "noise", "speech_offset_s", "noise_offset_s", "duration_s")


def _describe(path: Path, out_dir: Path) -> str:
    try:
        return Path(path).resolve().relative_to(out_dir.resolve().parent).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def make_test_set(speech_files: Sequence[str | Path], noise_files: Sequence[str | Path], out_dir: str | Path,
                  snrs_db: Sequence[float] = (0, 5, 10, 15, 20), per_snr: int = 5, seed: int = 0,
                  sample_rate: int = 16000, min_seconds: float = 2.0, max_seconds: float = 4.0,
                  transcripts: Mapping[str | Path, str] | None = None) -> Path:
    """Write a fixed test set of speech x noise mixtures at given SNRs.

    For each SNR, ``per_snr`` mixtures are made; speech files are used in a seeded random order (cycled), each
    cropped at a random offset to at most ``max_seconds`` (files shorter than ``min_seconds`` are skipped if enough
    longer ones exist); the noise file is drawn at random (cycled permutation), cropped or looped to the speech
    length and scaled so that ``10 log10(sum clean^2 / sum (noisy - clean)^2) = snr_db`` over the whole utterance.
    Pairs whose peak would exceed 0.99 are scaled down together (SNR unchanged).

    Output: ``out_dir/clean/<name>.flac``, ``out_dir/noisy/<name>.flac`` (PCM_16, ``sample_rate``) and
    ``out_dir/manifest.csv`` with columns ``name, snr_db, speech, noise, speech_offset_s, noise_offset_s,
    duration_s`` (speech/noise given relative to ``out_dir``'s parent when inside it), plus ``transcript`` when
    ``transcripts`` is given: the text of the speech file, written only for a mixture that holds the whole
    utterance (a cropped one gets an empty transcript, since the text no longer matches; set ``max_seconds`` above
    the longest utterance for a set that downstream recognisers score). Idempotent: when the existing manifest
    equals the planned one and all files exist, nothing is written.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        edm_se.audio.AudioError: unreadable inputs or no speech/noise files.
        ValueError: ``per_snr`` < 1 or no SNRs.
    """
    out_dir = Path(out_dir)
    if per_snr < 1 or not len(snrs_db):
        raise ValueError("need per_snr >= 1 and at least one SNR")
    speech_files = [Path(p) for p in speech_files]
    noise_files = [Path(p) for p in noise_files]
    if not speech_files or not noise_files:
        raise AudioError(out_dir, "make_test_set needs speech and noise files")
    speech = {p: _cached_load(p, sample_rate) for p in speech_files}
    noise = {p: _cached_load(p, sample_rate) for p in noise_files}
    long_enough = [p for p in speech_files if len(speech[p]) >= min_seconds * sample_rate]
    pool = long_enough if len(long_enough) >= min(len(speech_files), per_snr) else speech_files
    rng = np.random.default_rng(seed)
    s_order = list(rng.permutation(len(pool)))
    n_order = list(rng.permutation(len(noise_files)))
    max_len = int(round(max_seconds * sample_rate))
    texts = {Path(k_).resolve(): v for k_, v in (transcripts or {}).items()}
    fields = TEST_SET_FIELDS + (("transcript",) if transcripts is not None else ())
    plan, k = [], 0
    for snr in snrs_db:
        for _ in range(per_snr):
            sp = pool[s_order[k % len(pool)]]
            if k % len(pool) == len(pool) - 1:
                s_order = list(rng.permutation(len(pool)))
            nz = noise_files[n_order[k % len(noise_files)]]
            x = speech[sp]
            s_off = int(rng.integers(0, len(x) - max_len + 1)) if len(x) > max_len else 0
            clean = x[s_off:s_off + max_len].astype(np.float64)
            n = noise[nz]
            n_off = int(rng.integers(0, max(1, len(n) - len(clean) + 1)))
            name = f"{k:03d}_snr{float(snr):g}_{sp.stem}"
            plan.append(dict(name=name, snr_db=f"{float(snr):g}", speech=_describe(sp, out_dir),
                             noise=_describe(nz, out_dir), speech_offset_s=f"{s_off / sample_rate:.4f}",
                             noise_offset_s=f"{n_off / sample_rate:.4f}",
                             duration_s=f"{len(clean) / sample_rate:.4f}",
                             transcript=texts.get(sp.resolve(), "") if len(clean) == len(x) else "",
                             _clean=clean, _noise=n, _n_off=n_off, _snr=float(snr)))
            k += 1
    rows = [{f: p[f] for f in fields} for p in plan]
    manifest = out_dir / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8") as f:
            old = list(csv.DictReader(f))
        if old == rows and all((out_dir / d / f"{r['name']}.flac").is_file() for r in rows
                               for d in ("clean", "noisy")):
            return out_dir
    for p in plan:
        clean, n = p["_clean"], p["_noise"]
        reps = int(np.ceil((p["_n_off"] + len(clean)) / len(n)))
        seg = np.tile(n, reps)[p["_n_off"]:p["_n_off"] + len(clean)].astype(np.float64)
        noisy = clean + _scale_to_snr(clean, seg, p["_snr"])
        peak = max(np.abs(noisy).max(), np.abs(clean).max())
        if peak > 0.99:
            clean, noisy = clean * (0.99 / peak), noisy * (0.99 / peak)
        save_audio(out_dir / "clean" / f"{p['name']}.flac", clean.astype(np.float32), sample_rate)
        save_audio(out_dir / "noisy" / f"{p['name']}.flac", noisy.astype(np.float32), sample_rate)
    out_dir.mkdir(parents=True, exist_ok=True)
    from edm_se.atomic import atomic_path

    with atomic_path(manifest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return out_dir
