"""A tiny synthetic dataset in the official MA-52 layout, made on first use.

Each of the 52 classes is a coloured blob drifting in one direction over a
textured background: the colour (4 values) and direction (13 angles) together
identify the fine class, so a model must see motion direction, i.e. frame order,
to separate classes that share a colour. It exists to run the whole pipeline in
minutes on a CPU; it says nothing about MA-52 accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...labels import LabelSpace
from ..annotations import video_dir
from ..layout import write_label_names, write_lists
from ..video import write_clip
from .staging import StagingDir, is_complete

COLOURS = np.array([[230, 60, 50], [50, 200, 70], [60, 90, 235], [240, 220, 40]], dtype=np.float32)


def render_clip(label: int, rng: np.random.Generator, size=(80, 64), frames=(24, 36)) -> np.ndarray:
    h, w = size
    t = int(rng.integers(frames[0], frames[1] + 1))
    angle = 2 * math.pi * (label % 13) / 13
    colour = COLOURS[label // 13]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = rng.uniform(40, 140, size=3).astype(np.float32)
    texture = rng.normal(0, 12, size=(h, w, 1)).astype(np.float32)
    amp = rng.uniform(0.18, 0.28) * min(h, w)
    cy = h / 2 + rng.uniform(-0.1, 0.1) * h
    cx = w / 2 + rng.uniform(-0.1, 0.1) * w
    radius = rng.uniform(0.10, 0.14) * min(h, w)
    out = np.empty((t, h, w, 3), dtype=np.uint8)
    for i in range(t):
        s = i / max(t - 1, 1) - 0.5
        py, px = cy + amp * s * math.sin(angle), cx + amp * s * math.cos(angle)
        mask = ((yy - py) ** 2 + (xx - px) ** 2 < radius**2)[..., None]
        img = np.where(mask, colour, bg) + texture + rng.normal(0, 4, size=(h, w, 1))
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_quickstart(
    root: str | Path,
    per_class: tuple[int, int, int] = (4, 2, 2),
    seed: int = 0,
    audio: bool = True,
    crf: int = 23,
) -> Path:
    """Write the dataset to ``root`` unless a finished one is already there.

    ``crf`` is the H.264 quality (0-51); 0 is lossless, so the decoded frames are exactly the rendered ones
    whatever the encoder decides. At other values the encoder's choices, and so the decoded pixels, can
    differ slightly between two runs with the same seed.
    """
    root = Path(root)
    if is_complete(root):
        return root
    rng = np.random.default_rng(seed)
    table = LabelSpace.ma52()
    with StagingDir(root) as tmp:
        for split, n in zip(("train", "val", "test"), per_class):
            entries = []
            for label in range(table.num_classes):
                for k in range(n):
                    idx = len(entries)
                    if split == "test":
                        name = f"test{idx:04d}.mp4"
                    else:
                        name = f"{k:04d}_{table.fine_to_coarse[label]:02d}_{idx:04d}.mp4"
                    write_clip(video_dir(tmp, split) / name, render_clip(label, rng), audio=audio, crf=crf)
                    entries.append((name, label))
            write_lists(tmp, split, entries)
        write_label_names(tmp)
    return root
