"""The order in which a training run sees its examples: deterministic, resumable and split over processes.

Example ``p`` of a run (its global position, counted over steps, ranks and the batch) is drawn from a per-epoch
permutation seeded by ``(seed, epoch)``; step ``k`` of rank ``r`` in a run of ``world`` processes with batch size
``B`` takes positions ``(k world + r) B ... (k world + r) B + B - 1``. A run resumed at step ``k`` therefore sees
the same examples as an uninterrupted one, and the processes of a multi-process run see disjoint examples.
Used by :class:`edm_se.train.Trainer`.
"""

from __future__ import annotations

import sys
from typing import Any, Iterator

import torch

__all__ = ["PositionSampler", "RankBatches", "positions", "collate"]


class PositionSampler(torch.utils.data.Sampler):
    """Yields dataset indices for global example positions ``start, start + stride, ...`` (infinite).

    Position ``p`` maps to epoch ``p // N`` and index ``perm_epoch[p % N]`` with ``perm_epoch`` a permutation of
    ``range(N)`` seeded by ``(seed, epoch)``; the index handed to the dataset is ``epoch * N + perm[p % N]`` when
    the dataset accepts indices beyond its length (``dataset.unbounded_index``), so that on-the-fly mixing draws
    new SNRs and crops every epoch, else ``perm[p % N]``.

    Raises:
        ValueError: ``num_items`` is 0 (an empty training set).
    """

    def __init__(self, num_items: int, seed: int, start: int, stride: int = 1, unbounded: bool = False):
        if num_items <= 0:
            raise ValueError("the training dataset is empty")
        self.num_items, self.seed, self.start, self.stride, self.unbounded = num_items, seed, start, stride, unbounded
        self._perm_epoch: int | None = None
        self._perm: torch.Tensor | None = None

    def index(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_items)
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.num_items, generator=g)
            self._perm_epoch = epoch
        idx = int(self._perm[offset])  # type: ignore[index]
        return epoch * self.num_items + idx if self.unbounded else idx

    def __iter__(self) -> Iterator[int]:
        p = self.start
        while True:
            yield self.index(p)
            p += self.stride

    def __len__(self) -> int:  # pragma: no cover - infinite
        return sys.maxsize


def positions(step: int, batch_size: int, world: int, rank: int) -> int:
    """The global position of the first example of ``step`` on ``rank``: ``(step * world + rank) * batch_size``."""
    return (step * world + rank) * batch_size


class RankBatches(torch.utils.data.Sampler):
    """Batches of dataset indices for one rank from ``start_step`` on (infinite): step ``k`` takes the positions
    ``positions(k, batch_size, world, rank) + 0 .. batch_size - 1`` of ``base``."""

    def __init__(self, base: PositionSampler, start_step: int, batch_size: int, world: int, rank: int):
        self.base, self.start_step, self.batch_size, self.world, self.rank = base, start_step, batch_size, world, rank

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start_step
        while True:
            p0 = positions(k, self.batch_size, self.world, self.rank)
            yield [self.base.index(p0 + j) for j in range(self.batch_size)]
            k += 1

    def __len__(self) -> int:  # pragma: no cover - infinite
        return sys.maxsize


def collate(items: list[dict]) -> dict[str, Any]:
    """Stack training examples into a batch: ``clean``, ``noisy`` (B, L) float32, ``name`` (B names); task data
    (:mod:`edm_se.tasks.data`) adds ``label`` (B,) int64 and ``text`` (B strings) when every example has them.

    Raises:
        ValueError: the examples differ in length (a dataset without ``segment_seconds``).
    """
    lengths = {int(it["clean"].shape[-1]) for it in items}
    if len(lengths) != 1:
        raise ValueError(f"training examples have different lengths {sorted(lengths)}; set data segment_seconds")
    batch = {"clean": torch.stack([torch.as_tensor(it["clean"]) for it in items]),
             "noisy": torch.stack([torch.as_tensor(it["noisy"]) for it in items]),
             "name": [it.get("name", "") for it in items]}
    if all("label" in it for it in items):  # task data (edm_se.tasks.data): keyword labels, transcripts
        batch["label"] = torch.tensor([int(it["label"]) for it in items], dtype=torch.long)
    if all("text" in it for it in items):
        batch["text"] = [str(it["text"]) for it in items]
    return batch
