"""Process-level settings that make PyTorch on the CPU fast: the C allocator's handling of large tensors.

glibc's ``malloc`` serves every block above its mmap threshold (128 KiB, raised dynamically up to 32 MiB) with a
fresh ``mmap`` and gives it back to the kernel on ``free``; and it trims the heap whenever more than the trim
threshold lies free at its top. A diffusion sampler or trainer allocates and frees the same few-megabyte tensors
at every network call, so each call page-faults its memory in again: about 10,000 minor page faults (40 MB of
pages zeroed by the kernel) per call of the bundled model on a 4 s input, measured with ``getrusage``, and 38% of
the call's time (``benchmarks/malloc_faults.py``: 36.9 ms against 22.8 ms; README "Performance").
:func:`tune_malloc` keeps freed blocks in the process instead, as jemalloc and tcmalloc do: blocks up to 32 MiB
(glibc's largest mmap threshold on 64-bit) come from the heap, and up to 1 GiB of free heap is kept. The price is
a resident size that stays at its peak rather than shrinking after it.

The ``edm-se`` command calls :func:`tune_malloc` on start; Python users call it once themselves
(``edm_se.tune_malloc()``). ``EDM_SE_MALLOC=default`` in the environment leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_malloc", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 32 * 1024 * 1024   # bytes: blocks below this come from the heap (glibc's maximum on 64-bit)
TRIM_THRESHOLD = 1024 * 1024 * 1024  # bytes of free heap top kept before glibc returns memory to the kernel

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)
_TUNED: bool | None = None


def tune_malloc() -> bool:
    """Keep freed tensor memory in the process (see the module docstring). Idempotent.

    Returns:
        True when glibc accepted both settings (now or on an earlier call); False on a C library without
        ``mallopt`` (macOS, Windows, musl), when ``EDM_SE_MALLOC=default`` is set, or when glibc refused a value.
        Never raises.
    """
    global _TUNED
    if _TUNED is not None:
        return _TUNED
    _TUNED = False
    if os.environ.get("EDM_SE_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _TUNED = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _TUNED
