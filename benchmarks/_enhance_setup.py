"""Set-up shared by the enhancement benchmarks (`bench_enhance.py`, `sampler_overhead.py`): the common command-line
options, and the model with one real test utterance repeated to a fixed length."""

from __future__ import annotations

import argparse
from pathlib import Path

from _env import positive_int  # benchmarks/ (this module's own directory)


def add_model_args(parser: argparse.ArgumentParser, repeats: int) -> None:
    """``--ckpt``, ``--net``, ``--compile``, ``--seconds``, ``--repeats``, ``--threads``, ``--device``."""
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--net", default=None, help="a conf/net name (e.g. ncsnpp_m): the checkpoint's model with "
                        "this backbone in place of its own, randomly initialised (seed 0), to time a larger network")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone (the warm-up call "
                        "compiles it for the input's shape; on the CPU it needs a C++ compiler)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the test input in seconds")
    parser.add_argument("--repeats", type=positive_int, default=repeats)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")


def model_and_input(args: argparse.Namespace):
    """``(EnhancementModel, (L,) waveform)``: the checkpoint on ``args.device`` with ``args.threads`` threads, and the
    first noisy file of the built-in test set repeated to ``args.seconds`` at the model's sample rate. With
    ``args.net`` the checkpoint's backbone is replaced by that ``conf/net`` one with random weights; with
    ``args.compile`` the backbone is wrapped in ``torch.compile``."""
    import torch

    from edm_se.audio import load_audio
    from edm_se.data import builtin_test_set
    from edm_se.model import EnhancementModel
    from edm_se.runtime import tune_malloc

    args.malloc_tuned = tune_malloc()  # as the `edm-se` command does (EDM_SE_MALLOC=default: glibc's default)
    torch.set_num_threads(args.threads)
    model = EnhancementModel.from_checkpoint(args.ckpt, device=args.device)
    if getattr(args, "net", None):
        from omegaconf import OmegaConf

        from edm_se.cli import conf_dir
        from edm_se.config import build_model

        net_yaml = Path(conf_dir()) / "net" / f"{args.net}.yaml"
        if not net_yaml.is_file():
            import sys

            names = " ".join(sorted(p.stem for p in net_yaml.parent.glob("*.yaml")))
            print(f"--net {args.net}: no such backbone config {net_yaml} (there are: {names})", file=sys.stderr)
            raise SystemExit(2)
        cfg = OmegaConf.create(dict(model.config))
        cfg.net = OmegaConf.load(net_yaml)
        torch.manual_seed(0)
        model = EnhancementModel(build_model(cfg), model.sampler, sample_rate=model.sample_rate,
                                 config=OmegaConf.to_container(cfg), device=args.device)
    if getattr(args, "compile", False):
        model.parts.denoiser.net = torch.compile(model.parts.denoiser.net)
    noisy = sorted((builtin_test_set() / "noisy").glob("*.flac"))[0]
    wave = load_audio(noisy, sample_rate=model.sample_rate)
    n = int(args.seconds * model.sample_rate)
    return model, wave.repeat(n // wave.shape[-1] + 1)[:n]
