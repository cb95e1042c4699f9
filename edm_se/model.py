"""Waveform in, waveform out: the enhancement model used by ``edm-se enhance``, training validation and studies.

Pipeline (SGMSE+ / Gonzalez et al. 2024): normalise the noisy waveform by its peak, compressed complex STFT ``y``
``(1, 1, F, T)``, pad the frames to the backbone's down-sampling factor, run a sampler from the prior around ``y``
to the clean estimate ``x0_hat``, crop, inverse STFT, undo the normalisation.
"""

from __future__ import annotations

import copy
import logging
import math
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
        estimates: with ``return_estimates=True``, one dict per network call ``k = 1 .. nfe``: ``{"nfe": k,
            "t", "sigma": the call's process time and noise level, "seconds": the sampling wall time up to the end
            of that call (summed over chunks; without the STFT), "waveform": the clean estimate y + D of that call
            as audio, shaped like ``waveform``}``: what stopping the sampler after call k would give and cost.
            None otherwise.
    """

    waveform: torch.Tensor
    sample_rate: int
    nfe: int
    seconds: float
    rtf: float
    extra: dict = field(default_factory=dict)
    estimates: list[dict] | None = None


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

    def check_sampler(self, sampler: Any = None, num_steps: int | None = None, t_start: float = 1.0,
                      **params: Any) -> None:
        """Build ``sampler`` (as :meth:`make_sampler`) and its time grid on this model's SDE from ``t_start``, so
        that a grid that cannot be made (a Karras ``sigma_min`` above the SDE's largest noise level) stops a run
        before its first file rather than at it.

        Raises:
            edm_se.validate.ConfigError: the grid cannot be made (the schedule's own reason, one line).
        """
        from edm_se.validate import ConfigError

        smp = self.make_sampler(sampler, num_steps, **params)
        if getattr(smp, "schedule", None) is None:  # a sampler object of the caller's, without a schedule
            return
        try:
            smp.schedule(smp.num_steps, self.parts.sde, float(t_start))
        except ValueError as err:
            raise ConfigError(f"sampler: {err}") from None

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
    def _enhance_block(self, noisy: torch.Tensor, sampler: Any, t_start: float, generator: torch.Generator | None,
                       return_estimates: bool = False) -> tuple[torch.Tensor, int, list[dict] | None]:
        """One block: ``(enhanced (B, L) float32 on the CPU, NFE, per-call estimates or None)``; see
        :attr:`EnhanceResult.estimates` (``seconds`` here from the start of this block's sampling)."""
        noisy = noisy.to(self.device, torch.float32)
        normed, scale = peak_normalize(noisy)
        y, num_frames = self.to_spec(normed)
        calls: list[dict] | None = [] if return_estimates else None
        begin = time.perf_counter()
        out = sampler(self.parts.denoiser, self.parts.sde, y, t_start=t_start, generator=generator,
                      estimates=calls)
        wave = self.from_spec(out.x0_hat, num_frames, noisy.shape[-1]) * scale
        estimates = None
        if calls is not None:
            estimates = [{"nfe": c["nfe"], "t": c["t"], "sigma": c["sigma"], "seconds": c["time"] - begin,
                          "waveform": (self.from_spec(c["x0_hat"], num_frames, noisy.shape[-1]) * scale).float().cpu()}
                         for c in calls]
        return wave.float().cpu(), int(out.nfe), estimates

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def enhance(self, waveform: torch.Tensor, sample_rate: int, sampler: Any = None, num_steps: int | None = None,
                t_start: float = 1.0, seed: int | None = 0, chunk_seconds: float = 30.0,
                overlap_seconds: float = 1.0, return_estimates: bool = False, oa_weight: float = 0.0,
                **sampler_params: Any) -> EnhanceResult:
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
                ``overlap_seconds`` (no seam; each chunk is normalised separately; 0 overlap: chunks side by side).
                A last chunk that would be shorter than half an STFT frame (the tail and the overlap) joins the
                chunk before it.
            return_estimates: keep the clean estimate of every network call (:attr:`EnhanceResult.estimates`):
                what each step of this one run buys and costs. The output is the same with or without it.
            oa_weight: observation adding, ``(1 - w) * enhanced + w * noisy`` with ``w`` in [0, 1] (0: off; the
                input at the model's rate is added back to the output and to every per-call estimate;
                :func:`edm_se.postprocess.observation_adding`, Iwamoto et al. 2022): fewer artifacts for a
                recogniser, some noise back.
            **sampler_params: other sampler fields, e.g. ``s_churn=0.5``.

        Returns:
            :class:`EnhanceResult`.

        Raises:
            ValueError: empty input, non-finite samples, a signal shorter than half an STFT frame (a
                channel-last ``(L, C)`` array is named as such), an unknown sampler name, ``oa_weight``
                outside [0, 1], ``chunk_seconds <= 0``, or ``overlap_seconds`` outside [0, ``chunk_seconds``).
        """
        from edm_se.audio import resample
        from edm_se.postprocess import check_oa_weight, observation_adding

        oa_weight = check_oa_weight(oa_weight)
        if not (math.isfinite(chunk_seconds) and chunk_seconds > 0):
            raise ValueError(f"chunk_seconds must be a number of seconds > 0, got {chunk_seconds}")
        if not (math.isfinite(overlap_seconds) and 0 <= overlap_seconds < chunk_seconds):
            raise ValueError(f"overlap_seconds must be in [0, chunk_seconds={chunk_seconds:g}), got {overlap_seconds}")
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
        min_length = self.parts.stft.n_fft // 2 + 1  # the STFT's reflect padding needs more than half a frame
        if x.shape[-1] < min_length:
            hint = ("; a channel-last array such as soundfile's (L, C) must be transposed or down-mixed"
                    if not squeeze and x.shape[0] > x.shape[1] else "")
            raise ValueError(f"waveform has {x.shape[-1]} samples per signal at {self.sample_rate} Hz (shape "
                             f"{tuple(x.shape[1:] if squeeze else x.shape)}), fewer than the {min_length} of half an "
                             f"STFT frame{hint}")
        smp = self.make_sampler(sampler, num_steps, **sampler_params)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(int(seed))
        length = x.shape[-1]
        chunk = int(chunk_seconds * self.sample_rate)
        if length <= chunk:
            out, nfe, estimates = self._enhance_block(x, smp, t_start, gen, return_estimates)
        else:
            hop = chunk - int(overlap_seconds * self.sample_rate)
            if hop <= 0:
                raise ValueError(f"overlap_seconds={overlap_seconds:g} leaves no hop between chunks of "
                                 f"chunk_seconds={chunk_seconds:g} at {self.sample_rate} Hz")
            out = torch.zeros_like(x)
            weight = torch.zeros(length)
            nfe, estimates = 0, None
            for begin in range(0, length, hop):
                end = min(begin + chunk, length)
                if 0 < length - end < min_length - int(overlap_seconds * self.sample_rate):
                    end = length  # the next chunk (the tail and the overlap) would be too short for the STFT
                piece, nfe, calls = self._enhance_block(x[:, begin:end], smp, t_start, gen, return_estimates)
                w = torch.ones(end - begin)
                ov = min(int(overlap_seconds * self.sample_rate), end - begin)
                if begin > 0 and ov > 0:
                    w[:ov] = torch.linspace(0, 1, ov + 2)[1:-1]
                if end < length and ov > 0:
                    w[-ov:] = torch.minimum(w[-ov:], torch.linspace(1, 0, ov + 2)[1:-1])
                out[:, begin:end] += piece * w
                if calls is not None:  # every chunk makes the same calls: the k-th ones are cross-faded alike
                    if estimates is None:
                        estimates = [{**c, "seconds": 0.0, "waveform": torch.zeros_like(x)} for c in calls]
                    for e, c in zip(estimates, calls):
                        e["waveform"][:, begin:end] += c["waveform"] * w
                        e["seconds"] += c["seconds"]
                weight[begin:end] += w
                if end == length:
                    break
            out = out / weight.clamp_min(1e-8)
            for e in estimates or []:
                e["waveform"] = e["waveform"] / weight.clamp_min(1e-8)
        out = observation_adding(out, x, oa_weight)
        for e in estimates or []:
            e["waveform"] = observation_adding(e["waveform"], x, oa_weight)
        if estimates is not None and squeeze:
            for e in estimates:
                e["waveform"] = e["waveform"][0]
        seconds = time.perf_counter() - start
        duration = x.shape[0] * length / self.sample_rate
        return EnhanceResult(waveform=out[0] if squeeze else out, sample_rate=self.sample_rate, nfe=nfe,
                             seconds=seconds, rtf=seconds / max(duration, 1e-9), estimates=estimates)


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
