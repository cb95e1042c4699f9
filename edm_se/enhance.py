"""``edm-se enhance``: enhance a file or a directory with any sampler and number of steps, or with a pretrained peer
(``enhancer=dfn3|rnnoise|noisereduce``, :mod:`edm_se.enhancers`).

Writes one enhanced file per input, with the same relative path and name, at the model's sample rate, each
written atomically. Every input is validated before anything is written, so a bad file (missing, empty, silent,
not audio, NaN/Inf, shorter than one STFT frame) stops the run with one line and leaves no output behind.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("edm_se.enhance")

from edm_se.audio import AUDIO_SUFFIXES  # noqa: E402  (one list of audio suffixes for every command)
CACHE_SAMPLES = 2**27  # decoded samples kept between validation and enhancement (float32: 512 MiB, ~2.3 h at 16 kHz)


def list_inputs(path: str | Path) -> tuple[Path, list[Path]]:
    """Return ``(root, files)`` for a file or a directory (searched recursively for audio files).

    Raises:
        AudioError: the path does not exist, or a directory holds no audio file.
    """
    from edm_se.audio import AudioError

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file or directory")
    if path.is_file():
        return path.parent, [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise AudioError(f"{path}: directory holds no audio file ({', '.join(AUDIO_SUFFIXES)})")
    return path, files


def enhance_files(model, inputs: list[Path], root: Path, output: Path, sampler=None, num_steps=None,
                  t_start: float = 1.0, seed: int = 0, progress: bool = True,
                  on_mismatch: str = "resample", sample_rate: int = 16000) -> dict:
    """Enhance ``inputs`` with ``model`` and write them under ``output`` (same relative paths).

    Args:
        model: an :class:`edm_se.model.EnhancementModel` (sampler, num_steps, t_start and seed apply) or any
            :class:`edm_se.enhancers.Enhancer` (a peer such as DeepFilterNet3; run at ``sample_rate``, NFE 0).

    Inputs at another sample rate are resampled to the model's with a logged notice (``on_mismatch="resample"``)
    or refused with :class:`edm_se.audio.AudioError` (``"error"``); multi-channel inputs are down-mixed.

    Returns:
        ``{"files": n, "nfe": int, "audio_seconds": float, "wall_seconds": float, "rtf": float}``.
    """
    from tqdm import tqdm

    from edm_se.audio import load_audio, save_audio

    diffusion = hasattr(model, "make_sampler")
    sr = int(model.sample_rate) if diffusion else int(sample_rate)
    # Validate everything first, so nothing is written if one input is bad. Decoded waveforms are kept (up to
    # CACHE_SAMPLES in all) so each file is decoded once; beyond that budget the rest is decoded again below.
    cache: dict[Path, object] = {}
    cached = 0
    for f in inputs:
        wave = load_audio(f, sample_rate=sr, on_mismatch=on_mismatch)
        if cached + wave.shape[-1] <= CACHE_SAMPLES:
            cache[f] = wave
            cached += wave.shape[-1]
    output.mkdir(parents=True, exist_ok=True)
    total_audio, total_wall, nfe = 0.0, 0.0, 0
    for f in tqdm(inputs, desc="enhance", disable=not progress, dynamic_ncols=True):
        wave = cache.pop(f, None)
        if wave is None:
            wave = load_audio(f, sample_rate=sr, on_mismatch=on_mismatch)
        if diffusion:
            res = model.enhance(wave, sr, sampler=sampler, num_steps=num_steps, t_start=t_start, seed=seed)
            enhanced, seconds, nfe = res.waveform, res.seconds, res.nfe
        else:
            from edm_se.enhancers import timed_enhance

            enhanced, seconds = timed_enhance(model, wave.numpy(), sr)
        dest = output / f.relative_to(root)
        if dest.suffix.lower() not in AUDIO_SUFFIXES:
            dest = dest.with_suffix(".wav")
        dest.parent.mkdir(parents=True, exist_ok=True)
        save_audio(dest, enhanced, sr)
        total_audio += wave.shape[-1] / sr
        total_wall += seconds
    return {"files": len(inputs), "nfe": nfe, "audio_seconds": total_audio, "wall_seconds": total_wall,
            "rtf": total_wall / max(total_audio, 1e-9)}


def main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se enhance``."""
    import torch

    from edm_se.model import EnhancementModel

    from edm_se import validate

    validate.enhance_config(cfg)
    if int(cfg.threads) > 0:
        torch.set_num_threads(int(cfg.threads))
    root, files = list_inputs(cfg.input)
    if str(cfg.enhancer) != "diffusion":
        from edm_se.enhancers import make_peer

        peer = make_peer(str(cfg.enhancer))
        start = time.perf_counter()
        stats = enhance_files(peer, files, root, Path(cfg.output), progress=bool(cfg.progress),
                              on_mismatch=str(cfg.on_rate_mismatch), sample_rate=int(cfg.sample_rate))
        stats["total_seconds"] = time.perf_counter() - start
        stats["enhancer"] = str(cfg.enhancer)
        print(f"enhanced {stats['files']} file(s) with {peer.label} -> {cfg.output}  "
              f"RTF={stats['rtf']:.3f} ({stats['wall_seconds']:.1f} s for {stats['audio_seconds']:.1f} s of audio)")
        log.info("%s", json.dumps(stats))
        return
    model = EnhancementModel.from_checkpoint(cfg.ckpt, device=cfg.device)
    sampler = OmegaConf.to_container(cfg.sampler, resolve=True) if cfg.get("sampler") else None
    num_steps = cfg.num_steps
    start = time.perf_counter()
    stats = enhance_files(model, files, root, Path(cfg.output), sampler=sampler, num_steps=num_steps,
                          t_start=float(cfg.t_start), seed=int(cfg.seed), progress=bool(cfg.progress),
                          on_mismatch=str(cfg.on_rate_mismatch))
    stats["total_seconds"] = time.perf_counter() - start
    stats["checkpoint"] = model.info.get("path")
    print(f"enhanced {stats['files']} file(s) -> {cfg.output}  NFE={stats['nfe']}  "
          f"RTF={stats['rtf']:.3f} ({stats['wall_seconds']:.1f} s for {stats['audio_seconds']:.1f} s of audio)")
    log.info("%s", json.dumps(stats))
