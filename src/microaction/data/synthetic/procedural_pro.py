"""A procedural stand-in for MA-52-Pro: one emotion and several micro-actions per long clip.

The seated figure of ``procedural/`` performs 1 to 15 of the 52 micro-actions one after another
(each with the motion programs of ``procedural/motions.py``, over its own time window, with rest
between), while its face shows one of five emotions. ``write_procedural_pro(root, ...)`` writes
real MP4 clips in the MA-52-Pro layout (see docs/ma52pro_standin.md): the three list files
(``<video> <emotion id> <fine id>[,<fine id>...]``), ``emotion_name.txt``, ``label_name.txt``,
``videos_<split>/`` and ground-truth face tracks ``faces_<split>/<name>.csv`` taken from the
figure's head geometry, plus ``procedural_pro.json`` (arguments and each clip's timeline).

The design: each branch of a face + action model sees part of the answer.

============  ==============================  =========================================================
emotion       face (``FACES``)                action mix (``ACTION_MIX``: share of the clip's actions)
============  ==============================  =========================================================
0 joy         smile: corners up, eyes         even: 15% each of upper limb, lower limb, body-hand,
              a little narrowed               leg-hand
1 sadness     frown: corners down, inner      even (the same as joy)
              brow ends raised, eyes narrowed
2 surprise    startled: open round mouth,     upper limb 42% (the others of these four 6% each)
              raised brows, wide eyes
3 fear        startled (the same face)        body-hand 42% (others 6%)
4 anger       startled (the same face)        lower limb 30%, leg-hand 18% (others 6%)
============  ==============================  =========================================================

In every emotion, body actions are 10% of the actions, head actions 15% and head-hand actions 15%:
the actions a face crop would see (the head turning, nodding, hands at the face) say nothing about
the emotion, so the crop carries almost nothing of the action mix (a hand at the neck, or the head
leaning down to a foot, can reach its edge). Within a body part the fine class is uniform; a clip
may perform a class more than once (its list line names it once).

* The face alone separates joy, sadness and {surprise, fear, anger}; it cannot tell surprise,
  fear and anger apart (their faces are drawn from the same distribution: the same clip with
  either emotion renders the same pixels).
* The actions alone tell surprise, fear and anger from each other and (more weakly, by the
  absence of their emphasised parts) from {joy, sadness}; they cannot separate joy from sadness
  (same mix). The evidence is statistical: a clip with one or two actions says little.
* Together they separate all five.

Variation that keeps it from being trivial: the expression's strength varies per clip
(x0.45-1.0) and slowly within it (x0.5-1.0), every person has a resting bias (mouth, brows,
eyes), every clip some noise on top; hands, a bowed or turned head hide or move the face; the
face is about 15 pixels wide at the default 96 x 80.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...labels import LabelSpace
from ...utils.atomic import write_text_atomic
from ...utils.cpus import usable_cpus
from ..annotations import SPLITS, list_path, name_problem, video_dir
from ..layout import write_label_names
from ..video import write_clip
from .procedural.figure import ASPECT, Expression, draw, draw_scene, mouth_corners, skeleton
from .procedural.motions import PROGRAMS, REVERSED_OF, ClipParams, step
from .procedural.shapes import Canvas, shift_image
from .procedural.writer import subject_of
from .staging import StagingDir, check_same_arguments, is_complete, run_jobs

EMOTIONS: tuple[str, ...] = ("joy", "sadness", "surprise", "fear", "anger")
META_FILE = "procedural_pro.json"
MAX_ACTIONS = 15
# the shortest time one action (with its lead-in and lead-out) is given when a clip is full
SLOT_MIN_SECONDS = 1.25
# the share of an action's window spent easing into its first pose and out of its last one
LEAD = 0.2

FACES: dict[str, Expression] = {
    "smile": Expression(mouth_curve=1.0, brow_raise=0.1, eye_open=0.75),
    "frown": Expression(mouth_curve=-1.0, brow_raise=-0.2, brow_slant=1.0, eye_open=0.7),
    "startled": Expression(mouth_open=1.0, brow_raise=1.0, eye_open=1.8),
}
FACE_OF: tuple[str, ...] = ("smile", "frown", "startled", "startled", "startled")
NEUTRAL = Expression()

# P(body part | emotion), body parts in the order of LabelSpace.ma52().coarse_classes:
# body, head, upper limb, lower limb, body-hand, head-hand, leg-hand
ACTION_MIX: tuple[tuple[float, ...], ...] = (
    (0.10, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15),  # joy
    (0.10, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15),  # sadness
    (0.10, 0.15, 0.42, 0.06, 0.06, 0.15, 0.06),  # surprise
    (0.10, 0.15, 0.06, 0.06, 0.42, 0.15, 0.06),  # fear
    (0.10, 0.15, 0.06, 0.30, 0.06, 0.15, 0.18),  # anger
)

# face track columns after ``frame`` (fractions of the frame; "left" = image left)
TRACK_COLUMNS: tuple[str, ...] = ("x0", "y0", "x1", "y1", "score", "le_x", "le_y", "re_x", "re_y",
                                  "nose_x", "nose_y", "ml_x", "ml_y", "mr_x", "mr_y")
TRACK_HEADER = "frame," + ",".join(TRACK_COLUMNS)

# keys of the stream each random draw comes from, so that one never shifts another
_PLAN, _CLIP, _NOISE, _FACE, _FACE_SUBJECT, _PERFORM = 11, 12, 13, 14, 15, 16


@dataclass(frozen=True)
class ProClipSpec:
    """One planned clip: where it goes, its emotion and person, and its timeline.

    ``performances`` are (fine id, first frame, end frame exclusive), in time order and not
    overlapping; ``index`` is the clip's place in its split and, with the split, seeds everything
    drawn for it.
    """

    split: str
    name: str
    emotion: int
    subject: int
    index: int
    frames: int
    fps: int
    performances: tuple[tuple[int, int, int], ...]

    @property
    def actions(self) -> tuple[int, ...]:
        """The distinct fine ids performed, ascending (what the list line carries)."""
        return tuple(sorted({p[0] for p in self.performances}))


def fine_probabilities(emotion: int) -> np.ndarray:
    """P(fine id | emotion) over the 52 classes: ``ACTION_MIX`` spread evenly within each body part."""
    f2c = np.array(LabelSpace.ma52().fine_to_coarse)
    per_part = np.bincount(f2c, minlength=len(ACTION_MIX[emotion]))
    return np.array(ACTION_MIX[emotion])[f2c] / per_part[f2c]


def default_num_subjects(total: int) -> int:
    return max(12, int(round(total / 50)))


def _check_plan_args(counts, fps, min_seconds, max_seconds, num_subjects) -> None:
    for split, n in zip(SPLITS, counts):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_{split}={n!r}: expected a whole number of clips >= 1")
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 60:
        raise ValueError(f"fps={fps!r}: expected a whole number of frames per second, 1..60")
    if not (isinstance(min_seconds, (int, float)) and isinstance(max_seconds, (int, float))
            and 0 < min_seconds <= max_seconds):
        raise ValueError(f"min_seconds={min_seconds!r}, max_seconds={max_seconds!r}: "
                         f"expected 0 < min_seconds <= max_seconds")
    if min_seconds * fps < 8:
        raise ValueError(f"min_seconds={min_seconds} at fps={fps} gives clips of {min_seconds * fps:g} frames; "
                         f"expected at least 8 (one action needs a few frames)")
    if num_subjects is not None and (isinstance(num_subjects, bool) or not isinstance(num_subjects, int)
                                     or num_subjects < 1):
        raise ValueError(f"num_subjects={num_subjects!r}: expected a whole number >= 1 (or None)")


def plan_pro(num_train: int = 400, num_val: int = 100, num_test: int = 100, seed: int = 0, fps: int = 10,
             min_seconds: float = 5, max_seconds: float = 20, num_subjects: int | None = None) -> list[ProClipSpec]:
    """Every clip to write: emotion, person, length and timeline of actions. Cheap (nothing rendered).

    Emotions are balanced within each split (counts differ by at most one). A clip lasts
    ``min_seconds``..``max_seconds`` (uniform); it holds k performances, k uniform in 1..min(15,
    seconds / 1.25), each a fine class drawn from ``fine_probabilities(emotion)``; each is given
    1.2-3 s (shrunk to fit 90% of the clip), the rest of the time is rest, spread at random
    before, between and after them. Clips of one split do not depend on the sizes of the others.
    """
    counts = (num_train, num_val, num_test)
    _check_plan_args(counts, fps, min_seconds, max_seconds, num_subjects)
    n_subj = default_num_subjects(sum(counts)) if num_subjects is None else num_subjects
    probs = [fine_probabilities(e) for e in range(len(EMOTIONS))]
    specs: list[ProClipSpec] = []
    for k, (split, n) in enumerate(zip(SPLITS, counts)):
        emotions = np.random.default_rng([seed, _PLAN, k]).permutation(np.arange(n) % len(EMOTIONS))
        for i in range(n):
            rng = np.random.default_rng([seed, _PLAN, k, i])
            emotion = int(emotions[i])
            subject = int(rng.integers(n_subj))
            seconds = float(rng.uniform(min_seconds, max_seconds))
            frames = max(8, int(round(seconds * fps)))
            k_max = max(1, min(MAX_ACTIONS, int(seconds / SLOT_MIN_SECONDS)))
            count = int(rng.integers(1, k_max + 1))
            fines = rng.choice(len(probs[emotion]), size=count, p=probs[emotion])
            performances = _timeline(rng, [int(f) for f in fines], frames, fps)
            specs.append(ProClipSpec(split, f"s{subject:03d}_c{i:04d}.mp4", emotion, subject, i, frames, fps,
                                     performances))
    return specs


def _timeline(rng: np.random.Generator, fines: list[int], frames: int, fps: int) -> tuple[tuple[int, int, int], ...]:
    """(fine, start, end) windows for ``fines`` in order, with random rest before, between and after."""
    slots = rng.uniform(1.2, 3.0, size=len(fines)) * fps
    slots *= min(1.0, 0.9 * frames / slots.sum())
    lengths = np.maximum(np.floor(slots).astype(int), 3)
    spare = frames - int(lengths.sum())
    if spare < 0:  # only when a short clip meets the 3-frame floor: take the frames from the longest
        for _ in range(-spare):
            lengths[int(np.argmax(lengths))] -= 1
        spare = 0
    gaps = np.floor(rng.dirichlet(np.ones(len(fines) + 1)) * spare).astype(int)
    out, t = [], 0
    for fine, gap, length in zip(fines, gaps, lengths):
        t += int(gap)
        out.append((fine, t, t + int(length)))
        t += int(length)
    return tuple(out)


# --- rendering -------------------------------------------------------------------------------------


def _clip_params(spec: ProClipSpec, seed: int, amplitude: float, noise: float, jitter: float) -> ClipParams:
    """Camera, zoom, lighting and idle life of one clip. The camera shake and head drift wander
    around a mean (AR(1)) instead of walking away, as a long clip would let them."""
    k = SPLITS.index(spec.split)
    rng = np.random.default_rng([seed, _CLIP, k, spec.index])
    params = ClipParams.sample(rng, amplitude, noise, 0.0, frames=(spec.frames, spec.frames))
    shake = np.zeros((spec.frames, 2), np.float32)
    drift = np.zeros((spec.frames, 2), np.float32)
    steps = rng.normal(0, 1, size=(spec.frames, 4)).astype(np.float32)
    for i in range(1, spec.frames):
        shake[i] = 0.9 * shake[i - 1] + 0.2 * jitter * steps[i, :2]
        drift[i] = 0.97 * drift[i - 1] + 0.001 * steps[i, 2:]
    return replace(params, jitter=shake, drift=drift)


def _performance_params(spec: ProClipSpec, seed: int, clip: ClipParams, amplitude: float) -> list[ClipParams]:
    """Amplitude, side, speed and repetitions of each performance (the program reads only these)."""
    k = SPLITS.index(spec.split)
    out = []
    for j in range(len(spec.performances)):
        rng = np.random.default_rng([seed, _PERFORM, k, spec.index, j])
        out.append(replace(clip, amp=float(amplitude * rng.uniform(0.75, 1.25)), side=int(rng.choice((-1, 1))),
                           cycles=float(rng.uniform(0.0, 1.0)), count=int(rng.integers(1, 3))))
    return out


def expressions(spec: ProClipSpec, seed: int) -> list[Expression]:
    """The face in every frame of ``spec``: its emotion's face (``FACE_OF``) at a strength that
    varies per clip and slowly within it, plus the person's resting bias and per-clip noise.

    What is drawn at random depends on the clip and the person, not on the emotion: two emotions
    with the same face give the same expressions.
    """
    face = FACES[FACE_OF[spec.emotion]]
    k = SPLITS.index(spec.split)
    person = np.random.default_rng([seed, _FACE_SUBJECT, spec.subject])
    bias = person.normal(0, [0.12, 0.04, 0.12, 0.1, 0.08])
    rng = np.random.default_rng([seed, _FACE, k, spec.index])
    bias = bias + rng.normal(0, [0.08, 0.03, 0.08, 0.06, 0.06])
    strength = rng.uniform(0.45, 1.0)
    rate, phase = rng.uniform(0.05, 0.2), rng.uniform(0, 2 * math.pi)
    fields = ("mouth_curve", "mouth_open", "brow_raise", "brow_slant", "eye_open")
    target = np.array([getattr(face, f) for f in fields])
    neutral = np.array([getattr(NEUTRAL, f) for f in fields])
    lo, hi = np.array([-1.0, 0.0, -1.0, -1.0, 0.4]), np.array([1.0, 1.0, 1.0, 1.0, 2.2])
    out = []
    for i in range(spec.frames):
        a = strength * (0.75 + 0.25 * math.sin(phase + 2 * math.pi * rate * i / spec.fps))
        values = np.clip(neutral + a * (target - neutral) + bias, lo, hi)
        out.append(Expression(*(float(v) for v in values)))
    return out


def _perform(pose: dict, fine: int, params: ClipParams, s: float) -> None:
    """Pose of performance ``fine`` at ``s`` (0..1 through its window): ease into the program's
    first pose, run it, ease out of its last. An order-only class runs its twin's program backwards."""
    if s < LEAD:
        v, weight = 0.0, step(s / LEAD)
    elif s > 1 - LEAD:
        v, weight = 1.0, step((1 - s) / LEAD)
    else:
        v, weight = (s - LEAD) / (1 - 2 * LEAD), 1.0
    if fine in REVERSED_OF:
        PROGRAMS[REVERSED_OF[fine]](pose, 1.0 - v, params)
    else:
        PROGRAMS[fine](pose, v, params)
    if weight < 1.0:
        for key, value in pose.items():
            if key.startswith("hand_"):
                target, w, ox, oy = value
                pose[key] = (target, w * weight, ox * weight, oy * weight)
            elif not (key == "cross_side" or key.startswith("behind_") or key in ("glasses", "object")):
                pose[key] = value * weight


