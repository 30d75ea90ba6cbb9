"""Dataset generators selectable with ``data.generate=<name>``.

Each writes a dataset in the official MA-52 layout to ``root`` (doing nothing if
a finished one is already there) and takes its options as keyword arguments
(``data.generate_kwargs``). Imported lazily: generators can be heavy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

GENERATORS: dict[str, str] = {
    "quickstart": "microaction.data.quickstart:write_quickstart",
    "procedural": "microaction.data.procedural:write_procedural",
}


def get_generator(name: str) -> Callable:
    if name not in GENERATORS:
        raise ValueError(f"data.generate={name!r}: unknown generator, choose from {sorted(GENERATORS)}")
    module, attr = GENERATORS[name].split(":")
    return getattr(import_module(module), attr)
