"""Learning-rate schedules the torch ones do not give as a single partial (``conf/scheduler/*.yaml``)."""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(epoch: int, warmup_epochs: int, max_epochs: int, start_factor: float,
                         eta_min_factor: float) -> float:
    """The multiplier of the base learning rate in ``epoch`` (0-based): linear from ``start_factor`` to 1 over
    the first ``warmup_epochs`` epochs, then a cosine from 1 down to ``eta_min_factor`` at the last epoch."""
    if epoch < warmup_epochs:
        return start_factor + (1.0 - start_factor) * epoch / warmup_epochs
    span = max(max_epochs - 1 - warmup_epochs, 1)
    progress = min((epoch - warmup_epochs) / span, 1.0)
    return eta_min_factor + (1.0 - eta_min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, max_epochs: int, warmup_epochs: int = 2,
                  start_factor: float = 0.1, eta_min_factor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay, stepped once per epoch (the task's scheduler interval); every
    parameter group keeps its own base rate (layer decay, backbone scale). A run shorter than the warm-up
    (a debug run) ends inside it."""
    if warmup_epochs < 0:
        raise ValueError(f"scheduler.warmup_epochs={warmup_epochs} must be >= 0")
    if not 0 < start_factor <= 1 or not 0 <= eta_min_factor <= 1:
        raise ValueError(f"scheduler.start_factor={start_factor} must be in (0, 1] and scheduler.eta_min_factor="
                         f"{eta_min_factor} in [0, 1]")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: warmup_cosine_factor(epoch, warmup_epochs, max_epochs, start_factor, eta_min_factor))