def _ellipse_extent(rx: float, ry: float, angle: float) -> tuple[float, float]:
    """Half width and half height of the bounding box of an ellipse turned by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    return math.hypot(rx * c, ry * s), math.hypot(rx * s, ry * c)


def _face_row(sk: dict, subj, expression: Expression, canvas: Canvas, shake: tuple[float, float]) -> list[float]:
    """Box and 5 landmarks, as fractions of the frame, of the figure whose skeleton is ``sk``. The box
    holds the head, hair cap and ears as drawn plus one pixel: the anti-aliased edge (half a pixel)
    smeared by the camera shake's sub-pixel shift reaches up to 0.85 pixels beyond the shape."""
    r, roll, yaw = subj.head_r, sk["roll"], sk["yaw"]
    hx, hy = sk["head"]
    rx = r * (1 - 0.08 * min(abs(yaw), 1.0))
    boxes = []
    ex, ey = _ellipse_extent(rx * 1.05, r * 1.2, roll)  # the hair cap's ellipse holds the face's
    boxes.append((hx - ex, hy - ey, hx + ex, hy + ey))
    for side in (-1, 1):
        cx, cy = sk["lm"][f"ear_{side}"]
        ex, ey = _ellipse_extent(0.2 * r, 0.3 * r, roll)
        boxes.append((cx - ex, cy - ey, cx + ex, cy + ey))
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)

    def px(x: float, y: float) -> tuple[float, float]:
        return canvas.ox + canvas.scale * x + shake[0], canvas.oy + canvas.scale * y + shake[1]

    (a, b), (c, d) = px(x0, y0), px(x1, y1)
    box = [a - 1.0, b - 1.0, c + 1.0, d + 1.0]
    eyes = sorted(px(*sk["lm"][f"eye_{s}"]) for s in (-1, 1))
    points = [*eyes, px(*sk["lm"]["nose"]), *sorted(px(*p) for p in mouth_corners(sk, expression))]
    w, h = canvas.w, canvas.h
    row = [box[0] / w, box[1] / h, box[2] / w, box[3] / h, 1.0]
    for x, y in points:
        row += [x / w, y / h]
    return [min(max(v, 0.0), 1.0) for v in row]


