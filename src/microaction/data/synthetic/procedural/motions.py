"""The 52 micro-actions as pose programs, and rendering one clip.

Each program maps action time ``v`` (0 at the action's start, 1 at its end)
to pose offsets. Envelopes: ``step`` goes 0 -> 1 and stays (a one-way change
such as bowing the head), ``bump`` goes 0 -> 1 -> 0 (reach somewhere and come
back), ``osc`` oscillates inside a bump (nodding, scratching).

Order-only pairs: the second class of each pair in ``ORDER_PAIRS`` is *not*
a program of its own; its clip is the first class's clip played backwards
(same subject, same camera, same noise). A model that ignores frame order sees
the same set of frames for both and can only guess between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .figure import ASPECT, Subject, draw, draw_scene, skeleton
from .shapes import Canvas, shift_image

# (forward class, its frames reversed): bowing head / head up, stretching / retracting arms,
# spread / closing legs, stretching / retracting feet
ORDER_PAIRS: tuple[tuple[int, int], ...] = ((5, 6), (17, 18), (26, 27), (29, 30))
REVERSED_OF: dict[int, int] = {b: a for a, b in ORDER_PAIRS}

FPS = 30
FRAMES = (45, 75)


def step(v: float) -> float:
    v = min(max(v, 0.0), 1.0)
    return v * v * (3 - 2 * v)


def bump(v: float, rise: float = 0.25) -> float:
    if v <= 0 or v >= 1:
        return 0.0
    return step(v / rise) * step((1 - v) / rise)


def osc(v: float, cycles: float, rise: float = 0.15) -> float:
    return math.sin(2 * math.pi * cycles * v) * bump(v, rise)


def bumps(v: float, n: int) -> float:
    """``n`` separate 0 -> 1 -> 0 pulses over the action (patting, shrugging twice)."""
    if v <= 0 or v >= 1:
        return 0.0
    return math.sin(math.pi * n * v) ** 2


@dataclass
class ClipParams:
    """Everything drawn at random for one clip; independent of its class."""

    frames: int
    start: float
    duration: float
    amp: float
    side: int
    cycles: float
    count: int
    zoom: float
    dx: float
    dy: float
    jitter: np.ndarray  # [T, 2] camera offset in pixels
    noise: float
    gain: float
    breath_phase: float
    breath_rate: float
    drift: np.ndarray  # [T, 2] slow idle head drift in figure units

    @classmethod
    def sample(cls, rng: np.random.Generator, amplitude: float = 1.0, noise: float = 1.0,
               jitter: float = 1.0, frames: tuple[int, int] = FRAMES) -> "ClipParams":
        t = int(rng.integers(frames[0], frames[1] + 1))
        duration = float(rng.uniform(0.55, 0.85))
        start = float(rng.uniform(0.03, 0.97 - duration))
        walk = np.cumsum(rng.normal(0, 0.25 * jitter, size=(t, 2)), axis=0)
        walk -= walk.mean(0)
        drift = np.cumsum(rng.normal(0, 0.0008, size=(t, 2)), axis=0)
        return cls(
            frames=t, start=start, duration=duration,
            amp=float(amplitude * rng.uniform(0.75, 1.25)),
            side=int(rng.choice((-1, 1))),
            cycles=float(rng.uniform(0.0, 1.0)),  # mapped into each class's own range
            count=int(rng.integers(1, 3)),
            zoom=float(rng.uniform(0.93, 1.07)),
            dx=float(rng.uniform(-0.04, 0.04)), dy=float(rng.uniform(-0.03, 0.03)),
            jitter=walk.astype(np.float32),
            noise=float(noise * rng.uniform(2.0, 6.0)),
            gain=float(rng.uniform(0.88, 1.12)),
            breath_phase=float(rng.uniform(0, 2 * math.pi)), breath_rate=float(rng.uniform(0.15, 0.3)),
            drift=drift.astype(np.float32),
        )

    def cyc(self, lo: float, hi: float) -> float:
        return lo + self.cycles * (hi - lo)


def _hand(p, s, target, w, ox=0.0, oy=0.0):
    p[f"hand_{s}"] = (target, w, ox, oy)


def _touch(where: str, scratch: float = 0.008, rise: float = 0.25, cyc=(4, 7), vertical: bool = False,
           other_side: bool = False, behind: bool = False, finger: bool = False, both: bool = False):
    """A hand goes to a landmark, fidgets there and returns."""

    def prog(p, v, c):
        sides = (-1, 1) if both else (c.side,)
        for s in sides:
            ls = -s if other_side else s
            name = where.format(s=ls)
            o = c.amp * scratch * osc(v, c.cyc(*cyc))
            _hand(p, s, name, bump(v, rise), 0.0 if vertical else o, o if vertical else 0.0)
            if behind:
                p[f"behind_{s}"] = 1.0
            if finger:
                p[f"point_{s}"] = bump(v, rise)
                p[f"fist_{s}"] = 0.7 * bump(v, rise)

    return prog


def _shaking_body(p, v, c):
    p["body_dx"] = 0.022 * c.amp * osc(v, c.cyc(3, 5))


def _sitting_straightly(p, v, c):
    p["slump"] = 0.8 * c.amp * (1 - step(v))


def _shrugging(p, v, c):
    up = c.amp * bumps(v, c.count)
    p["shrug_-1"] = p["shrug_1"] = up


def _turning_around(p, v, c):
    p["twist"] = c.side * 0.9 * c.amp * bump(v, 0.3)


def _rising_up(p, v, c):
    p["rise"] = 0.05 * c.amp * step(v)


def _bowing_head(p, v, c):
    p["pitch"] = 1.0 * c.amp * step(v)


def _tilting_head(p, v, c):
    p["roll"] = c.side * 0.28 * c.amp * bump(v, 0.3)


def _turning_head(p, v, c):
    p["yaw"] = c.side * 0.9 * c.amp * bump(v, 0.3)


def _nodding(p, v, c):
    p["pitch"] = 0.6 * c.amp * (0.5 - 0.5 * math.cos(2 * math.pi * c.cyc(2, 4) * v)) * bump(v, 0.1)


def _shaking_head(p, v, c):
    p["yaw"] = 0.6 * c.amp * osc(v, c.cyc(2, 4), 0.1)


def _playing_objects(p, v, c):
    w = bump(v, 0.15)
    for s in (-1, 1):
        _hand(p, s, "belly", w, s * 0.035, 0.05)
        p[f"fingers_{s}"] = 0.5 * osc(v, c.cyc(3, 5))
    p["object"] = 1.0 if w > 0.6 else 0.0
    p["object_angle"] = 0.8 * osc(v, c.cyc(1, 2.5))


def _putting_hands_together(p, v, c):
    for s in (-1, 1):
        _hand(p, s, "belly", step(v), s * 0.025, 0.02)


def _rubbing_hands(p, v, c):
    o = 0.012 * c.amp * osc(v, c.cyc(4, 6))
    for s in (-1, 1):
        _hand(p, s, "belly", bump(v, 0.15), s * 0.02, 0.02 + s * o)


def _clenching_fist(p, v, c):
    p[f"fist_{c.side}"] = bumps(v, c.count)
    _hand(p, c.side, "belly", 0.25 * bump(v, 0.2), 0.0, 0.05)


def _stretching_arms(p, v, c):
    for s in (-1, 1):
        _hand(p, s, (0.5 + s * 0.36, 0.44 - 0.05 * c.amp), step(v))
        p[f"fingers_{s}"] = 0.2 * step(v)


def _waving(p, v, c):
    s = c.side
    _hand(p, s, (0.5 + s * 0.26, 0.2), bump(v, 0.2), 0.03 * c.amp * osc(v, c.cyc(3, 5), 0.3))
    p[f"fingers_{s}"] = 0.3 * bump(v, 0.2)


def _spreading_hands(p, v, c):
    w = bump(v, 0.3)
    for s in (-1, 1):
        _hand(p, s, (0.5 + s * (0.06 + 0.16 * c.amp * step(v / 0.6)), 0.6), w)
        p[f"fingers_{s}"] = 0.4 * w


def _touching_fingers(p, v, c):
    o = 0.006 * c.amp * osc(v, c.cyc(2, 4))
    for s in (-1, 1):
        _hand(p, s, "chest", bump(v, 0.2), s * (0.035 + o), 0.1)


def _finger_movements(p, v, c):
    s = c.side
    _hand(p, s, "belly", 0.3 * bump(v, 0.2), 0.0, 0.06)
    p[f"fingers_{s}"] = 0.6 * c.amp * osc(v, c.cyc(4, 7))


def _illustrative(p, v, c):
    s = c.side
    a = 2 * math.pi * c.cyc(1.5, 2.5) * v
    r = 0.03 * c.amp * bump(v, 0.2)
    _hand(p, s, (0.5 + s * 0.12, 0.56), bump(v, 0.2), r * math.cos(a), r * math.sin(a))
    p[f"fingers_{s}"] = 0.3 * bump(v, 0.2)


def _shaking_legs(p, v, c):
    p[f"knee_{c.side}_dy"] = 0.012 * c.amp * osc(v, c.cyc(5, 8), 0.1)
    p[f"heel_{c.side}"] = 0.5 * max(0.0, osc(v, c.cyc(5, 8), 0.1))


def _curling_legs(p, v, c):
    s = c.side
    p[f"knee_{s}_dy"] = -0.035 * c.amp * step(v)
    p[f"foot_{s}_dy"] = -0.06 * c.amp * step(v)
    p[f"foot_{s}_scale"] = -0.2 * step(v)


def _spread_legs(p, v, c):
    for s in (-1, 1):
        p[f"knee_{s}_dx"] = s * 0.045 * c.amp * step(v)


def _crossing_legs(p, v, c):
    p["cross"] = step(v)
    p["cross_side"] = c.side


def _stretching_feet(p, v, c):
    for s in (-1, 1):
        p[f"foot_{s}_dy"] = 0.04 * c.amp * step(v)
        p[f"foot_{s}_scale"] = 0.25 * c.amp * step(v)


def _tiptoe(p, v, c):
    for s in (-1, 1):
        p[f"heel_{s}"] = c.amp * bumps(v, c.count)


def _akimbo(p, v, c):
    for s in (-1, 1):
        _hand(p, s, f"hip_{s}", step(v))


def _crossing_arms(p, v, c):
    for s in (-1, 1):
        _hand(p, s, (0.5 - s * 0.1, 0.56 + 0.02 * s), step(v))


def _covering_face(p, v, c):
    for s in (-1, 1):
        _hand(p, s, f"cheek_{s}", bump(v, 0.25), -s * 0.02, -0.01)


def _pushing_glasses(p, v, c):
    s = c.side
    w = bump(v, 0.35)
    _hand(p, s, "bridge", w, 0.0, 0.03)
    p[f"point_{s}"] = w
    p[f"fist_{s}"] = 0.7 * w
    p["glasses"] = 1.0
    p["glasses_dy"] = -0.008 * c.amp * step((v - 0.35) / 0.3)


def _patting_legs(p, v, c):
    s = c.side
    _hand(p, s, f"thigh_{s}", bump(v, 0.1), 0.0, -0.03 * c.amp * bumps(v, 2 + c.count))


def _touching_legs(p, v, c):
    s = c.side
    _hand(p, s, f"knee_{s}", bump(v, 0.3), 0.0, -0.01 + 0.01 * c.amp * math.sin(math.pi * v))


def _scratching_feet(p, v, c):
    s = c.side
    w = bump(v, 0.3)
    p["lean_down"] = w
    _hand(p, s, f"foot_{s}", w, 0.008 * c.amp * osc(v, c.cyc(4, 7)), -0.02)


PROGRAMS = {
    0: _shaking_body, 1: _sitting_straightly, 2: _shrugging, 3: _turning_around, 4: _rising_up,
    5: _bowing_head, 7: _tilting_head, 8: _turning_head, 9: _nodding, 10: _shaking_head,
    11: _touch("forearm_{s}", 0.015, 0.2, (4, 7), other_side=True),
    12: _playing_objects, 13: _putting_hands_together, 14: _rubbing_hands,
    15: _touch("chest", 0.01, 0.3, (1.5, 2.5), vertical=True, finger=True),
    16: _clenching_fist, 17: _stretching_arms, 19: _waving, 20: _spreading_hands,
    21: _touching_fingers, 22: _finger_movements, 23: _illustrative,
    24: _shaking_legs, 25: _curling_legs, 26: _spread_legs, 28: _crossing_legs, 29: _stretching_feet,
    31: _tiptoe,
    32: _touch("neck", 0.008, 0.25, (4, 7)),
    33: _touch("chest", 0.01, 0.25, (4, 7), vertical=True),
    34: _touch("back_{s}", 0.01, 0.25, (4, 7), vertical=True, behind=True),
    35: _touch("shoulder_{s}", 0.008, 0.25, (4, 7), other_side=True),
    36: _akimbo, 37: _crossing_arms,
    38: _touch("hair_{s}", 0.02, 0.2, (2, 3)),
    39: _touch("hind_{s}", 0.01, 0.25, (4, 7), behind=True),
    40: _touch("forehead", 0.01, 0.25, (4, 7)),
    41: _touch("cheek_{s}", 0.008, 0.25, (4, 7), vertical=True),
    42: _touch("eye_{s}", 0.007, 0.25, (3, 5), vertical=True),
    43: _touch("nose", 0.004, 0.35, (1, 2), finger=True),
    44: _touch("ear_{s}", 0.006, 0.25, (3, 5), vertical=True),
    45: _covering_face,
    46: _touch("mouth", 0.003, 0.25, (1, 2)),
    47: _pushing_glasses,
    48: _patting_legs, 49: _touching_legs,
    50: _touch("thigh_{s}", 0.008, 0.2, (6, 9)),
    51: _scratching_feet,
}
assert set(PROGRAMS) | set(REVERSED_OF) == set(range(52)) and not set(PROGRAMS) & set(REVERSED_OF)


def render_clip(label: int, subject: Subject, params: ClipParams, size: tuple[int, int] = (96, 80),
                noise_seed: int = 0) -> np.ndarray:
    """uint8 frames [T, H, W, 3] of ``subject`` performing micro-action ``label``."""
    if label in REVERSED_OF:
        return np.ascontiguousarray(render_clip(REVERSED_OF[label], subject, params, size, noise_seed)[::-1])
    if label not in PROGRAMS:
        raise ValueError(f"label {label}: expected a fine id in 0..51")
    h, w = size
    if h % 2 or w % 2 or h < 16 or w < 16:
        raise ValueError(f"size {size}: expected even (height, width), each at least 16")
    program = PROGRAMS[label]
    t_total = params.frames
    base = min(w, h / ASPECT) * params.zoom
    out = np.empty((t_total, h, w, 3), dtype=np.float32)
    # the figure spans y = 0.17..1.1: centre it so a square centre crop keeps head and feet
    ox = (w - base) / 2 + params.dx * w
    oy = (h - ASPECT * base) / 2 - 0.035 * base + params.dy * h
    scene = Canvas(h, w, base, ox, oy)
    draw_scene(scene, subject)
    for i in range(t_total):
        u = i / (t_total - 1)
        v = (u - params.start) / params.duration
        pose: dict = {}
        program(pose, v, params)
        # idle life shared by every class: breathing and a slow head drift
        pose["rise"] = pose.get("rise", 0.0) + 0.002 * math.sin(params.breath_phase + 2 * math.pi * params.breath_rate * i / FPS * 4)
        pose["head_dx"] = pose.get("head_dx", 0.0) + float(params.drift[i, 0])
        pose["head_dy"] = pose.get("head_dy", 0.0) + float(params.drift[i, 1])
        canvas = Canvas(h, w, base, ox, oy, img=scene.img.copy())
        draw(canvas, subject, skeleton(subject, pose))
        out[i] = shift_image(canvas.img, float(params.jitter[i, 0]), float(params.jitter[i, 1]))
    rng = np.random.default_rng(noise_seed)
    out *= params.gain
    out += rng.standard_normal(out.shape, dtype=np.float32) * params.noise
    return np.clip(out, 0, 255).astype(np.uint8)
