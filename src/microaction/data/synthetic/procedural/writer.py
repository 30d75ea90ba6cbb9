"""Planning and writing a procedural dataset in the official MA-52 layout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ....labels import LabelSpace
from ....utils.cpus import usable_cpus
from ...annotations import video_dir
from ...layout import write_label_names, write_lists
from ...video import write_clip
from ..staging import StagingDir, check_same_arguments, is_complete, run_jobs
from .figure import Subject
from .motions import FPS, ORDER_PAIRS, ClipParams, render_clip

SPLITS = ("train", "val", "test")
META_FILE = "procedural.json"
# keys of the stream each random draw comes from, so that one never shifts another
_SUBJECT, _CLIP, _NOISE, _PLAN = 1, 2, 3, 4


@dataclass(frozen=True)
class ClipSpec:
    split: str
    name: str
    label: int
    subject: int
    index: int  # global clip index: seeds its parameters and noise


def class_counts(scale: float, min_train: int = 2) -> list[tuple[int, int, int]]:
    """(train, val, test) clips per fine class: MA-52's training counts times ``scale``, 2:1:1."""
    if not scale > 0:
        raise ValueError(f"scale={scale}: expected a positive number (1.0 = as many clips as MA-52)")
    if min_train < 2:
        raise ValueError(f"min_train={min_train}: expected at least 2 (every split needs a clip of every class)")
    counts = []
    for n in LabelSpace.ma52().train_counts:
        train = max(min_train, int(round(scale * n)))
        # an even train count splits exactly 2:1:1; val and test are equal as in the release
        train += train % 2
        counts.append((train, train // 2, train // 2))
    return counts


def default_num_subjects(total: int) -> int:
    # MA-52 has about 120 clips per subject; a small set keeps more clips per person
    return max(12, int(round(total / 60)))


def plan(scale: float = 0.1, seed: int = 0, subject_disjoint: bool = False, num_subjects: int | None = None,
         min_train: int = 2) -> tuple[list[ClipSpec], dict[str, list[int]]]:
    """Every clip to write, and the subjects each split may use."""
    counts = class_counts(scale, min_train)
    total = sum(sum(c) for c in counts)
    n_subj = default_num_subjects(total) if num_subjects is None else int(num_subjects)
    if n_subj < (4 if subject_disjoint else 1):
        raise ValueError(f"num_subjects={n_subj}: expected at least {4 if subject_disjoint else 1}")
    rng = np.random.default_rng([seed, _PLAN])
    if subject_disjoint:
        order = rng.permutation(n_subj)
        n_train = max(2, int(round(n_subj / 2)))
        n_val = max(1, (n_subj - n_train) // 2)
        pools = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    else:
        pools = {s: np.arange(n_subj) for s in SPLITS}
    f2c = LabelSpace.ma52().fine_to_coarse
    specs: list[ClipSpec] = []
    for k, split in enumerate(SPLITS):
        n_in_split = 0
        for label in range(len(f2c)):
            subjects = rng.choice(pools[split], size=counts[label][k])
            for subj in subjects:
                if split == "test":
                    name = f"test{n_in_split:04d}.mp4"
                else:
                    name = f"{int(subj):04d}_{f2c[label]:02d}_{n_in_split:04d}.mp4"
                specs.append(ClipSpec(split, name, label, int(subj), len(specs)))
                n_in_split += 1
    return specs, {s: sorted(int(x) for x in pools[s]) for s in SPLITS}


def subject_of(seed: int, subject: int) -> Subject:
    return Subject.sample(np.random.default_rng([seed, _SUBJECT, subject]))


def clip_params(seed: int, index: int, amplitude: float = 1.0, noise: float = 1.0, jitter: float = 1.0) -> ClipParams:
    return ClipParams.sample(np.random.default_rng([seed, _CLIP, index]), amplitude, noise, jitter)


def render_spec(spec: ClipSpec, seed: int, size=(96, 80), amplitude: float = 1.0, noise: float = 1.0,
                jitter: float = 1.0) -> np.ndarray:
    """The frames of one planned clip (what ``write_procedural`` encodes)."""
    params = clip_params(seed, spec.index, amplitude, noise, jitter)
    noise_seed = int(np.random.default_rng([seed, _NOISE, spec.index]).integers(2**63))
    return render_clip(spec.label, subject_of(seed, spec.subject), params, tuple(size), noise_seed)


def _write_one(job) -> int:
    tmp, spec, seed, size, amplitude, noise, jitter, audio, crf = job
    frames = render_spec(spec, seed, size, amplitude, noise, jitter)
    write_clip(video_dir(Path(tmp), spec.split) / spec.name, frames, fps=FPS, audio=audio, crf=crf)
    return 1


def write_procedural(
    root: str | Path,
    scale: float = 0.1,
    seed: int = 0,
    subject_disjoint: bool = False,
    num_subjects: int | None = None,
    size: tuple[int, int] | list[int] = (96, 80),
    amplitude: float = 1.0,
    noise: float = 1.0,
    jitter: float = 1.0,
    min_train: int = 2,
    audio: bool = True,
    crf: int = 23,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write a procedural micro-action dataset to ``root`` unless a finished one is there.

    ``scale`` multiplies MA-52's per-class training counts (1.0: about 22,500 clips;
    0.1: about 2,300), val and test get half the training count each (2:1:1).
    ``subject_disjoint`` gives train, val and test different people (MA-52 shares them).
    ``size`` is (height, width) in pixels, portrait; ``amplitude``, ``noise`` and
    ``jitter`` scale the movements, the pixel noise and the camera shake; ``crf`` is the H.264
    quality (lower keeps more of a subtle movement at small sizes).
    The same arguments always give the same frames, whatever ``workers`` is.
    """
    root = Path(root)
    size = tuple(int(x) for x in size)
    arguments = {"scale": scale, "seed": seed, "subject_disjoint": subject_disjoint, "num_subjects": num_subjects,
                 "size": list(size), "amplitude": amplitude, "noise": noise, "jitter": jitter,
                 "min_train": min_train, "crf": crf}
    if is_complete(root):
        check_same_arguments(root, arguments, META_FILE, "a procedural one")
        return root
    if len(size) != 2 or size[0] % 2 or size[1] % 2 or size[0] < size[1] or size[1] < 16:
        raise ValueError(f"size={list(size)}: expected [height, width], even, portrait (height >= width >= 16)")
    for name, value in (("amplitude", amplitude), ("noise", noise), ("jitter", jitter)):
        if not value >= 0:
            raise ValueError(f"{name}={value}: expected a number >= 0")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf={crf!r}: expected an integer H.264 quality from 0 (lossless) to 51")
    specs, pools = plan(scale, seed, subject_disjoint, num_subjects, min_train)
    if workers is None:
        workers = usable_cpus()
    workers = max(1, int(workers))
    with StagingDir(root) as tmp:
        jobs = [(str(tmp), s, seed, size, amplitude, noise, jitter, audio, crf) for s in specs]
        run_jobs(_write_one, jobs, workers, progress, f"procedural dataset -> {root}")
        for split in SPLITS:
            write_lists(tmp, split, [(s.name, s.label) for s in specs if s.split == split])
        write_label_names(tmp)
        meta = {
            "generator": "microaction.data.synthetic.procedural",
            "arguments": arguments,
            "fps": FPS,
            "order_pairs": [list(p) for p in ORDER_PAIRS],
            "subjects": pools,
            "clips": {f"{s.split}/{s.name}": {"label": s.label, "subject": s.subject, "index": s.index}
                      for s in specs},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return root
