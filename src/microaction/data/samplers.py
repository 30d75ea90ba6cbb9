"""Evaluation sampler for several processes: every clip exactly once.

torch's DistributedSampler (what Lightning puts on val/test loaders under DDP) pads each rank's
share to the same length by repeating clips, so a split of 51 clips on 2 ranks is scored as 52.
This one gives each rank a contiguous block of the split and pads nothing; ranks may get one clip
less than others, which evaluation (no gradient all-reduce) does not mind. It subclasses
DistributedSampler so that Lightning keeps it instead of substituting its own.
"""

from __future__ import annotations

from typing import Iterator, Sized

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
