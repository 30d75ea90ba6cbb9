"""A seated person seen from the front: appearance, skeleton from a pose, drawing.

Figure units: the canvas is 1 unit wide and 1.2 high (portrait, the MA-52 demo
clips' 5:6), y grows downwards, the figure is centred on x = 0.5.
A pose is a flat dict of small offsets (all 0 = sitting still, hands on the
thighs); the motions of ``motions.py`` write into it frame by frame.
An ``Expression`` (optional) draws a face with eyebrows, a curved or open mouth
and wider or narrower eyes; without one the face is the plain one of the MA-52
stand-in, pixel for pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .shapes import Canvas

ASPECT = 1.2

SKIN = np.array([[255, 224, 196], [234, 192, 160], [198, 145, 110], [160, 110, 80], [110, 74, 52]], np.float32)
HAIR = np.array([[30, 25, 22], [80, 50, 30], [150, 110, 60], [210, 180, 120], [150, 150, 150]], np.float32)


@dataclass
class Subject:
    """Everything that stays fixed for one (synthetic) person across their clips."""

    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    glasses: bool
    shirt: np.ndarray
    shirt_pattern: int  # 0 plain, 1 stripes, 2 checks, 3 dots
    pattern_freq: float
    pattern_angle: float
    pattern_contrast: float
    trousers: np.ndarray
    shoes: np.ndarray
    chair: np.ndarray
    bg: np.ndarray
    bg_grad: np.ndarray
    bg_tex_freq: float
    bg_tex_amp: float
    head_r: float
    torso_len: float
    torso_w: float
    shoulder_w: float
    upper_arm: float
    forearm: float
    arm_r: float
    hand_r: float
    thigh_r: float
    shin_r: float
    shin_len: float
    knee_spread: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Subject":
        def colour(lo=20, hi=235):
            return rng.uniform(lo, hi, size=3).astype(np.float32)

        k = rng.integers(len(SKIN))
        return cls(
            skin=np.clip(SKIN[k] + rng.normal(0, 8, 3), 0, 255).astype(np.float32),
            hair=np.clip(HAIR[rng.integers(len(HAIR))] + rng.normal(0, 8, 3), 0, 255).astype(np.float32),
            long_hair=bool(rng.random() < 0.4),
            glasses=bool(rng.random() < 0.3),
            shirt=colour(),
            shirt_pattern=int(rng.integers(4)),
            pattern_freq=float(rng.uniform(18, 40)),
            pattern_angle=float(rng.uniform(0, math.pi)),
            pattern_contrast=float(rng.uniform(0.08, 0.25)),
            trousers=colour(15, 160),
            shoes=colour(10, 90),
            chair=colour(40, 200),
            bg=colour(60, 230),
            bg_grad=rng.normal(0, 25, size=3).astype(np.float32),
            bg_tex_freq=float(rng.uniform(4, 12)),
            bg_tex_amp=float(rng.uniform(0, 14)),
            head_r=float(rng.uniform(0.075, 0.092)),
            torso_len=float(rng.uniform(0.27, 0.32)),
            torso_w=float(rng.uniform(0.11, 0.15)),
            shoulder_w=float(rng.uniform(0.13, 0.165)),
            upper_arm=float(rng.uniform(0.15, 0.175)),
            forearm=float(rng.uniform(0.14, 0.16)),
            arm_r=float(rng.uniform(0.027, 0.036)),
            hand_r=float(rng.uniform(0.028, 0.034)),
            thigh_r=float(rng.uniform(0.048, 0.062)),
            shin_r=float(rng.uniform(0.038, 0.048)),
            shin_len=float(rng.uniform(0.17, 0.21)),
            knee_spread=float(rng.uniform(0.085, 0.11)),
        )

    # textures are functions of figure coordinates, so they move with the camera
    def background(self, x, y):
        tex = self.bg_tex_amp * np.sin(self.bg_tex_freq * x * 6.0) * np.sin(self.bg_tex_freq * y * 5.0)
        return self.bg + self.bg_grad * (y - 0.6)[..., None] + tex[..., None]

    def shirt_texture(self, dx: float):
        ca, sa = math.cos(self.pattern_angle), math.sin(self.pattern_angle)
        f, c, kind, base = self.pattern_freq, self.pattern_contrast, self.shirt_pattern, self.shirt

        def tex(x, y):
            u = (x - dx) * ca + y * sa
            v = -(x - dx) * sa + y * ca
            if kind == 1:
                p = np.sign(np.sin(f * u))
            elif kind == 2:
                p = np.sign(np.sin(f * u) * np.sin(f * v))
            elif kind == 3:
                p = (np.sin(f * u) * np.sin(f * v) > 0.6) * 2.0 - 1.0
            else:
                p = np.zeros_like(u)
            return base * (1.0 + c * p)[..., None]

        return tex


@dataclass(frozen=True)
class Expression:
    """What the face shows. All fields at their defaults is a neutral, expressive-style face.

    ``mouth_curve``: mouth corners up (+1, a smile) or down (-1, a frown); ``mouth_open``: an open,
    round mouth, 0..1; ``brow_raise``: eyebrows up (+) or down (-), -1..1; ``brow_slant``: the inner
    ends of the eyebrows up (+, worried) or down (-, frowning), -1..1; ``eye_open``: eye height as a
    multiple of the neutral eye's (> 0).
    """

    mouth_curve: float = 0.0
    mouth_open: float = 0.0
    brow_raise: float = 0.0
    brow_slant: float = 0.0
    eye_open: float = 1.0


# an expressive mouth: half its width, how far a full curve lifts (or drops) its corners (head radii)
MOUTH_HALF_WIDTH = 0.36
MOUTH_CURVE_LIFT = 0.22


def mouth_corners(sk: dict, expression: Expression) -> tuple[tuple[float, float], tuple[float, float]]:
    """Left and right (image left, image right at zero roll) corners of an expressive mouth, figure units."""
    fu, fv = sk["face"]
    lift = MOUTH_CURVE_LIFT * expression.mouth_curve
    return tuple(sk["on_head"](fu * 0.9 + s * MOUTH_HALF_WIDTH, fv + 0.55 - lift) for s in (-1, 1))


def rest_hand(subj: Subject, side: int):
    return (0.5 + side * (subj.knee_spread - 0.005), 0.79)


def _ik(shoulder, hand, l1: float, l2: float, outward: int):
    """Elbow of a two-link arm reaching ``hand``; the elbow bends away from the body."""
    sx, sy = shoulder
    dx, dy = hand[0] - sx, hand[1] - sy
    dist = math.hypot(dx, dy)
    reach = min(max(dist, abs(l1 - l2) + 1e-3), l1 + l2 - 1e-4)
    ux, uy = (dx / dist, dy / dist) if dist > 1e-9 else (0.0, 1.0)
    hand = (sx + ux * reach, sy + uy * reach)
    a = (l1 * l1 - l2 * l2 + reach * reach) / (2 * reach)
    h = math.sqrt(max(l1 * l1 - a * a, 0.0))
    px, py = -uy, ux
    if px * outward < 0 or (px == 0 and py < 0):
        px, py = -px, -py
    return (sx + ux * a + px * h, sy + uy * a + py * h), hand


def skeleton(subj: Subject, p: dict) -> dict:
    """Joint and landmark positions (figure units) for pose ``p``."""
    g = p.get
    rise, slump, lean = g("rise", 0.0), g("slump", 0.0), g("lean_down", 0.0)
    bdx, twist = g("body_dx", 0.0), g("twist", 0.0)
    hip = (0.5 + 0.3 * bdx, 0.74 - rise)
    top_y = hip[1] - subj.torso_len * (1 - 0.22 * slump - 0.3 * lean)
    neck = (0.5 + bdx, top_y)
    sw = subj.shoulder_w * (1 - 0.35 * abs(twist))
    sh = {s: (neck[0] + s * sw, neck[1] + 0.035 - 0.04 * g(f"shrug_{s}", 0.0)) for s in (-1, 1)}
    shrug = 0.5 * (g("shrug_-1", 0.0) + g("shrug_1", 0.0))
    r = subj.head_r
    pitch = g("pitch", 0.0) + 0.6 * slump + 0.8 * lean
    head = (
        neck[0] + g("head_dx", 0.0) + 0.03 * twist,
        neck[1] - 0.045 - r + 0.015 * shrug + 0.02 * pitch + g("head_dy", 0.0),
    )
    roll = g("roll", 0.0)
    yaw = g("yaw", 0.0) + 0.8 * twist
    cr, sr = math.cos(roll), math.sin(roll)

    def on_head(u, v):
        """Head-local offset (in head radii, face shifted by yaw and pitch) to figure units."""
        u, v = u * r, v * r
        return (head[0] + u * cr - v * sr, head[1] + u * sr + v * cr)

    fu, fv = 0.45 * yaw, 0.35 * pitch  # where the face centre has turned to
    lm = {
        "head": head,
        "eye_-1": on_head(fu - 0.38, fv - 0.1),
        "eye_1": on_head(fu + 0.38, fv - 0.1),
        "nose": on_head(fu, fv + 0.2),
        "mouth": on_head(fu * 0.9, fv + 0.55),
        "forehead": on_head(fu * 0.8, fv - 0.55),
        "bridge": on_head(fu, fv - 0.05),
        "neck": (neck[0], neck[1] - 0.02),
        "chest": (neck[0], neck[1] + 0.09),
        "belly": (neck[0] * 0.5 + hip[0] * 0.5, 0.5 * (neck[1] + hip[1]) + 0.03),
    }
    for s in (-1, 1):
        lm[f"ear_{s}"] = on_head(s * (1.0 - 0.25 * s * yaw), 0.05)
        lm[f"cheek_{s}"] = on_head(fu + s * 0.55, fv + 0.25)
        lm[f"hair_{s}"] = on_head(s * 0.55, -0.85)
        lm[f"hind_{s}"] = on_head(s * 0.45, -0.75)
        lm[f"shoulder_{s}"] = sh[s]
        lm[f"back_{s}"] = (sh[s][0] - s * 0.03, sh[s][1] - 0.03)
        lm[f"hip_{s}"] = (hip[0] + s * (subj.torso_w + 0.012), hip[1] - 0.06)

    # legs: thighs come towards the camera, so they are short; shins hang down to the feet
    cross, cside = g("cross", 0.0), int(g("cross_side", 1))
    legs = {}
    for s in (-1, 1):
        knee = [0.5 + s * subj.knee_spread + g(f"knee_{s}_dx", 0.0), 0.85 - 0.5 * rise + g(f"knee_{s}_dy", 0.0)]
        heel = g(f"heel_{s}", 0.0)
        knee[1] -= 0.02 * heel
        fscale = 1.0 + g(f"foot_{s}_scale", 0.0)
        ankle = [knee[0] + 1.2 * g(f"knee_{s}_dx", 0.0) + g(f"foot_{s}_dx", 0.0),
                 knee[1] + subj.shin_len * fscale + g(f"foot_{s}_dy", 0.0) - 0.025 * heel]
        if s == cside and cross:
            # the crossing leg's knee rides over the other knee; its foot swings across and up
            other = 0.5 - s * subj.knee_spread
            knee[0] += cross * (other - knee[0]) * 0.8
            knee[1] -= 0.05 * cross
            ankle[0] += cross * (other - s * 0.05 - ankle[0])
            ankle[1] -= 0.09 * cross
        legs[s] = {"hip": (0.5 + s * 0.07 + 0.2 * bdx, hip[1] + 0.02), "knee": tuple(knee),
                   "ankle": tuple(ankle), "foot_scale": fscale, "heel": heel}
        lm[f"knee_{s}"] = tuple(knee)
        lm[f"thigh_{s}"] = (0.5 * (knee[0] + 0.5 + s * 0.07), 0.5 * (knee[1] + hip[1]) + 0.005)
        lm[f"foot_{s}"] = (ankle[0], ankle[1] + 0.01)

    for s in (-1, 1):
        # where the other hand scratches an arm: its resting forearm
        elbow, hand = _ik(sh[s], rest_hand(subj, s), subj.upper_arm, subj.forearm, outward=s)
        lm[f"forearm_{s}"] = (0.4 * elbow[0] + 0.6 * hand[0], 0.4 * elbow[1] + 0.6 * hand[1] - 0.01)
    arms = {}
    for s in (-1, 1):
        spec = p.get(f"hand_{s}")
        rest = rest_hand(subj, s)
        if spec is None:
            target = rest
        else:
            name, w, ox, oy = spec
            tx, ty = lm[name] if isinstance(name, str) else name
            target = (rest[0] + w * (tx + ox - rest[0]), rest[1] + w * (ty + oy - rest[1]))
        elbow, hand = _ik(sh[s], target, subj.upper_arm, subj.forearm, outward=s)
        arms[s] = {"shoulder": sh[s], "elbow": elbow, "hand": hand,
                   "behind": bool(g(f"behind_{s}", 0.0)), "fist": g(f"fist_{s}", 0.0),
                   "fingers": g(f"fingers_{s}", 0.0), "point": g(f"point_{s}", 0.0),
                   "active": spec is not None and spec[1] > 0.05 or g(f"fingers_{s}", 0.0) != 0.0}
    return {"hip": hip, "neck": neck, "head": head, "roll": roll, "yaw": yaw, "pitch": pitch, "face": (fu, fv),
            "on_head": on_head, "legs": legs, "arms": arms, "lm": lm, "twist": twist, "bdx": bdx,
            "cross_side": cside, "glasses_dy": g("glasses_dy", 0.0), "glasses": bool(g("glasses", 0.0)),
            "object": g("object", 0.0), "object_angle": g("object_angle", 0.0)}


def _darker(c, f=0.7):
    return np.asarray(c, np.float32) * f


def draw_scene(canvas: Canvas, subj: Subject) -> None:
    """What never moves within a clip: background and chair (drawn once per clip)."""
    canvas.fill(subj.background)
    seat = 0.74
    canvas.box(0.5, seat - 0.17, 0.2, 0.2, subj.chair, rounding=0.03)
    canvas.box(0.5, seat + 0.05, 0.22, 0.035, _darker(subj.chair, 0.8), rounding=0.01)
    for s in (-1, 1):
        canvas.capsule((0.5 + s * 0.2, seat + 0.07), (0.5 + s * 0.21, 1.15), 0.012, _darker(subj.chair, 0.6))


def draw(canvas: Canvas, subj: Subject, sk: dict, expression: Expression | None = None) -> None:
    """The figure, over a canvas that already holds the scene; ``expression`` None: the plain face."""
    hip, neck = sk["hip"], sk["neck"]
    arms = sk["arms"]
    for s in (-1, 1):
        if arms[s]["behind"]:
            _draw_arm(canvas, subj, arms[s], s)
    if subj.long_hair:
        h = sk["head"]
        canvas.ellipse(h[0], h[1] + 0.06, subj.head_r * 1.15, subj.head_r * 1.5, subj.hair, angle=sk["roll"])

    legs = sk["legs"]
    order = (-sk["cross_side"], sk["cross_side"])  # the crossing leg is drawn last, on top
    for s in order:
        leg = legs[s]
        canvas.capsule(leg["hip"], leg["knee"], subj.thigh_r, subj.trousers, radius_b=subj.thigh_r * 0.9)
    for s in order:
        leg = legs[s]
        canvas.capsule(leg["knee"], leg["ankle"], subj.shin_r, _darker(subj.trousers, 0.9), radius_b=subj.shin_r * 0.8)
        fs = leg["foot_scale"]
        ax, ay = leg["ankle"]
        canvas.ellipse(ax + s * 0.008, ay + 0.012, 0.045 * fs, 0.024 * fs * (1 - 0.45 * leg["heel"]), subj.shoes)

    # torso: a rounded box from hips to neck, leaning with the body's sideways sway
    tx, ty = 0.5 * (hip[0] + neck[0]), 0.5 * (hip[1] + neck[1])
    half_h = 0.5 * math.hypot(hip[1] - neck[1], hip[0] - neck[0]) + 0.03
    angle = math.atan2(neck[0] - hip[0], hip[1] - neck[1])
    tw = subj.torso_w * (1 - 0.25 * abs(sk["twist"]))
    canvas.box(tx, ty, tw, half_h, subj.shirt_texture(sk["bdx"]), angle=-angle, rounding=0.05)
    for s in (-1, 1):
        sh = arms[s]["shoulder"]
        canvas.capsule((neck[0], neck[1] + 0.035), sh, 0.04, subj.shirt_texture(sk["bdx"]))

    head = sk["head"]
    r = subj.head_r
    canvas.capsule((neck[0], neck[1] + 0.01), (head[0], head[1] + 0.6 * r), 0.032, _darker(subj.skin, 0.92))
    _draw_head(canvas, subj, sk, expression)

    for s in sorted((-1, 1), key=lambda s: arms[s]["hand"][1]):
        if not arms[s]["behind"]:
            _draw_arm(canvas, subj, arms[s], s)
    if sk["object"] > 0:
        a, b = arms[-1]["hand"], arms[1]["hand"]
        cx, cy = 0.5 * (a[0] + b[0]), 0.5 * (a[1] + b[1]) - 0.02
        canvas.box(cx, cy, 0.035, 0.012, np.array([220, 40, 40], np.float32), angle=sk["object_angle"], rounding=0.004)


def _draw_head(canvas: Canvas, subj: Subject, sk: dict, expression: Expression | None = None) -> None:
    head, roll, yaw = sk["head"], sk["roll"], sk["yaw"]
    lm = sk["lm"]
    r = subj.head_r
    rx = r * (1 - 0.08 * min(abs(yaw), 1.0))
    for s in (-1, 1):
        ex, ey = lm[f"ear_{s}"]
        canvas.ellipse(ex, ey, 0.2 * r, 0.3 * r, _darker(subj.skin, 0.9), angle=roll)
    canvas.ellipse(head[0], head[1], rx, r * 1.15, subj.skin, angle=roll)
    fu, fv = sk["face"]
    if expression is not None:
        # a higher hairline leaves room for the eyebrows
        canvas.top_of_ellipse(head[0], head[1], rx * 1.05, r * 1.2, r * (0.6 + 0.3 * fv), subj.hair, angle=roll)
        _draw_expression(canvas, subj, sk, expression)
        return
    cut = r * (0.35 + 0.3 * fv)
    canvas.top_of_ellipse(head[0], head[1], rx * 1.05, r * 1.2, cut, subj.hair, angle=roll)
    for s in (-1, 1):
        ex, ey = lm[f"eye_{s}"]
        canvas.ellipse(ex, ey, 0.12 * r, 0.09 * r, np.array([25, 25, 30], np.float32), angle=roll)
    nx, ny = lm["nose"]
    canvas.ellipse(nx, ny, 0.1 * r, 0.16 * r, _darker(subj.skin, 0.8), angle=roll)
    mx, my = lm["mouth"]
    canvas.ellipse(mx, my, 0.28 * r, 0.08 * r, np.array([150, 60, 60], np.float32), angle=roll)
    _draw_glasses(canvas, subj, sk)


def _draw_expression(canvas: Canvas, subj: Subject, sk: dict, e: Expression) -> None:
    """Eyes, eyebrows, nose and mouth of a face showing ``e`` (head and hair already drawn)."""
    lm, roll, r = sk["lm"], sk["roll"], subj.head_r
    on_head = sk["on_head"]
    fu, fv = sk["face"]
    eye_open = max(e.eye_open, 0.05)
    for s in (-1, 1):
        ex, ey = lm[f"eye_{s}"]
        canvas.ellipse(ex, ey, 0.17 * r, 0.075 * r * eye_open, np.array([235, 235, 230], np.float32), angle=roll)
        canvas.ellipse(ex, ey, 0.1 * r, 0.075 * r * min(eye_open, 1.25), np.array([25, 25, 30], np.float32),
                       angle=roll)
        # eyebrow: the inner end (towards the nose) rises with the slant, both ends with the raise;
        # a turned head foreshortens the far one rather than letting it leave the head's outline
        y = fv - 0.1 - 0.27 - 0.13 * e.brow_raise
        inner = on_head(min(max(fu + s * 0.16, -0.8), 0.8), y - 0.13 * e.brow_slant)
        outer = on_head(min(max(fu + s * 0.58, -0.8), 0.8), y + 0.04 * e.brow_slant)
        canvas.capsule(inner, outer, 0.065 * r, _darker(subj.hair, 0.55))
    nx, ny = lm["nose"]
    canvas.ellipse(nx, ny, 0.1 * r, 0.16 * r, _darker(subj.skin, 0.8), angle=roll)
    left, right = mouth_corners(sk, e)
    centre = on_head(fu * 0.9, fv + 0.55)
    lips = np.array([140, 50, 55], np.float32)
    canvas.capsule(left, centre, 0.07 * r, lips)
    canvas.capsule(centre, right, 0.07 * r, lips)
    if e.mouth_open > 0.05:
        mx, my = on_head(fu * 0.9, fv + 0.6)
        canvas.ellipse(mx, my, 0.2 * r * e.mouth_open, 0.27 * r * e.mouth_open, np.array([60, 20, 25], np.float32),
                       angle=roll)
    _draw_glasses(canvas, subj, sk)


def _draw_glasses(canvas: Canvas, subj: Subject, sk: dict) -> None:
    lm, r = sk["lm"], subj.head_r
    if subj.glasses or sk["glasses"]:
        dy = sk["glasses_dy"]
        dark = np.array([20, 20, 20], np.float32)
        for s in (-1, 1):
            ex, ey = lm[f"eye_{s}"]
            canvas.ring(ex, ey + dy, 0.26 * r, 0.06 * r, dark)
        bx, by = lm["bridge"]
        canvas.capsule((lm["eye_-1"][0] + 0.2 * r, by + dy), (lm["eye_1"][0] - 0.2 * r, by + dy), 0.03 * r, dark)


def _draw_arm(canvas: Canvas, subj: Subject, arm: dict, side: int) -> None:
    sleeve = subj.shirt
    sh, el, hd = arm["shoulder"], arm["elbow"], arm["hand"]
    canvas.capsule(sh, el, subj.arm_r * 1.1, sleeve, radius_b=subj.arm_r)
    canvas.capsule(el, hd, subj.arm_r * 0.95, _darker(subj.skin, 0.95), radius_b=subj.arm_r * 0.8)
    fist = arm["fist"]
    hr = subj.hand_r * (1 - 0.2 * fist)
    dx, dy = hd[0] - el[0], hd[1] - el[1]
    n = math.hypot(dx, dy) + 1e-9
    ux, uy = dx / n, dy / n
    canvas.ellipse(hd[0], hd[1], hr, hr * 0.9, _darker(subj.skin, 1 - 0.12 * fist))
    # fingers continue the forearm; they shorten as the hand closes and wiggle with ``fingers``
    flen = 0.028 * (1 - fist)
    # fingers of a hand resting on the thigh lie flat and out of sight
    if flen > 0.003 and arm["active"]:
        for k, spread in enumerate((-0.5, 0.0, 0.5)):
            wig = arm["fingers"] * math.sin(2.1 * k + 7 * arm["fingers"])
            a = math.atan2(uy, ux) + spread + 0.6 * wig
            base = (hd[0] + ux * hr * 0.6, hd[1] + uy * hr * 0.6)
            tip = (base[0] + math.cos(a) * flen, base[1] + math.sin(a) * flen)
            canvas.capsule(base, tip, 0.006, _darker(subj.skin, 0.9))
    if arm["point"] > 0:
        tip = (hd[0] + ux * (hr + 0.035 * arm["point"]), hd[1] + uy * (hr + 0.035 * arm["point"]))
        canvas.capsule(hd, tip, 0.007, _darker(subj.skin, 0.85))
