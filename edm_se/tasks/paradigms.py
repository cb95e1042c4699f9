"""Training paradigms: strategy objects that the trainer runs, one ``step(batch)`` each.

The trainer (:class:`edm_se.train.Trainer`) keeps what every run needs: the diffusion enhancer, its optimizer, LR
schedule and EMA, data order, logging, checkpoints and resume. A paradigm owns whatever else it trains (a downstream
task model and its optimizer) and decides, per batch, which losses are computed and which model moves. Every
paradigm talks to the enhancer through the ``(B,)`` per-example loss contract of :mod:`edm_se.losses`, so each one
composes with every SDE, preconditioning and backbone.

Paradigms (the names of Milling et al. 2024, Sec. 2-3, "002"; Lee et al. 2024, D4AM, "000"):

=====================  ==================================================================================
``denoising``          plain enhancer training (what ``edm-se train`` always did)
``baseline``           task model trained on clean speech; no enhancer
``data_augmentation``  task model trained on the noisy mixtures
``cold_cascade``       task model trained on clean speech, evaluated behind a frozen front end
``cold_cascade_da``    task model trained on a frozen front end's output of the noisy mixtures
``multi_task``         ``L = L_AE + lambda L_CA`` (002 eq. 1): the task loss back-propagates into the enhancer,
                       both models move
``iterative``          per batch (002 Sec. 3.2): (1) a task step on the enhancer's output, enhancer frozen;
                       (2) an enhancer step with per-example weights ``w_i = L_CA,i / sum_j L_CA,j`` from the
                       frozen task model (eq. 2-3)
``d4am``               enhancer trained with a frozen task model: gradient calibration and the adaptive
                       regression weight (000; methods ``CLSO``, ``SRPR``, ``GCLB``, ``D4AM``)
``blackbox_iterative`` as ``iterative`` step (2), with weights from a black-box recogniser's per-utterance WER on
                       the enhancer's output (Whisper / PocketSphinx), computed once per epoch and cached
=====================  ==================================================================================

"The enhancer's output" during training is an :class:`EnhancerOutput`: the one-step clean estimate at the sampled
noise level (``one_step``, free: it comes out of the denoising loss), the estimate from the prior (``prior``: one
network call from ``sigma_max``, i.e. NFE-1 enhancement) or an N-step sample (``sample``) with gradients through the
unrolled steps.

Weighted loss: ``L = sum_i w_i L_AE,i`` with ``sum_i w_i = 1``; equal weights give the plain batch mean, so the
learning rate means the same as in ``denoising`` (002's eq. 3 has an extra ``1/N``, a constant factor).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Sequence

import torch

from edm_se.tasks.models import TaskModel, TaskTargets, build_task_model

if TYPE_CHECKING:  # pragma: no cover
    from edm_se.train import Trainer

log = logging.getLogger(__name__)

__all__ = ["Paradigm", "Denoising", "EnhancerOutput", "TaskParadigm", "Baseline", "DataAugmentation",
           "ColdCascade", "ColdCascadeDA", "MultiTask", "Iterative", "D4AM", "BlackBoxIterative",
           "importance_weights", "calibrate_gradient", "srpr_alpha_gradient", "PARADIGMS"]


# ----------------------------------------------------------------------------------------------- pure math
def importance_weights(task_losses: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Sample importance of Milling et al. 2024, eq. 2-3: ``w_i = L_i / sum_j L_j`` (detached).

    Args:
        task_losses: (B,) per-example downstream losses, >= 0.

    Returns:
        (B,) float32 weights, >= 0, summing to 1 (uniform ``1/B`` when every loss is 0).

    Raises:
        ValueError: a negative or non-finite loss.
    """
    l = task_losses.detach().float()
    if l.dim() != 1:
        raise ValueError(f"task_losses must be (B,), got {tuple(l.shape)}")
    if not torch.isfinite(l).all() or bool((l < 0).any()):
        raise ValueError("task losses must be finite and >= 0 to be sample weights")
    total = l.sum()
    if float(total) <= eps:
        return torch.full_like(l, 1.0 / max(l.numel(), 1))
    return l / total


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b)))


