"""The data side of the training and evaluation recipes (docs/recipes.md), each one data setting that composes
with any backbone and is off by default:

- ``sampler`` / ``balance_power``: class-balanced sampling of the training clips (``samplers.ClassBalancedSampler``);
- ``rare_aug``: stronger augmentation for the clips of the rarest training classes (``RareAug``);
- ``train_splits``: train on the union of several splits' lists (``ConcatClips``);
- ``test_views``: several temporal clips and spatial crops per evaluation clip, the task averaging over them;
- ``person_crop``: crops centred on a detected person's box (``data.person_boxes``).

``recipe_problems`` checks their values (with the key and what was expected) before anything is built.
"""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from torch.utils.data import ConcatDataset

from ..utils.checks import _seq

log = logging.getLogger(__name__)

SAMPLERS = ("random", "class_balanced")
TRAIN_SPLITS = ("train", "val", "test")
VIEW_AVERAGES = ("logits", "softmax")
CROPS = (1, 3)
RARE_DEFAULTS = {"quantile": 0.25, "scales": [1.0, 0.875, 0.75, 0.66, 0.5], "max_scale_gap": 2, "min_span": 0.7,
                 "flip_p": None}
VIEW_DEFAULTS = {"clips": 1, "crops": 1, "average": "logits"}
# class names that say which side: a horizontal flip would turn such a clip into the other class
LATERAL = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def _real(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(float(v))


def _int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _mapping(v: Any) -> Mapping | None:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(v, DictConfig):
            return OmegaConf.to_container(v, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return v if isinstance(v, Mapping) else None


def views_of(value: Any) -> dict:
    """``data.test_views`` with its defaults filled in (null: one clip, one crop)."""
    given = _mapping(value) if value is not None else {}
    return {**VIEW_DEFAULTS, **(given or {})}


def rare_of(value: Any) -> dict | None:
    """``data.rare_aug`` with its defaults filled in; None when off (null or false). ``true`` takes every default."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(RARE_DEFAULTS)
    return {**RARE_DEFAULTS, **(_mapping(value) or {})}


def recipe_problems(values: Mapping[str, Any], prefix: str = "data.") -> list[str]:
    """Every out-of-range recipe setting of ``values`` (keys of ``MA52DataModule``), one message each."""
    problems: list[str] = []

    def bad(key: str, value: Any, expected: str) -> None:
        problems.append(f"{prefix}{key}={value!r}: expected {expected}")

    if values.get("sampler", "random") not in SAMPLERS:
        bad("sampler", values["sampler"], "one of " + ", ".join(SAMPLERS))
    power = values.get("balance_power", 0.5)
    if not _real(power) or not 0 <= power <= 1:
        bad("balance_power", power, "a number in [0, 1] (0: as drawn uniformly, 0.5: square-root frequency, "
            "1: every class alike)")
    splits = _seq(values.get("train_splits", ["train"]))
    if (not splits or any(s not in TRAIN_SPLITS for s in splits) or len(set(splits)) != len(splits)
            or "train" not in splits):
        bad("train_splits", values.get("train_splits"), f"a list of distinct splits of {TRAIN_SPLITS} holding train, "
            "e.g. [train] or [train, val]")
    elif "test" in splits and not values.get("test_has_labels", False):
        bad("train_splits", values.get("train_splits"), "no test split while data.test_has_labels=false (the "
            "official test labels are dummies)")

    views = values.get("test_views")
    given = _mapping(views) if views is not None else {}
    if given is None:
        bad("test_views", views, "a mapping {clips: K, crops: 1 or 3, average: logits or softmax}, or null")
    else:
        unknown = set(given) - set(VIEW_DEFAULTS)
        if unknown:
            problems.append(f"{prefix}test_views has unknown keys {sorted(unknown)}; expected {sorted(VIEW_DEFAULTS)}")
        v = views_of(given)
        if not _int(v["clips"]) or not 1 <= v["clips"] <= 32:
            bad("test_views.clips", v["clips"], "an integer in [1, 32] (temporal clips per evaluation clip)")
        if v["crops"] not in CROPS or not _int(v["crops"]):
            bad("test_views.crops", v["crops"], "1 (centre crop) or 3 (three crops along the long side)")
        if v["average"] not in VIEW_AVERAGES:
            bad("test_views.average", v["average"], "one of " + ", ".join(VIEW_AVERAGES))

    rare_given = values.get("rare_aug")
    if rare_given not in (None, False, True) and _mapping(rare_given) is None:
        bad("rare_aug", rare_given, "null (off), true (the defaults) or a mapping of "
            f"{sorted(RARE_DEFAULTS)}")
    else:
        rare = rare_of(rare_given)
        if rare is not None:
            unknown = set(rare) - set(RARE_DEFAULTS)
            if unknown:
                problems.append(f"{prefix}rare_aug has unknown keys {sorted(unknown)}; expected {sorted(RARE_DEFAULTS)}")
            if not _real(rare["quantile"]) or not 0 <= rare["quantile"] <= 1:
                bad("rare_aug.quantile", rare["quantile"], "a number in [0, 1] (classes whose training count is at or "
                    "below this quantile of the per-class counts)")
            scales = _seq(rare["scales"])
            if not scales or not all(_real(s) and 0 < s <= 1 for s in scales):
                bad("rare_aug.scales", rare["scales"], "a non-empty list of numbers in (0, 1]")
            if not _int(rare["max_scale_gap"]) or rare["max_scale_gap"] < 0:
                bad("rare_aug.max_scale_gap", rare["max_scale_gap"], "an integer >= 0")
            if not _real(rare["min_span"]) or not 0 < rare["min_span"] <= 1:
                bad("rare_aug.min_span", rare["min_span"], "a number in (0, 1] (the shortest stretch of the clip the "
                    "frames are drawn from; 1: the whole clip)")
            flip = rare["flip_p"]
            if flip is not None and (not _real(flip) or not 0 <= flip <= 1):
                bad("rare_aug.flip_p", flip, "a probability in [0, 1], or null (data.flip_p)")
            elif flip and values.get("flip_p", 0.5) == 0:
                bad("rare_aug.flip_p", flip, "0 or null while data.flip_p=0: this dataset's classes do not survive a "
                    "horizontal flip (e.g. directions of motion)")

    crop = values.get("person_crop")
    if crop is not None and (not isinstance(crop, str) or not crop.strip()):
        bad("person_crop", crop, "null or the folder of person boxes written by scripts/detect_people.py")
    return problems


# --- rare-class augmentation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RareAug:
    """What a training clip of one of ``classes`` gets: frames from a random stretch of at least ``min_span``
    of the clip, and ``transform`` (a stronger multi-scale crop) instead of the dataset's."""

    classes: frozenset[int]
    transform: Callable
    min_span: float


def rare_classes(labels: Sequence[int], quantile: float) -> tuple[frozenset[int], float]:
    """The classes present in ``labels`` whose count is at or below the ``quantile`` of the per-class counts
    (of the classes present), and that count threshold."""
    counts = np.bincount(np.asarray(list(labels), dtype=np.int64))
    present = counts[counts > 0]
    if not len(present):
        return frozenset(), 0.0
    threshold = float(np.quantile(present, quantile))
    return frozenset(int(c) for c in np.flatnonzero((counts > 0) & (counts <= threshold))), threshold


def lateral_classes(class_names: Sequence[str]) -> list[str]:
    """The class names that name a side (left/right): a horizontal flip would make them the other class."""
    return [n for n in class_names if LATERAL.search(n)]


def make_rare_aug(settings: Mapping, labels: Sequence[int], class_names: Sequence[str], input_size, flip_p: float):
    """The ``RareAug`` of ``data.rare_aug`` (filled in by ``rare_of``) for training ``labels``; None when no class
    qualifies. A flip is refused on a label space whose class names name a side."""
    from .transforms import MultiScaleCrop

    flip = flip_p if settings["flip_p"] is None else float(settings["flip_p"])
    lateral = lateral_classes(class_names)
    if flip and lateral:
        raise ValueError(f"data.rare_aug flips clips (flip_p={flip}), but classes name a side ({', '.join(lateral[:5])}): "
                         "a flipped clip would be the other class. Set data.rare_aug.flip_p=0")
    classes, threshold = rare_classes(labels, float(settings["quantile"]))
    if not classes:
        return None
    log.info("rare-class augmentation for %d classes with at most %g training clips (quantile %g): %s", len(classes),
             threshold, settings["quantile"], sorted(classes))
    transform = MultiScaleCrop(input_size, scales=list(settings["scales"]), max_scale_gap=int(settings["max_scale_gap"]),
                               flip_p=flip)
    return RareAug(classes, transform, float(settings["min_span"]))


# --- training on several splits ------------------------------------------------------------------------------


class ConcatClips(ConcatDataset):
    """Several splits' datasets as one training set (``data.train_splits``): samples as the parts make them,
    ``index`` counted over the whole; ``records`` and ``labels()`` of all parts in order.

    Two splits may name different clips alike (MA-52's train and val names follow one pattern), so the clips
    of every part after the first are named ``<split>/<name>`` here (in samples, skipped clips and
    ``records``): the run's clip accounting and decode reports keep them apart."""

    def __init__(self, parts: Sequence):
        super().__init__(list(parts))
        self.parts = list(parts)
        self.split = "+".join(p.split for p in self.parts)

    def _prefix(self, part: int) -> str:
        return "" if part == 0 else f"{self.parts[part].split}/"

    @property
    def records(self) -> list:
        return [replace(r, name=self._prefix(k) + r.name) if k else r
                for k, p in enumerate(self.parts) for r in p.records]

    def labels(self) -> list[int]:
        return [label for p in self.parts for label in p.labels()]

    def __getitem__(self, index: int) -> dict:
        index = index if index >= 0 else len(self) + index
        part = bisect.bisect_right(self.cumulative_sizes, index)
        sample = super().__getitem__(index)
        prefix = self._prefix(part)
        if "skipped" in sample:
            sample["skipped"] = prefix + sample["skipped"]
        else:
            sample["index"] = index
            sample["name"] = prefix + sample["name"]
        return sample
