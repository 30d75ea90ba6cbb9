#!/usr/bin/env python
"""Verify a downloaded MA-52 release and transcode it to a fast cache in the official layout.

    python scripts/prepare_ma52.py /data/MA-52                       # verify only
    python scripts/prepare_ma52.py /data/MA-52 /fast/ma52_256        # verify + cache (short side 256)
    python train.py experiment=ma52_manet data.root=/fast/ma52_256

A rerun of the same command continues where an interrupted (or killed) one stopped.
Exit status: 0 all good, 1 problems in the source (listed in the report), 2 stopped
(bad arguments, a list name or link leading outside SOURCE, a destination that is
read-only, full or holds a file this tool did not write), 130 interrupted.
See docs/data_preparation.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from microaction.data.annotations import SPLITS
    from microaction.data.prepare import EncodeSettings, PrepareError, prepare
except ImportError:
    # Lets the script run from a plain checkout without installing the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from microaction.data.annotations import SPLITS
    from microaction.data.prepare import EncodeSettings, PrepareError, prepare


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prepare_ma52",
        description="Verify an MA-52 release and transcode it to a small cache in the official layout.",
    )
    p.add_argument("source", help="the downloaded release root (list files, videos_train/ ...)")
    p.add_argument("dest", nargs="?", help="where to write the cache; omit to only verify")
    p.add_argument("--short-side", type=int, default=256, help="short side of the cached clips (default 256)")
    p.add_argument("--gop", type=int, default=16, help="keyframe interval in frames (default 16)")
    p.add_argument("--crf", type=int, default=23, help="x264 quality, lower is better (default 23)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    p.add_argument("--tune", default=None, help="x264 tune, e.g. fastdecode (default none)")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    p.add_argument("--workers", type=int, default=None, help="processes (default: the CPU count)")
    p.add_argument("--drop-unreadable", action="store_true",
                   help="write the destination lists without the unreadable or missing clips (they stay in the report)")
    p.add_argument("--report", default=None, help="report file (default DEST/prepare_report.txt)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = EncodeSettings(args.short_side, args.gop, args.crf, args.preset, args.tune)
    try:
        summary = prepare(args.source, args.dest, settings, splits=args.splits, workers=args.workers,
                          drop_unreadable=args.drop_unreadable, report=args.report,
                          show_progress=not args.no_progress)
    except PrepareError as err:
        print(f"prepare_ma52: stopped: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # A failure no check above foresaw: still one line and the status of a run that had to stop.
        print(f"prepare_ma52: stopped: {type(err).__name__}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prepare_ma52: interrupted; rerun the same command to continue (finished clips are kept)",
              file=sys.stderr)
        return 130
    out = sys.stdout if summary.ok else sys.stderr
    print(f"prepare_ma52: {summary.done} clips processed, {summary.skipped} already done, "
          f"{len(summary.problems)} problems", file=out)
    for note in summary.notes:
        print(f"  note: {note}", file=out)
    for problem in summary.problems[:20]:
        print(f"  problem: {problem}", file=out)
    if len(summary.problems) > 20:
        print(f"  ... and {len(summary.problems) - 20} more (see the report)", file=out)
    if not summary.ok:
        if args.dest and not summary.wrote_layout:
            print("  the destination lists were NOT written: fix the source and rerun (finished clips are kept), "
                  "or rerun with --drop-unreadable to leave these clips out", file=out)
        return 1
    if args.dest:
        print(f"  ready: train with data.root={Path(args.dest).expanduser().resolve()}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
