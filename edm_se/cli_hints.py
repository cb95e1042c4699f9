"""What ``edm-se`` tells a user whose command line does not compose, and the config-group part of its ``--help``.

:mod:`edm_se.cli` runs each command as a Hydra app; when Hydra cannot compose the command line, the hints here
name the cause in one line (a field of an unchosen group, an unknown group option, a misspelt key, a section given
a value), and :func:`config_groups_help` lists the groups a command chooses (``conf/hydra/help/edm_se.yaml``).
"""

from __future__ import annotations

from pathlib import Path


def _conf() -> Path:
    from edm_se.cli import conf_dir  # imported late: edm_se.cli imports this module

    return Path(conf_dir())


# groups a command can add that its defaults list does not name (`edm-se train +experiment=cpu_demo`)
ADDABLE_GROUPS: dict[str, tuple[str, ...]] = {"train": ("experiment",)}


def group_options(group: str) -> list[str]:
    """The options of config group ``group`` (``conf/<group>/**/*.yaml``, sorted), with ``paradigms`` for
    ``study`` (``edm-se study study=paradigms`` runs the paradigms app, see :func:`edm_se.cli.main`)."""
    from edm_se.cli import STUDY_APPS

    root = _conf() / group
    options = {p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml")}
    return sorted({*options, *STUDY_APPS} if group == "study" else options)


def config_groups_help(config_name: str) -> str:
    """The "Configuration groups" section of ``edm-se <command> --help`` (``conf/hydra/help/edm_se.yaml``): the
    groups of ``conf/<config_name>.yaml``'s defaults list with their options, and the groups it can add with ``+``;
    "" when the command chooses no group (evaluate, plot, data). Hydra's own section listed every group under
    ``conf/``, so `edm-se plot --help` offered `net` and `loss`."""
    conf = _conf()
    named = [str(k) for entry in (_defaults_list(config_name) or []) if isinstance(entry, dict) for k in entry
             if (conf / str(k)).is_dir()]
    lines = []
    for group in [*named, *ADDABLE_GROUPS.get(config_name, ())]:
        options = group_options(group)
        added = group not in named
        lines.append(f"{'+' if added else ''}{group}: {', '.join(options)}")
    if not lines:
        return ""
    adds = "; +group=option adds one" if ADDABLE_GROUPS.get(config_name) else ""
    return ("== Configuration groups ==\nCompose your configuration from those groups (group=option" + adds + ")\n\n"
            + "\n".join(lines) + "\n\n")


def _defaults_list(config_name: str) -> list | None:
    """The defaults list of ``conf/<config_name>.yaml`` as plain Python (``[]`` without one); None when the file
    cannot be read (the hints that use it are then left out: Hydra's own message stands without them)."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(_conf() / f"{config_name}.yaml")).get("defaults") or []
    except Exception:  # noqa: BLE001 (only for hints)
        return None


def unchosen_group_hint(config_name: str, argv: list[str]) -> str | None:
    """The message for the usual cause of a failed composition: a field of a config group that the command leaves
    unchosen (``- sampler: null`` in ``conf/enhance.yaml``: the checkpoint's own sampler) set without choosing the
    group, e.g. ``sampler.num_steps=8`` without ``sampler=NAME``; None when the command line has no such field."""
    import re

    defaults = _defaults_list(config_name)
    if defaults is None:
        return None
    unchosen = [next(iter(d)) for d in defaults if isinstance(d, dict) and len(d) == 1
                and next(iter(d.values())) is None]
    for group in unchosen:
        chosen = any(re.match(rf"^[+~]*{group}=", a) for a in argv)
        field = next((a for a in argv if re.match(rf"^{group}\.[\w.]+=", a)), None)
        if field is not None and not chosen:
            names = group_options(group)
            example = "edm_heun" if "edm_heun" in names else (names[0] if names else "NAME")  # the default sampler
            return (f"{field}: no {group} is chosen on this command line, so it has no fields to set; choose one "
                    f"first ({group}={example} {field}; {group}: {', '.join(names)})"
                    + (", or set num_steps=N for the default one" if field.startswith(f"{group}.num_steps=")
                       else ""))
    return None


def unknown_option_hint(argv: list[str]) -> str | None:
    """The message for a config group option that does not exist (``sde=ouvee``, ``+experiment=nope``): the first
    such override, the nearest options (:func:`difflib.get_close_matches`) and all of them; a comma-separated sweep
    (``-m sde=ouve,nope``) is checked option by option. None when every group option exists, or for values Hydra's
    grammar writes with brackets or functions (``choice(...)``), which are left to Hydra's own message."""
    import difflib

    conf = _conf()
    for arg in argv:
        shown, eq, value = arg.partition("=")
        key = shown.lstrip("+")
        if not eq or not (conf / key).is_dir() or key.startswith("_") or any(c in value for c in "()[]{}"):
            continue
        options = group_options(key)
        for option in value.split(","):
            option = option.strip()
            if option in ("", "null") or option in options:
                continue
            near = difflib.get_close_matches(option, options, n=2, cutoff=0.6)
            return (f"{shown}={option}: {key} has no option {option!r} ("
                    + (f"did you mean {' or '.join(f'{key}={n}' for n in near)}? " if near else "")
                    + f"options: {', '.join(options)})")
    return None


def unknown_key_hint(config_name: str, argv: list[str]) -> str | None:
    """The message for an override of a key the config does not have (``checkpoint=x.pt`` for ``ckpt=``,
    ``trainer.max_step=5``): the first such key, where its path stops matching, and the nearest existing keys at
    that level (:func:`difflib.get_close_matches`). The config is composed with the command line's group choices
    only, so the fields of a chosen group count. None when every key exists (a bad value or a bad group option:
    Hydra's own message says which), when the group choices themselves do not compose, or for ``+key=`` additions.
    Also the message for a section given a value (``tasks=[keywords]`` where ``tasks`` holds keys)."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "+", "~"))]
    groups = {p.name for p in _conf().iterdir() if p.is_dir() and not p.name.startswith("_")}
    choices = [a for a in overrides if a.split("=", 1)[0] in groups]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(_conf()), version_base=None):
            cfg = compose(config_name=config_name, overrides=choices)
    except Exception:  # noqa: BLE001 (only a hint: Hydra's own message stands without it)
        return None
    finally:
        GlobalHydra.instance().clear()
    tree = OmegaConf.to_container(cfg, resolve=False)  # plain dicts; interpolations left as they are
    dotted = _dotted_keys(tree)
    for override in overrides:
        if override in choices or override.startswith("hydra."):
            continue
        key = override.split("=", 1)[0]
        node, path = tree, []
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node, path = node[part], [*path, part]
                continue
            if not isinstance(node, dict):
                return f"{key}: `{'.'.join(path)}` is a value, not a section with keys"
            here = [str(k) for k in node]
            prefix = ".".join(path) + "." if path else ""
            # the same name elsewhere in the tree first (progress= -> trainer.progress=, optim.lr= ->
            # trainer.optimizer.lr=), then near names at this level
            same_name = {name: [k for k in dotted if k.rsplit(".", 1)[-1] == name]
                         for name in dict.fromkeys((part, key.rsplit(".", 1)[-1]))}
            near = next((keys[:3] for keys in same_name.values() if keys), None) or \
                [prefix + n for n in difflib.get_close_matches(part, here, n=3, cutoff=0.5)]
            if not path:  # a top-level name may also be a group the command can choose
                near += [g for g in difflib.get_close_matches(part, sorted(_command_groups(config_name, tree, groups)),
                                                              n=2, cutoff=0.6) if g not in near]
            where = f"`{'.'.join(path)}`" if path else "this command's config"
            suggestion = (f"did you mean {' or '.join(n + '=' for n in near)}?" if near else
                          f"its keys: {', '.join(prefix + k for k in here)}")
            return f"{key}: no such key in {where} ({suggestion})"
        value = override.split("=", 1)[1].strip()
        if isinstance(node, dict) and node and value not in ("", "null") and not value.startswith("{"):
            # `tasks=[keywords]` where tasks holds keys: Hydra's "Cannot merge DictConfig with ListConfig"
            from edm_se.validate_overrides import section_given_value

            return section_given_value(override, key, node)
    return None


def _command_groups(config_name: str, tree: dict, groups: set[str]) -> set[str]:
    """The config groups a command can choose: those its config's defaults list names (``- sampler: null`` in
    ``conf/enhance.yaml``) and those its composed config holds. Not every group under ``conf/``: ``edm-se evaluate
    sample_rate=8000`` was told "did you mean sampler=?", which evaluate has no use for."""
    named = {str(k) for entry in (_defaults_list(config_name) or []) if isinstance(entry, dict) for k in entry}
    return {g for g in groups if g in named or g in tree}


def _dotted_keys(tree: dict, prefix: str = "") -> list[str]:
    """Every key of a nested dict, dotted (``trainer.progress``), depth first."""
    out = []
    for k, v in tree.items():
        out.append(prefix + str(k))
        if isinstance(v, dict):
            out += _dotted_keys(v, prefix + str(k) + ".")
    return out
