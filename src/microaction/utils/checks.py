"""Configuration checks that run before any work: every bad value is named with its key and the range
it must lie in.

Plain functions rather than Hydra structured configs: the ``data`` group is instantiated by
``_target_`` and its settings also come back from checkpoints (``eval.py`` merges them with the
command line), so the checks live where every route passes: ``MA52DataModule.__init__`` calls
``check_data_settings``, and ``train()``/``evaluate()`` call ``check_config`` first. Structured configs
would check types when composing but not ranges (OmegaConf runs no ``__post_init__``), and not the
values a checkpoint brings. A bad value that reached the decoder (``data.num_segments=0``, a negative
``data.short_side``) would otherwise turn into one "undecodable clip" per clip.
"""

from __future__ import annotations

import logging
import math
from numbers import Integral, Real
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

DECODE_ERROR_MODES = ("auto", "skip", "raise")
SPLITS = ("train", "val", "test")
LIMIT_KEYS = {"train": "limit_train_batches", "val": "limit_val_batches", "test": "limit_test_batches"}


class ConfigError(ValueError):
    """One or more configuration values outside what they may be; raised before any work."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration:" + "".join(f"\n  {p}" for p in self.problems))


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _seq(value: Any) -> list | None:
    """A list/tuple (or an OmegaConf ListConfig) as a list; None for anything else."""
    if isinstance(value, (str, bytes)) or value is None:
        return None
    try:
        from omegaconf import ListConfig

        if isinstance(value, ListConfig):
            return list(value)
    except ImportError:  # pragma: no cover
        pass
    return list(value) if isinstance(value, (list, tuple)) else None


def data_problems(values: Mapping[str, Any], prefix: str = "data.") -> list[str]:
    """Every out-of-range data setting in ``values`` (keys of ``MA52DataModule``), one message each."""
    problems: list[str] = []

    def bad(key: str, expected: str) -> None:
        problems.append(f"{prefix}{key}={values[key]!r}: expected {expected}")

    def positive_int(key: str, allow_none: bool = False) -> None:
        if key not in values:
            return
        v = values[key]
        if v is None and allow_none:
            return
        if not _is_int(v) or v < 1:
            bad(key, "an integer >= 1" + (" (or null)" if allow_none else ""))

    positive_int("num_segments")
    positive_int("batch_size")
    positive_int("eval_batch_size", allow_none=True)
    positive_int("decode_threads")
    positive_int("short_side", allow_none=True)
    if values.get("num_classes") is not None:
        # read-only: the classes follow from the datamodule's label space (MA-52's); older checkpoints store it
        from ..labels import LabelSpace

        if values["num_classes"] != LabelSpace.ma52().num_classes:
            problems.append(f"{prefix}num_classes={values['num_classes']!r}: read-only, it follows from the label "
                            f"space (MA-52: {LabelSpace.ma52().num_classes} classes); leave it out")
    if "input_size" in values:
        v = values["input_size"]
        parts = _seq(v)
        if parts is not None:
            if len(parts) != 2 or not all(_is_int(p) and p >= 1 for p in parts):
                bad("input_size", "an integer >= 1 or [height, width] of integers >= 1")
        elif not _is_int(v) or v < 1:
            bad("input_size", "an integer >= 1 or [height, width] of integers >= 1")
    if "num_workers" in values and values["num_workers"] is not None:
        if not _is_int(values["num_workers"]) or values["num_workers"] < 0:
            bad("num_workers", "an integer >= 0 (or null: from the CPU count)")
    if "prefetch_factor" in values and values["prefetch_factor"] is not None:
        if not _is_int(values["prefetch_factor"]) or values["prefetch_factor"] < 1:
            bad("prefetch_factor", "an integer >= 1 (or null)")
    if "scales" in values:
        parts = _seq(values["scales"])
        if not parts or not all(_is_real(s) and 0 < s <= 1 for s in parts):
            bad("scales", "a non-empty list of numbers in (0, 1] (fractions of the short side)")
    if "flip_p" in values:
        v = values["flip_p"]
        if not _is_real(v) or not 0 <= v <= 1:
            bad("flip_p", "a probability in [0, 1]")
    if "max_skipped_fraction" in values:
        v = values["max_skipped_fraction"]
        if not _is_real(v) or not 0 <= v <= 1:
            bad("max_skipped_fraction", "a fraction in [0, 1] (0: no clip may be skipped)")
    if "on_decode_error" in values and values["on_decode_error"] not in DECODE_ERROR_MODES:
        bad("on_decode_error", "one of " + ", ".join(DECODE_ERROR_MODES))
    for key in ("test_has_labels", "persistent_workers"):
        if key in values and not isinstance(values[key], bool):
            bad(key, "true or false")
    return problems


def check_data_settings(values: Mapping[str, Any], prefix: str = "data.") -> None:
    """Refuses the settings ``data_problems`` names (``ConfigError``); logs ``crop_mismatch``'s warning."""
    problems = data_problems(values, prefix)
    if problems:
        raise ConfigError(problems)
    warning = crop_mismatch(values, prefix)
    if warning:
        log.warning(warning)


