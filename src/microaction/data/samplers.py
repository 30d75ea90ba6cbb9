"""Samplers that Lightning keeps under DDP: evaluation without duplicates, class-balanced training.

Evaluation sampler for several processes: every clip exactly once.

torch's DistributedSampler (what Lightning puts on val/test loaders under DDP) pads each rank's
share to the same length by repeating clips, so a split of 51 clips on 2 ranks is scored as 52.
This one gives each rank a contiguous block of the split and pads nothing; ranks may get one clip
less than others, which evaluation (no gradient all-reduce) does not mind. It subclasses
DistributedSampler so that Lightning keeps it instead of substituting its own.
"""

from __future__ import annotations

from typing import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler


class UnpaddedDistributedSampler(DistributedSampler):
    def __init__(self, dataset: Sized, num_replicas: int, rank: int):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        n = len(dataset)
        # contiguous blocks: concatenating the ranks' outputs in rank order gives dataset order
        self.start = n * rank // num_replicas
        self.stop = n * (rank + 1) // num_replicas
        self.num_samples = self.stop - self.start
        self.total_size = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.num_samples


class ClassBalancedSampler(DistributedSampler):
    """Training clips drawn with replacement, clip i with probability proportional to n_c ** -power, where
    n_c is the number of training clips of its class c (``data.sampler=class_balanced``).

    ``power`` 0 draws every clip alike (as uniform sampling with replacement), 1 every class alike, 0.5
    (square-root frequency) halfway on a log scale: class c is drawn with probability proportional to
    n_c ** (1 - power). An epoch is as long as the training set: ``len(labels)`` clips drawn, rounded up to a
    multiple of ``num_replicas`` so that every process runs as many batches (a process of DDP waiting for
    another's gradients would hang).

    Under DDP each process builds the same draw (one generator seeded with ``seed + epoch``) and takes every
    ``num_replicas``-th clip of it from position ``rank``: the processes' shares are disjoint positions of
    one draw, together cover it, and change with ``set_epoch`` (Lightning calls it at each epoch's start).
    Subclassing ``DistributedSampler`` keeps Lightning from replacing it with its own sampler under DDP
    (``use_distributed_sampler``: Lightning replaces a loader's sampler only when it is not one).
    """

    def __init__(self, labels, power: float = 0.5, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        if not len(labels):
            raise ValueError("class-balanced sampling needs at least one training clip")
        if not 0 <= float(power) <= 1:
            raise ValueError(f"data.balance_power={power!r}: expected a number in [0, 1]")
        labels = torch.as_tensor(list(labels), dtype=torch.long)
        # DistributedSampler's own bookkeeping; __iter__ and __len__ below are this sampler's
        super().__init__(range(len(labels)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=False)
        self.labels = labels
        self.power = float(power)
        self.weights = clip_weights(labels, self.power)
        self.total_size = -(-len(labels) // num_replicas) * num_replicas
        self.num_samples = self.total_size // num_replicas

    def draw(self, epoch: int | None = None) -> torch.Tensor:
        """The whole draw of ``epoch`` (default: the current one), before it is shared out: clip indices."""
        g = torch.Generator()
        g.manual_seed(self.seed + (self.epoch if epoch is None else epoch))
        return torch.multinomial(self.weights, self.total_size, replacement=True, generator=g)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw()[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


def clip_weights(labels: torch.Tensor, power: float) -> torch.Tensor:
    """Per clip, the count of its class in ``labels`` to the power ``-power`` (float64)."""
    counts = torch.bincount(labels).double()
    return counts[labels].pow(-power)


def class_probabilities(labels, power: float) -> dict[int, float]:
    """The probability with which one draw of ``ClassBalancedSampler(labels, power)`` is of each class present:
    proportional to n_c ** (1 - power)."""
    counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long)).double()
    mass = torch.where(counts > 0, counts.pow(1 - float(power)), torch.zeros_like(counts))
    mass = mass / mass.sum()
    return {c: float(mass[c]) for c in range(len(counts)) if counts[c] > 0}
