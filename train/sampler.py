"""A batch sampler indexed by micro-batch number, so a resumed run sees exactly the same data.

The data stream is an endless concatenation of seeded permutations (one per epoch). Global
micro-batch `m` is stream positions `[m * G, (m + 1) * G)` with `G = batch_size * world`;
process `rank` takes its `batch_size` share. Each item also carries a seed derived from
its stream position, so random augmentations do not depend on worker processes, on how
many batches a DataLoader prefetched, or on whether the run was interrupted: resuming at
micro-batch `m` reproduces the items and the augmentations of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch


def item_seed(seed: int, position: int) -> int:
    """A 63-bit seed for stream position `position` (stable across Python processes)."""
    digest = hashlib.blake2b(f"{seed}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class StepBatchSampler:
    """Yields lists of (dataset index, item seed) from micro-batch `start_batch` on, forever."""

    def __init__(
        self, n_items: int, batch_size: int, seed: int, *, start_batch: int = 0, rank: int = 0, world: int = 1
    ):
        if n_items < 1:
            raise ValueError("the dataset is empty")
        self.n_items = n_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self.rank = rank
        self.world = world
        self._perm_epoch = -1
        self._perm: list[int] = []

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            generator = torch.Generator().manual_seed(item_seed(self.seed, -1 - epoch))
            self._perm = torch.randperm(self.n_items, generator=generator).tolist()
            self._perm_epoch = epoch
        return self._perm

    def position_item(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.n_items)
        return self._permutation(epoch)[offset], item_seed(self.seed, position)

    def batch(self, m: int) -> list[tuple[int, int]]:
        first = (m * self.world + self.rank) * self.batch_size
        return [self.position_item(p) for p in range(first, first + self.batch_size)]

    def epoch_of(self, m: int) -> int:
        return (m * self.world * self.batch_size) // self.n_items

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        m = self.start_batch
        while True:
            yield self.batch(m)
            m += 1
