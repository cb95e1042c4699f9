"""Wiring configs into objects: one place that builds SDE -> Precond -> Denoiser(net), STFT and samplers.

Config nodes use Hydra's ``_target_``; the file name in a config group is the short name
(``conf/sde/ouve.yaml`` is ``sde=ouve``). Preconditionings are ``_partial_`` and receive the SDE here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

# The sub-configs that define a trained model (stored in every checkpoint).
MODEL_KEYS = ("sde", "precond", "net", "stft")


@dataclass
class ModelParts:
    """The pieces of a diffusion enhancer built from a config."""

    sde: Any
    precond: Any
    net: torch.nn.Module
    denoiser: torch.nn.Module
    stft: Any


# Keys that name files or directories (any command): a bare number on the command line (`test_set=2024`, `run_dir=9`,
# `ckpt=12`) is a path there, but Hydra reads it as an int, and Path(int) was a TypeError.
PATH_KEYS = ("input", "output", "ckpt", "estimates", "references", "noisy", "transcripts", "run_dir", "test_set",
             "results", "out_dir", "task_root", "manifest", "noise", "test_noise", "cache_dir", "enhancer_checkpoint",
             "reuse_checkpoints", "data.root", "paradigm.enhancer_checkpoint", "paradigm.task_checkpoint",
             "paradigm.front_end_checkpoint", "spectrogram.file", "spectrogram.line")


def paths_as_text(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """Give the :data:`PATH_KEYS` of ``cfg`` that Hydra read as numbers their text again, in place: the text of the
    command line's override (``overrides``, e.g. ``hydra.overrides.task``) where there is one, else ``str(value)``.
    """
    from edm_se.validate import override_pairs

    given = dict(override_pairs(overrides or []))

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if is_number(value):
            OmegaConf.update(cfg, key, given.get(key, str(value)), merge=False)
        elif OmegaConf.is_list(value) and any(is_number(v) for v in value):
            OmegaConf.update(cfg, key, [str(v) for v in value], merge=False)


def to_container(cfg: DictConfig | dict) -> dict:
    """Resolve interpolations and return a plain dict (what checkpoints and metrics.json store)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def config_diff(old: Any, new: Any, ignore: tuple[str, ...] = (), prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts (added and removed keys included).

    Args:
        old, new: resolved configs (:func:`to_container`).
        ignore: dotted keys (``"trainer.threads"``) or top-level keys left out of the comparison.

    Returns:
        Sorted dotted keys, e.g. ``["data.train.snr_db", "trainer.max_steps"]``.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}{k}"
            if key in ignore:
                continue
            if k not in old or k not in new:
                out.append(key)
            else:
                out += config_diff(old[k], new[k], ignore, f"{key}.")
        return out
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return [] if list(old) == list(new) else [prefix.rstrip(".")]
    return [] if old == new else [prefix.rstrip(".")]


def model_config(cfg: DictConfig | dict) -> dict:
    """The model-defining part of a full config: ``{sde, precond, net, stft}`` as a plain dict."""
    full = to_container(cfg)
    missing = [k for k in MODEL_KEYS if k not in full]
    if missing:
        raise KeyError(f"config lacks {missing}")
    return {k: full[k] for k in MODEL_KEYS}


def instantiate_group(node: Any, group: str, user_errors: tuple[type[Exception], ...] = (ValueError,),
                      **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)`` for the config group ``group``; an error of ``user_errors`` that
    its constructor raises (a parameter out of range, e.g. ``sde.c=-1``) becomes a one-line
    :class:`edm_se.validate.ConfigError` naming the group (its message's first line), instead of Hydra's wrapped
    multi-line error.

    Raises:
        edm_se.validate.ConfigError: the constructor refused a value.
    """
    from hydra.errors import InstantiationException

    from edm_se.validate import ConfigError

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, user_errors):
            raise ConfigError(f"{group}: {str(cause).strip().splitlines()[0]}") from None
        raise


def build_model(cfg: DictConfig | dict) -> ModelParts:
    """Build SDE, preconditioning, backbone, Denoiser and STFT from a config with keys ``sde, precond, net, stft``.

    Args:
        cfg: a (Dict)Config or plain dict; only :data:`MODEL_KEYS` are read.

    Returns:
        :class:`ModelParts`.

    Raises:
        edm_se.validate.ConfigError: a constructor refused a value (one line naming the group).
    """
    from edm_se.denoiser import Denoiser

    cfg = OmegaConf.create(model_config(cfg))
    sde = instantiate_group(cfg.sde, "sde")
    precond = instantiate_group(cfg.precond, "precond", sde=sde, _partial_=False)
    net = instantiate_group(cfg.net, "net")
    denoiser = Denoiser(net, precond)
    stft = instantiate_group(cfg.stft, "stft")
    return ModelParts(sde=sde, precond=precond, net=net, denoiser=denoiser, stft=stft)


def build_sampler(sampler_cfg: DictConfig | dict, **overrides: Any) -> Any:
    """Instantiate a sampler config node (``conf/sampler/*.yaml``), with optional field overrides."""
    node = OmegaConf.create(to_container(sampler_cfg) if isinstance(sampler_cfg, DictConfig) else sampler_cfg)
    for key, value in overrides.items():
        if value is not None:
            if key not in node:
                raise KeyError(f"sampler {node.get('_target_')} has no parameter {key!r}")
            node[key] = value
    # a sampler node is the user's own (a key its target does not take is a TypeError): both are user errors
    return instantiate_group(node, "sampler", user_errors=(ValueError, TypeError))


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else CPU; otherwise ``torch.device(name)``.

    Raises:
        edm_se.validate.ConfigError: a name torch does not know, or a CUDA device this machine does not have.
    """
    from edm_se.validate import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={name}: not a device torch knows; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ConfigError(f"device={name}: this machine has {count} CUDA device(s); device=auto takes the GPU "
                              "when there is one, else the CPU")
    return device
