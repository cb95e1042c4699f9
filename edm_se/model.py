"""Waveform in, waveform out: the enhancement model used by ``edm-se enhance``, training validation and studies.

Pipeline (SGMSE+ / Gonzalez et al. 2024): normalise the noisy waveform by its peak, compressed complex STFT ``y``
``(1, 1, F, T)``, pad the frames to the backbone's down-sampling factor, run a sampler from the prior around ``y``
to the clean estimate ``x0_hat``, crop, inverse STFT, undo the normalisation.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from edm_se.checkpoint import CheckpointError, load_checkpoint
from edm_se.config import ModelParts, build_model, build_sampler, select_device

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "default.pt"


def default_checkpoint_path() -> Path:
    """Path of the bundled checkpoint (``edm_se/checkpoints/default.pt``)."""
    return Path(str(resources.files("edm_se") / "checkpoints" / DEFAULT_CHECKPOINT))


def peak_normalize(noisy: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide each row of ``noisy`` (B, L) by its peak magnitude, as SGMSE+ does (``normalize="noisy"``).

    Returns:
        ``(noisy / scale, scale)`` with ``scale`` of shape (B, 1). The trainer applies the same ``scale`` to the
        clean target so that training and enhancement see the same level.
    """
    scale = noisy.abs().amax(dim=-1, keepdim=True).clamp_min(eps)
    return noisy / scale, scale


def sampler_from_name(name: str) -> DictConfig:
    """Load ``conf/sampler/<name>.yaml`` as a config node."""
    from edm_se.cli import conf_dir

    path = Path(conf_dir()) / "sampler" / f"{name}.yaml"
    if not path.exists():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"unknown sampler {name!r}; choose from {choices}")
    return OmegaConf.load(path)


@dataclass
class EnhanceResult:
    """Output of :meth:`EnhancementModel.enhance`.

    Attributes:
        waveform: enhanced speech, float32, shape like the input ((L,) or (B, L)), at ``sample_rate``.
        sample_rate: Hz (the model's rate).
        nfe: network function evaluations made per example (counted by the sampler).
        seconds: wall-clock time of the whole call.
        rtf: real-time factor = seconds / audio duration (all examples together).
    """

    waveform: torch.Tensor
    sample_rate: int
    nfe: int
    seconds: float
    rtf: float
    extra: dict = field(default_factory=dict)