def calibrate_gradient(g_task: Sequence[torch.Tensor], g_reg: Sequence[torch.Tensor]
                       ) -> tuple[list[torch.Tensor], float]:
    """D4AM's gradient calibration (Lee et al. 2024, "000"): when the task gradient conflicts with the regression
    gradient (``<g_task, g_reg> < 0``) remove its component along ``g_reg``; otherwise leave it unchanged.

    ``g' = g_task + a g_reg`` with ``a = -<g_task, g_reg> / |g_reg|^2`` if the dot product is negative, else
    ``a = 0``; then ``<g', g_reg> = 0`` in the conflicting case.

    Args:
        g_task, g_reg: per-parameter gradients (same shapes, in the same order).

    Returns:
        (calibrated task gradient, ``a``).
    """
    dot = _dot(g_task, g_reg)
    sq = _dot(g_reg, g_reg)
    a = -dot / sq if dot < 0 and sq > 0 else 0.0
    return [gt + a * gr for gt, gr in zip(g_task, g_reg)], a


def srpr_alpha_gradient(dot: float, proj: float, g_reg_sq: float, alpha: float) -> float:
    """d/d alpha of ``|g_task + proj g_reg - alpha g_reg|^2`` (D4AM's surrogate prior weight, fitted so that
    ``alpha g_reg`` is the regression step closest to the calibrated task step): ``-2 (dot + proj |g_reg|^2) +
    2 alpha |g_reg|^2``."""
    return -2.0 * (dot + proj * g_reg_sq) + 2.0 * alpha * g_reg_sq


