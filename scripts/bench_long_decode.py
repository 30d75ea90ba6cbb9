#!/usr/bin/env python
"""Sparse frames from long clips: seeking to keyframes against decoding from the start.

    python scripts/bench_long_decode.py                          # 60 s clips at 160x120, 25 fps
    python scripts/bench_long_decode.py --seconds 120 --size 256x308 --repeats 3
    python scripts/bench_long_decode.py --work-dir /tmp/long     # keep (and reuse) the clips

Writes two H.264 clips of --seconds at --fps (MA-52-Pro's clips run from 5 s to
over 100 s): one with a keyframe every --gop-seconds, one with a single keyframe,
as MA-52's release has. For each it reads --frames uniformly spaced frames (the
centres of as many equal segments, as the evaluation sampler picks them) with
``read_frames`` three ways:

- sequential: ``seek=False``, every frame from the start up to the last needed;
- seek: ``seek=True``, only the stretch from each needed frame's keyframe to it;
- auto: the default (``seek=None``), which chooses between the two;

and, as the floor, plain PyAV decoding exactly the frames the seeking path
must decode (the same stretches, no colour conversion, no checks): no reader of
this file can decode fewer. Seek and sequential must return identical frames,
or the script fails. Figures are milliseconds of the process's CPU time per
read (one decoder thread, so CPU time is one core's time), best of --repeats.
The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import microaction  # noqa: F401
except ImportError:
    # Lets the script run from a plain checkout without installing the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import av  # noqa: E402

from microaction.data.sampling import segment_indices  # noqa: E402
from microaction.utils.cli import parse_size  # noqa: E402
from microaction.utils.cpus import usable_cpus  # noqa: E402
from microaction.data.video import DecodeStats, read_frames, write_clip  # noqa: E402

KINDS = ("gop", "one_keyframe")


# --- clips ----------------------------------------------------------------------------------


def synthetic_frames(num_frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """A textured scene panning past the camera with fresh noise in every frame, so each P-frame
    carries real motion and detail, as camera footage does."""
    rng = np.random.default_rng(seed)
    tile = rng.integers(40, 216, size=(height, 2 * width, 3)).astype(np.int16)
    # smooth the tile a little so the encoder sees structure, not only noise
    tile = ((tile + np.roll(tile, 1, 0) + np.roll(tile, 1, 1) + np.roll(tile, (1, 1), (0, 1))) // 4).astype(np.int16)
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        shift = (3 * t) % (2 * width)
        frame = np.roll(tile, -shift, axis=1)[:, :width] + rng.integers(-3, 4, size=(height, width, 1))
        out[t] = np.clip(frame, 0, 255)
    return out


def make_clips(folder: Path, seconds: float, fps: int, size: tuple[int, int],
               gop_seconds: float) -> tuple[dict[str, Path], bool]:
    """The two clips in ``folder`` by kind (reused when present with the same settings), and whether
    any had to be written."""
    n = max(1, round(seconds * fps))
    gop = max(1, round(gop_seconds * fps))
    w, h = size
    paths = {"gop": folder / f"long_{w}x{h}_{fps}fps_{n}f_gop{gop}.mp4",
             "one_keyframe": folder / f"long_{w}x{h}_{fps}fps_{n}f_gop0.mp4"}
    missing = [k for k, p in paths.items() if not p.is_file()]
    if missing:
        frames = synthetic_frames(n, w, h)
        folder.mkdir(parents=True, exist_ok=True)
        for kind in missing:
            write_clip(paths[kind], frames, fps=fps, gop=gop if kind == "gop" else None)
    return paths, bool(missing)


def keyframes(path: Path) -> tuple[int, int]:
    """(packets, keyframe packets) of the clip's video stream."""
    with av.open(str(path)) as c:
        flags = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
    return len(flags), sum(flags)


# --- the floor: plain PyAV, the same stretches, no conversion ----------------------------------


