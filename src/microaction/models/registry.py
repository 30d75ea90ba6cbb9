"""The model registry: name -> backbone class and its catalogue facts; ``create_model`` builds from it.

A backbone file registers its class beside its definition, with the facts the model zoo reports::

    @register_model("c3d", frames=16, size=112, method="C3D", family="3D CNN", published_params_m=78.4,
                    source="...")
    class C3D(ClipClassifier): ...

One class may be registered under several names with settings the name fixes
(``fixed=dict(shift=True, se=False)`` is TSM). ``create_model(name, **settings)`` checks every
setting against the class's constructor and the head's settings before anything is built,
builds the backbone, attaches the head ``head`` names (heads.py: the shared ``ClipHead``, or the
hierarchical head) and loads the pretrained weights ``pretrained`` asks for. ``frames`` (T) and ``size`` are the method's standard input: the
defaults of ``num_segments`` and (for a model that takes one) ``input_size``, and what
scripts/model_zoo.py counts parameters and FLOPs at.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .base import ClipClassifier
from .heads import build_head, check_head
from .pretrained import load_pretrained, pretrained_mode

# settings of the shared head (and of weight loading) that every registered model takes, with their defaults
HEAD_SETTINGS: dict[str, Any] = {
    "num_classes": 52,
    "dropout": 0.5,
    "embed_dim": 300,
    "embed_hidden": 300,
    # linear | hierarchical (heads.py: a body-part head, fused with the fine one by head_fusion)
    "head": "linear",
    "head_fusion": 0.5,
    # the label space's fine -> coarse mapping, which the hierarchical head needs (the task passes it)
    "fine_to_coarse": None,
    "pretrained": False,
}


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its backbone class, the settings its name fixes, and its catalogue facts."""

    name: str
    cls: type[ClipClassifier]
    frames: int
    size: int
    method: str | None = None
    family: str | None = None
    published_params_m: float | None = None
    source: str | None = None
    fixed: dict = field(default_factory=dict)
    # defaults of this name that differ from the constructor's or the head's
    defaults: dict = field(default_factory=dict)
    # the constructor's settings other than those the name fixes, with their defaults (None: none)
    backbone_settings: dict = field(default_factory=dict)

    @property
    def listed(self) -> bool:
        """In the model zoo (docs/model_zoo.md): registered with the method it implements."""
        return self.method is not None

    def settings(self) -> dict[str, Any]:
        """Every setting ``create_model(self.name, ...)`` takes, with its default."""
        out = dict(self.backbone_settings, num_segments=self.frames)
        if "input_size" in out:
            out["input_size"] = self.size
        return {**out, **HEAD_SETTINGS, **self.defaults}


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    frames: int,
    size: int,
    method: str | None = None,
    family: str | None = None,
    published_params_m: float | None = None,
    source: str | None = None,
    fixed: dict | None = None,
    defaults: dict | None = None,
) -> Callable[[type[ClipClassifier]], type[ClipClassifier]]:
    """Register a ``ClipClassifier`` subclass as ``model.name: <name>`` (a class decorator).

    frames, size: the method's standard input (T and the square frame size). method, family,
    published_params_m, source: what docs/model_zoo.md lists (a model without ``method`` is not
    listed). fixed: constructor settings this name fixes. defaults: defaults of this name that
    differ from the constructor's or the head's (e.g. ``dict(dropout=0.0)``).
    """

    def deco(cls: type[ClipClassifier]) -> type[ClipClassifier]:
        if name in _REGISTRY:
            raise KeyError(f"model {name!r} registered twice")
        if not (isinstance(cls, type) and issubclass(cls, ClipClassifier)):
            raise TypeError(f"model {name!r}: {cls!r} is not a ClipClassifier subclass")
        params = inspect.signature(cls.__init__).parameters
        if "num_segments" not in params:
            raise TypeError(f"model {name!r}: {cls.__name__} takes no num_segments")
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        if any(p.kind in kinds for p in params.values()):
            raise TypeError(f"model {name!r}: {cls.__name__}.__init__ must list its settings (no *args, **kwargs)")
        unknown = set(fixed or {}) - set(params)
        if unknown:
            raise TypeError(f"model {name!r}: fixed settings {sorted(unknown)} are not {cls.__name__} arguments")
        backbone = {
            k: None if p.default is inspect.Parameter.empty else p.default
            for k, p in list(params.items())[1:]
            if k not in (fixed or {})
        }
        stray = set(defaults or {}) - set(backbone) - set(HEAD_SETTINGS)
        if stray:
            raise TypeError(f"model {name!r}: defaults for {sorted(stray)}, which are not settings of {cls.__name__}")
        _REGISTRY[name] = ModelInfo(
            name=name, cls=cls, frames=frames, size=size, method=method, family=family,
            published_params_m=published_params_m, source=source, fixed=dict(fixed or {}),
            defaults=dict(defaults or {}), backbone_settings=backbone,
        )
        return cls

    return deco


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    return _REGISTRY[name]


