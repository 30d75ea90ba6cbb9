#!/usr/bin/env python
"""Write one person box per listed clip of an MA-52 root (<out>/<split>.csv), for data.person_crop.

    pip install -e ".[faces]"                        # OpenCV (its HOG people detector ships inside)
    python scripts/detect_people.py /data/MA-52 /data/MA-52/person_boxes
    python train.py data.person_crop=/data/MA-52/person_boxes ...

The box of a clip is the median of the largest person OpenCV's HOG detector finds in each of --frames
evenly spaced frames. A rerun skips the splits whose file exists. Exit status: 0 all good, 1 clips that
could not be decoded (listed; written without a box), 2 stopped (bad arguments or list lines, OpenCV
missing). See docs/recipes.md ("Person crop").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from microaction.data.annotations import SPLITS
    from microaction.data.person_boxes import DEFAULT_FRAMES, DEFAULT_SHORT_SIDE, DetectPeopleError, detect_people
except ImportError:
    # Lets the script run from a plain checkout without installing the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from microaction.data.annotations import SPLITS
    from microaction.data.person_boxes import DEFAULT_FRAMES, DEFAULT_SHORT_SIDE, DetectPeopleError, detect_people


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="detect_people",
                                description="Detect the person in each listed clip of an MA-52 root and write one box "
                                            "per clip (<out>/<split>.csv) for data.person_crop.")
    p.add_argument("root", help="the MA-52 root (list files, videos_<split>/)")
    p.add_argument("out", help="the folder the per-split box files go into (data.person_crop)")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"frames looked at per clip, evenly spaced (default {DEFAULT_FRAMES})")
    p.add_argument("--short-side", type=int, default=DEFAULT_SHORT_SIDE,
                   help=f"frames are scaled to this short side for detection (default {DEFAULT_SHORT_SIDE}; 0: as "
                        "stored; boxes are fractions of the frame, so they fit any size)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    def progress(split: str, done: int, total: int) -> None:
        if done % 1000 == 0 or done == total:
            print(f"detect_people: {split}: {done}/{total} clips", file=sys.stderr, flush=True)

    try:
        summary = detect_people(args.root, args.out, splits=args.splits, frames=args.frames,
                                short_side=args.short_side, progress=progress)
    except (DetectPeopleError, ValueError) as err:
        print(f"detect_people: stopped: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detect_people: interrupted; rerun the same command (finished splits are kept)", file=sys.stderr)
        return 130
    out = sys.stdout if summary.ok else sys.stderr
    print(f"detect_people: {len(summary.written)} splits written, {len(summary.skipped)} already there; a person in "
          f"{summary.with_person} of {summary.clips} clips", file=out)
    for split, path in summary.written.items():
        print(f"  {split}: {path}", file=out)
    for problem in summary.problems[:20]:
        print(f"  problem: {problem}", file=out)
    if len(summary.problems) > 20:
        print(f"  ... and {len(summary.problems) - 20} more", file=out)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
