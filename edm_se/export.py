"""Export a training checkpoint as a small inference checkpoint (EMA weights + config + default sampler).

    python -m edm_se.export runs/bundled/checkpoints/last.pt edm_se/checkpoints/default.pt \
        --sampler edm_heun --num-steps 4 --note "trained with: edm-se train +experiment=cpu_demo ..."

Drops the optimizer, scheduler, raw (non-EMA) weights and RNG state, keeps ``format``, ``config`` (with the chosen
default sampler), ``train_config``, ``step`` and ``ema``; written atomically. This is how the bundled model was made.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edm_se.checkpoint import FORMAT, CheckpointError, atomic_torch_save, load_checkpoint


def export_checkpoint(src: str | Path, dest: str | Path, sampler: str | None = None, num_steps: int | None = None,
                      note: str | None = None, half: bool = False) -> Path:
    """Write the inference part of checkpoint ``src`` to ``dest``.

    Args:
        src: a checkpoint written by ``edm-se train``.
        dest: output path (parent directories are created).
        sampler: ``conf/sampler`` name to store as the model's default sampler (None: keep the stored one).
        num_steps: default ``num_steps`` of that sampler.
        note: free text stored under ``info["note"]`` (e.g. the training command).
        half: store the weights as float16 (halves the size; they are cast back to float32 on load).

    Returns:
        ``dest``.

    Raises:
        CheckpointError: ``src`` is not a valid checkpoint.
    """
    import torch

    from edm_se.model import sampler_from_name
    from omegaconf import OmegaConf

    ckpt = load_checkpoint(src)
    config = dict(ckpt["config"])
    if sampler is not None:
        config["sampler"] = OmegaConf.to_container(sampler_from_name(sampler), resolve=True)
    if num_steps is not None:
        if not config.get("sampler"):
            raise CheckpointError(f"{src}: no stored sampler; pass --sampler")
        config["sampler"]["num_steps"] = int(num_steps)
    ema = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["ema"].items()}
    out = {"format": FORMAT, "config": config, "train_config": ckpt.get("train_config"), "step": ckpt.get("step"),
           "ema": ema, "info": {**(ckpt.get("info") or {}), "exported_from": str(src), "note": note or ""}}
    del torch
    return atomic_torch_save(out, dest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edm_se.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="training checkpoint (run_dir/checkpoints/last.pt or best.pt)")
    parser.add_argument("dest", help="output checkpoint")
    parser.add_argument("--sampler", help="default sampler (a conf/sampler name)")
    parser.add_argument("--num-steps", type=int, help="default num_steps of the sampler")
    parser.add_argument("--note", help="text stored with the checkpoint (e.g. the training command)")
    parser.add_argument("--half", action="store_true", help="store float16 weights")
    args = parser.parse_args(argv)
    try:
        path = export_checkpoint(args.src, args.dest, args.sampler, args.num_steps, args.note, args.half)
    except (CheckpointError, ValueError) as err:
        print(f"edm_se.export: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":  # pragma: no cover
    main()
