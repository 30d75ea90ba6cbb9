"""Mixup of training batches (``loss.mixup``), optionally within body parts.

With probability ``p`` a batch is mixed: lam ~ Beta(alpha, alpha) (one value per batch) and every clip i
becomes ``lam * clip_i + (1 - lam) * clip_partner(i)``, where ``partner`` is a random permutation of the
batch; the loss scores it against the mixed target (tasks/losses.py, ``Mix``). ``within_body=true``
draws the permutation within each body part (coarse group) of the batch, so a clip is mixed only with
clips of its own body part and the mixed target stays inside one body part: the body-part label is
unchanged and only the fine classes blend. A clip alone in its body part in the batch is "mixed" with
itself (it stays as it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .losses import Mix


@dataclass(frozen=True)
class MixupSettings:
    """``loss.mixup``: ``alpha`` (Beta parameter; 0 switches mixup off), ``p`` (probability a batch is mixed),
    ``within_body`` (partners from the same body part)."""

    alpha: float = 0.0
    p: float = 1.0
    within_body: bool = True

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> "MixupSettings":
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"alpha", "p", "within_body"})
        if unknown:
            raise ValueError(f"loss.mixup: unknown keys {unknown} (expected alpha, p, within_body)")
        settings = cls(**cfg)
        if isinstance(settings.alpha, bool) or not isinstance(settings.alpha, (int, float)) or settings.alpha < 0:
            raise ValueError(f"loss.mixup.alpha must be a number >= 0 (0: off), got {settings.alpha!r}")
        if isinstance(settings.p, bool) or not isinstance(settings.p, (int, float)) or not 0 <= settings.p <= 1:
            raise ValueError(f"loss.mixup.p must be a probability in [0, 1], got {settings.p!r}")
        if not isinstance(settings.within_body, bool):
            raise ValueError(f"loss.mixup.within_body must be true or false, got {settings.within_body!r}")
        return settings

    @property
    def enabled(self) -> bool:
        return self.alpha > 0 and self.p > 0


def partners(labels: torch.Tensor, groups: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation of ``range(len(labels))`` on the CPU; with ``groups`` (the body part of each
    clip) one that maps each clip to a clip of its own group."""
    n = labels.shape[0]
    if groups is None:
        return torch.randperm(n, generator=generator)
    groups = groups.detach().cpu()
    out = torch.empty(n, dtype=torch.long)
    for g in groups.unique():
        members = (groups == g).nonzero().flatten()
        out[members] = members[torch.randperm(members.numel(), generator=generator)]
    return out


def mix_batch(video: torch.Tensor, labels: torch.Tensor, settings: MixupSettings,
              fine_to_coarse: Sequence[int] | torch.Tensor | None = None,
              generator: torch.Generator | None = None, lam: float | None = None) -> tuple[torch.Tensor, Mix | None]:
    """``(mixed video, Mix(partner, lam))``, or ``(video, None)`` when this batch is not mixed (probability
    1 - p, or mixup off). ``fine_to_coarse`` is needed with ``within_body``. ``generator`` draws whether the
    batch is mixed and the partners (default: torch's global one), lam comes from torch's global generator
    unless ``lam`` fixes it."""
    if not settings.enabled or labels.shape[0] < 2:
        return video, None
    if settings.p < 1 and float(torch.rand((), generator=generator)) >= settings.p:
        return video, None
    groups = None
    if settings.within_body:
        if fine_to_coarse is None:
            raise ValueError("loss.mixup.within_body=true needs the label space's fine -> coarse mapping")
        mapping = torch.as_tensor(fine_to_coarse, dtype=torch.long)
        groups = mapping[labels.detach().cpu()]
    partner = partners(labels, groups, generator)
    if lam is None:  # torch's global generator (seeded by the run's seed)
        alpha = torch.tensor(float(settings.alpha), dtype=torch.float64)
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = partner.to(video.device)
    mixed = lam * video + (1.0 - lam) * video[partner]
    return mixed, Mix(partner, float(lam))

