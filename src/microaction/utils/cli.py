"""Argument types the command-line scripts share."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (e.g. ``64x48``) as (width, height): even numbers of at least 16 pixels, as H.264 in
    4:2:0 needs; anything else is an ``argparse.ArgumentTypeError`` quoting the text."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"sizes must be even and >= 16, got {text!r}")
    return w, h
