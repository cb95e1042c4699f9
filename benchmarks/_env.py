"""What every benchmark's JSON records about where it ran."""

from __future__ import annotations

import os
import platform


def environment() -> dict:
    """``torch``, ``python``, ``machine`` (the processor's name where the platform gives one) and ``cpu_count``."""
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
