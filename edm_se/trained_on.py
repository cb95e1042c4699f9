"""What a model trained on, as its checkpoint records it: the speech and noise sources of its training config, the
model it was fine-tuned from, where training ran, the names and sizes of its training files, and (for a checkpoint
with a ``<name>.train_files.json`` beside it, such as the bundled model) the exact list of those files.

Used by the held-out check (:mod:`edm_se.heldout`) and by the trainer (:func:`dataset_identity`, recorded in every
checkpoint as ``info.train_data``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("edm_se.heldout")

MAX_DEPTH = 8  # models fine-tuned from models: how far back the training data is followed


@dataclasses.dataclass
class TrainingData:
    """What a model trained on, as its checkpoint says.

    Attributes:
        model: the checkpoint's path as given (or a label: a training study's cell).
        sources: ``(kind, spec, model)`` per training source: kind ``"speech"`` or ``"noise"``, the source spec
            (:func:`edm_se.data.datasets.resolve_files`), the checkpoint whose training used it.
        unknown: why (part of) the training data is not known (an imported checkpoint records none); None when
            every source is known.
        bases: directories a relative spec is resolved against, in order, after the current one: where training
            ran (the checkpoint's ``info.train_cwd``) and, for a model inside a source checkout of edm_se (the
            bundled one), the checkout's root, where its ``data_cache/`` lives.
        recorded: ``(kind, model) -> {"files", "sha256"}``: the training files as the checkpoint recorded them
            (``info.train_data``, :func:`files_identity`), for the check to tell whether the files found here are
            those (checkpoints written before it was recorded have none).
        listed: ``(kind, model) -> (corpus dir, [paths in it], list file)``: the exact training files of a model
            whose checkpoint has a ``<name>.train_files.json`` beside it (the bundled model: it predates
            ``info.train_data``, and later corpus builds may leave files out of the train split that it trained
            on); checked instead of what the spec resolves to today.
    """

    model: str
    sources: list[tuple[str, Any, str]]
    unknown: str | None = None
    bases: list[str] = dataclasses.field(default_factory=list)
    recorded: dict[tuple[str, str], dict] = dataclasses.field(default_factory=dict)
    listed: dict[tuple[str, str], tuple[str, list[str], str]] = dataclasses.field(default_factory=dict)

    def key(self) -> tuple:
        return tuple((k, repr(s)) for k, s, _ in self.sources), self.unknown


def merged(model: str, parts: list[TrainingData]) -> TrainingData:
    """The training data of several models as one, named ``model`` (a model and the one it was fine-tuned from;
    the cells of a study): every source once, in order; the first part's record wins where two have one."""
    return TrainingData(model, list(dict.fromkeys(s for p in parts for s in p.sources)),
                        next((p.unknown for p in parts if p.unknown), None),
                        list(dict.fromkeys(b for p in parts for b in p.bases)),
                        {k: v for p in reversed(parts) for k, v in p.recorded.items()},
                        {k: v for p in reversed(parts) for k, v in p.listed.items()})