def catalogue() -> list[ModelInfo]:
    """The listed models (those registered with a method), in the order they were registered."""
    return [info for info in _REGISTRY.values() if info.listed]


def check_model_settings(name: str, settings: dict) -> None:
    """Refuse, before anything is built, a setting ``model=<name>`` does not take, naming key and model."""
    info = model_info(name)
    fixed = sorted(k for k in settings if k in info.fixed)
    if fixed:
        siblings = "/".join(i.name for i in catalogue() if i.cls is info.cls)
        raise TypeError(
            f"model.{fixed[0]} is fixed by the model name (model={name}: "
            + ", ".join(f"{k}={info.fixed[k]}" for k in sorted(info.fixed))
            + f"); choose the model instead: model={siblings}"
        )
    known = info.settings()
    unknown = [k for k in settings if k not in known]
    if unknown:
        keys = ", ".join(f"model.{k}" for k in unknown)
        what = "not a setting" if len(unknown) == 1 else "not settings"
        raise TypeError(f"{keys}: {what} of model={name} (its settings: {', '.join(known)})")


def create_model(name: str, **settings) -> ClipClassifier:
    """Build ``name``: check the settings, build the backbone, attach the head, load the weights.

    The model's ``initialised_from`` says what its weights start from (``random``, a library
    label such as ``imagenet``, or a file's absolute path), for the run's records.
    """
    info = model_info(name)
    check_model_settings(name, settings)
    given = {**info.defaults, **settings}
    head = {k: given.get(k, default) for k, default in HEAD_SETTINGS.items()}
    pretrained, num_classes = head.pop("pretrained"), head.pop("num_classes")
    kind, fusion, fine_to_coarse = head.pop("head"), head.pop("head_fusion"), head.pop("fine_to_coarse")
    mode, _ = pretrained_mode(pretrained)  # a value of the wrong kind is refused before building
    check_head(kind, num_classes, fusion, fine_to_coarse)
    kwargs = {k: v for k, v in given.items() if k in info.backbone_settings}
    kwargs.setdefault("num_segments", info.frames)
    if "input_size" in info.backbone_settings:
        kwargs.setdefault("input_size", info.size)
    if "dropout" in info.backbone_settings:  # a backbone with dropout of its own uses the head's rate
        kwargs["dropout"] = head["dropout"]
    model = info.cls(**kwargs, **info.fixed)
    # the head is built right after the backbone, as each backbone built its own before
    model.head = build_head(kind, model.num_features, num_classes, **head, fusion=fusion, fine_to_coarse=fine_to_coarse)
    model.initialised_from = load_pretrained(
        model,
        pretrained,
        model.weights_name,
        library=model.library_weights() if mode in ("library", "required") else None,
        adapt=model.adapt_weights,
        allow_missing=model.weights_allow_missing,
        strict=model.weights_strict,
        named=model.named_weights,
    )
    return model
