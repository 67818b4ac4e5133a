"""Type-grouped sampler (reference §6.2 ``GroupSampler``).

Every optimizer micro-step must see a single data type on *all* ranks: the SAM 2 loss all-reduces the number of
objects, so ranks must call it equally often (a rank with a caption batch and a rank with a segmentation batch
would deadlock), and batches never mix samples with and without SAM 2 supervision.

Indices are grouped by data type (first-appearance order); each group is shuffled with a generator seeded
``seed + epoch``, cut into chunks of ``batch_size * world_size`` (an incomplete last chunk is dropped), the chunks
are shuffled globally with the same generator and flattened. The DataLoader's batch sampler then cuts the list
into per-rank batches of ``batch_size`` and accelerate's ``BatchSamplerShard`` deals batch ``r`` of every
``world_size`` consecutive batches to rank ``r``: all batches of one step come from one chunk. The order depends
only on (seed, epoch), identical on every rank and across resumes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

__all__ = ["TypeGroupedSampler"]


class TypeGroupedSampler(Sampler[int]):
    """See the module docstring. ``data_types[i]`` is the group key of index ``i``; ``dataset`` (optional) gets
    ``set_epoch`` forwarded so per-item randomness follows the epoch."""

    def __init__(
        self,
        data_types: Sequence[str],
        batch_size: int,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        dataset: Any = None,
    ) -> None:
        if batch_size < 1 or world_size < 1:
            raise ValueError(f"batch_size and world_size must be >= 1, got {batch_size}, {world_size}")
        self.data_types = list(data_types)
        self.batch_size = batch_size
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.dataset = dataset
        self.epoch = 0
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(self.data_types):
            groups.setdefault(t, []).append(i)
        self.groups = groups

    @property
    def chunk_size(self) -> int:
        return self.batch_size * self.world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.dataset is not None and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)

    def __len__(self) -> int:
        return sum(len(g) // self.chunk_size for g in self.groups.values()) * self.chunk_size

    def chunks(self) -> list[list[int]]:
        """The epoch's chunks (one optimizer micro-step across all ranks each), in order."""
        gen = torch.Generator()
        gen.manual_seed(self.seed + self.epoch)
        chunks: list[list[int]] = []
        for indices in self.groups.values():
            order = [indices[int(i)] for i in torch.randperm(len(indices), generator=gen)] if self.shuffle else indices
            n = len(order) // self.chunk_size * self.chunk_size
            chunks += [order[i : i + self.chunk_size] for i in range(0, n, self.chunk_size)]
        if self.shuffle:
            chunks = [chunks[int(i)] for i in torch.randperm(len(chunks), generator=gen)]
        return chunks

    def __iter__(self) -> Iterator[int]:
        for chunk in self.chunks():
            yield from chunk