def files_identity(paths: list[str | os.PathLike]) -> dict:
    """``{"files": n, "sha256"}``: a list of training files by name and size (their paths relative to the list's
    common directory, so a moved corpus keeps it; reading no audio: 3487 files in about 50 ms). The trainer records
    it per source (checkpoint ``info.train_data``); the held-out check compares it with the files it finds."""
    import hashlib

    paths = [Path(p) for p in paths]
    if not paths:
        return {"files": 0, "sha256": hashlib.sha256(b"").hexdigest()}
    root = Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    root = root if root.is_dir() else root.parent
    lines = sorted(f"{p.resolve().relative_to(root).as_posix()}\t{p.stat().st_size}" for p in paths)
    return {"files": len(paths), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def dataset_identity(dataset: Any) -> dict:
    """``{"speech": files_identity, "noise": files_identity}`` of a training dataset that lists its files
    (:class:`edm_se.data.datasets.MixingDataset` and its task subclass); ``{}`` for one that does not."""
    out = {}
    for kind in ("speech", "noise"):
        files = getattr(dataset, f"{kind}_files", None)
        if files:
            out[kind] = files_identity(files)
    return out


def _plain(node: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(node, (DictConfig, ListConfig)):
            try:  # corpus:${..root}:train -> corpus:data_cache/corpus:train
                return OmegaConf.to_container(node, resolve=True)
            except Exception:  # noqa: BLE001 - an interpolation that needs a running app (${hydra:...})
                return OmegaConf.to_container(node, resolve=False)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return node


def _initial_checkpoint(paradigm: Mapping | None) -> str | None:
    """The checkpoint a training run started from: its paradigm's ``enhancer_checkpoint``; CRP without one
    fine-tunes the bundled model (:class:`edm_se.crp.CRP`)."""
    if not isinstance(paradigm, Mapping):
        return None
    ckpt = paradigm.get("enhancer_checkpoint")
    if ckpt:
        return str(ckpt)
    if str(paradigm.get("_target_", "")).endswith("crp.CRP"):
        from edm_se.model import default_checkpoint_path

        return str(default_checkpoint_path())
    return None


def sources_of(node: Any, model: str) -> list[tuple[str, Any, str]]:
    """``(kind, spec, model)`` of the speech and noise a dataset config node reads (``data.train``, ``data.valid``):
    a task dataset's manifest split (``task:<manifest>:<split>``) and noise, a mixing dataset's ``speech`` and
    ``noise``, a paired dataset's ``clean_dir`` (as speech); ``[]`` for a node that names none."""
    node = _plain(node)
    if not isinstance(node, Mapping):
        return []
    out: list[tuple[str, Any, str]] = []
    if node.get("manifest") is not None and node.get("split") is not None:  # edm_se.tasks.data.TaskMixingDataset
        out.append(("speech", f"task:{node['manifest']}:{node['split']}", model))
    elif node.get("speech") is not None:
        out.append(("speech", _plain(node["speech"]), model))
    elif node.get("clean_dir") is not None:  # a paired dataset: its clean files are the speech
        return [("speech", str(node["clean_dir"]), model)]
    else:
        return []
    if node.get("noise") is not None:
        out.append(("noise", _plain(node["noise"]), model))
    return out


def training_data(train_config: Mapping | None, model: str, _depth: int = 0, bases: list[str] | None = None,
                  recorded: Mapping | None = None) -> TrainingData:
    """The training data of a model from its training config (a checkpoint's ``train_config``).

    Args:
        train_config: the composed training config (``data.train.speech``, ``data.train.noise``, ``paradigm``);
            None: the model records none (e.g. imported from sgmse).
        model: the checkpoint's path or a label, named in the report.
        bases: :attr:`TrainingData.bases`.
        recorded: the checkpoint's ``info.train_data`` (``kind -> {"files", "sha256"}``), if any.

    Returns:
        :class:`TrainingData` (``unknown`` says what could not be followed).
    """
    train_config = _plain(train_config)
    bases = list(bases or [])
    known = {(str(k), model): dict(v) for k, v in (recorded or {}).items() if isinstance(v, Mapping)}
    if not isinstance(train_config, Mapping):
        return TrainingData(model, [], f"{model} records no training config (imported, or written by another tool)",
                            bases, known)
    train = (train_config.get("data") or {}).get("train") if isinstance(train_config.get("data"), Mapping) else None
    sources = sources_of(train, model)
    unknown = f"{model}: its training data (data.train) names no speech source" if train is not None and \
        not sources else None
    start = _initial_checkpoint(train_config.get("paradigm"))
    if start is not None and _depth >= MAX_DEPTH:
        unknown = unknown or f"{model}: fine-tuned from models more than {MAX_DEPTH} deep"
    own_listed, own_known = _listed_files(model)
    own = TrainingData(model, sources, unknown, bases, {**own_known, **known}, own_listed)
    if start is None or _depth >= MAX_DEPTH:
        return own
    return merged(model, [own, checkpoint_training_data(start, _depth + 1)])  # and the model it started from


LIST_SUFFIX = ".train_files.json"
LIST_FORMAT = "edm_se.train_files/1"


def _listed_files(model: str) -> tuple[dict, dict]:
    """(:attr:`TrainingData.listed`, :attr:`TrainingData.recorded`) from ``<checkpoint stem>.train_files.json``
    beside ``model`` (its lists and their ``<kind>_identity``: names and sizes), when its ``checkpoint_sha256`` is
    the checkpoint's (a list written for another file is ignored, with a warning)."""
    import json

    path = Path(model)
    listing = path.with_name(path.stem + LIST_SUFFIX)
    if not path.is_file() or not listing.is_file():
        return {}, {}
    try:
        data = json.loads(listing.read_text())
    except (OSError, ValueError):
        log.warning("%s: unreadable; the held-out check uses %s's training config instead", listing, path.name)
        return {}, {}
    from edm_se.provenance import file_sha256

    if not isinstance(data, dict) or data.get("format") != LIST_FORMAT or \
            data.get("checkpoint_sha256") != file_sha256(path):
        log.warning("%s: not a training-file list of %s; the held-out check uses its training config instead",
                    listing, path)
        return {}, {}
    kinds = [kind for kind in ("speech", "noise") if isinstance(data.get(kind), list)]
    return ({(kind, model): (str(data["corpus"]), [str(p) for p in data[kind]], listing.name) for kind in kinds},
            {(kind, model): dict(data[f"{kind}_identity"]) for kind in kinds
             if isinstance(data.get(f"{kind}_identity"), dict)})


def listed_training_files(model: str | os.PathLike) -> set[str]:
    """The paths (relative to its corpus) in the ``<name>.train_files.json`` of a checkpoint (every kind), or an
    empty set when it has no valid list (:func:`_listed_files`)."""
    listed, _ = _listed_files(str(model))
    return {p for _, paths, _ in listed.values() for p in paths}


def resolve_listed(corpus: str, paths: list[str], bases: list[str]) -> tuple[Path, list[Path], int]:
    """(the corpus directory found, the listed files in it, how many of them are missing there): the corpus is
    looked for in the current directory, then in each of ``bases``.

    Raises:
        edm_se.audio.AudioError: no such directory anywhere.
    """
    from edm_se.audio import AudioError

    for base in [".", *bases]:
        root = Path(corpus) if Path(corpus).is_absolute() else Path(base) / corpus
        if root.is_dir():
            files = [root / p for p in paths]
            there = [f for f in files if f.is_file()]
            return root, there, len(files) - len(there)
    raise AudioError(corpus, "corpus directory not found (edm-se data build out_dir=... makes it)")


def checkpoint_training_data(ckpt: str | os.PathLike, _depth: int = 0, loaded: Mapping | None = None
                             ) -> TrainingData:
    """:func:`training_data` of a checkpoint file (an edm_se enhancer checkpoint); ``loaded``: its content, when
    the caller has already read it (a large checkpoint is then not read twice)."""
    from edm_se.checkpoint import CheckpointError, load_checkpoint

    try:
        data = loaded if loaded is not None else load_checkpoint(ckpt)
    except CheckpointError as err:
        return TrainingData(str(ckpt), [], str(err))
    info = data.get("info") if isinstance(data.get("info"), Mapping) else {}
    bases = [str(info["train_cwd"])] if info.get("train_cwd") else []
    checkout = Path(ckpt).resolve().parents[2] if len(Path(ckpt).resolve().parents) > 2 else None
    if checkout is not None and (checkout / "pyproject.toml").is_file() and (checkout / "edm_se").is_dir():
        bases.append(str(checkout))  # edm_se/checkpoints/<name>.pt of a source checkout
    return training_data(data.get("train_config"), str(ckpt), _depth, bases, info.get("train_data"))


def rebase(spec: Any, base: Path) -> Any:
    """``spec`` with its relative paths joined to ``base`` (``builtin:`` specs and absolute paths unchanged)."""
    if isinstance(spec, (list, tuple)):
        return [rebase(s, base) for s in spec]
    from edm_se.data.datasets import split_spec

    text = str(spec)
    if text.startswith("builtin:"):
        return spec
    parts = split_spec(text)
    if parts is not None:
        prefix, location, split = parts
        return spec if Path(location).is_absolute() else f"{prefix}:{base / location}:{split}"
    return str(base / text) if not Path(text).is_absolute() else spec


def resolve_source(spec: Any, kind: str, bases: list[str]) -> tuple[Any, list[Path]]:
    """(the spec as resolved, its files): tried in the current directory, then against each of ``bases``.

    Raises:
        edm_se.audio.AudioError: the first attempt's error when none resolves.
    """
    from edm_se.audio import AudioError

    try:
        return spec, _files(spec, kind)
    except AudioError as first:
        for base in bases:
            moved = rebase(spec, Path(base))
            try:
                return moved, _files(moved, kind)
            except AudioError:
                continue
        raise first from None


def _files(spec: Any, kind: str) -> list[Path]:
    """:func:`edm_se.data.datasets.resolve_files`, plus ``task:<manifest.csv>:<split>`` (the clips of a split of a
    task manifest of ``edm-se data tasks``, every voice).

    Raises:
        edm_se.audio.AudioError: as resolve_files; a task manifest that is missing or not one.
    """
    from edm_se.audio import AudioError
    from edm_se.data.datasets import resolve_files, split_spec

    parts = split_spec(spec)
    if parts is not None and parts[0] == "task":
        from edm_se.tasks.data import TaskDataError, read_task_manifest

        _, manifest, split = parts
        try:
            rows = read_task_manifest(manifest, split)
        except TaskDataError as err:
            raise AudioError(manifest, str(err).removeprefix(f"{manifest}: ")) from None
        return [Path(manifest).parent / r["path"] for r in rows]
    return resolve_files(spec, kind)
