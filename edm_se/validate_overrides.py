"""Checking the command line's overrides against the config files they override (:func:`overrides`): a section given
a value (``trainer.optimizer=5``), a constructor's number given text, a ``_target_`` that names nothing importable.
A bad override raises :class:`edm_se.validate.ConfigError` (one line naming it) before the command runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from edm_se.validate import _MISSING, ConfigError, _is_int, is_number


def overrides(cfg: DictConfig, conf: str | Path, config_name: str, overrides: Iterable[str],
              choices: dict[str, Any]) -> None:
    """Check the kind of every ``key=value`` override against the default it replaces, for every command before
    it starts: a section (keys) given a value (``trainer.optimizer=5``), a constructor's number given a text
    (``sde.theta=abc``), and a ``_target_`` that cannot be imported (``sde._target_=edm_se.sde.Nope``). Each
    ended in Hydra's multi-line instantiation error, exit status 1. The default is read from the group option
    chosen for the key's first part (``conf/sde/ouve.yaml`` for ``sde.theta``) or from ``conf/<config_name>.yaml``;
    keys without one (``+key=`` additions, presets with a ``@package`` line) are left to the command's own checks.

    Args:
        cfg: the composed config the command runs with.
        conf: the config directory.
        config_name: the command's primary config (``train``, ``enhance``, ...).
        overrides: the command line's overrides (``hydra.overrides.task``).
        choices: Hydra's group choices (``hydra.runtime.choices``: group -> option).

    Raises:
        ConfigError: the first bad override, as ``"<key>=<value>: <problem>"``.
    """
    for override in overrides:
        key, eq, text = str(override).partition("=")
        if not eq or key.startswith(("+", "~", "hydra.", "hydra/")) or key in choices or "," in text:
            continue
        if key == "_target_" or key.endswith("._target_"):
            problem = _unimportable(text)
            if problem:
                raise ConfigError(f"{override}: {problem}")
            continue
        default = _default_value(Path(conf), config_name, key, choices)
        if default is _MISSING:
            continue
        try:
            actual = OmegaConf.select(cfg, key, default=_MISSING)
        except Exception:  # noqa: BLE001 (an interpolation that does not resolve: the command reports it)
            continue
        if actual is _MISSING or actual is None:
            continue
        if isinstance(default, dict) and default and not isinstance(actual, DictConfig):
            raise ConfigError(section_given_value(override, key, default))
        parent = OmegaConf.select(cfg, key.rpartition(".")[0]) if "." in key else None
        if is_number(default) and isinstance(actual, str) and isinstance(parent, DictConfig) and "_target_" in parent:
            # a constructor's argument (the command's own keys have their own checks, with ranges)
            kind = "an integer" if _is_int(default) else "a number"
            raise ConfigError(f"{override}: must be {kind} (the default is {default})")


def section_given_value(override: str, key: str, section: Iterable[Any]) -> str:
    """The one-line message for ``override`` giving a value to ``key``, a section with the keys ``section``
    (``trainer.optimizer=5``; ``tasks=[keywords]``, which does not compose:
    :func:`edm_se.cli_hints.unknown_key_hint`)."""
    keys = [str(k) for k in section]
    first = next((k for k in keys if not k.startswith("_")), keys[0])
    return (f"{override}: `{key}` is a section with keys ({', '.join(keys)}), not a value; set one of them "
            f"({key}.{first}=...)")


def _unimportable(target: str) -> str | None:
    """Why the dotted path ``target`` names no class or function (None when it does): its longest importable
    module prefix, then attributes, as Hydra's ``instantiate`` looks it up."""
    import importlib

    parts = target.split(".")
    if not target or not all(part.isidentifier() for part in parts):
        return "not a dotted Python path (module.Class)"
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name != err.name and not name.startswith(err.name + "."):
                return f"importing {target} failed ({err})"  # the module exists; something it imports does not
            continue
        for i, attr in enumerate(parts[cut:], start=cut):
            if not hasattr(obj, attr):
                return f"{'.'.join(parts[:i])} has no {attr!r}"
            obj = getattr(obj, attr)
        return None if callable(obj) else f"{target} is a module or a value, not a class or function"
    return f"no module named {parts[0]!r}"


def _default_value(conf: Path, config_name: str, key: str, choices: dict[str, Any]) -> Any:
    """The default of ``key`` in the files it comes from (see :func:`overrides`), unresolved; ``_MISSING`` where
    it is not found, is an interpolation, or comes from a file with a ``@package`` line."""
    head, _, rest = key.partition(".")
    choice = choices.get(head)
    path, parts = ((conf / head / f"{choice}.yaml", rest.split(".") if rest else [])
                   if isinstance(choice, str) and (conf / head).is_dir() else
                   (conf / f"{config_name}.yaml", key.split(".")))
    if not parts or not path.is_file():
        return _MISSING
    text = path.read_text(encoding="utf-8")
    if "@package" in text:
        return _MISSING
    node: Any = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return _MISSING if isinstance(node, str) and "${" in node else node