# ----------------------------------------------------------------------------------------------- base classes
class Paradigm:
    """One training scheme. The trainer calls :meth:`bind` once, then :meth:`step` once per batch.

    Attributes:
        name: the config name.
        trains_enhancer: False for paradigms that leave the trainer's enhancer untouched (its optimizer and EMA
            do not run).
    """

    name = "denoising"
    trains_enhancer = True
    #: multi-process runs: True wraps the enhancer in DDP (one forward and one backward per step); False leaves it
    #: raw and :meth:`edm_se.train.Trainer.enhancer_update` averages its gradients explicitly
    uses_ddp_wrapper = False

    def bind(self, trainer: "Trainer") -> None:
        self.trainer = trainer

    def replicated_modules(self) -> list[torch.nn.Module]:
        """Modules besides the enhancer that every process must hold identically (checked at the end of a
        multi-process run)."""
        return []

    def step(self, batch: dict, generator: torch.Generator) -> dict[str, float]:  # pragma: no cover
        """Train on one batch; returns the numbers to log (``loss`` first)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What a checkpoint needs to resume this paradigm bit-exactly (besides the trainer's own state)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Denoising(Paradigm):
    """Plain denoising score matching: ``loss = mean_i L_AE,i`` (the trainer's loss)."""

    uses_ddp_wrapper = True

    def step(self, batch, generator):
        tr = self.trainer
        x0, y = tr.spectra(batch)[:2]
        with tr.autocast():
            per_example = tr.loss_fn(tr.model, tr.parts.sde, x0, y, generator=generator)
        loss = per_example.float().mean()
        grad_norm = tr.enhancer_update(loss)
        return {"loss": float(loss.detach()), "grad_norm": grad_norm}


class EnhancerOutput:
    """What "the enhancer's output" is while a task paradigm trains.

    Args:
        mode: ``"one_step"`` (the clean estimate ``y + D`` at the noise level the denoising loss sampled; costs
            nothing extra), ``"prior"`` (one network call from ``sigma_max``: NFE-1 enhancement, what the bundled
            model's default sampler does) or ``"sample"`` (``sampler`` with ``num_steps``, gradients through every
            step; memory grows with the steps).
        sampler: sampler config name for ``"sample"`` (``conf/sampler``), e.g. ``"edm_heun"`` or ``"euler"``.
        num_steps: steps of ``"sample"``.
        t_start: ``"sample"`` starts the reverse process at ``t_start * t_max`` (1.0: the prior).

    Raises:
        ValueError: unknown mode, num_steps < 1 or t_start outside (0, 1].
    """

    MODES = ("one_step", "prior", "sample")

    def __init__(self, mode: str = "prior", sampler: str = "euler", num_steps: int = 1, t_start: float = 1.0) -> None:
        if mode not in self.MODES:
            raise ValueError(f"enhancer_output.mode must be one of {self.MODES}, got {mode!r}")
        if int(num_steps) < 1:
            raise ValueError(f"enhancer_output.num_steps must be >= 1, got {num_steps}")
        if not 0 < float(t_start) <= 1:
            raise ValueError(f"enhancer_output.t_start must be in (0, 1], got {t_start}")
        self.mode, self.sampler_name, self.num_steps = mode, str(sampler), int(num_steps)
        self.t_start = float(t_start)
        self._sampler = None

    def _make_sampler(self):
        if self._sampler is None:
            from edm_se.config import build_sampler
            from edm_se.model import sampler_from_name

            if self.mode == "prior":
                self._sampler = build_sampler(sampler_from_name("euler"), num_steps=1)
            else:
                self._sampler = build_sampler(sampler_from_name(self.sampler_name), num_steps=self.num_steps)
        return self._sampler

    def spectrum(self, trainer: "Trainer", y: torch.Tensor, generator: torch.Generator,
                 estimate: torch.Tensor | None = None) -> torch.Tensor:
        """The clean spectral estimate (B, 1, F, T), differentiable w.r.t. the enhancer when grad is enabled."""
        if self.mode == "one_step":
            if estimate is None:
                raise ValueError("enhancer_output.mode=one_step needs the denoising loss's estimate")
            return estimate
        sampler = self._make_sampler()
        run = type(sampler).__call__
        run = getattr(run, "__wrapped__", run)  # the samplers run under no_grad; unwrap for gradients
        t_start = self.t_start if self.mode == "sample" else 1.0
        out = run(sampler, trainer.model, trainer.parts.sde, y, t_start=t_start, generator=generator)
        return out.x0_hat.to(y.dtype)


class TaskParadigm(Paradigm):
    """A paradigm with a downstream task model (see the module docstring).

    Args:
        task: the task model's config, ``{"name": "m5" | "ctc", **constructor arguments}``.
        optimizer: a partial optimizer over the task model's parameters (Hydra ``_partial_``), or None for
            Adam(lr=1e-3).
        task_checkpoint: start the task model from this file (a task checkpoint of ``edm-se train``'s run or
            ``paradigm.save_task``), or None (random initialisation).
        train_task: False freezes the task model (D4AM's frozen proxy recogniser).
        enhancer_output: :class:`EnhancerOutput` (or its config dict).
        enhancer_checkpoint: start the trainer's enhancer (weights and EMA) from this enhancer checkpoint before
            step 0 (fine-tuning, e.g. the bundled model); ignored on resume.
        task_grad_clip: max gradient norm of the task model.
        loss_weight: lambda of ``multi_task`` / the task term where one exists.
    """

    name = "task"
    trains_enhancer = False

    def __init__(self, task: dict, optimizer: Any = None, task_checkpoint: str | None = None,
                 train_task: bool = True, enhancer_output: Any = None, enhancer_checkpoint: str | None = None,
                 task_grad_clip: float = 5.0, loss_weight: float = 1.0) -> None:
        task = dict(task)
        if "name" not in task:
            raise ValueError("paradigm.task needs a name (m5 | ctc)")
        self.task_config = task
        self.optimizer_factory = optimizer
        self.task_checkpoint = task_checkpoint
        self.train_task = bool(train_task)
        if isinstance(enhancer_output, EnhancerOutput):
            self.output = enhancer_output
        else:
            self.output = EnhancerOutput(**dict(enhancer_output or {}))
        self.enhancer_checkpoint = enhancer_checkpoint
        if not float(task_grad_clip) > 0:
            raise ValueError(f"paradigm.task_grad_clip must be > 0, got {task_grad_clip}")
        self.task_grad_clip = float(task_grad_clip)
        self.loss_weight = float(loss_weight)

    # ---------------------------------------------------------------- set-up
    def bind(self, trainer):
        super().bind(trainer)
        cfg = {k: v for k, v in self.task_config.items() if k != "name"}
        self.task: TaskModel = build_task_model(str(self.task_config["name"]), **cfg).to(trainer.device)
        if self.task_checkpoint:
            from edm_se.tasks.checkpoint import load_task_model

            self.task.load_state_dict(load_task_model(self.task_checkpoint).state_dict())
        if trainer.replicas.distributed:  # every process starts from rank 0's task model
            import torch.distributed as dist

            for t in [*self.task.parameters(), *self.task.buffers()]:
                dist.broadcast(t.data, src=0)
        for p in self.task.parameters():
            p.requires_grad_(self.train_task)
        self.task.train(self.train_task)  # a frozen task model keeps its batch-norm statistics
        self.task_optimizer = None
        if self.train_task:
            factory = self.optimizer_factory
            self.task_optimizer = (factory(params=self.task.parameters()) if factory is not None else
                                   torch.optim.Adam(self.task.parameters(), lr=1e-3))
        if self.enhancer_checkpoint and trainer.step == 0:
            trainer.load_enhancer_weights(self.enhancer_checkpoint)
        if not self.trains_enhancer:
            for p in trainer.denoiser.parameters():
                p.requires_grad_(False)

    def replicated_modules(self):
        return [self.task]

    def state_dict(self):
        state = {"task": self.task.state_dict(), "task_config": dict(self.task_config)}
        if self.task_optimizer is not None:
            state["task_optimizer"] = self.task_optimizer.state_dict()
        return state

    def load_state_dict(self, state):
        self.task.load_state_dict(state["task"])
        if self.task_optimizer is not None and "task_optimizer" in state:
            self.task_optimizer.load_state_dict(state["task_optimizer"])

    # ---------------------------------------------------------------- helpers
    def targets(self, batch: dict) -> TaskTargets:
        if "label" in batch:
            return TaskTargets(labels=torch.as_tensor(batch["label"], dtype=torch.long).to(self.trainer.device))
        if "text" in batch:
            return TaskTargets(texts=list(batch["text"]))
        raise ValueError(f"paradigm={self.name} needs task data (examples with a 'label' or a 'text'); use a "
                         "task dataset, e.g. data=keywords")

    def task_losses(self, waveform: torch.Tensor, targets: TaskTargets) -> torch.Tensor:
        return self.task.per_example_loss(self.task(waveform), targets)

    def task_update(self, loss: torch.Tensor) -> float:
        if self.task_optimizer is None:
            raise RuntimeError("the task model is frozen (train_task=false)")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite task loss at step {self.trainer.step}")
        self.task_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_task_grads()
        norm = torch.nn.utils.clip_grad_norm_(self.task.parameters(), self.task_grad_clip)
        self.task_optimizer.step()
        self.sync_task_buffers()
        return float(norm)

    def sync_task_grads(self) -> None:
        """Multi-process runs: average the task model's gradients over the processes (a no-op in one)."""
        self.trainer.replicas.average_grads(self.task)

    def sync_task_buffers(self) -> None:
        """Multi-process runs: average the task model's floating-point buffers (batch-norm running statistics,
        which each process updates on its own batch); integer counters advance alike everywhere."""
        if self.trainer.replicas.distributed:
            self.trainer.replicas.all_reduce_mean([b for b in self.task.buffers() if b.is_floating_point()])

    def batch_weights(self, task_losses: torch.Tensor) -> torch.Tensor:
        """Sample importance (002 eq. 2-3) over the whole batch of the step: :func:`importance_weights` in one
        process; in ``W`` processes ``w_i = W L_i / sum_{all processes} L_j``, so that the averaged gradient of
        ``sum_i w_i L_AE,i`` is that of the global batch's weighted loss (each process's weights sum to ``W``
        times its share)."""
        weights = importance_weights(task_losses)  # validates the losses
        replicas = self.trainer.replicas
        if not replicas.distributed:
            return weights
        losses = task_losses.detach().to(torch.float64)
        total = float(replicas.all_reduce_sum(losses.sum()))
        if total <= 0:
            return torch.ones_like(weights) / weights.numel()
        return (losses * replicas.world / total).to(torch.float32)

    def task_lr(self) -> float:
        return float(self.task_optimizer.param_groups[0]["lr"]) if self.task_optimizer is not None else float("nan")

    def enhancer_pass(self, batch: dict, generator: torch.Generator, grad: bool, output_grad: bool | None = None):
        """Denoising loss (B,) and the enhancer's output waveform (B, L) for ``batch``; with ``grad`` False
        nothing is recorded for autograd; ``output_grad`` False (default: ``grad``) keeps the loss differentiable
        but makes the output a constant."""
        tr = self.trainer
        spec = tr.spectra(batch)
        x0, y = spec[:2]
        output_grad = grad if output_grad is None else output_grad
        with torch.set_grad_enabled(grad):
            per_example, estimate = tr.loss_fn(tr.model, tr.parts.sde, x0, y, generator=generator,
                                               return_estimate=True)
        with torch.set_grad_enabled(output_grad):
            out = self.output.spectrum(tr, y, generator, estimate if output_grad else estimate.detach())
            wave = tr.to_waveform(out, spec)
        return per_example, wave


class _TaskOnly(TaskParadigm):
    """Trains the task model on ``self.source(batch)``; the enhancer does not move."""

    trains_enhancer = False

    def source(self, batch: dict, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def step(self, batch, generator):
        targets = self.targets(batch)
        with torch.no_grad():
            wave = self.source(batch, generator)
        loss = self.task_losses(wave, targets).float().mean()
        norm = self.task_update(loss)
        return {"loss": float(loss.detach()), "task_loss": float(loss.detach()), "task_grad_norm": norm,
                "task_lr": self.task_lr()}


class Baseline(_TaskOnly):
    """Task model on clean speech (002's baseline)."""

    name = "baseline"

    def source(self, batch, generator):
        return batch["clean"].to(self.trainer.device, torch.float32)


class DataAugmentation(_TaskOnly):
    """Task model on the noisy mixtures (002's data augmentation)."""

    name = "data_augmentation"

    def source(self, batch, generator):
        return batch["noisy"].to(self.trainer.device, torch.float32)


class ColdCascade(Baseline):
    """Cold cascade (002): the task model trains on clean speech; a frozen front end (``front_end``: any enhancer
    of :mod:`edm_se.enhancers`, the diffusion model or a peer) is stacked in front of it at evaluation. Training is
    the baseline's; the front end is recorded so that evaluation knows it."""

    name = "cold_cascade"

    def __init__(self, *args: Any, front_end: str = "diffusion", front_end_checkpoint: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.front_end_name, self.front_end_checkpoint = str(front_end), front_end_checkpoint

    def make_front_end(self):
        from edm_se.enhancers import DiffusionEnhancer, make_peer
        from edm_se.model import EnhancementModel

        if self.front_end_name == "diffusion":
            return DiffusionEnhancer(EnhancementModel.from_checkpoint(self.front_end_checkpoint, device="cpu"))
        return make_peer(self.front_end_name)


class ColdCascadeDA(ColdCascade):
    """Cold cascade + data augmentation (002): the task model trains on the frozen front end's output of the noisy
    mixtures."""

    name = "cold_cascade_da"

    def source(self, batch, generator):
        if getattr(self, "_front", None) is None:
            self._front = self.make_front_end()
        sr = int(self.trainer.cfg.sample_rate)
        noisy = batch["noisy"].float().cpu().numpy()
        out = [torch.as_tensor(self._front.enhance(x, sr), dtype=torch.float32) for x in noisy]
        return torch.stack(out).to(self.trainer.device)


class MultiTask(TaskParadigm):
    """002 eq. 1: ``L = mean_i L_AE,i + lambda mean_i L_CA,i(task(enhancer(noisy)))``; one backward pass, both
    models step (the task gradient reaches the enhancer through its output)."""

    name = "multi_task"
    trains_enhancer = True

    def step(self, batch, generator):
        targets = self.targets(batch)
        per_example, wave = self.enhancer_pass(batch, generator, grad=True)
        task_loss = self.task_losses(wave, targets).float().mean()
        ae_loss = per_example.float().mean()
        loss = ae_loss + self.loss_weight * task_loss
        if self.task_optimizer is not None:
            self.task_optimizer.zero_grad(set_to_none=True)
        grad_norm = self.trainer.enhancer_update(loss)
        task_norm = float("nan")
        if self.task_optimizer is not None:
            self.sync_task_grads()
            task_norm = float(torch.nn.utils.clip_grad_norm_(self.task.parameters(), self.task_grad_clip))
            self.task_optimizer.step()
            self.sync_task_buffers()
        return {"loss": float(loss.detach()), "ae_loss": float(ae_loss.detach()),
                "task_loss": float(task_loss.detach()), "grad_norm": grad_norm, "task_grad_norm": task_norm}


class Iterative(TaskParadigm):
    """002 Sec. 3.2: per batch, (1) a task step on the enhancer's output (enhancer frozen), then (2) an enhancer
    step with ``L = sum_i w_i L_AE,i``, ``w = importance_weights(L_CA)`` from the (now frozen) task model on the
    same output."""

    name = "iterative"
    trains_enhancer = True

    def step(self, batch, generator):
        targets = self.targets(batch)
        tr = self.trainer
        # the enhancer's forward pass of step (2), made first: the enhancer does not change in step (1)
        per_example, wave = self.enhancer_pass(batch, generator, grad=True, output_grad=False)
        # (1) task step on the enhancer's output; the enhancer is frozen (its output is a constant here)
        task_loss = self.task_losses(wave, targets).float().mean()
        task_norm = self.task_update(task_loss) if self.task_optimizer is not None else float("nan")
        # (2) enhancer step; the task model is frozen: sample importance from its per-example losses
        with torch.no_grad():
            was_training = self.task.training
            self.task.eval()
            weights = self.batch_weights(self.task_losses(wave, targets))
            self.task.train(was_training)
        loss = (weights.to(per_example.device) * per_example.float()).sum()
        grad_norm = tr.enhancer_update(loss)
        return {"loss": float(loss.detach()), "task_loss": float(task_loss.detach()), "grad_norm": grad_norm,
                "task_grad_norm": task_norm, "weight_max": float(weights.max())}


class D4AM(TaskParadigm):
    """D4AM (Lee et al. 2024, "000"): the enhancer is trained with a frozen task model. The task (classification)
    gradient ``g_cls`` and the regression (denoising) gradient ``g_reg`` are combined as
    ``g = calibrate(g_cls, g_reg) + alpha g_reg`` (:func:`calibrate_gradient`), ``alpha`` fitted every
    ``alpha_every`` steps by a clipped gradient step of size ``alpha_lr`` on :func:`srpr_alpha_gradient`.

    Methods (000's ablation names): ``CLSO`` (task gradient only), ``SRPR`` (``g_cls + alpha g_reg``, no
    calibration), ``GCLB`` (calibration only, ``alpha = 0``), ``D4AM`` (both).
    """

    name = "d4am"
    trains_enhancer = True
    METHODS = ("CLSO", "SRPR", "GCLB", "D4AM")

    def __init__(self, *args: Any, method: str = "D4AM", alpha: float = 1.0, alpha_lr: float = 0.01,
                 alpha_every: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("train_task", False)
        super().__init__(*args, **kwargs)
        if method not in self.METHODS:
            raise ValueError(f"paradigm.method must be one of {self.METHODS}, got {method!r}")
        if int(alpha_every) < 1 or not float(alpha) >= 0:
            raise ValueError("paradigm.alpha must be >= 0 and paradigm.alpha_every >= 1")
        self.method, self.alpha, self.alpha_lr, self.alpha_every = method, float(alpha), float(alpha_lr), int(
            alpha_every)
        self._alpha_grad, self._alpha_count = 0.0, 0

    def state_dict(self):
        return {**super().state_dict(), "alpha": self.alpha, "alpha_grad": self._alpha_grad,
                "alpha_count": self._alpha_count}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.alpha = float(state["alpha"])
        self._alpha_grad, self._alpha_count = float(state["alpha_grad"]), int(state["alpha_count"])

    def step(self, batch, generator):
        tr = self.trainer
        targets = self.targets(batch)
        per_example, wave = self.enhancer_pass(batch, generator, grad=True)
        reg_loss = per_example.float().mean()
        task_loss = self.task_losses(wave, targets).float().mean()
        params = [p for p in tr.denoiser.parameters() if p.requires_grad]
        g_cls = torch.autograd.grad(task_loss, params, retain_graph=True, allow_unused=True)
        g_reg = torch.autograd.grad(reg_loss, params, allow_unused=True)
        g_cls = [torch.zeros_like(p) if g is None else g for g, p in zip(g_cls, params)]
        g_reg = [torch.zeros_like(p) if g is None else g for g, p in zip(g_reg, params)]
        tr.replicas.all_reduce_mean([*g_cls, *g_reg])  # every process calibrates the same (averaged) gradients
        proj = 0.0
        if self.method in ("GCLB", "D4AM"):
            g_cls, proj = calibrate_gradient(g_cls, g_reg)
        alpha = self.alpha if self.method in ("SRPR", "D4AM") else 0.0
        grads = [gc + alpha * gr for gc, gr in zip(g_cls, g_reg)]
        grad_norm = tr.enhancer_update(None, grads=dict(zip(params, grads)))
        if self.method in ("SRPR", "D4AM"):
            sq = _dot(g_reg, g_reg)
            dot = _dot(g_cls, g_reg) - proj * sq  # of the task gradient before calibration
            self._alpha_grad += srpr_alpha_gradient(dot, proj, sq, self.alpha)
            self._alpha_count += 1
            if self._alpha_count == self.alpha_every:
                g = self._alpha_grad / self.alpha_every
                self.alpha = max(0.0, self.alpha + max(-1.0, min(1.0, -self.alpha_lr * g)))
                self._alpha_grad, self._alpha_count = 0.0, 0
        return {"loss": float((task_loss + alpha * reg_loss).detach()), "ae_loss": float(reg_loss.detach()),
                "task_loss": float(task_loss.detach()), "grad_norm": grad_norm, "alpha": self.alpha,
                "proj": proj}


class BlackBoxIterative(TaskParadigm):
    """Sample importance from a frozen black-box recogniser (new: in no anchor paper): the weight of example ``i``
    is its per-utterance WER (+ ``floor``) on the enhancer's output, normalised over the batch, for users whose
    downstream model is not differentiable. WERs are computed the first time an example is seen in an epoch and
    cached for the rest of it (``cache[name] = (epoch, wer)``; saved in checkpoints).

    Args:
        recogniser: ``"whisper"`` or ``"sphinx"`` (:func:`edm_se.asr.get_recogniser`; the ``asr`` extra).
        floor: added to every WER (in %) so that a batch without errors still trains, uniformly.
        task: unused (kept for a uniform config); pass ``{"name": "m5"}``.
    """

    name = "blackbox_iterative"
    trains_enhancer = True

    def __init__(self, *args: Any, recogniser: str = "whisper", floor: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("train_task", False)
        kwargs.setdefault("task", {"name": "m5", "num_classes": 2})
        super().__init__(*args, **kwargs)
        self.recogniser_name, self.floor = str(recogniser), float(floor)
        self.cache: dict[str, tuple[int, float]] = {}

    def state_dict(self):
        return {**super().state_dict(), "wer_cache": dict(self.cache)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.cache = {k: (int(v[0]), float(v[1])) for k, v in state.get("wer_cache", {}).items()}

    def _wer(self, waveform: torch.Tensor, text: str) -> float:
        from edm_se.asr import transcribe, wer

        hyp = transcribe(self.recogniser_name, waveform.detach().float().cpu().numpy(),
                         int(self.trainer.cfg.sample_rate))
        return float(wer(text, hyp))

    def step(self, batch, generator):
        tr = self.trainer
        texts = list(batch.get("text") or [])
        names = list(batch.get("name") or [])
        if not texts or len(names) != len(texts):
            raise ValueError("paradigm=blackbox_iterative needs examples with a 'text' (transcript) and a 'name'")
        epoch = tr.epoch()
        x0, y = tr.spectra(batch)[:2]
        stale = [i for i, n in enumerate(names) if self.cache.get(n, (-1, 0.0))[0] != epoch]
        if stale:
            _, wave = self.enhancer_pass(batch, generator, grad=False)
            for i in stale:
                wer_i = self._wer(wave[i], texts[i])
                if not math.isfinite(wer_i):
                    raise ValueError(f"paradigm=blackbox_iterative: example {names[i]}: its transcript "
                                     f"{texts[i]!r} has no words, so its WER is undefined")
                self.cache[names[i]] = (epoch, wer_i)
        wers = torch.tensor([self.cache[n][1] + self.floor for n in names])
        weights = self.batch_weights(wers)
        per_example = tr.loss_fn(tr.model, tr.parts.sde, x0, y, generator=generator)
        loss = (weights.to(per_example.device) * per_example.float()).sum()
        grad_norm = tr.enhancer_update(loss)
        return {"loss": float(loss.detach()), "wer_mean": float(wers.mean()) - self.floor, "grad_norm": grad_norm,
                "weight_max": float(weights.max())}


PARADIGMS: dict[str, type[Paradigm]] = {
    "denoising": Denoising, "baseline": Baseline, "data_augmentation": DataAugmentation,
    "cold_cascade": ColdCascade, "cold_cascade_da": ColdCascadeDA, "multi_task": MultiTask,
    "iterative": Iterative, "d4am": D4AM, "blackbox_iterative": BlackBoxIterative,
}

