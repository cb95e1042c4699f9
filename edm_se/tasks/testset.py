"""A task's fixed test mixtures written as a study test set (``edm-se data testset``).

The built-in test set holds 25 mixtures with 186 reference words: too few for a word error rate difference of a
few points to be significant. The sentences of ``edm-se data tasks`` are spoken by held-out voices (flite ``slt``
and ``awb``, built from CMU ARCTIC recordings; no enhancer or task model trains on them), so their test mixtures
give a recogniser many more words. This writes exactly the mixtures the ``paradigms`` study scores
(:func:`edm_se.tasks.data.make_task_test_set`: the same clips at every SNR, noise from the corpus's held-out test
recordings, the same seeds) as a directory every ``edm-se study`` and ``edm-se evaluate`` reads::

    out_dir/clean/<name>.wav  out_dir/noisy/<name>.wav      32-bit float WAV, 16 kHz (no clipping, no rounding;
                                                             the same audio gives the same bytes and SHA-256)
    out_dir/manifest.csv                                     name, snr_db, transcript, voice, clip
    out_dir/testset.json                                     what made it (manifest SHA-256, noise, SNRs, seed)

Synthetic voices are for speech-text pairs: their WER is what this set is for. PESQ or ESTOI on them are not
measurements of quality on human speech (``shared/data-sources.md``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from edm_se.atomic import atomic_dir
from edm_se.tasks.data import TaskDataError

log = logging.getLogger("edm_se.tasks")

FORMAT = "edm_se.task_testset/1"
HELD_OUT_SPLITS = ("valid", "test")


class TestSetExportError(TaskDataError):
    """A request that cannot make a held-out test set (named key or file, one line)."""

    __test__ = False  # not a pytest test class


def _recipe(manifest: Path, noise: str, split: str, snrs_db: Sequence[float], max_clips: int | None,
            seed: int) -> dict:
    from edm_se.data.datasets import resolve_files
    from edm_se.provenance import file_sha256
    from edm_se.trained_on import files_identity

    # the noise files by name and size: a corpus rebuilt with other held-out files (session 38's near copies) makes
    # another recipe, so an old set is not kept as if it were this one
    return {"format": FORMAT, "manifest": str(manifest), "manifest_sha256": file_sha256(manifest), "noise": noise,
            "noise_files": files_identity(resolve_files(noise, "noise")), "split": split,
            "snrs_db": [float(s) for s in snrs_db], "max_clips": None if max_clips is None else int(max_clips),
            "seed": int(seed)}


def export_task_test_set(manifest: str | os.PathLike, noise: str, out_dir: str | os.PathLike,
                         snrs_db: Sequence[float] = (0, 5, 10, 15), split: str = "test", max_clips: int | None = 30,
                         seed: int = 4321) -> dict:
    """Write the sentences of ``split`` in ``manifest`` mixed with ``noise`` at every SNR as a study test set.

    Args:
        manifest: a sentences ``manifest.csv`` of ``edm-se data tasks`` (its ``text`` column is the transcript).
        noise: the noise source (``corpus:DIR:test``: the corpus's held-out test noise recordings).
        out_dir: the directory to write (made anew in a temporary directory beside it, then moved into place).
        snrs_db: SNRs in dB; every kept clip is mixed at each (the same clips at every SNR: paired per SNR).
        split: ``test`` or ``valid`` (a held-out split; ``train`` is refused).
        max_clips: keep this many clips, spread evenly over the split (None: all), as the ``paradigms`` study's
            ``max_clips`` does.
        seed: the mixing seed (:func:`edm_se.tasks.data.make_task_test_set`; 4321 is the ``paradigms`` study's).

    Returns:
        ``{"out_dir", "n", "words", "reused"}``: the directory, the mixtures, the reference words (normalised as for
        WER) and whether an existing directory made by the same recipe was kept as it is.

    Raises:
        TestSetExportError: ``split`` is not held out, ``snrs_db`` is empty or names an SNR twice, ``max_clips`` < 1,
            or ``out_dir`` exists and was not made by this recipe (it is never overwritten).
        FileExistsError / NotADirectoryError: a file is in the way of ``out_dir``'s parent directories.
        edm_se.tasks.data.TaskDataError: the manifest is missing or has no usable clip of ``split``.
    """
    from edm_se.asr import reference_words
    from edm_se.tasks.data import make_task_test_set

    if split not in HELD_OUT_SPLITS:
        raise TestSetExportError(f"split={split}: a test set must come from a held-out split "
                                 f"({', '.join(HELD_OUT_SPLITS)}); the training split's voices are what the models "
                                 "learned")
    if not len(snrs_db):
        raise TestSetExportError("snrs_db=[]: name at least one SNR")
    if len({float(v) for v in snrs_db}) != len(snrs_db):
        raise TestSetExportError(f"snrs_db={[float(v) for v in snrs_db]}: an SNR named twice would write one mixture "
                                 "over the other; name each once")
    if max_clips is not None and int(max_clips) < 1:
        raise TestSetExportError(f"max_clips={max_clips}: must be >= 1 (or null: every clip)")
    manifest, out = Path(manifest).expanduser(), Path(out_dir).expanduser()
    if not manifest.is_file():
        raise TaskDataError(f"{manifest}: no such task manifest (run `edm-se data tasks` first)")
    recipe = _recipe(manifest.resolve(), str(noise), split, snrs_db, max_clips, seed)
    out.parent.mkdir(parents=True, exist_ok=True)  # a file in the way: FileExistsError, which the CLI names
    if out.exists():
        old = _read_recipe(out)
        if old is not None and _identity(old) == _identity(recipe):
            log.info("%s: already made by the same recipe, kept", out)
            return {"out_dir": out, "n": int(old.get("n", 0)), "words": int(old.get("words", 0)), "reused": True}
        if old is None:
            why = "no testset.json"
        else:
            a, b = _identity(old), _identity(recipe)
            why = "another recipe: " + ", ".join(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))
        raise TestSetExportError(f"{out}: exists and was not made by this recipe ({why}); "
                                 "name another out_dir or remove it")
    items = make_task_test_set(manifest, noise, snrs_db=list(snrs_db), split=split, target="text", seed=int(seed),
                               segment_seconds=None, max_clips=max_clips)
    rows, words = [], 0
    with atomic_dir(out) as tmp:  # an interrupted export leaves nothing at out_dir
        for it in items:
            clip = it["name"].split("#", 1)[0]  # voice/stem#index
            name = f"{clip.replace('/', '_')}_snr{float(it['snr_db']):g}.wav"
            _write_float_wav(tmp / "clean" / name, it["clean"])
            _write_float_wav(tmp / "noisy" / name, it["noisy"])
            rows.append({"name": name, "snr_db": f"{float(it['snr_db']):g}", "transcript": it["text"],
                         "voice": clip.split("/", 1)[0], "clip": clip})
            words += reference_words(it["text"])
        if len({r["name"] for r in rows}) != len(rows):
            raise TestSetExportError(f"{manifest}: two clips of one voice share a file stem; the names would collide")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["name", "snr_db", "transcript", "voice", "clip"])
        writer.writeheader()
        writer.writerows(rows)
        (tmp / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
        (tmp / "testset.json").write_text(json.dumps({**recipe, "n": len(rows), "words": words}, indent=1) + "\n")
    log.info("%s: %d mixtures (%d clips x %d SNRs), %d reference words", out, len(rows), len(rows) // len(snrs_db),
             len(snrs_db), words)
    return {"out_dir": out, "n": len(rows), "words": words, "reused": False}


def _write_float_wav(path: Path, wave: Any, sample_rate: int = 16000) -> None:
    """``wave`` as a 32-bit float WAV with scipy's writer: the same samples give the same bytes. libsndfile (and so
    :func:`edm_se.audio.save_audio`) adds a PEAK chunk with a timestamp to float WAVs, so each export would have
    other bytes, and the test set another SHA-256, for the same audio."""
    from scipy.io import wavfile

    data = wave.numpy() if hasattr(wave, "numpy") else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(str(path), int(sample_rate), data.astype("float32", copy=False).reshape(-1))


def _identity(recipe: dict) -> dict:
    """What makes the files: the recipe without its counts and without where the manifest lay (its SHA-256 counts,
    so a moved checkout keeps its test set)."""
    return {k: v for k, v in recipe.items() if k not in ("n", "words", "manifest")}


def _read_recipe(out: Path) -> dict | None:
    try:
        obj = json.loads((out / "testset.json").read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) and obj.get("format") == FORMAT else None


def main(cfg: Any) -> None:
    """Hydra task of ``edm-se data testset``."""
    from omegaconf import OmegaConf

    from edm_se import validate

    validate.int_at_least(cfg, ["max_clips"], 1, optional=True)
    validate.int_at_least(cfg, ["seed"], 0)
    validate.check(cfg, "snrs_db", lambda v: len(v) > 0 and all(validate.is_number(s) for s in v),
                   "a non-empty list of numbers (dB)")
    res = export_task_test_set(cfg.manifest, str(cfg.noise), cfg.out_dir,
                               snrs_db=[float(s) for s in OmegaConf.to_container(cfg.snrs_db)],
                               split=str(cfg.split), max_clips=cfg.max_clips, seed=int(cfg.seed))
    how = "already there (same recipe)" if res["reused"] else "written"
    print(f"test set {how}: {res['out_dir']} ({res['n']} mixtures, {res['words']} reference words); score it with "
          f"`edm-se study test_set={res['out_dir']} ...`")
    print(held_out_of_training_splits(res["out_dir"], Path(str(cfg.manifest)), str(cfg.noise)))


def held_out_of_training_splits(out_dir: Path, manifest: Path, noise: str) -> str:
    """One line: the written test set against the training splits its parts come from (the task manifest's train
    clips and, for ``noise=corpus:DIR:<split>``, the corpus's train split), by audio fingerprint
    (:mod:`edm_se.heldout`), so that shared audio is known when the set is made, before a model is scored on it."""
    from edm_se.heldout import OVERLAP, check_test_set
    from edm_se.testset import load_test_set
    from edm_se.trained_on import TrainingData

    label = "the train splits of the task data and the corpus"
    from edm_se.data.datasets import split_spec

    sources = [("speech", f"task:{manifest}:train", label)]
    parts = split_spec(noise)
    if parts is not None and parts[0] == "corpus":
        sources += [("speech", f"corpus:{parts[1]}:train", label), ("noise", f"corpus:{parts[1]}:train", label)]
    report = check_test_set(load_test_set(out_dir, None), TrainingData(label, sources), progress=False)
    line = report.line()
    return ("WARNING, not held out: " + line + " (a study of a model trained on them stops unless "
            "heldout_check=warn)"
            if report.status == OVERLAP else line)  # (a study of a model trained on them refuses it)
