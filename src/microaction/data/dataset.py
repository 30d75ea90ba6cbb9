"""The MA-52 clip dataset: list file + videos folder -> dict samples."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ..labels import LabelSpace
from ..utils.checks import check_data_settings
from .annotations import LAYOUT_HELP, list_path, read_list, video_dir
from .manifest import read_manifest, resolve_manifest
from .sampling import segment_indices, view_indices, window_indices
from .transforms import view_clips
from .video import DecodeError, read_frames

log = logging.getLogger(__name__)

# What a dataset does with a clip that cannot be decoded. The datamodule's "auto" resolves per split.
DECODE_ERROR_MODES = ("skip", "raise")


class UndecodableClipError(DecodeError):
    """An undecodable clip in a split that does not skip them; the message names the list file and line.

    It takes its message alone, so a DataLoader worker's copy of it is re-raised as this type.
    """

    def __init__(self, message: str, path: str = "", reason: str = ""):
        RuntimeError.__init__(self, message)
        self.path = path
        self.reason = reason


class MA52Dataset(Dataset):
    """One sample per list line:
    ``{"video": uint8 [T,3,H,W], "label", "coarse", "index", "name", "partial"}``.

    Labels lie in ``label_space`` (None: MA-52's), which also maps them to ``coarse``. With
    ``labelled=False`` (the official test list, whose labels are dummies) samples carry no
    ``label`` or ``coarse``.

    A clip that fails to decode raises ``UndecodableClipError`` naming the list file and
    line (``on_decode_error="raise"``) or is returned as ``{"skipped": name, "reason": ...}``
    (``"skip"``), which ``collate_skipping`` drops from the batch, counts and names, so a
    damaged file never becomes a wrong sample. ``"partial"`` is ``""`` for a clip decoded
    in full and says how many frames decoded when the decoder stopped early (the frames
    are then sampled within those; see ``read_frames``).

    Set by the datamodule for its recipes (``docs/recipes.md``), all off by default:
    ``views`` = (temporal clips, spatial crops) of an evaluation split: with more than one view,
    ``video`` is [V, T, 3, H, W] (clip-major: the crops of clip 0, then of clip 1, ...; the transform
    makes the crops) and the task averages its outputs over V. ``rare`` (training only): a clip of one of
    ``rare.classes`` is drawn from a random stretch of the clip (``rare.min_span``) and cropped by
    ``rare.transform`` instead of ``transform``. ``centres``: clip name -> the person's box centre
    (x, y as fractions of the frame), given to the transform as the crop's centre; a clip without one
    is cropped around the frame's centre.
    """

    views: tuple[int, int] = (1, 1)
    rare = None
    centres: dict[str, tuple[float, float]] | None = None

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_segments: int = 8,
        train: bool = False,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        short_side: int | None = 256,
        on_decode_error: str = "raise",
        decode_threads: int = 1,
        label_space: LabelSpace | None = None,
        labelled: bool = True,
        manifest: str | Path | bool | None = None,
    ):
        if on_decode_error not in DECODE_ERROR_MODES:
            raise ValueError(f"on_decode_error must be one of {DECODE_ERROR_MODES}, got {on_decode_error!r}")
        # a value the decoder cannot use would otherwise fail every clip as "undecodable"
        check_data_settings({"num_segments": num_segments, "short_side": short_side, "decode_threads": decode_threads},
                            prefix="MA52Dataset ")
        self.label_space = label_space or LabelSpace.ma52()
        self.labelled = labelled
        self.root = Path(root)
        self.split = split
        self.num_segments = num_segments
        self.train = train
        self.transform = transform
        self.short_side = short_side
        self.on_decode_error = on_decode_error
        self.decode_threads = decode_threads
        self.records = self.read_records()
        self.video_root = self.videos_folder()
        self._check_files()
        self._coarse = self.label_space.fine_to_coarse
        # name -> (frame count, file size) from prepare_ma52's manifest ("auto": <root>/manifest.csv).
        self.manifest_path = resolve_manifest(self.root, manifest)
        self._known: dict[str, tuple[int, int]] = {}
        if self.manifest_path is not None:
            rows = read_manifest(self.manifest_path)
            self._known = {n: (i.frames, i.bytes) for (s, n), i in rows.items() if s == split}
            log.info("split %s: frame counts of %d/%d clips from %s", split,
                     sum(r.name in self._known for r in self.records), len(self.records), self.manifest_path)

    def read_records(self) -> list:
        """The split's list: records with at least ``name`` and ``line`` (MA-52: ``ClipRecord``)."""
        return read_list(list_path(self.root, self.split), self.label_space.num_classes)

    def videos_folder(self) -> Path:
        """The folder the records' video names are relative to (MA-52: ``videos_<split>/``)."""
        return video_dir(self.root, self.split)

    def _check_files(self) -> None:
        if not self.video_root.is_dir():
            raise FileNotFoundError(f"video folder not found: {self.video_root}\n{LAYOUT_HELP}")
        present = {p.name for p in self.video_root.iterdir()}
        # one listing for the folder's own files; a name in a subfolder is looked up
        missing = [r for r in self.records
                   if (r.name not in present if "/" not in r.name else not (self.video_root / r.name).is_file())]
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
        partial: list[str] = []

        def note_partial(packets: int, decoded: int) -> None:
            partial.append(f"decoded {decoded} of {packets} frames; sampled within those")

        chosen: dict[str, np.ndarray] = {}

        def choose(n: int) -> np.ndarray:
            chosen["indices"] = self.frame_indices(n, rec, rng)
            return chosen["indices"]

        try:
            frames = read_frames(
                path,
                choose,
                short_side=self.short_side,
                threads=self.decode_threads,
                num_frames=self._known_frames(rec.name, path),
                on_partial=note_partial,
            )
        except DecodeError as err:
            where = f"{list_path(self.root, self.split)}:{rec.line}"
            if self.on_decode_error == "raise":
                raise UndecodableClipError(
                    f"{where}: {path} cannot be decoded ({err.reason}). Split '{self.split}' stops at an "
                    f"undecodable clip; data.on_decode_error=skip skips such clips instead (each one counted "
                    f"and named in metrics.json, at most data.max_skipped_fraction of the split).",
                    str(path), err.reason,
                ) from err
            log.warning("%s: skipping undecodable clip %s", where, err)
            return {"skipped": rec.name, "reason": err.reason}
        if partial:
            log.warning("%s:%d: %s: partly decodable, %s", list_path(self.root, self.split), rec.line, path,
                        partial[0])
        sample = self.make_sample(rec, frames, chosen["indices"])
        sample.update(index=index, name=rec.name, partial=partial[0] if partial else "")
        return sample

    def is_rare(self, rec) -> bool:
        """Whether training clip ``rec`` gets the rare-class augmentation (``rare``)."""
        return self.train and self.rare is not None and getattr(rec, "label", None) in self.rare.classes

    def frame_indices(self, num_frames: int, rec, rng: np.random.Generator | None) -> np.ndarray:
        """The frames to decode of ``rec``'s clip of ``num_frames``: TSN segments (training: a random frame of
        each; evaluation: the centres), a random stretch for a rare class, every temporal view's one after
        the other for an evaluation with several clips."""
        if self.is_rare(rec) and self.rare.min_span < 1:
            return window_indices(num_frames, self.num_segments, rng, self.rare.min_span)
        if not self.train and self.views[0] > 1:
            return view_indices(num_frames, self.num_segments, self.views[0])
        return segment_indices(num_frames, self.num_segments, self.train, rng)

    def make_sample(self, rec, frames: np.ndarray, indices: np.ndarray) -> dict:
        """The sample of list record ``rec`` from its decoded frames (uint8 [T, H, W, 3], the clip's frames
        ``indices``): ``video`` (transformed, [T, 3, H, W], or [V, T, 3, H, W] with several ``views``) and,
        when labelled, ``label`` and ``coarse``."""
        sample = {"video": self.clip_tensor(frames, rec)}
        if self.labelled:
            sample.update(label=rec.label, coarse=self._coarse[rec.label])
        return sample

    def clip_tensor(self, frames: np.ndarray, rec=None) -> torch.Tensor:
        """Decoded frames (uint8 [T, H, W, 3], or the temporal views' one after the other) as the clip tensor
        [T, 3, h, w] after ``transform``, or [V, T, 3, h, w] with several views."""
        clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
        centre = self.centres.get(rec.name) if self.centres is not None and rec is not None else None
        if rec is not None and self.is_rare(rec):
            return self.rare.transform(clip, centre) if centre is not None else self.rare.transform(clip)
        if self.train or self.views == (1, 1):
            return self.transform_clip(clip, centre)
        return view_clips(clip, self.num_segments, lambda part: self.transform_clip(part, centre))

    def transform_clip(self, clip: torch.Tensor, centre: tuple[float, float] | None = None) -> torch.Tensor:
        if self.transform is None:
            return clip
        return self.transform(clip) if centre is None else self.transform(clip, centre)


def collate_skipping(samples: list[dict]) -> dict:
    """Collate the decodable samples.

    Besides the collated sample keys the batch carries ``num_skipped`` and ``skipped`` (the
    names of the clips that could not be decoded), ``partial`` (the names of the clips that
    decoded only in part; they are in the batch) and ``decode_notes`` (name -> what happened,
    for both).
    """
    good = [dict(s) for s in samples if "skipped" not in s]
    skipped = [s["skipped"] for s in samples if "skipped" in s]
    notes = {s["skipped"]: s.get("reason", "") for s in samples if "skipped" in s}
    partial = []
    for s in good:
        detail = s.pop("partial", "")
        if detail:
            partial.append(s["name"])
            notes[s["name"]] = detail
    batch = default_collate(good) if good else {}
    batch["num_skipped"] = len(skipped)
    batch["skipped"] = skipped
    batch["partial"] = partial
    batch["decode_notes"] = notes
    return batch
