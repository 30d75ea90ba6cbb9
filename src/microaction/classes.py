"""The packaged MA-52 class table (``assets/classes.csv``): 52 fine micro-actions in 7 body parts.

The package reads it through ``LabelSpace.ma52()`` (``labels.py``) alone; everything else takes
classes, names and the fine -> body-part mapping from a label space. The body part (coarse label)
of a clip is always derived from its fine id, never from file names (train/val names carry the
body-part id, which would leak the label).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import torch

NUM_FINE = 52
NUM_COARSE = 7


@dataclass(frozen=True)
class ClassTable:
    fine_names: tuple[str, ...]
    codes: tuple[str, ...]
    fine_to_coarse: tuple[int, ...]
    coarse_names: tuple[str, ...]
    train_counts: tuple[int, ...]

    def fine_to_coarse_tensor(self, device=None) -> torch.Tensor:
        return torch.tensor(self.fine_to_coarse, dtype=torch.long, device=device)


@lru_cache(maxsize=1)
def class_table() -> ClassTable:
    text = resources.files("microaction.assets").joinpath("classes.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    rows.sort(key=lambda r: int(r["fine_id"]))
    if [int(r["fine_id"]) for r in rows] != list(range(NUM_FINE)):
        raise RuntimeError("packaged classes.csv must list fine ids 0..51 exactly once")
    coarse: dict[int, str] = {}
    for r in rows:
        coarse[int(r["coarse_id"])] = r["coarse_name"]
    return ClassTable(
        fine_names=tuple(r["name"] for r in rows),
        codes=tuple(r["code"] for r in rows),
        fine_to_coarse=tuple(int(r["coarse_id"]) for r in rows),
        coarse_names=tuple(coarse[i] for i in range(NUM_COARSE)),
        train_counts=tuple(int(r["train_count"]) for r in rows),
    )


def fine_to_coarse(fine: torch.Tensor) -> torch.Tensor:
    """Map fine ids (any shape) to body-part ids."""
    lut = class_table().fine_to_coarse_tensor(fine.device)
    return lut[fine]