def render_pro(spec: ProClipSpec, seed: int, size: tuple[int, int] = (96, 80), amplitude: float = 1.0,
               noise: float = 1.0, jitter: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The frames (uint8 [T, H, W, 3]) of one planned clip and its face track (float32 [T, 15],
    the columns of ``TRACK_COLUMNS``): what ``write_procedural_pro`` encodes and writes."""
    h, w = size
    if h % 2 or w % 2 or h < 16 or w < 16:
        raise ValueError(f"size {size}: expected even (height, width), each at least 16")
    for fine, _, _ in spec.performances:
        if fine not in PROGRAMS and fine not in REVERSED_OF:
            raise ValueError(f"{spec.split}/{spec.name}: fine id {fine}: expected 0..51")
    subject = subject_of(seed, spec.subject)
    clip = _clip_params(spec, seed, amplitude, noise, jitter)
    per_action = _performance_params(spec, seed, clip, amplitude)
    faces = expressions(spec, seed)
    playing = np.full(spec.frames, -1)
    for j, (_, start, end) in enumerate(spec.performances):
        playing[start:end] = j
    # pushing glasses needs glasses: a clip that has the action wears them throughout
    glasses = 47 in spec.actions
    base = min(w, h / ASPECT) * clip.zoom
    ox = (w - base) / 2 + clip.dx * w
    oy = (h - ASPECT * base) / 2 - 0.035 * base + clip.dy * h
    scene = Canvas(h, w, base, ox, oy)
    draw_scene(scene, subject)
    out = np.empty((spec.frames, h, w, 3), dtype=np.float32)
    track = np.empty((spec.frames, len(TRACK_COLUMNS)), dtype=np.float32)
    for i in range(spec.frames):
        pose: dict = {}
        j = int(playing[i])
        if j >= 0:
            fine, start, end = spec.performances[j]
            _perform(pose, fine, per_action[j], (i - start) / max(end - 1 - start, 1))
        if glasses:
            pose["glasses"] = 1.0
        pose["rise"] = pose.get("rise", 0.0) + 0.002 * math.sin(
            clip.breath_phase + 2 * math.pi * clip.breath_rate * 4 * i / spec.fps)
        pose["head_dx"] = pose.get("head_dx", 0.0) + float(clip.drift[i, 0])
        pose["head_dy"] = pose.get("head_dy", 0.0) + float(clip.drift[i, 1])
        sk = skeleton(subject, pose)
        canvas = Canvas(h, w, base, ox, oy, img=scene.img.copy())
        draw(canvas, subject, sk, faces[i])
        shake = (float(clip.jitter[i, 0]), float(clip.jitter[i, 1]))
        out[i] = shift_image(canvas.img, *shake)
        track[i] = _face_row(sk, subject, faces[i], canvas, shake)
    k = SPLITS.index(spec.split)
    rng = np.random.default_rng([seed, _NOISE, k, spec.index])
    out *= clip.gain
    out += rng.standard_normal(out.shape, dtype=np.float32) * clip.noise
    return np.clip(out, 0, 255).astype(np.uint8), track


# --- the layout's text files ----------------------------------------------------------------------


def face_track_path(root: Path, split: str, name: str) -> Path:
    """``faces_<split>/<name with its suffix replaced by .csv>``."""
    return Path(root) / f"faces_{split}" / Path(name).with_suffix(".csv")


def face_track_text(track: np.ndarray) -> str:
    """The CSV of a face track (rows as ``render_pro`` returns them; row i is frame i)."""
    track = np.asarray(track)
    if track.ndim != 2 or track.shape[1] != len(TRACK_COLUMNS):
        raise ValueError(f"face track of shape {track.shape}: expected [frames, {len(TRACK_COLUMNS)}]")
    lines = [TRACK_HEADER]
    for i, row in enumerate(track):
        lines.append(f"{i}," + ",".join(f"{v:.5f}" for v in row))
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def write_pro_lists(root: Path, split: str, specs: list[ProClipSpec]) -> None:
    """``<split>_list_videos.txt``: ``<video> <emotion id> <fine id>[,<fine id>...]`` per clip; like
    the MA-52 lists, the last line has no newline."""
    lines = []
    for s in specs:
        problem = name_problem(s.name)
        if problem is not None or " " in s.name:
            raise ValueError(f"clip name {s.name!r} {problem or 'contains a space'}")
        if not s.actions:
            raise ValueError(f"{split}/{s.name}: no actions; every clip performs at least one")
        lines.append(f"{s.name} {s.emotion} {','.join(str(a) for a in s.actions)}")
    _write_text(list_path(root, split), "\n".join(lines))


def write_emotion_names(root: Path) -> None:
    """``emotion_name.txt``: ``<emotion id>\\t<name>`` per line."""
    _write_text(Path(root) / "emotion_name.txt", "".join(f"{i}\t{n}\n" for i, n in enumerate(EMOTIONS)))


# --- writing the dataset ----------------------------------------------------------------------------


def _write_one(job) -> int:
    tmp, spec, seed, size, amplitude, noise, jitter, audio, crf = job
    frames, track = render_pro(spec, seed, size, amplitude, noise, jitter)
    write_clip(video_dir(Path(tmp), spec.split) / spec.name, frames, fps=spec.fps, audio=audio, crf=crf)
    _write_text(face_track_path(Path(tmp), spec.split, spec.name), face_track_text(track))
    return 1


def write_procedural_pro(
    root: str | Path,
    *,
    num_train: int = 400,
    num_val: int = 100,
    num_test: int = 100,
    seed: int = 0,
    size: tuple[int, int] | list[int] = (96, 80),
    fps: int = 10,
    min_seconds: float = 5,
    max_seconds: float = 20,
    num_subjects: int | None = None,
    amplitude: float = 1.0,
    noise: float = 1.0,
    jitter: float = 1.0,
    crf: int = 18,
    audio: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the MA-52-Pro stand-in to ``root`` unless a finished one made with the same arguments is
    there (one made with other arguments is refused, naming them).

    ``num_train``/``num_val``/``num_test`` clips (emotions balanced in each split) of
    ``min_seconds``..``max_seconds`` at ``fps``, ``size`` = (height, width) pixels, portrait;
    ``num_subjects`` people shared by the splits (None: one per ~50 clips, at least 12);
    ``amplitude``, ``noise`` and ``jitter`` scale the movements, the pixel noise and the camera
    shake; ``crf`` is the H.264 quality. ``workers`` processes (None: one per CPU) render the
    clips; the same arguments give the same frames whatever ``workers`` is.
    """
    root = Path(root)
    size = tuple(int(x) for x in size)
    arguments = {"num_train": num_train, "num_val": num_val, "num_test": num_test, "seed": seed,
                 "size": list(size), "fps": fps, "min_seconds": min_seconds, "max_seconds": max_seconds,
                 "num_subjects": num_subjects, "amplitude": amplitude, "noise": noise, "jitter": jitter,
                 "crf": crf, "audio": audio}
    if is_complete(root):
        check_same_arguments(root, arguments, META_FILE, "a MA-52-Pro stand-in")
        return root
    if len(size) != 2 or size[0] % 2 or size[1] % 2 or size[0] < size[1] or size[1] < 16:
        raise ValueError(f"size={list(size)}: expected [height, width], even, portrait (height >= width >= 16)")
    for name, value in (("amplitude", amplitude), ("noise", noise), ("jitter", jitter)):
        if not value >= 0:
            raise ValueError(f"{name}={value}: expected a number >= 0")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf={crf!r}: expected an integer H.264 quality from 0 (lossless) to 51")
    specs = plan_pro(num_train, num_val, num_test, seed, fps, min_seconds, max_seconds, num_subjects)
    if workers is None:
        workers = usable_cpus()
    workers = max(1, int(workers))
    with StagingDir(root) as tmp:
        for split in SPLITS:
            (tmp / f"faces_{split}").mkdir()
        jobs = [(str(tmp), s, seed, size, amplitude, noise, jitter, audio, crf) for s in specs]
        run_jobs(_write_one, jobs, workers, progress, f"MA-52-Pro stand-in -> {root}", chunksize=2)
        for split in SPLITS:
            write_pro_lists(tmp, split, [s for s in specs if s.split == split])
        write_emotion_names(tmp)
        write_label_names(tmp)
        meta = {
            "generator": "microaction.data.synthetic.procedural_pro",
            "arguments": arguments,
            "emotions": list(EMOTIONS),
            "faces": list(FACE_OF),
            "action_mix": [list(m) for m in ACTION_MIX],
            "clips": {f"{s.split}/{s.name}": {"emotion": s.emotion, "subject": s.subject, "frames": s.frames,
                                               "timeline": [list(p) for p in s.performances]}
                      for s in specs},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return root
