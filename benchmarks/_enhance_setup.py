"""Set-up shared by the enhancement benchmarks (`bench_enhance.py`, `sampler_overhead.py`): the common command-line
options, and the model with one real test utterance repeated to a fixed length."""

from __future__ import annotations

import argparse


def add_model_args(parser: argparse.ArgumentParser, repeats: int) -> None:
    """``--ckpt``, ``--seconds``, ``--repeats``, ``--threads``, ``--device``."""
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the test input in seconds")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")


def model_and_input(args: argparse.Namespace):
    """``(EnhancementModel, (L,) waveform)``: the checkpoint on ``args.device`` with ``args.threads`` threads, and the
    first noisy file of the built-in test set repeated to ``args.seconds`` at the model's sample rate."""
    import torch

    from edm_se.audio import load_audio
    from edm_se.data import builtin_test_set
    from edm_se.model import EnhancementModel
    from edm_se.runtime import tune_malloc

    args.malloc_tuned = tune_malloc()  # as the `edm-se` command does (EDM_SE_MALLOC=default: glibc's default)
    torch.set_num_threads(args.threads)
    model = EnhancementModel.from_checkpoint(args.ckpt, device=args.device)
    noisy = sorted((builtin_test_set() / "noisy").glob("*.flac"))[0]
    wave = load_audio(noisy, sample_rate=model.sample_rate)
    n = int(args.seconds * model.sample_rate)
    return model, wave.repeat(n // wave.shape[-1] + 1)[:n]
