"""Label spaces: what the classes a task predicts are.

A ``LabelSpace`` holds the fine classes (index = class id, e.g. MA-52's 52 micro-actions), the coarse
groups they belong to (MA-52: 7 body parts) with the fine -> coarse mapping, the number of training
clips of each fine class, whether a clip carries one fine class or several, and any further label sets
a dataset annotates beside them (``extra``: e.g. MA-52-Pro's 5 emotions next to its 52 multi-label
actions).

A datamodule exposes one (``datamodule.label_space``); the task sizes its network and loss by it,
the metrics take the fine -> coarse mapping from it, the reports their names, and the label-embedding
loader checks its matrix's rows against it. It travels in checkpoints as plain data (``to_dict`` /
``from_dict``: strings, numbers and lists, loadable with ``torch.load(weights_only=True)``), so
eval.py rebuilds a task without the data.

``LabelSpace.ma52()`` is the only reader of the packaged MA-52 class table (``classes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch


# MA-52-Pro's emotions, in the order of their ids
EMOTIONS = ("joy", "sadness", "surprise", "fear", "anger")


class LabelSpaceError(ValueError):
    """A label space (or its stored form) that is not self-consistent."""


@dataclass(frozen=True)
class LabelSet:
    """A further set of labels a dataset annotates per clip, beside the fine classes (e.g. emotions)."""

    name: str
    classes: tuple[str, ...]
    multi_label: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": list(self.classes), "multi_label": self.multi_label}


@dataclass(frozen=True)
class LabelSpace:
    """Fine classes, their coarse groups and counts, and further label sets; see the module docstring.

    ``train_counts`` is the number of training clips per fine class (MA-52: the release's training
    list, as published), or None when unknown. ``multi_label``: a clip carries several fine classes
    (a single-label task refuses such a space). ``extra`` label sets are carried along for tasks that
    predict them; a task that does not ignores them.
    """

    name: str
    classes: tuple[str, ...]
    coarse_classes: tuple[str, ...]
    fine_to_coarse: tuple[int, ...]
    train_counts: tuple[int, ...] | None = None
    multi_label: bool = False
    extra: tuple[LabelSet, ...] = field(default=())

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise LabelSpaceError(f"label space {self.name!r}: " + "; ".join(problems))

    # --- sizes and lookups ---------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_coarse(self) -> int:
        return len(self.coarse_classes)

    def fine_to_coarse_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.tensor(self.fine_to_coarse, dtype=torch.long, device=device)

    def coarse_of(self, fine: torch.Tensor) -> torch.Tensor:
        """The coarse ids of fine ids (any shape)."""
        return self.fine_to_coarse_tensor(fine.device)[fine]

    def label_set(self, name: str) -> LabelSet:
        for s in self.extra:
            if s.name == name:
                return s
        raise KeyError(f"label space {self.name!r} has no label set {name!r} (has: {[s.name for s in self.extra]})")

    def mismatch(self, other: "LabelSpace") -> list[str]:
        """How ``other`` differs from this space in what a trained network depends on: the number of
        classes, the coarse groups and the mapping, single- or multi-label, the extra label sets'
        sizes. Names and counts may differ (e.g. another copy of label_name.txt)."""
        out = []
        if other.num_classes != self.num_classes:
            out.append(f"{other.num_classes} fine classes, not {self.num_classes}")
        elif other.fine_to_coarse != self.fine_to_coarse or other.num_coarse != self.num_coarse:
            out.append("another fine -> coarse mapping")
        if other.multi_label != self.multi_label:
            out.append("multi-label" if other.multi_label else "single-label")
        mine = {s.name: (len(s.classes), s.multi_label) for s in self.extra}
        theirs = {s.name: (len(s.classes), s.multi_label) for s in other.extra}
        if mine != theirs:
            out.append(f"extra label sets {theirs}, not {mine}")
        return out

    # --- plain data ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Strings, numbers, booleans and lists only (a checkpoint's ``hyper_parameters.label_space``)."""
        return {
            "name": self.name,
            "classes": list(self.classes),
            "coarse_classes": list(self.coarse_classes),
            "fine_to_coarse": list(self.fine_to_coarse),
            "train_counts": None if self.train_counts is None else list(self.train_counts),
            "multi_label": self.multi_label,
            "extra": [s.to_dict() for s in self.extra],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "label_space") -> "LabelSpace":
        """The inverse of ``to_dict``; a value of the wrong kind is named with ``where`` and its key."""
        if isinstance(data, LabelSpace):
            return data
        if not isinstance(data, Mapping):
            raise LabelSpaceError(f"{where}: expected a mapping, got {type(data).__name__}")
        known = {"name", "classes", "coarse_classes", "fine_to_coarse", "train_counts", "multi_label", "extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LabelSpaceError(f"{where}: unknown keys {unknown} (expected {sorted(known)})")
        for key in ("name", "classes", "coarse_classes", "fine_to_coarse"):
            if key not in data:
                raise LabelSpaceError(f"{where}: missing {key!r}")
        counts = data.get("train_counts")
        extra = []
        for i, s in enumerate(_list(data.get("extra") or [], f"{where}.extra")):
            if not isinstance(s, Mapping) or set(s) - {"name", "classes", "multi_label"} or "name" not in s:
                raise LabelSpaceError(f"{where}.extra[{i}]: expected {{name, classes, multi_label}}, got {s!r:.200}")
            extra.append(LabelSet(_str(s["name"], f"{where}.extra[{i}].name"),
                                  _strs(s.get("classes", []), f"{where}.extra[{i}].classes"),
                                  _bool(s.get("multi_label", False), f"{where}.extra[{i}].multi_label")))
        return cls(
            name=_str(data["name"], f"{where}.name"),
            classes=_strs(data["classes"], f"{where}.classes"),
            coarse_classes=_strs(data["coarse_classes"], f"{where}.coarse_classes"),
            fine_to_coarse=_ints(data["fine_to_coarse"], f"{where}.fine_to_coarse"),
            train_counts=None if counts is None else _ints(counts, f"{where}.train_counts"),
            multi_label=_bool(data.get("multi_label", False), f"{where}.multi_label"),
            extra=tuple(extra),
        )

    # --- the packaged MA-52 table ----------------------------------------------------------
    @classmethod
    def ma52(cls, names: Sequence[str] | None = None) -> "LabelSpace":
        """MA-52: 52 fine micro-actions in 7 body parts, one per clip, with the release's training counts.

        ``names`` replaces the packaged fine-class names (a dataset's ``label_name.txt``); there must be
        52 of them. This is the one place that reads the packaged class table.
        """
        from .classes import class_table

        table = class_table()
        if names is not None and len(names) != len(table.fine_names):
            raise LabelSpaceError(f"MA-52 has {len(table.fine_names)} classes, got {len(names)} names")
        return cls(
            name="ma52",
            classes=tuple(names) if names is not None else table.fine_names,
            coarse_classes=table.coarse_names,
            fine_to_coarse=table.fine_to_coarse,
            train_counts=table.train_counts,
        )

    @classmethod
    def ma52pro(cls, names: Sequence[str] | None = None, emotions: Sequence[str] | None = None) -> "LabelSpace":
        """MA-52-Pro: MA-52's 52 micro-actions (several per video) in 7 body parts, and one of five emotions
        per video (the extra label set ``emotion``); ``names``/``emotions`` replace the packaged names."""
        ma52 = cls.ma52(names)
        emotions = tuple(emotions) if emotions is not None else EMOTIONS
        if len(emotions) != len(EMOTIONS):
            raise LabelSpaceError(f"MA-52-Pro has {len(EMOTIONS)} emotions, got {len(emotions)} names")
        return cls(name="ma52pro", classes=ma52.classes, coarse_classes=ma52.coarse_classes,
                   fine_to_coarse=ma52.fine_to_coarse, multi_label=True, extra=(LabelSet("emotion", emotions),))


def _problems(space: LabelSpace) -> list[str]:
    out = []
    if not space.name:
        out.append("empty name")
    if not space.classes:
        out.append("no classes")
    if not space.coarse_classes:
        out.append("no coarse classes (a space without groups maps every class to one coarse class)")
    if len(space.fine_to_coarse) != len(space.classes):
        out.append(f"fine_to_coarse has {len(space.fine_to_coarse)} entries for {len(space.classes)} classes")
    bad = sorted({c for c in space.fine_to_coarse if not 0 <= c < len(space.coarse_classes)})
    if bad:
        out.append(f"fine_to_coarse names coarse ids {bad} outside 0..{len(space.coarse_classes) - 1}")
    if space.train_counts is not None:
        if len(space.train_counts) != len(space.classes):
            out.append(f"train_counts has {len(space.train_counts)} entries for {len(space.classes)} classes")
        elif any(c < 0 for c in space.train_counts):
            out.append("negative train_counts")
    names = [s.name for s in space.extra]
    if len(set(names)) != len(names):
        out.append(f"extra label sets named twice: {names}")
    out += [f"extra label set {s.name!r} has no classes" for s in space.extra if not s.classes]
    return out


def _list(value: Any, where: str) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise LabelSpaceError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def _of_type(value: Any, kind: type, expected: str, where: str) -> Any:
    if not isinstance(value, kind):
        raise LabelSpaceError(f"{where}: expected {expected}, got {value!r:.200}")
    return value


def _str(value: Any, where: str) -> str:
    return _of_type(value, str, "a string", where)


def _strs(value: Any, where: str) -> tuple[str, ...]:
    return tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where)))


def _ints(value: Any, where: str) -> tuple[int, ...]:
    items = _list(value, where)
    for i, v in enumerate(items):
        if not isinstance(v, int) or isinstance(v, bool):
            raise LabelSpaceError(f"{where}[{i}]: expected an integer, got {v!r:.200}")
    return tuple(items)


def _bool(value: Any, where: str) -> bool:
    return _of_type(value, bool, "true or false", where)
