"""Name -> class registries of the package's task (LightningModule) and datamodule classes.

They are the allow-list of what may be built from a checkpoint's stored hyperparameters:
eval.py builds a registered class and passes it the stored values as plain arguments; it
never imports or calls what a checkpoint names. A ``_target_`` string is matched against the
registered classes' import paths as text, without importing it.

train.py builds a task and a datamodule from the config (``task._target_``, ``data._target_``); a
task must be registered here for eval.py to rebuild it from a checkpoint, which records the
registered names it was built from. A new task or datamodule registers with one line at the end
of this file, ``TASKS.register("name", Class)``, or as a decorator, ``@TASKS.register("name")``, in a
module this file imports.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar, overload

from .data.datamodule import MA52DataModule
from .data.ma52pro import MA52ProDataModule
from .tasks import EmotionRecognition, MicroActionRecognition

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, T] = {}

    @overload
    def register(self, name: str, cls: T) -> T: ...

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    def register(self, name: str, cls: T | None = None):
        """Register ``cls`` as ``name``; without ``cls``, a class decorator doing that."""
        if cls is None:
            return lambda c: self.register(name, c)
        if name in self._classes and self._classes[name] is not cls:
            raise KeyError(f"{self.kind} {name!r} registered twice")
        self._classes[name] = cls
        return cls

    def name_of(self, cls: type) -> str | None:
        """The name ``cls`` is registered under, None if it is not."""
        return next((n for n, c in self._classes.items() if c is cls), None)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> T:
        if name not in self._classes:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._classes[name]

    def targets(self) -> dict[str, T]:
        """Import path (``package.module.Class``) -> class, for each registered class."""
        return {f"{c.__module__}.{c.__qualname__}": c for c in self._classes.values()}

    def by_target(self, target: object) -> T | None:
        """The registered class a ``_target_`` string names (by import path or registered name), else None."""
        if not isinstance(target, str):
            return None
        return self.targets().get(target) or self._classes.get(target)


TASKS: Registry[type] = Registry("task")
DATAMODULES: Registry[type] = Registry("datamodule")

TASKS.register("recognition", MicroActionRecognition)
TASKS.register("emotion", EmotionRecognition)
DATAMODULES.register("ma52", MA52DataModule)
DATAMODULES.register("ma52pro", MA52ProDataModule)

# the task of checkpoints that name none (written before they recorded `built_from`)
LEGACY_TASK = "recognition"
