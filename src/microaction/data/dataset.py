"""The MA-52 clip dataset: list file + videos folder -> dict samples."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ..classes import NUM_FINE, class_table
from .annotations import LAYOUT_HELP, list_path, read_list, video_dir
from .decode import DecodeError, read_frames
from .manifest import read_manifest, resolve_manifest
from .sampling import segment_indices

log = logging.getLogger(__name__)

DECODE_ERROR_MODES = ("skip", "raise")


class MA52Dataset(Dataset):
    """One sample per list line: ``{"video": uint8 [T,3,H,W], "label", "coarse", "index", "name"}``.

    A clip that fails to decode is re-raised (``on_decode_error="raise"``) or
    returned as ``{"skipped": name}`` (``"skip"``), which ``collate_skipping``
    drops from the batch and counts, so a damaged file never becomes a wrong
    sample and never stops an epoch.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_segments: int = 8,
        train: bool = False,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        short_side: int | None = 256,
        on_decode_error: str = "skip",
        decode_threads: int = 1,
        num_classes: int = NUM_FINE,
        manifest: str | Path | bool | None = None,
    ):
        if on_decode_error not in DECODE_ERROR_MODES:
            raise ValueError(f"on_decode_error must be one of {DECODE_ERROR_MODES}, got {on_decode_error!r}")
        self.root = Path(root)
        self.split = split
        self.num_segments = num_segments
        self.train = train
        self.transform = transform
        self.short_side = short_side
        self.on_decode_error = on_decode_error
        self.decode_threads = decode_threads
        self.records = read_list(list_path(self.root, split), num_classes)
        self.video_root = video_dir(self.root, split)
        self._check_files()
        self._coarse = class_table().fine_to_coarse
        # name -> (frame count, file size) from prepare_ma52's manifest ("auto": <root>/manifest.csv).
        self.manifest_path = resolve_manifest(self.root, manifest)
        self._known: dict[str, tuple[int, int]] = {}
        if self.manifest_path is not None:
            rows = read_manifest(self.manifest_path)
            self._known = {n: (i.frames, i.bytes) for (s, n), i in rows.items() if s == split}
            log.info("split %s: frame counts of %d/%d clips from %s", split,
                     sum(r.name in self._known for r in self.records), len(self.records), self.manifest_path)

    def _check_files(self) -> None:
        if not self.video_root.is_dir():
            raise FileNotFoundError(f"video folder not found: {self.video_root}\n{LAYOUT_HELP}")
        present = {p.name for p in self.video_root.iterdir()}
        missing = [r for r in self.records if r.name not in present]
        if missing:
            shown = "\n".join(
                f"  {list_path(self.root, self.split)}:{r.line}: {self.video_root / r.name}" for r in missing[:10]
            )
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.records)} videos listed for split '{self.split}' "
                f"are missing:\n{shown}{more}\n{LAYOUT_HELP}"
            )

    def _known_frames(self, name: str, path: Path) -> int | None:
        known = self._known.get(name)
        if known is None:
            return None
        try:
            # A file replaced after the manifest was written no longer matches its size.
            return known[0] if path.stat().st_size == known[1] else None
        except OSError:
            return None

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        path = self.video_root / rec.name
        # Drawn from Python's RNG, which Lightning/torch seed per worker.
        rng = np.random.default_rng(random.getrandbits(63)) if self.train else None
        try:
            frames = read_frames(
                path,
                lambda n: segment_indices(n, self.num_segments, self.train, rng),
                short_side=self.short_side,
                threads=self.decode_threads,
                num_frames=self._known_frames(rec.name, path),
            )
        except DecodeError as err:
            if self.on_decode_error == "raise":
                raise
            log.warning("skipping undecodable clip %s", err)
            return {"skipped": rec.name}
        clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
        if self.transform is not None:
            clip = self.transform(clip)
        return {
            "video": clip,
            "label": rec.label,
            "coarse": self._coarse[rec.label],
            "index": index,
            "name": rec.name,
        }


def collate_skipping(samples: list[dict]) -> dict:
    """Collate the decodable samples; ``num_skipped`` counts the others."""
    good = [s for s in samples if "skipped" not in s]
    skipped = [s["skipped"] for s in samples if "skipped" in s]
    batch = default_collate(good) if good else {}
    batch["num_skipped"] = len(skipped)
    batch["skipped"] = skipped
    return batch