def crop_mismatch(values: Mapping[str, Any], prefix: str = "data.") -> str | None:
    """A warning when evaluation would see a much narrower view than training: evaluation centre-crops
    ``input_size`` pixels of frames whose short side is ``short_side``, training crops ``scales`` x the short
    side and resizes the crop to ``input_size``. Below 0.8 x the smallest training scale (e.g. 48 of 80
    pixels, 60%, against whole-frame training crops) the model is scored on a part of the picture (the middle
    of a figure) it never saw alone at that scale. MA-52's convention, 224 of 256 (87.5%) against scales down
    to 0.66, passes. None when the settings agree or cannot be compared (``short_side`` null)."""
    short, size, scales = values.get("short_side"), values.get("input_size"), _seq(values.get("scales"))
    if not _is_int(short) or short < 1 or not scales:
        return None
    parts = _seq(size)
    side = min(parts) if parts else size
    if not _is_int(side):
        return None
    seen, smallest = side / short, min(float(s) for s in scales)
    if seen >= 0.8 * smallest:
        return None
    return (f"{prefix}input_size={size} with {prefix}short_side={short}: evaluation centre-crops {side} of the "
            f"{short}-pixel short side ({100 * seen:.0f}%), while training crops {100 * smallest:.0f}% of it or more "
            f"({prefix}scales) and resizes the crop to {side}: the model is evaluated on a narrower view than it "
            f"was trained on. Set {prefix}short_side near {prefix}input_size (MA-52's convention: 224 of 256)")


def limit_problems(trainer: Mapping[str, Any], prefix: str = "trainer.") -> list[str]:
    """``limit_*_batches`` must be a fraction in [0.0, 1.0] or a whole number of batches >= 0."""
    problems = []
    for key in LIMIT_KEYS.values():
        if key not in trainer or trainer[key] is None:
            continue
        v = trainer[key]
        ok = (_is_int(v) and v >= 0) or (isinstance(v, float) and 0.0 <= v <= 1.0)
        if not ok:
            problems.append(f"{prefix}{key}={v!r}: expected a fraction in [0.0, 1.0] or a number of batches >= 0")
    return problems


def check_config(cfg: Any) -> None:
    """The checks that need no data: ``data.*`` and ``trainer.limit_*_batches``. Run first by the jobs."""
    problems: list[str] = []
    data = cfg.get("data") if hasattr(cfg, "get") else None
    if data is not None:
        problems += data_problems(data)
    trainer = cfg.get("trainer") if hasattr(cfg, "get") else None
    if trainer is not None:
        problems += limit_problems(trainer)
    accel = cfg.get("accel") if hasattr(cfg, "get") else None
    if accel is not None and accel.get("global_batch_size") is not None:
        v = accel.get("global_batch_size")
        if not _is_int(v) or v < 1:
            problems.append(f"accel.global_batch_size={v!r}: expected an integer >= 1 (or null: data.batch_size "
                            "per process)")
    if problems:
        raise ConfigError(problems)


def batches_per_process(clips: int, batch_size: int, world: int, split: str) -> int:
    """Batches the smallest process's loader yields for a split of ``clips`` clips.

    Training: the distributed sampler pads every rank to ceil(clips / world). Evaluation: the
    unpadded sampler gives ranks floor or ceil of clips / world; the smallest share counts.
    """
    share = math.ceil(clips / world) if split == "train" else clips // world
    return math.ceil(share / batch_size)


def batch_limit_problems(
    trainer: Mapping[str, Any],
    clips: Mapping[str, int],
    batch_sizes: Mapping[str, int],
    world: int = 1,
    sources: Mapping[str, str] | None = None,
    prefix: str = "trainer.",
) -> list[str]:
    """A fractional ``limit_<split>_batches`` that leaves a split with no batch at all.

    ``clips`` maps each split the run uses to its listed clips, ``batch_sizes`` to its loader's batch
    size; ``sources`` names where the clip count came from (the list file). Lightning counts
    ``int(batches * limit)`` batches; with ``fast_dev_run`` or ``overfit_batches`` it ignores the limits.
    """
    if trainer.get("fast_dev_run"):
        return []
    overfit = trainer.get("overfit_batches") or 0
    problems = []
    for split, n in clips.items():
        if overfit and split in ("train", "val"):
            continue
        key = LIMIT_KEYS[split]
        limit = trainer.get(key, 1.0)
        if not isinstance(limit, float) or not 0.0 < limit < 1.0:
            continue  # whole numbers, 1.0 (all) and 0.0 (stage off) are taken as given
        batches = batches_per_process(n, batch_sizes[split], world, split)
        if batches > 0 and int(batches * limit) == 0:
            source = f" ({sources[split]})" if sources and split in sources else ""
            per = f" per process ({world} processes)" if world > 1 else ""
            problems.append(
                f"{prefix}{key}={limit}: {split} has {n} clips{source} = {batches} batch(es) of "
                f"{batch_sizes[split]}{per}, and int({batches} x {limit}) = 0 batches; expected a fraction in "
                f"[{1 / batches:.4g}, 1.0] or a whole number of batches >= 1 (e.g. {prefix}{key}=1)"
            )
    return problems
