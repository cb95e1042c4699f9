"""``edm-se train``: train a diffusion enhancer; resumable, deterministic, single- or multi-process.

Every design choice is a config group: ``sde``, ``precond``, ``net``, ``loss``, ``data``, ``stft``, ``trainer``
(and ``sampler`` for validation). Paper presets live in ``conf/experiment/``.

Run directory layout (``run_dir``)::

    config.yaml            the resolved config of the run
    log.csv                one row per logged step (loss, lr, grad_norm, steps/s) and per validation (pesq, ...)
    checkpoints/last.pt    written atomically every ``trainer.ckpt_every`` steps and at the end
    checkpoints/best.pt    the checkpoint with the best validation PESQ (or lowest loss without validation)
    tb/                    TensorBoard events (if the ``logging`` extra is installed)
    ddp_check.json         multi-process runs: a checksum of every replica's weights at the end

Determinism and resume: example ``p`` of the run (global position, counted over steps, ranks and the batch) is
drawn from a per-epoch permutation seeded by ``(seed, epoch)``, and the noise of the loss at step ``k`` on rank
``r`` comes from a generator seeded by ``(seed, k, r)``. A resumed run (``resume=true``) therefore sees the same
data and noise as an uninterrupted one; optimizer, LR schedule, EMA and step count are restored from
``checkpoints/last.pt``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf

from edm_se.checkpoint import FORMAT, CheckpointError, atomic_torch_save, load_checkpoint
from edm_se.config import build_model, instantiate_group, model_config, select_device, to_container
from edm_se.train_data import PositionSampler, RankBatches, collate
from edm_se.train_dist import Replicas
from edm_se.train_log import RunLog
from edm_se.train_optim import ema_with_warmup, lr_lambda
from edm_se.train_resume import input_checkpoints, refuse_changed_config

log = logging.getLogger("edm_se.train")


class SpecBatch(NamedTuple):
    """A training batch in the enhancer's domain: ``x0``, ``y`` (B, 1, F, T_pad) complex, the per-example peak
    ``scale`` (B, 1), the unpadded frame count and the waveform length in samples."""

    x0: torch.Tensor
    y: torch.Tensor
    scale: torch.Tensor
    num_frames: int
    length: int


# ----------------------------------------------------------------------------------------------- helpers
def instantiate_data(node: Any) -> Any:
    """Instantiate a dataset config node; the user errors a dataset raises (a missing corpus, an unreadable file)
    come out as themselves, not wrapped in Hydra's ``InstantiationException``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _partial_=False)
    except InstantiationException as err:
        cause = err.__cause__ or err.__context__
        if cause is not None:
            raise cause from None
        raise


def _seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


PROGRESS_LINE_SECONDS = 60.0
"""With ``trainer.progress=false`` (no bar: a log file, or the paradigms study's worker processes) the trainer logs
one line with the step, loss, steps/s and time left at the first log interval after every this many seconds."""


def build_paradigm(cfg: DictConfig):
    """The run's training paradigm (``cfg.paradigm``, :mod:`edm_se.tasks.paradigms`; absent: plain denoising)."""
    from hydra.utils import instantiate

    from edm_se.tasks.paradigms import Denoising

    node = cfg.get("paradigm")
    if node is None:
        return Denoising()
    return instantiate(node, _convert_="all", _recursive_=True)


