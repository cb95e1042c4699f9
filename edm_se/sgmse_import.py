"""Read SGMSE+ checkpoints (github.com/sp-uhh/sgmse, PyTorch Lightning ``.ckpt``) as edm_se checkpoints.

``edm-se import sgmse CKPT OUT`` (:func:`import_sgmse`) converts a checkpoint of sgmse's ``ScoreModel`` with the
``ncsnpp`` backbone and the ``ouve`` SDE into an edm_se checkpoint with ``sde=ouve`` (its theta, sigma_min,
sigma_max), ``precond=sgmse``, ``net=ncsnpp`` (its width, levels, attention) and ``sampler=pc`` (its N), so that
every sampler and study of the lab runs on a published model. The EMA weights are used when the checkpoint holds
them (sgmse keeps them under ``ema.shadow_params``, in the order of ``ScoreModel.parameters()``); otherwise the raw
``state_dict``.

The mapping (:func:`convert_ncsnpp_state`) walks sgmse's ``all_modules`` list in its forward order beside the
named modules of :class:`edm_se.nets.ncsnpp.NCSNpp` in the same order: ResNet blocks (``GroupNorm_0, Conv_0,
Dense_0, GroupNorm_1, Conv_1, Conv_2`` -> ``norm0, conv0, dense, norm1, conv1, skip``), attention (``NIN_0..3``,
``y = x W + b`` -> 1x1 convs with weight ``W^T``), the ``input_skip`` combiners (``Conv_0``), the output pyramid's
GroupNorm and 3x3 conv, and ``output_layer``. sgmse's Gaussian Fourier frequencies (a frozen ``nn.Parameter`` of
``nf`` entries, the only difference in the parameter counts: 65,590,822 against 65,590,694 for nf = 128) become
our buffer ``embed.W``. sgmse's backbone divides its output by ``t`` and takes ``log t`` inside; here the
preconditioning carries both (``c_out = -s sigma^2 / t``, ``c_noise = log t``), so the score is the same; sgmse
divides by ``t`` before its ``output_layer``, so that layer's bias is not divided by ``t``: the imported net has
``output_bias_times_t=True``.

Raises :class:`edm_se.checkpoint.CheckpointError` (one line) for a file that is not an sgmse checkpoint, another
backbone or SDE, a hyper-parameter of the wrong type or out of range, weights that do not fit, or an output that
cannot be written (a directory, under a file, the input itself).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edm_se.checkpoint import FORMAT, CheckpointError, atomic_torch_save, require_torch_file

__all__ = ["convert_ncsnpp_state", "sgmse_config", "import_sgmse", "ncsnpp_forward_modules"]

# sgmse's ``ncsnpp`` defaults (sgmse/backbones/ncsnpp.py), used where the checkpoint's hyper-parameters are silent
NCSNPP_DEFAULTS = {"nf": 128, "ch_mult": [1, 1, 2, 2, 2, 2, 2], "num_res_blocks": 2, "attn_resolutions": [16],
                   "image_size": 256, "fir_kernel": [1, 3, 3, 1], "fourier_scale": 16.0, "skip_rescale": True,
                   "init_scale": 0.0, "dropout": 0.0}
RESBLOCK = {"GroupNorm_0": "norm0", "Conv_0": "conv0", "Dense_0": "dense", "GroupNorm_1": "norm1",
            "Conv_1": "conv1", "Conv_2": "skip"}


def ncsnpp_forward_modules(net) -> list[tuple[str, nn.Module]]:
    """The named modules of an :class:`edm_se.nets.ncsnpp.NCSNpp` in the order sgmse's ``all_modules`` holds them
    (after its Fourier projection): embedding MLP, input conv, encoder (blocks, attention, down block, combiner),
    middle, decoder (blocks, attention, pyramid norm and conv, up block)."""
    out: list[tuple[str, nn.Module]] = [("embed_fc0", net.embed_fc0), ("embed_fc1", net.embed_fc1),
                                        ("conv_in", net.conv_in)]
    for level in range(net.num_levels):
        for b in range(net.num_res_blocks):
            out.append((f"enc_blocks.{level}.{b}", net.enc_blocks[level][b]))
            if net.level_has_attn[level]:
                out.append((f"enc_attn.{level}.{b}", net.enc_attn[level][b]))
        if level != net.num_levels - 1:
            out += [(f"enc_down.{level}", net.enc_down[level]), (f"enc_combine.{level}", net.enc_combine[level])]
    out += [("mid_block0", net.mid_block0), ("mid_attn", net.mid_attn), ("mid_block1", net.mid_block1)]
    for i, level in enumerate(reversed(range(net.num_levels))):
        out += [(f"dec_blocks.{i}.{b}", blk) for b, blk in enumerate(net.dec_blocks[i])]
        if net.level_has_attn[level]:
            out.append((f"dec_attn.{i}", net.dec_attn[i]))
        out += [(f"dec_out_norm.{i}", net.dec_out_norm[i]), (f"dec_out_conv.{i}", net.dec_out_conv[i])]
        if level != 0:
            out.append((f"dec_up.{i}", net.dec_up[i]))
    return out


def convert_ncsnpp_state(theirs: dict[str, torch.Tensor], net) -> dict[str, torch.Tensor]:
    """sgmse ``NCSNpp`` state dict (keys ``all_modules.<i>.*`` and ``output_layer.*``, without a ``dnn.`` prefix)
    -> the state dict of ``net`` (an :class:`edm_se.nets.ncsnpp.NCSNpp` of the same configuration).

    Raises:
        CheckpointError: a key is missing or left over, or a shape differs (another configuration).
    """
    from edm_se.nets.ncsnpp import AttnBlock, BigGANResBlock

    direct = {"embed.W": "all_modules.0.W", "output_layer.weight": "output_layer.weight",
              "output_layer.bias": "output_layer.bias"}
    missing_keys = [k for k in direct.values() if k not in theirs]
    if missing_keys:
        raise CheckpointError(f"sgmse NCSN++ weights lack {missing_keys[:3]}")
    ours: dict[str, torch.Tensor] = {k: theirs[v] for k, v in direct.items()}
    used = set(direct.values())
    for idx, (name, module) in enumerate(ncsnpp_forward_modules(net), start=1):
        prefix = f"all_modules.{idx}."
        sub = {k[len(prefix):]: v for k, v in theirs.items() if k.startswith(prefix)}
        used.update(prefix + k for k in sub)
        if isinstance(module, BigGANResBlock):
            for k, v in sub.items():
                part, _, leaf = k.partition(".")
                if part not in RESBLOCK:
                    raise CheckpointError(f"sgmse key {prefix}{k}: not a BigGAN ResNet block parameter")
                ours[f"{name}.{RESBLOCK[part]}.{leaf}"] = v
        elif isinstance(module, AttnBlock):
            for k, v in sub.items():
                part, _, leaf = k.partition(".")
                if part == "GroupNorm_0":
                    ours[f"{name}.norm.{leaf}"] = v
                elif part in ("NIN_0", "NIN_1", "NIN_2", "NIN_3"):
                    target = {"NIN_0": "q", "NIN_1": "k", "NIN_2": "v", "NIN_3": "proj"}[part]
                    ours[f"{name}.{target}." + ("weight" if leaf == "W" else "bias")] = (
                        v.t()[:, :, None, None] if leaf == "W" else v)
                else:
                    raise CheckpointError(f"sgmse key {prefix}{k}: not an attention parameter")
        else:  # Linear, Conv2d, GroupNorm; the input_skip combiner keeps its conv as Conv_0
            for k, v in sub.items():
                ours[f"{name}.{k.removeprefix('Conv_0.')}"] = v
    expected = net.state_dict()
    left = sorted(set(theirs) - used)
    missing = sorted(set(expected) - set(ours))
    extra = sorted(set(ours) - set(expected))
    if left or missing or extra:
        raise CheckpointError(f"sgmse NCSN++ does not map onto this configuration (unused: {left[:3]}, missing: "
                              f"{missing[:3]}, unknown: {extra[:3]})")
    for k, v in ours.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"sgmse NCSN++ parameter for {k}: shape {tuple(v.shape)}, expected "
                                  f"{tuple(expected[k].shape)} (another width or depth)")
    return {k: v.detach().to(expected[k].dtype).clone() for k, v in ours.items()}


def sgmse_config(hparams: dict[str, Any]) -> dict[str, Any]:
    """The edm_se model config (sde, precond, net, stft, sampler) of an sgmse checkpoint's ``hyper_parameters``.

    Raises:
        CheckpointError: a backbone other than ``ncsnpp`` or an SDE other than ``ouve``.
    """
    backbone, sde = str(hparams.get("backbone", "ncsnpp")), str(hparams.get("sde", "ouve")).lower()
    if backbone != "ncsnpp":
        raise CheckpointError(f"sgmse backbone {backbone!r}: only 'ncsnpp' is imported")
    if sde not in ("ouve", "ouvesde"):
        raise CheckpointError(f"sgmse SDE {sde!r}: only 'ouve' is imported (SGMSE+)")
    if str(hparams.get("transform_type", "exponent")) != "exponent":
        raise CheckpointError(f"sgmse transform_type {hparams.get('transform_type')!r}: only 'exponent' is imported")
    theta, sigma_min, sigma_max = (_hp(hparams, k, d) for k, d in (("theta", 1.5), ("sigma_min", 0.05),
                                                                        ("sigma_max", 0.5)))
    n_fft, hop = _hp(hparams, "n_fft", 510, integer=True), _hp(hparams, "hop_length", 128, integer=True)
    alpha, beta = _hp(hparams, "spec_abs_exponent", 0.5), _hp(hparams, "spec_factor", 0.15)
    num_steps, t_eps = _hp(hparams, "N", 30, integer=True), _hp(hparams, "t_eps", 0.03)
    if num_steps < 1:
        raise CheckpointError(f"sgmse hyper-parameter N={num_steps}: its PC sampler needs at least 1 step")
    if not 0 < t_eps < 1:
        raise CheckpointError(f"sgmse hyper-parameter t_eps={t_eps}: must lie in (0, 1)")
    net = {"_target_": "edm_se.nets.ncsnpp.NCSNpp", "in_channels": 4, "out_channels": 2,
           **{k: _net_hp(hparams, k, v) for k, v in NCSNPP_DEFAULTS.items()},
           "output_bias_times_t": True}  # sgmse divides by t before its output layer
    return {
        "sde": {"_target_": "edm_se.sde.OUVE", "theta": theta, "sigma_min": sigma_min, "sigma_max": sigma_max},
        "precond": {"_target_": "edm_se.precond.SGMSE", "_partial_": True},
        "net": net,
        "stft": {"_target_": "edm_se.stft.SpecTransform", "n_fft": n_fft, "hop_length": hop, "alpha": alpha,
                 "beta": beta},
        "sampler": {"_target_": "edm_se.samplers.PC", "num_steps": num_steps, "snr": 0.5,
                    "corrector_steps": 1, "final_denoise": False, "predictor_in_sigma": False, "float64": True,
                    "schedule": {"_target_": "edm_se.schedules.Uniform", "t_min": t_eps}},
        "sample_rate": 16000,
    }


def _hp(hparams: dict[str, Any], key: str, default: float, integer: bool = False) -> Any:
    """The finite number ``hparams[key]`` (``default`` when absent), an int where ``integer``.

    Raises:
        CheckpointError: not a finite number (not an integer where ``integer``), naming the key.
    """
    value = hparams.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or (integer and number != int(number)):
        raise CheckpointError(f"sgmse hyper-parameter {key}={value!r}: not {'an integer' if integer else 'a number'}")
    return int(number) if integer else number


def _net_hp(hparams: dict[str, Any], key: str, default: Any) -> Any:
    """The NCSN++ hyper-parameter ``key`` of the type of its sgmse default (a list of integers, an integer, a
    number or a bool).

    Raises:
        CheckpointError: another type, naming the key.
    """
    value = hparams.get(key, default)
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise CheckpointError(f"sgmse hyper-parameter {key}={value!r}: not a list of integers")
        return list(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise CheckpointError(f"sgmse hyper-parameter {key}={value!r}: not true or false")
        return value
    return _hp(hparams, key, default, integer=isinstance(default, int))


def _dnn_state(ckpt: dict, use_ema: bool) -> tuple[dict[str, torch.Tensor], str]:
    state = ckpt["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"its state_dict is a {type(state).__name__}, not a mapping of tensors")
    dnn = {k[len("dnn."):]: v for k, v in state.items() if k.startswith("dnn.")}
    if not dnn:
        raise CheckpointError("no 'dnn.*' weights in its state_dict (not an sgmse ScoreModel checkpoint)")
    ema = (ckpt.get("ema") or {}).get("shadow_params") if use_ema else None
    # sgmse builds its EMA from ScoreModel.parameters() before anything else has parameters: the backbone's, in
    # its state_dict order (the backbone has no buffers)
    names = list(dnn)
    if ema is not None and len(ema) == len(names) and all(
            tuple(e.shape) == tuple(dnn[n].shape) for e, n in zip(ema, names)):
        return dict(zip(names, ema)), "ema"
    return dnn, "state_dict" if ema is None else "state_dict (its EMA list does not match the parameters)"


def import_sgmse(ckpt_path: str | os.PathLike, out_path: str | os.PathLike, use_ema: bool = True) -> dict:
    """Convert an sgmse checkpoint to an edm_se checkpoint at ``out_path`` (written atomically).

    Returns:
        ``{"out", "weights" ("ema" | "state_dict"), "parameters", "config"}``.

    Raises:
        CheckpointError: unreadable file, not an sgmse ``ScoreModel`` (ncsnpp + ouve), hyper-parameters of the
            wrong type or out of range, weights that do not fit; ``out_path`` a directory, the input itself, or
            not writable.
    """
    path, out = Path(ckpt_path), Path(out_path)
    if out.is_dir():
        raise CheckpointError(f"{out}: is a directory; name the output file (e.g. {out / (path.stem + '.pt')})")
    if out.exists() and path.exists() and out.resolve() == path.resolve():
        raise CheckpointError(f"{out}: is the sgmse checkpoint itself; name another output file (it would be "
                              "overwritten)")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; name the checkpoint file (sgmse's .ckpt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: sgmse checkpoint not found")
    require_torch_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)  # Lightning pickles its hyper-parameters
    except Exception as err:  # noqa: BLE001 - any unreadable file is one user error
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: no 'state_dict' (not a PyTorch Lightning checkpoint of sgmse)")
    hparams = ckpt.get("hyper_parameters") or {}
    try:
        if not isinstance(hparams, Mapping):
            raise CheckpointError(f"its hyper_parameters are a {type(hparams).__name__}, not a mapping")
        cfg = sgmse_config(dict(hparams))
        parts = _build(cfg)
        dnn, weights = _dnn_state(ckpt, use_ema)
        net_state = convert_ncsnpp_state(dnn, parts.net)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    parts.net.load_state_dict(net_state)
    state = parts.denoiser.state_dict()
    n_params = sum(p.numel() for p in parts.net.parameters())
    info = {"imported_from": str(path), "source": "sgmse (sp-uhh/sgmse)", "weights": weights,
            "sgmse_step": int(ckpt.get("global_step", 0) or 0)}
    try:
        atomic_torch_save({"format": FORMAT, "config": cfg, "step": int(ckpt.get("global_step", 0) or 0),
                           "ema": state, "info": info}, out)
    except OSError as err:
        blocker = next((p for p in out.absolute().parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a directory" if blocker is not None else (err.strerror or str(err))
        raise CheckpointError(f"{out}: cannot write it ({why})") from None
    return {"out": str(out_path), "weights": weights, "parameters": n_params, "config": cfg}


def _build(cfg: dict[str, Any]):
    """:func:`edm_se.model.build_model` of an imported config; a hyper-parameter its constructors refuse (a value
    out of range, a width that is not a number) is a :class:`CheckpointError` naming the part."""
    from hydra.errors import InstantiationException

    from edm_se.model import build_model
    from edm_se.validate import ConfigError

    try:
        return build_model(cfg)
    except ConfigError as err:
        raise CheckpointError(f"its hyper-parameters do not build an edm_se model: {err}") from None
    except InstantiationException as err:  # e.g. nf='x': NCSNpp's own TypeError deep inside
        cause = err.__cause__ or err
        raise CheckpointError("its hyper-parameters do not build sgmse's NCSN++: "
                              f"{type(cause).__name__}: {str(cause).strip().splitlines()[0]}") from None


def main(argv: list[str]) -> int:
    """``edm-se import sgmse CKPT OUT [--no-ema]``; exit 2 with one line on a user error."""
    import sys

    args = [a for a in argv if a != "--no-ema"]
    if args[:1] in (["-h"], ["--help"]) or len(args) != 3 or args[0] != "sgmse":
        if args and args[0] not in ("sgmse", "-h", "--help"):
            print(f"edm-se import: error: unknown source {args[0]!r}; the one importer is sgmse", file=sys.stderr)
        print("usage: edm-se import sgmse CKPT OUT [--no-ema]\n\nConvert an sgmse (SGMSE+) checkpoint, NCSN++ "
              "backbone and OUVE SDE, into an edm_se checkpoint (precond=sgmse, sampler=pc with its N); then\n"
              "  edm-se enhance ckpt=OUT input=noisy.wav output=out/ sampler=edm_heun sampler.num_steps=8",
              file=sys.stdout if args[:1] in (["-h"], ["--help"]) else sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    try:
        res = import_sgmse(args[1], args[2], use_ema="--no-ema" not in argv)
    except CheckpointError as err:
        print(f"edm-se import: error: {err}", file=sys.stderr)
        return 2
    print(f"imported {args[1]} ({res['weights']} weights, {res['parameters']:,} parameters) -> {res['out']}")
    return 0
