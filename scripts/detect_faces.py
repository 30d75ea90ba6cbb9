#!/usr/bin/env python
"""Write the face track of every listed video of an MA-52-Pro root (faces_<split>/<video>.csv).

    pip install -e ".[faces]"                        # OpenCV with its bundled Haar cascade
    python scripts/detect_faces.py /data/MA-52-Pro
    python scripts/detect_faces.py /data/MA-52-Pro --splits train val --workers 8 --every 2

A rerun of the same command continues where an interrupted (or killed) one stopped: videos whose
track exists are skipped. Exit status: 0 all good, 1 problems with videos (missing or undecodable,
listed), 2 stopped (bad arguments or list lines, the detector's package missing, a destination that
is read-only, full or holds a file this tool did not write), 130 interrupted.
See docs/ma52pro_faces.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from microaction.data.annotations import SPLITS
    from microaction.data.face_detection import DEFAULT_SHORT_SIDE, DETECTORS, DetectFacesError, detect_tracks
except ImportError:
    # Lets the script run from a plain checkout without installing the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from microaction.data.annotations import SPLITS
    from microaction.data.face_detection import DEFAULT_SHORT_SIDE, DETECTORS, DetectFacesError, detect_tracks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="detect_faces",
                                description="Detect the face in every frame of an MA-52-Pro root's videos and write "
                                            "one face track per video (faces_<split>/<video>.csv).")
    p.add_argument("root", help="the MA-52-Pro root (list files, videos_<split>/); tracks are written beside them")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    p.add_argument("--workers", type=int, default=None, help="processes (default: the CPU count)")
    p.add_argument("--every", type=int, default=1,
                   help="run the detector on every K-th frame only (default 1: every frame); the frames between "
                        "are filled when the track is read")
    p.add_argument("--detector", default="haar", choices=DETECTORS,
                   help="haar: OpenCV's Haar cascade, boxes only (the faces extra); mtcnn: facenet-pytorch's MTCNN, "
                        "boxes and five landmarks (installed by hand, see the docs)")
    p.add_argument("--short-side", type=int, default=DEFAULT_SHORT_SIDE,
                   help=f"frames are scaled down to this short side for detection (default {DEFAULT_SHORT_SIDE}, 0: as "
                        f"stored; the tracks hold fractions of the frame, so they fit any size)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = detect_tracks(args.root, splits=args.splits, detector=args.detector, every=args.every,
                                workers=args.workers, short_side=args.short_side,
                                show_progress=not args.no_progress)
    except DetectFacesError as err:
        print(f"detect_faces: stopped: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # A failure no check foresaw: still one line and the status of a run that had to stop.
        print(f"detect_faces: stopped: {type(err).__name__}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detect_faces: interrupted; rerun the same command to continue (finished tracks are kept)",
              file=sys.stderr)
        return 130
    out = sys.stdout if summary.ok else sys.stderr
    print(f"detect_faces: {summary.written} tracks written, {summary.skipped} already done, "
          f"{len(summary.problems)} problems", file=out)
    if summary.sampled:
        print(f"  a face in {summary.with_face} of {summary.sampled} frames looked at "
              f"({100 * summary.with_face / summary.sampled:.1f}%; {summary.frames} frames decoded)", file=out)
    for note in summary.notes:
        print(f"  note: {note}", file=out)
    for problem in summary.problems[:20]:
        print(f"  problem: {problem}", file=out)
    if len(summary.problems) > 20:
        print(f"  ... and {len(summary.problems) - 20} more", file=out)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
