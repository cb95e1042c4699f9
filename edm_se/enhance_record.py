"""The record an ``edm-se enhance`` output directory keeps, so that an interrupted run resumes and a changed
configuration is refused (:func:`edm_se.enhance.enhance_files` writes it; ``edm-se evaluate`` recognises it).

* ``enhance.json``: ``{"format", "config"}``, the configuration that makes the outputs (:func:`identity`).
* ``enhance_done.jsonl``: one line per finished file, ``{"file", "input_sha256"[, "calls"]}``, appended and
  flushed after the file's audio is in place; a torn last line (an interruption while writing it) is ignored.
* ``estimates/steps.csv`` (with ``estimates=true``): the per-call rows of every file, from the record.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("edm_se.enhance")

MANIFEST = "enhance.json"
DONE_LOG = "enhance_done.jsonl"
MANIFEST_FORMAT = "edm_se.enhance/1"


def identity(model, sampler, num_steps, t_start: float, seed: int, sample_rate: int, on_mismatch: str,
             oa_weight: float = 0.0) -> dict:
    """What makes the outputs of :func:`edm_se.enhance.enhance_files`, a flat JSON dict: for a diffusion model the
    checkpoint's SHA-256 (None for a model built in memory), the resolved sampler's class and every field
    (``sampler.<name>``: its ``repr``), ``t_start`` and ``seed``; for a peer its name and package version; and the
    output rate and rate-mismatch policy; ``oa_weight`` (observation adding) only when it is not 0, so the record
    of a run made before the option existed still resumes."""
    base = {"sample_rate": int(sample_rate), "on_rate_mismatch": str(on_mismatch),
            **({"oa_weight": float(oa_weight)} if float(oa_weight) != 0.0 else {})}
    if not hasattr(model, "make_sampler"):
        from edm_se.enhancers import peer_version

        return {"enhancer": model.name, "version": peer_version(model.name), **base}
    from edm_se.provenance import file_sha256

    path = (getattr(model, "info", None) or {}).get("path")
    smp = model.make_sampler(sampler, num_steps)
    fields = {f"sampler.{k}": repr(v) for k, v in vars(smp).items() if k != "return_trajectory"}
    return {"enhancer": "diffusion", "checkpoint_sha256": file_sha256(path) if path else None,
            "sampler": type(smp).__name__, **fields, "t_start": float(t_start), "seed": int(seed), **base}


def _load_config(manifest: Path) -> dict:
    config = json.loads(manifest.read_text())["config"]
    if not isinstance(config, dict):
        raise TypeError("config is not a JSON object")
    return config


def recorded_config(output: str | os.PathLike) -> dict | None:
    """The configuration recorded in ``output/enhance.json`` (:func:`identity`: the checkpoint's SHA-256 and the
    resolved sampler, or the peer and its version); None when there is none or it is unreadable. ``edm-se evaluate``
    puts it in the provenance of the scores of such a directory."""
    try:
        return _load_config(Path(output) / MANIFEST)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def open_record(output: Path, config: dict, resume: bool) -> dict[str, str]:
    """Start or continue the record of ``output`` and return ``{relative input path: input SHA-256}`` of the files
    finished under ``config`` (:func:`identity` and what else the caller adds); empty when starting anew. A torn
    last line of an interrupted write is ended, so the next record stands alone, and ignored.

    Raises:
        AudioError: ``resume`` and ``output/enhance.json`` holds another configuration (or is unreadable)."""
    from edm_se.atomic import atomic_write_json
    from edm_se.audio import AudioError

    manifest, log_path = output / MANIFEST, output / DONE_LOG
    if resume and manifest.is_file():
        try:
            old = _load_config(manifest)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise AudioError(manifest, f"unreadable record of an earlier run ({type(err).__name__}); remove it or "
                             "pass resume=false") from None
        changed = [k for k in [*config, *(k for k in old if k not in config)] if old.get(k) != config.get(k)]
        if changed:
            k = changed[0]
            raise AudioError(manifest, f"{output} holds the outputs of another configuration ({k}: "
                             f"{old.get(k)!r} then, {config.get(k)!r} now); choose another output= or pass "
                             "resume=false to overwrite them")
        text = log_path.read_text(encoding="utf-8") if log_path.is_file() else ""
        if text and not text.endswith("\n"):  # a torn last line: end it, so the next record stands alone
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write("\n")
        return {name: str(row.get("input_sha256")) for name, row in _parse_record(text).items()}
    output.mkdir(parents=True, exist_ok=True)
    if manifest.is_file() and (output / "estimates").is_dir():
        import shutil

        # per-call estimates of the run this one replaces (resume=false): a shorter run would leave some behind
        log.info("starting anew in %s: removing the earlier run's estimates/", output)
        shutil.rmtree(output / "estimates")
    log_path.unlink(missing_ok=True)
    atomic_write_json(manifest, {"format": MANIFEST_FORMAT, "config": config}, indent=2)
    return {}


def read_record(output: Path) -> dict[str, dict]:
    """The rows of ``output/enhance_done.jsonl`` by file (the last row of a file wins; torn lines are skipped)."""
    path = output / DONE_LOG
    return _parse_record(path.read_text(encoding="utf-8") if path.is_file() else "")


def _parse_record(text: str) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
            rows[str(row["file"])] = row
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def record_done(output: Path, name: str, input_sha256: str, calls: list[dict] | None = None) -> None:
    """Append one finished file to ``output/enhance_done.jsonl`` (flushed to disk: an interruption loses at most
    the line being written, and its audio file is then enhanced again); ``calls``: its per-call rows for
    ``estimates/steps.csv``."""
    row = {"file": name, "input_sha256": input_sha256, **({"calls": calls} if calls is not None else {})}
    with open(output / DONE_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_steps_csv(output: Path, names: list[str]) -> None:
    """``output/estimates/steps.csv`` (atomic): ``file, nfe, t, sigma, seconds`` for each of ``names`` and each of
    its network calls, from the record (so the files a resumed run skipped are in it too)."""
    import csv
    import io

    from edm_se.atomic import atomic_write_text

    record = read_record(output)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "nfe", "t", "sigma", "seconds"])
    for name in names:
        for c in record.get(name, {}).get("calls") or []:
            writer.writerow([name, c["nfe"], f"{c['t']:.9g}", f"{c['sigma']:.9g}", f"{c['seconds']:.6f}"])
    atomic_write_text(output / "estimates" / "steps.csv", buf.getvalue())
