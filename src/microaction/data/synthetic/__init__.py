"""Writers of synthetic datasets in the official MA-52 layout, selectable with ``data.generate=<name>``.

Each generator writes a dataset to ``root`` (doing nothing if a finished one is
already there, see ``staging``) and takes its options as keyword arguments
(``data.generate_kwargs``):

* ``quickstart``: coloured blobs drifting in 13 directions (``quickstart.py``);
* ``procedural``: a seated figure performing the 52 micro-actions (``procedural/``);
* ``procedural_pro``: the same figure in long clips with several micro-actions and one of five
  emotions on its face, in the MA-52-Pro layout, with face tracks (``procedural_pro.py``).

Generators are imported lazily: they can be heavy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

GENERATORS: dict[str, str] = {
    "quickstart": "microaction.data.synthetic.quickstart:write_quickstart",
    "procedural": "microaction.data.synthetic.procedural:write_procedural",
    "procedural_pro": "microaction.data.synthetic.procedural_pro:write_procedural_pro",
}


def get_generator(name: str) -> Callable:
    if name not in GENERATORS:
        raise ValueError(f"data.generate={name!r}: unknown generator, choose from {sorted(GENERATORS)}")
    module, attr = GENERATORS[name].split(":")
    return getattr(import_module(module), attr)
