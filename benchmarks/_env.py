"""What every benchmark's JSON records about where it ran."""

from __future__ import annotations

import argparse
import os
import platform


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts (repeats, rounds, steps, files): an integer >= 1, else argparse's one-line
    usage error (a count of 0 ended in ``statistics.median``'s traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def cpu_model() -> str:
    """The processor's name: the first ``model name`` of ``/proc/cpuinfo`` on Linux (``platform.processor()``
    there gives only the architecture), else ``platform.processor()``, else ``""``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment() -> dict:
    """``torch``, ``python``, ``machine`` (the architecture, or the processor's name where the platform gives
    one), ``cpu`` (:func:`cpu_model`), ``cpu_count`` and, with CUDA, ``gpu`` (the first device's name)."""
    import torch

    env = {"torch": torch.__version__, "python": platform.python_version(),
           "machine": platform.processor() or platform.machine(), "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env
