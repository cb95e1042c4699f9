"""Few-step fine-tuning: correcting the reverse process (CRP; Lay et al. 2024, "Single and few-step diffusion for
generative speech enhancement", Interspeech; code ``sp-uhh/sgmse_crp``).

A trained denoiser is fine-tuned *through* the sampler it will be used with: per batch, the reverse process runs
``N`` steps from the prior ``y + std(t_start) z`` with gradients through every unrolled network call, and a
predictive loss compares the final estimate with the clean target. The network learns to correct the
discretisation error of few-step sampling (and the prior mismatch at the first step) instead of the score at one
noise level. ``N`` is one value (the paper fine-tunes one model per N) or a list, from which each batch draws one
uniformly (one model for several N; an extension).

:class:`CRP` is a training paradigm (``paradigm=crp``): the trainer keeps the optimizer, LR schedule, EMA, resume
and checkpoints; the denoising loss of ``cfg.loss`` is not used. Losses (per example, then the batch mean):

==============  ===============================================================================================
``spec_mse``    ``mean |X_hat - X0|^2`` over the compressed complex STFT (the domain the network works in;
                the default)
``si_sdr``      ``-SI-SDR(x_hat, x0)`` in dB on the waveforms (Le Roux et al. 2019), scale-invariant
``spec_si_sdr`` ``spec_mse`` + ``0.001 x`` the ``si_sdr`` term
==============  ===============================================================================================

Memory grows linearly with the unrolled network calls (``N`` for Euler, ``2N - 1`` for EDM Heun).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from edm_se.tasks.paradigms import EnhancerOutput, Paradigm

if TYPE_CHECKING:  # pragma: no cover
    from edm_se.train import Trainer

__all__ = ["CRP", "CRP_LOSSES", "neg_si_sdr"]

CRP_LOSSES = ("spec_mse", "si_sdr", "spec_si_sdr")


def neg_si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative SI-SDR in dB per example (Le Roux et al. 2019, eqs. 5-6), differentiable.

    Args:
        estimate, reference: (B, L) float waveforms.
        eps: added to both energies (a silent reference gives a finite loss).

    Returns:
        (B,) float: ``-10 log10(||target||^2 / ||estimate - target||^2)`` with ``target`` the projection of the
        zero-mean estimate on the zero-mean reference.

    Raises:
        ValueError: shapes differ or are not (B, L).
    """
    if estimate.shape != reference.shape or estimate.ndim != 2:
        raise ValueError(f"neg_si_sdr needs two (B, L) tensors of one shape, got {tuple(estimate.shape)} and "
                         f"{tuple(reference.shape)}")
    est = estimate - estimate.mean(dim=1, keepdim=True)
    ref = reference - reference.mean(dim=1, keepdim=True)
    scale = (est * ref).sum(dim=1, keepdim=True) / ((ref * ref).sum(dim=1, keepdim=True) + eps)
    target = scale * ref
    residual = est - target
    ratio = ((target * target).sum(dim=1) + eps) / ((residual * residual).sum(dim=1) + eps)
    return -10.0 * torch.log10(ratio)


class CRP(Paradigm):
    """Fine-tune the enhancer through an N-step sampler with a predictive loss (see the module docstring).

    Args:
        num_steps: N, or a list of N values; each batch draws one (uniformly, from the step's generator, so a
            resumed run draws the same).
        sampler: ``conf/sampler`` name of the unrolled sampler (``euler``: NFE N; ``edm_heun``: NFE 2N - 1).
        t_start: start the reverse process at ``t_start * t_max`` (CRP starts BBED part-way; 1.0: the prior).
        loss: one of :data:`CRP_LOSSES`.
        enhancer_checkpoint: the trained enhancer to fine-tune (its EMA weights); None: the bundled model
            (``edm_se/checkpoints/default.pt``). Loaded at step 0 only (a resumed run keeps its own weights).

    Raises:
        ValueError: N < 1, t_start outside (0, 1] or an unknown loss.
    """

    name = "crp"
    trains_enhancer = True

    def __init__(self, num_steps: int | Sequence[int] = 1, sampler: str = "euler", t_start: float = 1.0,
                 loss: str = "spec_mse", enhancer_checkpoint: str | None = None) -> None:
        steps = [int(n) for n in (num_steps if isinstance(num_steps, (list, tuple)) else [num_steps])]
        if not steps or min(steps) < 1:
            raise ValueError(f"paradigm.num_steps must be >= 1 (or a list of such), got {num_steps}")
        if not 0 < float(t_start) <= 1:
            raise ValueError(f"paradigm.t_start must be in (0, 1], got {t_start}")
        if loss not in CRP_LOSSES:
            raise ValueError(f"paradigm.loss must be one of {CRP_LOSSES}, got {loss!r}")
        self.steps, self.sampler_name, self.t_start, self.loss = steps, str(sampler), float(t_start), str(loss)
        self.enhancer_checkpoint = enhancer_checkpoint
        self.init: dict = {}
        self._outputs: dict[int, EnhancerOutput] = {}

    def bind(self, trainer: "Trainer") -> None:
        super().bind(trainer)
        if trainer.step == 0:
            from edm_se.model import default_checkpoint_path
            from edm_se.provenance import checkpoint_identity

            path = self.enhancer_checkpoint or default_checkpoint_path()
            trainer.load_enhancer_weights(path)
            self.init = checkpoint_identity(path)  # saved with every checkpoint: where the fine-tuning started

    def state_dict(self) -> dict:
        return {"init": dict(self.init)}

    def load_state_dict(self, state: dict) -> None:
        self.init = dict(state.get("init") or {})

    def draw_num_steps(self, generator: torch.Generator) -> int:
        """This batch's N: the only value, or one drawn uniformly from the list with ``generator``."""
        if len(self.steps) == 1:
            return self.steps[0]
        return self.steps[int(torch.randint(len(self.steps), (1,), generator=generator))]

    def output(self, num_steps: int) -> EnhancerOutput:
        if num_steps not in self._outputs:
            self._outputs[num_steps] = EnhancerOutput(mode="sample", sampler=self.sampler_name, num_steps=num_steps,
                                                      t_start=self.t_start)
        return self._outputs[num_steps]

    def per_example_loss(self, estimate: torch.Tensor, spec: Any, clean: torch.Tensor) -> torch.Tensor:
        """(B,) predictive loss of the final spectral estimate ``estimate`` against the batch's clean target:
        ``spec.x0`` (the clean spectrum) and ``clean`` (the (B, L) clean waveform at the input level)."""
        tr = self.trainer
        batch = estimate.shape[0]
        mse = (estimate - spec.x0).abs().pow(2).reshape(batch, -1).mean(dim=1)
        if self.loss == "spec_mse":
            return mse
        wave = tr.to_waveform(estimate, spec)
        sdr = neg_si_sdr(wave, clean.to(wave.device, wave.dtype))
        return sdr if self.loss == "si_sdr" else mse + 1e-3 * sdr

    def step(self, batch, generator):
        tr = self.trainer
        spec = tr.spectra(batch)
        num_steps = self.draw_num_steps(generator)
        with tr.autocast():
            estimate = self.output(num_steps).spectrum(tr, spec.y, generator)
        loss = self.per_example_loss(estimate, spec, batch["clean"]).mean()
        grad_norm = tr.enhancer_update(loss)
        return {"loss": float(loss.detach()), "grad_norm": grad_norm, "crp_num_steps": float(num_steps)}
