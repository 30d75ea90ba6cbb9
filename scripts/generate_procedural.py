#!/usr/bin/env python
"""Write the procedural micro-action dataset (docs/procedural_dataset.md) in the official MA-52 layout.

    python scripts/generate_procedural.py data/ma52_procedural --scale 0.1 --seed 0
    python scripts/generate_procedural.py /tmp/proc --scale 0.25 --subject-disjoint --workers 2

Then train on it with `python train.py data=procedural data.root=<root>` (or let
`data=procedural` write it on first use). Nothing is done if a finished dataset made with
the same arguments is already there; one made with other arguments is refused.
"""

from __future__ import annotations

import argparse
import time

from microaction.data.synthetic.procedural import class_counts, write_procedural


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="output folder (must not exist, or be a finished procedural dataset)")
    p.add_argument("--scale", type=float, default=0.1, help="x MA-52's per-class counts (1.0: ~22,500 clips)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subject-disjoint", action="store_true", help="different people in train, val and test")
    p.add_argument("--num-subjects", type=int, default=None, help="default: one per ~60 clips, at least 12")
    p.add_argument("--size", type=int, nargs=2, default=(96, 80), metavar=("HEIGHT", "WIDTH"))
    p.add_argument("--amplitude", type=float, default=1.0, help="scales every movement")
    p.add_argument("--noise", type=float, default=1.0, help="scales the pixel noise")
    p.add_argument("--jitter", type=float, default=1.0, help="scales the camera shake")
    p.add_argument("--crf", type=int, default=23, help="H.264 quality, 0-51, lower keeps more (the CPU recipe: 12)")
    p.add_argument("--no-audio", action="store_true", help="omit the silent AAC track MA-52 clips carry")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    args = p.parse_args(argv)

    start = time.time()
    try:
        counts = class_counts(args.scale)
        print(f"{sum(sum(c) for c in counts)} clips (train/val/test {sum(c[0] for c in counts)}/"
              f"{sum(c[1] for c in counts)}/{sum(c[2] for c in counts)})", flush=True)
        root = write_procedural(
            args.root, scale=args.scale, seed=args.seed, subject_disjoint=args.subject_disjoint,
            num_subjects=args.num_subjects, size=tuple(args.size), amplitude=args.amplitude, noise=args.noise,
            jitter=args.jitter, crf=args.crf, audio=not args.no_audio, workers=args.workers,
        )
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{root} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
