"""edm_se: a diffusion-model design-space laboratory for speech enhancement.

The signal model, shared by every SDE (Gonzalez et al. 2024, TASLP, "Investigating the design space of diffusion
models for speech enhancement", extending Karras et al. 2022):

    x_t = y + s(t) * (x0 - y + sigma(t) * noise),   t in [0, 1]

with ``x0`` the clean and ``y`` the noisy compressed complex STFT (``m(t) y`` in place of the first ``y`` for the
Schrödinger bridge over a VP reference process, :class:`edm_se.sde.SBVP`).
"""

__version__ = "0.1.0"


def tune_malloc() -> bool:
    """Keep freed tensor memory in the process: network calls about 1.6x faster on the CPU with glibc
    (``benchmarks/malloc_faults.py``: 36.9 -> 22.8 ms). See
    :func:`edm_se.runtime.tune_malloc` (the ``edm-se`` command calls it on start)."""
    from edm_se.runtime import tune_malloc as _tune

    return _tune()


def load(ckpt=None, device: str = "auto"):
    """Load a trained enhancer (``None``: the bundled default). See :func:`edm_se.model.load`."""
    from edm_se.model import load as _load

    return _load(ckpt, device=device)
