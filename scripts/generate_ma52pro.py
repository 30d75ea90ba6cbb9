#!/usr/bin/env python
"""Write the procedural MA-52-Pro stand-in (docs/ma52pro_standin.md): long clips of the seated figure
performing several micro-actions while its face shows one of five emotions, with face tracks.

    python scripts/generate_ma52pro.py data/ma52pro_procedural
    python scripts/generate_ma52pro.py /tmp/pro --num-train 800 --num-val 200 --num-test 200 --workers 2

Nothing is done if a finished dataset made with the same arguments is already there; one made
with other arguments is refused.
"""

from __future__ import annotations

import argparse
import time

from microaction.data.synthetic.procedural_pro import write_procedural_pro


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="output folder (must not exist, or be a finished stand-in made with these arguments)")
    p.add_argument("--num-train", type=int, default=400, help="training clips")
    p.add_argument("--num-val", type=int, default=100, help="validation clips")
    p.add_argument("--num-test", type=int, default=100, help="test clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=(96, 80), metavar=("HEIGHT", "WIDTH"))
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--min-seconds", type=float, default=5, help="shortest clip")
    p.add_argument("--max-seconds", type=float, default=20, help="longest clip")
    p.add_argument("--num-subjects", type=int, default=None, help="people (default: one per ~50 clips, at least 12)")
    p.add_argument("--amplitude", type=float, default=1.0, help="scales every movement")
    p.add_argument("--noise", type=float, default=1.0, help="scales the pixel noise")
    p.add_argument("--jitter", type=float, default=1.0, help="scales the camera shake")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality, 0-51, lower keeps more")
    p.add_argument("--no-audio", action="store_true", help="omit the silent AAC track")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    args = p.parse_args(argv)

    start = time.time()
    print(f"{args.num_train + args.num_val + args.num_test} clips (train/val/test "
          f"{args.num_train}/{args.num_val}/{args.num_test})", flush=True)
    try:
        root = write_procedural_pro(
            args.root, num_train=args.num_train, num_val=args.num_val, num_test=args.num_test, seed=args.seed,
            size=tuple(args.size), fps=args.fps, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
            num_subjects=args.num_subjects, amplitude=args.amplitude, noise=args.noise, jitter=args.jitter,
            crf=args.crf, audio=not args.no_audio, workers=args.workers,
        )
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{root} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