class EnhancementModel:
    """A trained diffusion enhancer with its STFT and a default sampler.

    Args:
        parts: the model built by :func:`edm_se.config.build_model`.
        sampler: default sampler object (see :mod:`edm_se.samplers`).
        sample_rate: the model's sample rate in Hz.
        config: the model config (stored in checkpoints).
        device: where to run.
    """

    def __init__(self, parts: ModelParts, sampler: Any, sample_rate: int = 16000, config: dict | None = None,
                 device: str | torch.device = "cpu", info: dict | None = None):
        self.parts = parts
        self.sampler = sampler
        self.sample_rate = int(sample_rate)
        self.config = config or {}
        self.info = info or {}
        self.device = torch.device(device)
        self.parts.denoiser.to(self.device).eval()
        self._sampler_cache: dict[tuple, Any] = {}  # make_sampler's samplers built from a name

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, device: str = "auto",
                        weights: str = "ema") -> "EnhancementModel":
        """Load a checkpoint written by ``edm-se train`` (``None``: the bundled default model).

        Raises:
            CheckpointError: missing/corrupt file, or weights that do not fit the stored config.
        """
        path = Path(path) if path is not None else default_checkpoint_path()
        ckpt = load_checkpoint(path)
        cfg = ckpt["config"]
        try:
            parts = build_model(cfg)
        except Exception as err:  # noqa: BLE001 - any build failure means the stored config is unusable
            raise CheckpointError(f"{path}: cannot build the model from its stored config ({err})") from None
        state = ckpt.get(weights) or ckpt["ema"]
        state = {k: (v.float() if v.dtype == torch.float16 else v) for k, v in state.items()}  # --half exports
        try:
            parts.denoiser.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise CheckpointError(f"{path}: weights do not match the stored config ({first[:160]})") from None
        sampler_cfg = cfg.get("sampler") or sampler_from_name("edm_heun")
        sampler = build_sampler(sampler_cfg)
        sample_rate = int(cfg.get("sample_rate", 16000))
        return cls(parts, sampler, sample_rate=sample_rate, config=cfg, device=select_device(device),
                   info={"path": str(path), "step": ckpt.get("step"), **(ckpt.get("info") or {})})

    # ------------------------------------------------------------------ helpers
    @property
    def downsample_factor(self) -> int:
        return int(getattr(self.parts.net, "downsample_factor", 1))

    def make_sampler(self, sampler: Any = None, num_steps: int | None = None, **params: Any) -> Any:
        """Resolve ``sampler`` (None: the default; str: a ``conf/sampler`` name; config node; or an object).

        Samplers built from a name (or the default with overrides) are kept per (name, num_steps, params) and
        returned as shallow copies: building one from its YAML costs milliseconds, a copy microseconds."""
        if sampler is None or isinstance(sampler, str):
            if sampler is None and num_steps is None and not params:
                return self.sampler
            try:
                key = (sampler, num_steps, tuple(sorted(params.items())))
                hash(key)
            except TypeError:  # an unhashable parameter value: build it every time
                key = None
            cache = self._sampler_cache
            if key is not None and key in cache:
                return copy.copy(cache[key])
            node = (self.config.get("sampler") or sampler_from_name("edm_heun")) if sampler is None else \
                sampler_from_name(sampler)
            built = build_sampler(node, num_steps=num_steps, **params)
            if key is not None:
                cache[key] = built
                return copy.copy(built)
            return built
        if isinstance(sampler, (dict, DictConfig)):
            return build_sampler(sampler, num_steps=num_steps, **params)
        if num_steps is not None or params:
            sampler = copy.copy(sampler)
            if num_steps is not None:
                sampler.num_steps = int(num_steps)
            for k, v in params.items():
                setattr(sampler, k, v)
        return sampler

    def to_spec(self, wave: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(B, L) float -> padded compressed complex STFT (B, 1, F, T_pad) and the unpadded frame count."""
        from edm_se.stft import pad_frames

        spec = self.parts.stft.forward(wave)
        return pad_frames(spec, self.downsample_factor)

    def from_spec(self, spec: torch.Tensor, num_frames: int, length: int) -> torch.Tensor:
        """Padded spectrogram -> (B, L) waveform of ``length`` samples."""
        from edm_se.stft import crop_frames

        return self.parts.stft.inverse(crop_frames(spec, num_frames), length)

    @torch.no_grad()
    def _enhance_block(self, noisy: torch.Tensor, sampler: Any, t_start: float,
                       generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
        noisy = noisy.to(self.device, torch.float32)
        normed, scale = peak_normalize(noisy)
        y, num_frames = self.to_spec(normed)
        out = sampler(self.parts.denoiser, self.parts.sde, y, t_start=t_start, generator=generator)
        wave = self.from_spec(out.x0_hat, num_frames, noisy.shape[-1]) * scale
        return wave.float().cpu(), int(out.nfe)

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def enhance(self, waveform: torch.Tensor, sample_rate: int, sampler: Any = None, num_steps: int | None = None,
                t_start: float = 1.0, seed: int | None = 0, chunk_seconds: float = 30.0,
                overlap_seconds: float = 1.0, **sampler_params: Any) -> EnhanceResult:
        """Enhance noisy speech.

        Args:
            waveform: (L,) or (B, L) float tensor, any scale, at ``sample_rate`` Hz (resampled to the model's rate
                with torchaudio if different; the output stays at the model's rate).
            sample_rate: input sample rate in Hz.
            sampler: None (the model's default), a ``conf/sampler`` name (``"edm_heun"``, ``"pc"``, ...), a config
                node, or a sampler object.
            num_steps: overrides the sampler's ``num_steps``.
            t_start: process time to start the reverse process from (1.0 = the prior; < 1 starts part-way from
                the noisy mixture).
            seed: seed of the sampler's noise (None: non-deterministic).
            chunk_seconds: inputs longer than this are processed in overlapping chunks, cross-faded linearly over
                ``overlap_seconds`` (no seam; each chunk is normalised separately).
            **sampler_params: other sampler fields, e.g. ``s_churn=0.5``.

        Returns:
            :class:`EnhanceResult`.

        Raises:
            ValueError: empty input, non-finite samples, or an unknown sampler name.
        """
        from edm_se.audio import resample

        start = time.perf_counter()
        x = torch.as_tensor(waveform, dtype=torch.float32)
        squeeze = x.dim() == 1
        if squeeze:
            x = x[None]
        if x.dim() != 2 or x.shape[-1] == 0:
            raise ValueError(f"waveform must have shape (L,) or (B, L) with L > 0, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("waveform contains NaN or Inf samples")
        if int(sample_rate) != self.sample_rate:
            log.info("resampling input from %d Hz to the model's %d Hz", sample_rate, self.sample_rate)
            x = resample(x, int(sample_rate), self.sample_rate)
        smp = self.make_sampler(sampler, num_steps, **sampler_params)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(int(seed))
        length = x.shape[-1]
        chunk = int(chunk_seconds * self.sample_rate)
        if length <= chunk:
            out, nfe = self._enhance_block(x, smp, t_start, gen)
        else:
            hop = chunk - int(overlap_seconds * self.sample_rate)
            if hop <= 0:
                raise ValueError("overlap_seconds must be smaller than chunk_seconds")
            out = torch.zeros_like(x)
            weight = torch.zeros(length)
            nfe = 0
            for begin in range(0, length, hop):
                end = min(begin + chunk, length)
                piece, nfe = self._enhance_block(x[:, begin:end], smp, t_start, gen)
                w = torch.ones(end - begin)
                ov = min(int(overlap_seconds * self.sample_rate), end - begin)
                if begin > 0:
                    w[:ov] = torch.linspace(0, 1, ov + 2)[1:-1]
                if end < length:
                    w[-ov:] = torch.minimum(w[-ov:], torch.linspace(1, 0, ov + 2)[1:-1])
                out[:, begin:end] += piece * w
                weight[begin:end] += w
                if end == length:
                    break
            out = out / weight.clamp_min(1e-8)
        seconds = time.perf_counter() - start
        duration = x.shape[0] * length / self.sample_rate
        return EnhanceResult(waveform=out[0] if squeeze else out, sample_rate=self.sample_rate, nfe=nfe,
                             seconds=seconds, rtf=seconds / max(duration, 1e-9))


def load(ckpt: str | os.PathLike | None = None, device: str = "auto") -> EnhancementModel:
    """Load a trained model (``None``: the bundled default checkpoint). See :class:`EnhancementModel`.

    Example:
        >>> import edm_se, soundfile as sf
        >>> model = edm_se.load()
        >>> wave, sr = sf.read("noisy.wav", dtype="float32")
        >>> result = model.enhance(wave, sr, sampler="edm_heun", num_steps=8)
        >>> result.waveform.shape, result.nfe
    """
    return EnhancementModel.from_checkpoint(ckpt, device=device)