# ----------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Owns the run: model, EMA, optimizer, data, logging, checkpoints. See the module docstring."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.tc = cfg.trainer
        #: this process's place in the run (torchrun), and averaging over the processes
        self.replicas = Replicas(select_device(cfg.device))
        self.device = self.replicas.device
        self.is_main = self.replicas.is_main
        self.run_dir = Path(cfg.run_dir).resolve()
        self.ckpt_dir = self.run_dir / "checkpoints"
        #: names and sizes of the training files (:func:`edm_se.trained_on.dataset_identity`), kept in checkpoints
        self.data_identity: dict = {}
        #: data.valid against data.train by audio fingerprint (:meth:`_check_valid_held_out`), kept in checkpoints
        self.valid_held_out: dict = {}
        #: SHA-256 of the checkpoints the run starts from (:func:`edm_se.train_resume.input_checkpoints`)
        self.input_checkpoints: dict = {}
        _seed_all(int(cfg.seed))

        from hydra.utils import instantiate

        self.parts = build_model(cfg)
        self.denoiser = self.parts.denoiser.to(self.device)
        self.loss_fn = instantiate_group(cfg.loss, "loss", _partial_=False) if "_target_" in cfg.loss else None
        if self.loss_fn is None:
            raise ValueError("loss config needs a _target_")
        self.model = self.denoiser
        # the paradigm decides how gradients meet across processes: plain denoising (one forward, one backward)
        # uses DDP's hooks; paradigms that call the enhancer several times per backward (an unrolled sampler, a
        # task model behind it) or combine gradients themselves use the raw module and self.replicas.
        self.paradigm = build_paradigm(cfg)
        if self.replicas.distributed and self.paradigm.uses_ddp_wrapper:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.denoiser, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        from torch.optim.swa_utils import AveragedModel

        self.ema = AveragedModel(self.denoiser, multi_avg_fn=ema_with_warmup(float(self.tc.ema_decay)),
                                 use_buffers=True)
        self.optimizer = instantiate(self.tc.optimizer, params=self.denoiser.parameters(), _partial_=False)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(int(self.tc.warmup_steps), int(self.tc.max_steps), str(self.tc.lr_schedule)))
        self.step = 0
        self.best = -math.inf
        self.use_amp = bool(self.tc.amp) and self.device.type == "cuda"
        self.paradigm.bind(self)

    # ---------------------------------------------------------------- checkpoints
    def _model_config(self) -> dict:
        mc = model_config(self.cfg)
        full = to_container(self.cfg)
        mc["sampler"] = full.get("sampler")
        mc["sample_rate"] = int(full.get("sample_rate", 16000))
        return mc

    def state(self) -> dict:
        return {
            "format": FORMAT,
            "config": self._model_config(),
            "train_config": to_container(self.cfg),
            "step": self.step,
            "model": self.denoiser.state_dict(),
            "ema": self.ema.module.state_dict(),
            "ema_n_averaged": self.ema.n_averaged.detach().cpu(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best": self.best,
            "rng_cpu": torch.get_rng_state(),
            "world_size": self.replicas.world,
            "paradigm": {"name": self.paradigm.name, "state": self.paradigm.state_dict()},
            # where training ran (relative data paths of train_config are relative to it) and which files it read
            "info": {"train_cwd": os.getcwd(), **({"train_data": self.data_identity} if self.data_identity else {}),
                     **({"valid_held_out": self.valid_held_out} if self.valid_held_out else {}),
                     **({"input_checkpoints": self.input_checkpoints} if self.input_checkpoints else {})},
        }

    def save(self, name: str) -> Path:
        return atomic_torch_save(self.state(), self.ckpt_dir / name)

    def try_resume(self) -> bool:
        last = self.ckpt_dir / "last.pt"
        if not last.exists():
            if self.is_main:
                log.info("resume=true but %s does not exist: starting from scratch", last)
            return False
        ckpt = load_checkpoint(last, map_location=self.device)
        changed = refuse_changed_config(last, ckpt, self.cfg)
        if changed and self.is_main:
            note = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} step {int(ckpt['step'])}: resume=force with a changed "
                    f"config: {', '.join(changed)}\n")
            with open(self.run_dir / "resume.log", "a", encoding="utf-8") as fh:
                fh.write(note)
            log.warning("resume=force: continuing %s with a changed config (%s); recorded in %s", last,
                        ", ".join(changed), self.run_dir / "resume.log")
        if ckpt.get("world_size", 1) != self.replicas.world:
            raise CheckpointError(f"{last}: was trained with {ckpt.get('world_size')} processes, "
                                  f"now {self.replicas.world}")
        try:
            self.denoiser.load_state_dict(ckpt["model"])
            self.ema.module.load_state_dict(ckpt["ema"])
        except RuntimeError as err:
            raise CheckpointError(f"{last}: weights do not match this config ({str(err).splitlines()[0][:120]})") \
                from None
        self.ema.n_averaged.copy_(ckpt["ema_n_averaged"].to(self.ema.n_averaged.device))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step = int(ckpt["step"])
        self.best = float(ckpt["best"])
        torch.set_rng_state(ckpt["rng_cpu"])
        self.paradigm.load_state_dict((ckpt.get("paradigm") or {}).get("state") or {})
        self.data_identity = (ckpt.get("info") or {}).get("train_data") or self.data_identity
        self.valid_held_out = (ckpt.get("info") or {}).get("valid_held_out") or self.valid_held_out
        self.input_checkpoints = (ckpt.get("info") or {}).get("input_checkpoints") or {}
        if self.is_main:
            log.info("resumed from %s at step %d", last, self.step)
        return True

    # ---------------------------------------------------------------- data
    def _check_valid_held_out(self) -> dict:
        """The validation sources (``data.valid``) against the training sources (``data.train``), file against file
        by audio fingerprint (:func:`edm_se.heldout.check_files`): a validation file that shares audio with a
        training file makes the validation scores, and so the choice of ``best.pt``, partly measure training data.
        Warns (training goes on); the outcome is kept in the checkpoints (``info.valid_held_out``). Fingerprints are
        cached (2-3 s for the corpus, well under 1 s for the built-in data once cached)."""
        from edm_se.audio import AudioError
        from edm_se.heldout import OVERLAP, check_files
        from edm_se.trained_on import TrainingData, sources_of

        train = sources_of(self.cfg.data.get("train"), "data.train")
        valid = sources_of(self.cfg.data.get("valid"), "data.valid")
        if not train or not valid:
            return {}
        try:
            report = check_files([(kind, spec) for kind, spec, _ in valid], "data.valid",
                                 TrainingData("data.train", train), progress=False)
        except AudioError as err:
            log.warning("data.valid was not checked against data.train: %s", err)
            return {"status": "unchecked", "line": str(err)}
        if report.status == OVERLAP:
            log.warning("data.valid: %s; its validation scores (and best.pt) partly measure training data",
                        report.line())
        else:
            log.info("data.valid: %s (%.1f s)", report.line(), report.seconds)
        return {"status": report.status, "shared": len({m["mixture"] for m in report.matches}),
                "files": report.test_files, "line": report.line()}

    def _loader(self) -> Iterator[dict]:
        dataset = getattr(self, "_train_set", None)
        if dataset is None:
            dataset = instantiate_data(self.cfg.data.train)
        base = PositionSampler(len(dataset), int(self.cfg.seed), 0,
                               unbounded=bool(getattr(dataset, "unbounded_index", False)))
        batches = RankBatches(base, self.step, int(self.tc.batch_size), self.replicas.world, self.replicas.rank)
        workers = int(self.tc.num_workers)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                             num_workers=workers, persistent_workers=workers > 0,
                                             prefetch_factor=4 if workers > 0 else None)
        return iter(loader)

    def spectra(self, batch: dict) -> SpecBatch:
        """Peak-normalise the noisy batch (the clean one by the same factor) and take their padded compressed
        STFTs, as enhancement does (:meth:`edm_se.model.EnhancementModel.enhance`)."""
        from edm_se.model import peak_normalize
        from edm_se.stft import pad_frames

        noisy = batch["noisy"].to(self.device, torch.float32)
        clean = batch["clean"].to(self.device, torch.float32)
        noisy, scale = peak_normalize(noisy)
        clean = clean / scale
        factor = int(getattr(self.parts.net, "downsample_factor", 1))
        x0, num_frames = pad_frames(self.parts.stft.forward(clean), factor)
        y, _ = pad_frames(self.parts.stft.forward(noisy), factor)
        return SpecBatch(x0, y, scale, int(num_frames), int(noisy.shape[-1]))

    def to_waveform(self, spec: torch.Tensor, batch: SpecBatch) -> torch.Tensor:
        """A spectral estimate of :meth:`spectra`'s batch back to (B, L) waveforms at the input level
        (differentiable)."""
        from edm_se.stft import crop_frames

        return self.parts.stft.inverse(crop_frames(spec, batch.num_frames), batch.length) * batch.scale

    def enhancer_update(self, loss: torch.Tensor | None, grads: dict | None = None) -> float:
        """One optimizer step of the enhancer: back-propagate ``loss`` (or install ``grads``, parameter ->
        gradient, for paradigms that combine gradients themselves), clip to ``trainer.grad_clip``, step the
        optimizer and the LR schedule, update the EMA. Returns the gradient norm before clipping.

        Multi-process runs: the gradient of ``loss`` is averaged over the processes here (by DDP's hooks for
        paradigms with ``uses_ddp_wrapper``, else by ``self.replicas``); installed ``grads`` must already
        be the average (a paradigm combining gradients averages its ingredients first, so that every process
        combines the same ones).

        Raises:
            FloatingPointError: a non-finite loss or gradient.
        """
        if grads is None:
            if loss is None or not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at step {self.step}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not self.paradigm.uses_ddp_wrapper:
                self.replicas.average_grads(self.denoiser)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            for p, g in grads.items():
                if not torch.isfinite(g).all():
                    raise FloatingPointError(f"non-finite gradient at step {self.step}")
                p.grad = g.detach().to(p.dtype)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.denoiser.parameters(), float(self.tc.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update_parameters(self.denoiser)
        return float(grad_norm)

    def load_enhancer_weights(self, path: str | os.PathLike) -> None:
        """Start the enhancer (weights and EMA) from an enhancer checkpoint's EMA weights (fine-tuning).

        Raises:
            CheckpointError: missing file or weights that do not fit this run's model config.
        """
        ckpt = load_checkpoint(Path(path), map_location=self.device)
        try:
            self.denoiser.load_state_dict(ckpt.get("ema") or ckpt["model"])
            self.ema.module.load_state_dict(ckpt.get("ema") or ckpt["model"])
        except RuntimeError as err:
            raise CheckpointError(f"{path}: weights do not fit this run's model config "
                                  f"({str(err).splitlines()[0][:120]})") from None
        if self.is_main:
            log.info("enhancer initialised from %s (step %s)", path, ckpt.get("step"))

    def autocast(self):
        """bf16 autocast for forward passes on CUDA when ``trainer.amp`` (a no-op elsewhere)."""
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp)

    def epoch(self) -> int:
        """The current epoch: examples seen so far over the training set's size."""
        n = len(getattr(self, "_train_set", None) or ())
        return (self.step * int(self.tc.batch_size) * self.replicas.world) // n if n else 0

    # ---------------------------------------------------------------- validation
    def validate(self) -> dict[str, float]:
        """Enhance ``trainer.val_files`` validation files with the EMA weights and score them."""
        from edm_se.metrics import estoi, pesq_wb, si_sdr
        from edm_se.model import EnhancementModel

        n = int(self.tc.val_files)
        if n <= 0 or self.cfg.data.get("valid") is None:
            return {}
        if getattr(self, "_valid_set", None) is None:  # built (audio loaded) once per run, not per validation
            self._valid_set = instantiate_data(self.cfg.data.valid)
        dataset = self._valid_set
        sampler_cfg = OmegaConf.to_container(self.cfg.sampler, resolve=True)
        sampler_cfg["num_steps"] = int(self.tc.val_num_steps)
        parts = self.parts
        ema_parts = type(parts)(sde=parts.sde, precond=parts.precond, net=self.ema.module.net,
                                denoiser=self.ema.module, stft=parts.stft)
        from edm_se.config import build_sampler

        model = EnhancementModel(ema_parts, build_sampler(sampler_cfg), sample_rate=int(self.cfg.sample_rate),
                                 device=self.device)
        scores: dict[str, list[float]] = {"val_pesq": [], "val_estoi": [], "val_si_sdr": []}
        sr = int(self.cfg.sample_rate)
        for i in range(min(n, len(dataset))):
            item = dataset[i]
            res = model.enhance(item["noisy"], sr, seed=i)
            ref, est = item["clean"].numpy(), res.waveform.numpy()
            silent = not est.any()  # PESQ and SI-SDR refuse an all-zero estimate: NaN here, training goes on
            if silent:
                log.warning("validation item %d: the model's output is silent (all zeros); PESQ and SI-SDR are NaN", i)
            scores["val_pesq"].append(float("nan") if silent else pesq_wb(ref, est, sr))
            scores["val_estoi"].append(estoi(ref, est, sr))
            scores["val_si_sdr"].append(float("nan") if silent else si_sdr(ref, est))
        self.ema.module.train(False)
        return {k: float(sum(v) / len(v)) for k, v in scores.items() if v}

    # ---------------------------------------------------------------- loop
    def fit(self) -> dict:
        from tqdm import tqdm

        if self.cfg.resume:
            self.try_resume()
        elif (self.ckpt_dir / "last.pt").exists():
            raise CheckpointError(f"{self.ckpt_dir / 'last.pt'}: run directory already has a checkpoint; "
                                  "pass resume=true to continue it or choose another run_dir")
        if self.step == 0:  # the files it starts from, as read now (a resumed run keeps what it started from)
            self.input_checkpoints = input_checkpoints(self.cfg)
        max_steps = int(self.tc.max_steps)
        # the data is read before anything is written: a missing corpus stops the run with nothing created
        self._train_set = instantiate_data(self.cfg.data.train) if self.step < max_steps else None
        if self._train_set is not None:
            from edm_se.trained_on import dataset_identity

            found = dataset_identity(self._train_set)  # names and sizes of the files it trains on
            changed = [k for k in found if k in self.data_identity and found[k] != self.data_identity[k]]
            if changed and self.is_main:
                log.warning("resuming on other %s training files than the checkpoint's (%s); the checkpoint will "
                            "record these", " and ".join(changed), ", ".join(
                                f"{k}: {self.data_identity[k].get('files')} -> {found[k]['files']} files"
                                for k in changed))
            self.data_identity = found
            if self.is_main:
                self.valid_held_out = self._check_valid_held_out()
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
            n_params = sum(p.numel() for p in self.denoiser.parameters())
            log.info("run_dir=%s  params=%.3fM  device=%s  world=%d  steps %d -> %d", self.run_dir,
                     n_params / 1e6, self.device, self.replicas.world, self.step, max_steps)
        batches = self._loader() if self.step < max_steps else iter(())
        bar = tqdm(total=max_steps, initial=self.step, disable=not self.is_main or not self.tc.progress,
                   desc="train", dynamic_ncols=True)
        self.denoiser.train()
        # created last, so that its steps/s clock starts with the loop (as the rows before this split measured)
        run_log = RunLog(self.run_dir, self.step, bool(self.tc.tensorboard)) if self.is_main else None
        last_line = time.time()
        while self.step < max_steps:
            batch = next(batches)
            gen = torch.Generator(device=self.device).manual_seed(
                int(self.cfg.seed) * 1_000_003 + self.step * 1009 + self.replicas.rank)
            values = self.paradigm.step(batch, gen)
            self.step += 1
            bar.update(1)
            if run_log is None:
                continue
            run_log.record(values)
            if self.step % int(self.tc.log_every) == 0 or self.step == max_steps:
                # the enhancer's learning rate; NaN for paradigms that do not train it (the task's is logged apart)
                lr = self.scheduler.get_last_lr()[0] if self.paradigm.trains_enhancer else float("nan")
                row = run_log.flush(self.step, lr)
                bar.set_postfix(loss=f"{row['loss']:.4f}", sps=f"{row['steps_per_s']:.2f}")
                if bar.disable and time.time() - last_line >= PROGRESS_LINE_SECONDS:
                    last_line = time.time()
                    sps = float(row["steps_per_s"])
                    left = (max_steps - self.step) / sps if sps > 0 else float("nan")
                    log.info("step %d/%d  loss=%.4f  %.2f steps/s  about %.0f min left", self.step, max_steps,
                             row["loss"], sps, left / 60)
            val_due = int(self.tc.val_every) > 0 and (self.step % int(self.tc.val_every) == 0
                                                      or self.step == max_steps)
            if val_due:
                metrics = self.validate()
                if metrics:
                    run_log.validation(self.step, metrics)
                    log.info("step %d validation: %s", self.step,
                             "  ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
                    if metrics["val_pesq"] > self.best:
                        self.best = metrics["val_pesq"]
                        self.save("best.pt")
            if self.step % int(self.tc.ckpt_every) == 0 or self.step == max_steps:
                self.save("last.pt")
        bar.close()
        if self.is_main and not (self.ckpt_dir / "last.pt").exists():
            self.save("last.pt")  # max_steps=0: the initial (e.g. fine-tuning's loaded) weights, as a checkpoint
        result = {"run_dir": str(self.run_dir), "step": self.step}
        checksums = self.replicas.finish(self.run_dir, self.denoiser, *self.paradigm.replicated_modules())
        if checksums is not None:
            result["replica_checksums"] = checksums
        if self.is_main and not (self.ckpt_dir / "best.pt").exists() and (self.ckpt_dir / "last.pt").exists():
            self.save("best.pt")
        if run_log is not None:
            run_log.close()
        if self.is_main:
            log.info("done: step %d, checkpoints in %s", self.step, self.ckpt_dir)
        return result


def train(cfg: DictConfig) -> dict:
    """Train with a composed config (``conf/train.yaml``); returns ``{"run_dir", "step", ...}``."""
    torch.set_num_threads(int(cfg.trainer.threads)) if int(cfg.trainer.threads) > 0 else None
    return Trainer(cfg).fit()


def _remove_if_only_hydra(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but what Hydra wrote at start-up (``.hydra/``, ``train.log``)."""
    import shutil

    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)


def main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se train``: validates the config and the data first; a user error leaves no run
    directory behind."""
    from edm_se import validate
    from edm_se.cli import _user_error_types

    try:
        validate.train_config(cfg)
        result = train(cfg)
    except _user_error_types():
        _remove_if_only_hydra(Path(str(cfg.run_dir)))
        raise
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoints: {result['run_dir']}/checkpoints/last.pt (step {result['step']})")
