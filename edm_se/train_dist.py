"""The processes of a training run (``torchrun``): which one this is, averaging across them, and the check that
every replica ends with the same weights. One process is a run of world size 1, where every method is a no-op."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from edm_se.atomic import atomic_write_json

__all__ = ["Replicas", "checksum"]


def checksum(*modules: torch.nn.Module) -> str:
    """A 16-hex-digit SHA-256 prefix over the state dicts of ``modules`` (names and bytes, in a fixed order):
    equal for bit-identical replicas."""
    h = hashlib.sha256()
    for i, module in enumerate(modules):
        for name, p in sorted(module.state_dict().items()):
            h.update(f"{i}.{name}".encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Replicas:
    """This process's place in the run, from torchrun's ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``.

    With more than one process it joins the process group (NCCL on CUDA, Gloo on the CPU) and, on CUDA, takes the
    GPU of its local rank: :attr:`device` is then ``cuda:<LOCAL_RANK>``.

    Attributes:
        world: number of processes; rank: this one's (0 is the main process, which writes the run's files);
        distributed: ``world > 1``; is_main: ``rank == 0``; device: the device to train on.
    """

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world > 1
        self.is_main = self.rank == 0
        self.device = device
        if self.distributed:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            if device.type == "cuda":
                local = int(os.environ.get("LOCAL_RANK", "0"))
                torch.cuda.set_device(local)
                self.device = torch.device("cuda", local)

    def all_reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """Average ``tensors`` in place over the processes (one flat float64 all-reduce; a no-op in one process).
        Floating-point tensors only."""
        if not self.distributed or not tensors:
            return
        import torch.distributed as dist

        flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].reshape(t.shape).to(t.dtype))
            offset += n

    def average_grads(self, module: torch.nn.Module) -> None:
        """Average the gradients of ``module``'s trainable parameters over the processes (a parameter without a
        gradient counts as zero; a no-op in one process)."""
        if not self.distributed:
            return
        params = [p for p in module.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.all_reduce_mean([p.grad for p in params])

    def all_reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of ``value`` over the processes (a copy; ``value`` itself in one process)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        out = value.detach().clone()
        dist.all_reduce(out)
        return out

    def finish(self, run_dir: Path, *modules: torch.nn.Module) -> list[str] | None:
        """End a multi-process run: gather every replica's :func:`checksum` of ``modules``, write
        ``run_dir/ddp_check.json`` (``world_size``, ``checksums``, ``identical``) on the main process and leave the
        process group. Returns the checksums by rank (None in one process)."""
        if not self.distributed:
            return None
        import torch.distributed as dist

        gathered: list[str] = [""] * self.world
        dist.all_gather_object(gathered, checksum(*modules))
        if self.is_main:
            atomic_write_json(Path(run_dir) / "ddp_check.json",
                              {"world_size": self.world, "checksums": gathered, "identical": len(set(gathered)) == 1})
        dist.barrier()
        dist.destroy_process_group()
        return gathered
