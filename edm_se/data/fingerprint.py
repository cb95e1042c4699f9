"""Audio fingerprints: find the same sound in two sets of files, whatever the names, levels or crops.

This is what "held out" is checked against (``tests/test_heldout.py``, :func:`edm_se.data.corpus.build_corpus`):
two files share content when a stretch of one has the same spectro-temporal fingerprint as a stretch of the other.

The fingerprint is the 32-bit sub-fingerprint of Haitsma & Kalker (2002, "A highly robust audio fingerprinting
system", ISMIR, sec. 4.1): per frame, the energies ``E(n, m)`` of 33 log-spaced bands (300-3000 Hz) of a 2048-sample
Hann frame (128 ms at 16 kHz, hop 64 samples = 4 ms, i.e. 31/32 overlap so that any crop offset lands within 2 ms of
a frame) give the bits ``F(n, m) = [E(n,m) - E(n,m+1) - (E(n-1,m) - E(n-1,m+1)) > 0]``. Signs of energy
differences are invariant to gain and almost invariant to resampling and codecs, so a level-normalised,
re-encoded or cropped copy of a recording keeps most of its bits (measured: bit error rate 0-5% between the
built-in corpus's files and their corpus originals), while unrelated audio differs in about half of them.

Matching (:func:`find_matches`): frames of both sets are indexed by their exact 32-bit value; every shared value
votes for a (file a, file b, frame offset) alignment; an alignment with at least ``min_votes`` votes whose bit error
rate over the whole overlap is at most ``max_ber`` is a match. The rule is symmetric: the same pairs are found
whichever set comes first (until session 37 it was not: offsets were binned in one phase only, and the corpus's
train-vs-held-out check missed two near-copies of short sound effects that the other order found). Quiet frames
(band energy 60 dB below the file's loudest frame, or below -90 dBFS) and values that are too common (constant
fingerprints of stationary tones) cast no vote.

Votes count identical frames, so they depend on where a file's frames fall (its phase within a hop): a near copy of
a short effect can cross the vote line at one phase and not at another. :func:`find_matches_any_phase` also tries
the other phases of :data:`SHIFTS` (the held-out check and the corpus's held-out side use it; session 38).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
FRAME = 2048
HOP = 64
N_BANDS = 33
F_LOW, F_HIGH = 300.0, 3000.0

_BAND_MATRIX: np.ndarray | None = None
_BAND_BINS: tuple[int, int] = (0, FRAME // 2 + 1)  # [first, last + 1) rfft bin inside the bands, set by _bands()


def _bands() -> np.ndarray:
    """(FRAME//2+1, N_BANDS) 0/1 matrix summing rfft power bins into 33 log-spaced bands."""
    global _BAND_MATRIX
    if _BAND_MATRIX is None:
        edges = np.geomspace(F_LOW, F_HIGH, N_BANDS + 1)
        freqs = np.fft.rfftfreq(FRAME, 1.0 / SAMPLE_RATE)
        m = np.zeros((len(freqs), N_BANDS), np.float32)
        for b in range(N_BANDS):
            m[(freqs >= edges[b]) & (freqs < edges[b + 1]), b] = 1.0
        _BAND_MATRIX = m
        used = np.flatnonzero(m.any(axis=1))
        global _BAND_BINS
        _BAND_BINS = (int(used[0]), int(used[-1]) + 1)
    return _BAND_MATRIX


_WINDOW = None


def _window():
    global _WINDOW
    if _WINDOW is None:
        import torch

        _WINDOW = torch.hann_window(FRAME)
    return _WINDOW


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """Sub-fingerprints of one file.

    Attributes:
        bits: (N,) uint32, one value per frame (frame n starts at sample ``n * HOP``).
        loud: (N,) bool, frames loud enough to vote.
    """

    bits: np.ndarray
    loud: np.ndarray


def fingerprint(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Fingerprint:
    """Haitsma-Kalker sub-fingerprints of a mono waveform.

    Args:
        x: (L,) float waveform at ``sample_rate``.
        sample_rate: must be 16000 Hz (resample first, e.g. with :func:`edm_se.audio.resample`).

    Returns:
        :class:`Fingerprint` with ``max(0, (L - FRAME) // HOP)`` frames (none for files shorter than 129 ms).

    Raises:
        ValueError: another sample rate or a non-1-D input.
    """
    if int(sample_rate) != SAMPLE_RATE:
        raise ValueError(f"fingerprint needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"fingerprint needs a 1-D waveform, got shape {x.shape}")
    n = (len(x) - FRAME) // HOP + 1
    if n < 2:
        return Fingerprint(np.zeros(0, np.uint32), np.zeros(0, bool))
    import torch

    bands = _bands()
    lo, hi = _BAND_BINS  # only the bins of 300-3000 Hz enter the bands
    spec = torch.stft(torch.from_numpy(np.ascontiguousarray(x)), FRAME, HOP, window=_window(),
                      center=False, return_complex=True)[lo:hi]  # (hi - lo, n)
    power = (spec.real.square() + spec.imag.square()).numpy().T  # (n, hi - lo)
    energy = power @ bands[lo:hi]  # (n, 33)
    total = energy.sum(axis=1)
    d = energy[:, :-1] - energy[:, 1:]  # (n, 32)
    bits = (d[1:] - d[:-1]) > 0  # (n-1, 32)
    values = np.packbits(bits, axis=1, bitorder="little").view("<u4").reshape(-1).astype(np.uint32)
    ref = float(total.max()) if total.size else 0.0
    loud = (total[1:] > ref * 1e-6) & (total[1:] > 1e-9 * FRAME * FRAME / 4)
    return Fingerprint(values, loud)


@dataclasses.dataclass(frozen=True)
class Match:
    """Two files sharing content: frames ``[start_a, start_a + frames)`` of ``a`` match ``b`` from ``start_b``.

    Attributes:
        a, b: the keys of the two files.
        start_a, start_b: first matching frame in each (times: ``* HOP / SAMPLE_RATE`` seconds).
        frames: overlap length in frames.
        votes: frames whose 32-bit values are identical.
        ber: bit error rate over the overlap (0 = identical, ~0.5 = unrelated).
    """

    a: str
    b: str
    start_a: int
    start_b: int
    frames: int
    votes: int
    ber: float

    @property
    def seconds(self) -> float:
        return self.frames * HOP / SAMPLE_RATE


def _ber(fa: Fingerprint, fb: Fingerprint, offset: int) -> tuple[float, int, int, int]:
    """Bit error rate of a over b at ``frame_a = frame_b + offset`` (loud frames of both only)."""
    sa = max(0, offset)
    sb = max(0, -offset)
    n = min(len(fa.bits) - sa, len(fb.bits) - sb)
    if n <= 0:
        return 1.0, sa, sb, 0
    a, b = fa.bits[sa:sa + n], fb.bits[sb:sb + n]
    mask = fa.loud[sa:sa + n] & fb.loud[sb:sb + n]
    if not mask.any():
        return 1.0, sa, sb, n
    x = np.bitwise_xor(a[mask], b[mask]).view(np.uint8)
    return float(np.unpackbits(x).mean()), sa, sb, n


def _table(prints: Mapping[str, Fingerprint]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    keys = list(prints)
    vals, ids, frames = [], [], []
    for i, k in enumerate(keys):
        fp = prints[k]
        sel = np.flatnonzero(fp.loud & (fp.bits != 0) & (fp.bits != 0xFFFFFFFF))
        vals.append(fp.bits[sel])
        ids.append(np.full(len(sel), i, np.int64))
        frames.append(sel.astype(np.int64))
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    return keys, cat(vals, np.uint32), cat(ids, np.int64), cat(frames, np.int64)


def find_matches(a: Mapping[str, Fingerprint], b: Mapping[str, Fingerprint] | None = None, *,
                 min_votes: int = 12, max_ber: float = 0.3, max_run: int = 64) -> list[Match]:
    """Pairs of files (one from ``a``, one from ``b``) that share a stretch of audio.

    Args:
        a: key -> :class:`Fingerprint`.
        b: key -> :class:`Fingerprint`; None compares ``a`` with itself (pairs of different keys, each once).
        min_votes: identical 32-bit frames needed at one alignment (12 frames = 48 ms of identical bits).
        max_ber: bit error rate over the overlap at or below which the alignment is a match (unrelated audio:
            about 0.5; a resampled, re-levelled copy: below 0.1).
        max_run: values shared by more frames than this are ignored as uninformative.

    Returns:
        One :class:`Match` per matching pair (its best alignment), sorted by (a, b).
    """
    self_join = b is None
    ka, va, ia, fa_ = _table(a)
    if self_join:
        kb, vb, ib, fb_ = ka, va, ia, fa_
    else:
        kb, vb, ib, fb_ = _table(b)
    if len(va) == 0 or len(vb) == 0:
        return []
    # join on equal values: sort b, search a's values
    order = np.argsort(vb, kind="stable")
    vb_s, ib_s, fb_s = vb[order], ib[order], fb_[order]
    lo = np.searchsorted(vb_s, va, side="left")
    hi = np.searchsorted(vb_s, va, side="right")
    cnt = hi - lo
    keep = (cnt > 0) & (cnt <= max_run)
    if not self_join:  # a value too common in either set casts no vote (the same pairs, whichever set comes first)
        ua, ca = np.unique(va, return_counts=True)
        keep &= ~np.isin(va, ua[ca > max_run])
    if not keep.any():
        return []
    rep = cnt[keep]
    src = np.repeat(np.flatnonzero(keep), rep)
    starts = np.repeat(lo[keep], rep)
    within = np.arange(len(src)) - np.repeat(np.cumsum(rep) - rep, rep)
    dst = starts + within
    pa, pb = ia[src], ib_s[dst]
    off = fa_[src] - fb_s[dst]
    if self_join:
        sel = pa < pb
        pa, pb, off = pa[sel], pb[sel], off[sel]
    if len(pa) == 0:
        return []
    # votes per (pair, offset), offsets merged into bins of 2 frames (crop offsets fall between frames), in both
    # phases ({2k, 2k+1} and {2k-1, 2k}): swapping a and b negates the offsets, which maps one phase's bins onto the
    # other's, so the matches do not depend on which set comes first
    cand_rows = []
    for phase in (0, 1):
        key = np.stack([pa, pb, (off + phase) // 2], axis=1)
        uniq, votes = np.unique(key, axis=0, return_counts=True)
        sel = votes >= min_votes
        cand_rows += [(int(i), int(j), 2 * int(ob) - phase, int(v)) for (i, j, ob), v in zip(uniq[sel], votes[sel])]
    best: dict[tuple[int, int], Match] = {}
    for i, j, first, v in cand_rows:
        fpa = a[ka[i]]
        fpb = (a if self_join else b)[kb[j]]
        for o in (first, first + 1):
            ber, sa, sb, n = _ber(fpa, fpb, int(o))
            if ber <= max_ber:
                m = Match(ka[i], kb[j], sa, sb, n, v, round(ber, 4))
                prev = best.get((i, j))
                if prev is None or (m.ber, -m.votes, m.start_a) < (prev.ber, -prev.votes, prev.start_a):
                    best[(i, j)] = m
    return sorted(best.values(), key=lambda m: (m.a, m.b))


SHIFTS = (0, 16, 32, 48)
"""Sample offsets (a quarter of :data:`HOP` apart) at which :func:`find_matches_any_phase` tries a held-out file.
A vote needs two *identical* 32-bit frames, and how many frames of a near-copy agree exactly depends on where its
frames fall: over the 8 offsets of one hop, Wesnoth's ``sling.ogg`` against ``sling-miss.ogg`` (which starts with
it) gets 9-12 votes and MegaGlest's ``guard_attack12`` against ``guard_attack11`` 10-18. A short sound effect offers
few frames, so at one offset it crossed the 12-vote line and at another it did not: the corpus's check at offset 0
missed three that a test mixture (noise cropped at a random offset) then showed (session 38)."""


def fingerprints_shifted(x: np.ndarray, sample_rate: int = SAMPLE_RATE, shifts: Sequence[int] = SHIFTS
                         ) -> tuple[Fingerprint, ...]:
    """Fingerprints of ``x`` cropped by each of ``shifts`` samples (``x[s:]``): the same audio at several frame
    phases, for :func:`find_matches_any_phase`.

    Args:
        x: (L,) float waveform at ``sample_rate`` (16000 Hz).
        shifts: sample offsets, each in ``[0, HOP)``.

    Raises:
        ValueError: as :func:`fingerprint`, or a shift outside ``[0, HOP)``.
    """
    bad = [s for s in shifts if not 0 <= int(s) < HOP]
    if bad:
        raise ValueError(f"shifts must lie in [0, {HOP}) samples, got {bad}")
    x = np.asarray(x, dtype=np.float32)
    return tuple(fingerprint(x[int(s):], sample_rate) for s in shifts)


CANDIDATE_DIVISOR = 3
CANDIDATE_BER_MARGIN = 0.02
""":func:`find_matches_any_phase` looks at the other phases of a pair only when offset 0 gives it at least
``min_votes // CANDIDATE_DIVISOR`` votes (4 of 12) at a bit error rate within ``max_ber + CANDIDATE_BER_MARGIN``.
Measured over the 8 offsets of one hop, a near-copy's votes vary by about a factor of 2 (9-12, 10-18, 8-14, 5-8,
3-7 for the pairs of :data:`SHIFTS`), and its bit error rate by under 0.02 (MegaGlest's ``swordman_attack3``
against ``swordman_attack12``: 0.3004 at offset 0, 0.2970-0.3047 over the hop)."""


def find_matches_any_phase(a: Mapping[str, Fingerprint], b: Mapping[str, Fingerprint],
                           shifted: Callable[[str], Sequence[Fingerprint]], *, min_votes: int = 12,
                           max_ber: float = 0.3, max_run: int = 64) -> list[Match]:
    """:func:`find_matches`, with each file of ``a`` also tried at the other frame phases of :data:`SHIFTS`.

    A pair matches when it matches at offset 0 or at any other phase of its ``a`` file. Only pairs that offset 0
    makes candidates (:data:`CANDIDATE_DIVISOR`) are tried at the other phases, so ``shifted`` is called for few
    files (in the default corpus build: 18 of its 1029 held-out files).

    Args:
        a: key -> :class:`Fingerprint` at offset 0.
        b: key -> :class:`Fingerprint`.
        shifted: key of ``a`` -> its fingerprints at ``SHIFTS[1:]`` (:func:`fingerprints_shifted`,
            :func:`cached_fingerprints`).
        min_votes, max_ber, max_run: as for :func:`find_matches`.

    Returns:
        One :class:`Match` per matching pair (its best alignment over the phases: lowest bit error rate, then most
        votes; ``start_a`` counts frames of the shifted copy, at most 3 ms later than the file's own), sorted by
        (a, b).
    """
    kw = dict(max_ber=max_ber, max_run=max_run)
    candidates = find_matches(a, b, min_votes=max(1, min_votes // CANDIDATE_DIVISOR), max_run=max_run,
                              max_ber=max_ber + CANDIDATE_BER_MARGIN)
    best = {(m.a, m.b): m for m in candidates if m.votes >= min_votes and m.ber <= max_ber}
    others: dict[str, list[str]] = {}
    for m in candidates:
        if (m.a, m.b) not in best:
            others.setdefault(m.a, []).append(m.b)
    for key, partners in others.items():
        for fp in shifted(key):
            for m in find_matches({key: fp}, {k: b[k] for k in partners}, min_votes=min_votes, **kw):
                prev = best.get((m.a, m.b))
                if prev is None or (m.ber, -m.votes) < (prev.ber, -prev.votes):
                    best[(m.a, m.b)] = m
    return sorted(best.values(), key=lambda m: (m.a, m.b))


def _cache_file(path: Path, cache_dir: str | os.PathLike | None, key: str | None, shift: int = 0) -> Path | None:
    if cache_dir is None:
        return None
    st = path.stat()
    ident = f"{key or path.resolve()}|{st.st_size}|{st.st_mtime_ns}" + (f"|shift={shift}" if shift else "")
    name = hashlib.sha1(ident.encode()).hexdigest()
    return Path(cache_dir) / name[:2] / f"{name}.npz"


def _load_cached(cached: Path | None) -> Fingerprint | None:
    if cached is None or not cached.exists():
        return None
    try:
        with np.load(cached) as z:
            return Fingerprint(z["bits"], z["loud"])
    except (OSError, ValueError, KeyError):  # a damaged cache entry is computed again
        return None


def _store(cached: Path | None, fp: Fingerprint) -> None:
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, bits=fp.bits, loud=fp.loud)
        os.replace(tmp, cached)


def cached_fingerprint(path: str | os.PathLike, cache_dir: str | os.PathLike | None, key: str | None = None
                       ) -> Fingerprint:
    """The fingerprint of an audio file (read and resampled to :data:`SAMPLE_RATE` by :mod:`edm_se.audio`), kept
    in ``cache_dir`` as ``<sha1>.npz`` so that a file is read once.

    Args:
        path: the audio file.
        cache_dir: where fingerprints are kept (created when missing); None: no cache.
        key: what names the file in the cache (default: its absolute path); its size and modification time are
            added, so an edited file is fingerprinted again.

    Raises:
        edm_se.audio.AudioError: the file cannot be read.
    """
    return cached_fingerprints(path, cache_dir, key, shifts=(0,))[0]


def cached_fingerprints(path: str | os.PathLike, cache_dir: str | os.PathLike | None, key: str | None = None,
                        shifts: Sequence[int] = SHIFTS) -> tuple[Fingerprint, ...]:
    """:func:`fingerprints_shifted` of an audio file, each phase cached as :func:`cached_fingerprint` caches
    offset 0 (the file is read only when a phase is missing).

    Raises:
        edm_se.audio.AudioError: the file cannot be read.
        ValueError: a shift outside ``[0, HOP)``.
    """
    from edm_se.audio import load_audio

    path = Path(path)
    files = [_cache_file(path, cache_dir, key, int(s)) for s in shifts]
    found = [_load_cached(c) for c in files]
    if all(fp is not None for fp in found):
        return tuple(found)
    missing = [i for i, fp in enumerate(found) if fp is None]
    x = load_audio(path, sample_rate=SAMPLE_RATE).numpy()
    for i, fp in zip(missing, fingerprints_shifted(x, SAMPLE_RATE, [shifts[i] for i in missing])):
        found[i] = fp
        _store(files[i], fp)
    return tuple(found)


def fingerprint_files(paths: Sequence[str], sample_rate: int = SAMPLE_RATE) -> dict[str, Fingerprint]:
    """Fingerprints of audio files (any rate or channel count; loaded and resampled by :mod:`edm_se.audio`).

    Returns:
        str(path) -> :class:`Fingerprint`.

    Raises:
        edm_se.audio.AudioError: a file cannot be read.
    """
    from edm_se.audio import load_audio

    return {str(p): fingerprint(load_audio(p, sample_rate=sample_rate).numpy(), sample_rate) for p in paths}
