"""Anti-aliased 2D shapes painted from signed distances onto a small float canvas.

Micro-actions move body parts by a pixel or less at the resolutions used for
training, so edges are drawn with one pixel of linear coverage: a sub-pixel
displacement then still changes pixel values, as it would in a real video.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import numpy as np

Colour = Union[np.ndarray, Callable[[np.ndarray, np.ndarray], np.ndarray]]


class Canvas:
    """An RGB float image with a similarity map from figure units to pixels.

    ``px = ox + scale * x`` and ``py = oy + scale * y``; shapes are given in
    figure units and only the pixels of their bounding box are evaluated.
    """

    def __init__(self, height: int, width: int, scale: float, ox: float, oy: float, img: np.ndarray | None = None):
        self.img = np.zeros((height, width, 3), dtype=np.float32) if img is None else img
        self.h, self.w = height, width
        self.scale, self.ox, self.oy = scale, ox, oy
        self._cols = (np.arange(width, dtype=np.float32) + 0.5 - ox) / scale
        self._rows = (np.arange(height, dtype=np.float32) + 0.5 - oy) / scale

    def grid(self, x0: float, y0: float, x1: float, y1: float):
        """Slices and unit coordinates of the pixels inside a unit-space box (None if off canvas)."""
        c0 = max(0, int(math.floor(self.ox + self.scale * x0)) - 1)
        c1 = min(self.w, int(math.ceil(self.ox + self.scale * x1)) + 2)
        r0 = max(0, int(math.floor(self.oy + self.scale * y0)) - 1)
        r1 = min(self.h, int(math.ceil(self.oy + self.scale * y1)) + 2)
        if c0 >= c1 or r0 >= r1:
            return None
        return (slice(r0, r1), slice(c0, c1)), self._cols[None, c0:c1], self._rows[r0:r1, None]

    def fill(self, colour: Colour) -> None:
        whole = self.grid(-1e3, -1e3, 1e3, 1e3)
        _, xs, ys = whole
        x, y = np.broadcast_arrays(xs, ys)
        self.img[:] = colour(x, y) if callable(colour) else np.asarray(colour, np.float32)

    def paint(self, sdf: Callable, box, colour: Colour, opacity: float = 1.0) -> None:
        g = self.grid(*box)
        if g is None:
            return
        sl, xs, ys = g
        cover = 0.5 - sdf(xs, ys) * self.scale
        np.clip(cover, 0.0, 1.0, out=cover)
        if opacity != 1.0:
            cover *= opacity
        if cover.shape != (ys.shape[0], xs.shape[1]):
            cover = np.broadcast_to(cover, (ys.shape[0], xs.shape[1]))
        cover = cover[..., None]
        if callable(colour):
            x, y = np.broadcast_arrays(xs, ys)
            col = colour(x, y)
        else:
            col = np.asarray(colour, np.float32)
        region = self.img[sl]
        region += cover * (col - region)

    # --- primitives (sizes in figure units) ---------------------------------------------
    def ellipse(self, cx, cy, rx, ry, colour: Colour, angle: float = 0.0, opacity: float = 1.0) -> None:
        ca, sa = math.cos(angle), math.sin(angle)
        rmin = min(rx, ry)

        def sdf(x, y):
            u = (x - cx) * ca + (y - cy) * sa
            v = -(x - cx) * sa + (y - cy) * ca
            # not an exact distance, but exact on the axes, which is what the edge needs
            return (np.sqrt((u / rx) ** 2 + (v / ry) ** 2) - 1.0) * rmin

        r = max(rx, ry)
        self.paint(sdf, (cx - r, cy - r, cx + r, cy + r), colour, opacity)

    def ring(self, cx, cy, r, thickness, colour: Colour) -> None:
        def sdf(x, y):
            return np.abs(np.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r) - thickness / 2

        e = r + thickness
        self.paint(sdf, (cx - e, cy - e, cx + e, cy + e), colour)

    def capsule(self, a, b, radius: float, colour: Colour, radius_b: float | None = None) -> None:
        """A segment from ``a`` to ``b`` with round ends (radius may taper to ``radius_b``)."""
        ax, ay = a
        bx, by = b
        rb = radius if radius_b is None else radius_b
        dx, dy = bx - ax, by - ay
        ll = dx * dx + dy * dy + 1e-12

        def sdf(x, y):
            t = np.clip(((x - ax) * dx + (y - ay) * dy) / ll, 0.0, 1.0)
            return np.sqrt((x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2) - (radius + (rb - radius) * t)

        r = max(radius, rb)
        box = (min(ax, bx) - r, min(ay, by) - r, max(ax, bx) + r, max(ay, by) + r)
        self.paint(sdf, box, colour)

    def box(self, cx, cy, hw, hh, colour: Colour, angle: float = 0.0, rounding: float = 0.0) -> None:
        ca, sa = math.cos(angle), math.sin(angle)

        def sdf(x, y):
            u = np.abs((x - cx) * ca + (y - cy) * sa) - (hw - rounding)
            v = np.abs(-(x - cx) * sa + (y - cy) * ca) - (hh - rounding)
            outside = np.sqrt(np.maximum(u, 0) ** 2 + np.maximum(v, 0) ** 2)
            return outside + np.minimum(np.maximum(u, v), 0) - rounding

        r = math.hypot(hw, hh)
        self.paint(sdf, (cx - r, cy - r, cx + r, cy + r), colour)

    def top_of_ellipse(self, cx, cy, rx, ry, cut: float, colour: Colour, angle: float = 0.0) -> None:
        """The part of an ellipse above a line ``cut`` units above its centre (hair on a head)."""
        ca, sa = math.cos(angle), math.sin(angle)
        rmin = min(rx, ry)

        def sdf(x, y):
            u = (x - cx) * ca + (y - cy) * sa
            v = -(x - cx) * sa + (y - cy) * ca
            inside = (np.sqrt((u / rx) ** 2 + (v / ry) ** 2) - 1.0) * rmin
            return np.maximum(inside, v + cut)

        r = max(rx, ry)
        self.paint(sdf, (cx - r, cy - r, cx + r, cy + r), colour)


def shift_image(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` moved by a sub-pixel offset (bilinear, edges repeated): a camera shake."""
    pad = int(np.ceil(max(abs(dx), abs(dy)))) + 1
    src = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy
    h, w = img.shape[:2]

    def at(oy, ox):
        return src[pad - iy - oy: pad - iy - oy + h, pad - ix - ox: pad - ix - ox + w]

    return ((1 - fy) * ((1 - fx) * at(0, 0) + fx * at(0, 1)) + fy * ((1 - fx) * at(1, 0) + fx * at(1, 1)))