def floor_decode(path: Path, indices: np.ndarray) -> int:
    """Decode only the stretches a seeking reader must (from each needed frame's keyframe, or on from
    the previous needed frame when no keyframe lies between), converting nothing; returns frames
    decoded. Clips written here have no B-frames, so decode order is presentation order."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        meta = [(p.pts, p.is_keyframe) for p in c.demux(stream) if p.size]
    pts = [m[0] for m in meta]
    keys = [i for i, m in enumerate(meta) if m[1]]
    decoded = 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        at = None  # the frame the open stretch delivers next
        frames = None
        for k in sorted(set(indices.tolist())):
            key = max(i for i in keys if i <= k)
            if at is None or key > at:
                c.seek(pts[key], stream=stream)
                stream.codec_context.flush_buffers()
                frames = c.decode(stream)
                at = key
            for frame in frames:
                decoded += 1
                at += 1
                if frame.pts == pts[k]:
                    break
    return decoded


# --- measurements ------------------------------------------------------------------------------


def cpu_ms(fn, repeats: int) -> float:
    """CPU milliseconds of one call of ``fn``, best of ``repeats``."""
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best * 1e3


def measure(path: Path, num_frames: int, repeats: int, threads: int) -> dict:
    packets, keys = keyframes(path)
    indices = segment_indices(packets, num_frames, False)

    def read(seek, stats=None):
        return read_frames(path, lambda n: segment_indices(n, num_frames, False), threads=threads,
                           num_frames=packets, seek=seek, stats=stats)

    stats = {name: DecodeStats() for name in ("sequential", "seek", "auto")}
    sequential, seeking = read(False, stats["sequential"]), read(True, stats["seek"])
    read(None, stats["auto"])
    if not np.array_equal(sequential, seeking):
        raise SystemExit(f"{path}: seeking returned other frames than sequential decoding")
    return {
        "packets": packets,
        "keyframes": keys,
        "sequential_ms": cpu_ms(lambda: read(False), repeats),
        "seek_ms": cpu_ms(lambda: read(True), repeats),
        "auto_ms": cpu_ms(lambda: read(None), repeats),
        "floor_ms": cpu_ms(lambda: floor_decode(path, indices), repeats),
        "sequential_decoded": stats["sequential"].decoded,
        "seek_decoded": stats["seek"].decoded,
        "floor_decoded": floor_decode(path, indices),
        "seek_passes": stats["seek"].passes,
        "auto_mode": stats["auto"].mode,
    }


# --- main -------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="clip length (default 60)")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--size", type=parse_size, default=(160, 120), help="WIDTHxHEIGHT (default 160x120)")
    p.add_argument("--gop-seconds", type=float, default=2.0, help="keyframe spacing of the first clip (default 2)")
    p.add_argument("--frames", type=int, default=16, help="frames read per clip (default 16)")
    p.add_argument("--repeats", type=int, default=5, help="rounds per figure; the best counts")
    p.add_argument("--threads", type=int, default=1, help="decoder threads (default 1)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep the clips here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.fps < 1 or args.gop_seconds <= 0:
        p.error("--seconds, --fps and --gop-seconds must be positive")
    if args.frames < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--frames, --repeats and --threads must be >= 1")
    cpus = usable_cpus()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_long_decode_"))
    try:
        t0 = time.perf_counter()
        paths, made = make_clips(work, args.seconds, args.fps, args.size, args.gop_seconds)
        t1 = time.perf_counter()
        rows = {kind: measure(paths[kind], args.frames, args.repeats, args.threads) for kind in KINDS}
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    gop, one = rows["gop"], rows["one_keyframe"]
    result = {
        "seek_speedup": round(gop["sequential_ms"] / gop["seek_ms"], 2),
        "seek_over_floor": round(gop["seek_ms"] / gop["floor_ms"], 3),
        "auto_speedup": round(gop["sequential_ms"] / gop["auto_ms"], 2),
        "one_keyframe_auto_over_sequential": round(one["auto_ms"] / one["sequential_ms"], 3),
        "seconds": args.seconds,
        "fps": args.fps,
        "size": f"{args.size[0]}x{args.size[1]}",
        "frames": args.frames,
        "gop_seconds": args.gop_seconds,
        "threads": args.threads,
        "cpu_cores": cpus,
    }
    for kind, r in rows.items():
        for key, value in r.items():
            result[f"{kind}_{key}"] = round(value, 2) if isinstance(value, float) else value

    print(f"machine: {cpus} CPU cores ({os.uname().machine}), PyAV {av.__version__}, "
          f"libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}")
    print(f"two {args.seconds:g} s clips at {args.size[0]}x{args.size[1]}, {args.fps} fps "
          f"({gop['packets']} frames), {args.frames} frames read (segment centres), {args.threads} decoder "
          f"thread(s); clips {f'made in {t1 - t0:.1f} s' if made else 'reused from --work-dir'}")
    print()
    print("| clip | keyframes | sequential | seek | auto (chose) | floor | speed-up | seek / floor "
          "| frames decoded: sequential / seek / floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, r in rows.items():
        name = f"keyframe every {args.gop_seconds:g} s" if kind == "gop" else "one keyframe"
        print(f"| {name} | {r['keyframes']} | {r['sequential_ms']:.1f} | {r['seek_ms']:.1f} | "
              f"{r['auto_ms']:.1f} ({r['auto_mode']}) | {r['floor_ms']:.1f} | "
              f"{r['sequential_ms'] / r['seek_ms']:.2f}x | {r['seek_ms'] / r['floor_ms']:.2f}x | "
              f"{r['sequential_decoded']} / {r['seek_decoded']} / {r['floor_decoded']} |")
    print(f"(ms of CPU per read of {args.frames} frames, best of {args.repeats}; speed-up = sequential / seek; "
          f"floor = plain PyAV decoding the same stretches, nothing converted)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
