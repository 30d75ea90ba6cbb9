#!/usr/bin/env python
"""Sliding-window frames of long videos: memory and speed of the streamed decode behind prediction.

    python scripts/bench_predict.py                        # 1, 5 and 10 minute videos, 64x48, 10 fps
    python scripts/bench_predict.py --model                # plus a tiny random MANet-R10 on every window
    python scripts/bench_predict.py --minutes 1 30 --work-dir /tmp/predict   # keep (and reuse) the videos

Writes one H.264 video per --minutes at --size and --fps with a keyframe every
--gop-seconds (a recorded interview), plus a one-minute video with a single
keyframe. Over each it lays the default windows (``timeline.plan_windows``:
DEFAULT_WINDOW_S every DEFAULT_STRIDE_S, --frames sampled per window) and
measures, each in a fresh process so that its peak memory is its own:

- decode: the floor, plain PyAV decoding every frame once, nothing converted;
- stream: ``probe``, the plan and ``iter_window_frames`` (one forward pass, frames
  kept only while a window still needs them), with --model also a MANet-R10 at
  --model-size px (random weights, batches of --batch windows, one thread);
- per window: ``read_frames`` once per window (its default ``seek=None``: it seeks
  to the keyframe before a window when that pays), the alternative to one pass.

Figures: seconds of the process's CPU time (one decoder thread), windows per
second of the stream, each time over decode's, and the process's peak resident
memory, also less the peak after its imports (what the work itself added). The
peak is the kernel's high-water mark of the process's own memory (``VmHWM`` in
/proc/self/status); ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is used only
where that does not exist, since on Linux it carries the parent's peak over
fork and exec (every child would report the benchmark's own 100 MB). The
streamed peak must not grow with the video's length, or the script fails. The
last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
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

from microaction.data.video import probe, read_frames, write_clip  # noqa: E402
from microaction.timeline import (  # noqa: E402
    DEFAULT_STRIDE_S,
    DEFAULT_WINDOW_S,
    StreamStats,
    iter_window_frames,
    plan_windows,
    sample_indices,
)
from microaction.utils.cli import parse_size  # noqa: E402
from microaction.utils.cpus import usable_cpus  # noqa: E402

MODES = ("decode", "stream", "per_window")
# The plan and the frame indices grow with the number of windows (here about 0.1 MB a minute of video);
# frames held beyond what the windows need would grow far faster (9 KB a frame at 64x48, 50 MB for 10
# minutes at 10 fps). A spread of the streamed peak over the lengths beyond this fails the run.
RSS_SLACK_MB = 8.0


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB: VmHWM where /proc has it, else ru_maxrss
    (kilobytes on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


# --- videos ------------------------------------------------------------------------------------------


def write_video(path: Path, seconds: float, fps: int, size: tuple[int, int], gop: int | None, seed: int = 0) -> Path:
    """A textured scene panning past the camera with fresh noise in every frame (real motion in every
    P-frame); an existing file of that name is reused."""
    if path.is_file():
        return path
    w, h = size
    n = max(1, round(seconds * fps))
    rng = np.random.default_rng(seed)
    tile = rng.integers(40, 216, size=(h, 2 * w, 3)).astype(np.int16)
    frames = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        shift = (2 * t) % (2 * w)
        frames[t] = np.clip(np.roll(tile, -shift, axis=1)[:, :w] + rng.integers(-4, 5, size=(h, w, 1)), 0, 255)
    return write_clip(path, frames, fps=fps, gop=gop)


# --- the measured work, in a child process -------------------------------------------------------------


def decode_plain(path: Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        count = sum(1 for _ in container.decode(stream))
    return {"decoded": count}


def make_model(frames: int):
    import torch

    from microaction.models import create_model

    torch.set_num_threads(1)
    model = create_model("manet", depth=10, num_segments=frames, num_classes=52, embed_dim=None, pretrained=False)
    return model.eval()


def run_model(model, clips: list[np.ndarray], size: int) -> None:
    import torch

    from microaction.data.transforms import normalize

    batch = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3)  # [N, T, 3, H, W]
    h, w = batch.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    batch = normalize(batch[..., top : top + size, left : left + size])
    with torch.inference_mode():
        model(batch)["logits"].softmax(-1)


def stream(path: Path, frames: int, model, model_size: int | None, batch: int) -> dict:
    info = probe(path)
    windows = plan_windows(info.frames, info.fps, DEFAULT_WINDOW_S, DEFAULT_STRIDE_S)
    indices = sample_indices(windows, frames)
    stats = StreamStats()
    pending: list[np.ndarray] = []
    for _, clip in iter_window_frames(path, windows, indices, short_side=model_size, stats=stats):
        if model is None:
            continue
        pending.append(clip)
        if len(pending) == batch:
            run_model(model, pending, model_size)
            pending = []
    if model is not None and pending:
        run_model(model, pending, model_size)
    return {"frames": info.frames, "windows": len(windows), "decoded": stats.decoded, "converted": stats.converted,
            "max_held": stats.max_held}


def per_window(path: Path, frames: int) -> dict:
    info = probe(path)
    windows = plan_windows(info.frames, info.fps, DEFAULT_WINDOW_S, DEFAULT_STRIDE_S)
    for idx in sample_indices(windows, frames):
        read_frames(path, lambda n, idx=idx: idx, num_frames=info.frames)
    return {"windows": len(windows)}


def child(args) -> int:
    # the model is built before the clock starts: its weights belong to the baseline, not to the work
    model = make_model(args.frames) if args.mode == "stream" and args.model_size else None
    baseline = peak_rss_mb()
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    if args.mode == "decode":
        out = decode_plain(args.path)
    elif args.mode == "stream":
        out = stream(args.path, args.frames, model, args.model_size, args.batch)
    else:
        out = per_window(args.path, args.frames)
    out.update(cpu_s=time.process_time() - start_cpu, wall_s=time.perf_counter() - start_wall,
               rss_base_mb=baseline, rss_peak_mb=peak_rss_mb())
    print(json.dumps(out))
    return 0


def measure(path: Path, mode: str, args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--path", str(path),
               "--frames", str(args.frames), "--batch", str(args.batch)]
    if args.model and mode == "stream":
        command += ["--model", "--model-size", str(args.model_size)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{mode} on {path} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- main ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 5.0, 10.0], help="video lengths (default 1 5 10)")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--size", type=parse_size, default=(64, 48), help="WIDTHxHEIGHT (default 64x48)")
    p.add_argument("--gop-seconds", type=float, default=2.0, help="keyframe spacing (default 2)")
    p.add_argument("--frames", type=int, default=8, help="frames sampled per window, T (default 8)")
    p.add_argument("--model", action="store_true", help="run a tiny random MANet-R10 on every window")
    p.add_argument("--model-size", type=int, default=32, help="the model's input side in px (default 32)")
    p.add_argument("--batch", type=int, default=8, help="windows per model batch (default 8)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep the videos here (default: a temporary folder)")
    p.add_argument("--child", choices=MODES, dest="mode", help=argparse.SUPPRESS)
    p.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mode:
        args.model_size = args.model_size if args.model else None
        return child(args)
    if min(args.minutes) <= 0 or args.fps < 1 or args.gop_seconds <= 0:
        p.error("--minutes, --fps and --gop-seconds must be positive")
    if args.frames < 1 or args.batch < 1 or args.model_size < 16:
        p.error("--frames and --batch must be >= 1, --model-size >= 16")
    if args.model and min(args.size) < args.model_size:
        p.error(f"--size {args.size[0]}x{args.size[1]} is smaller than --model-size {args.model_size}")
    cpus = usable_cpus()
    w, h = args.size
    gop = max(1, round(args.gop_seconds * args.fps))

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_predict_"))
    rows = []
    try:
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        videos = [(f"{m:g} min", write_video(work / f"video_{w}x{h}_{args.fps}fps_{m:g}min_gop{gop}.mp4",
                                               60 * m, args.fps, args.size, gop)) for m in args.minutes]
        videos.append(("1 min, one keyframe", write_video(work / f"video_{w}x{h}_{args.fps}fps_1min_gop0.mp4",
                                                           60, args.fps, args.size, None)))
        made_s = time.perf_counter() - t0
        for name, path in videos:
            row = {"video": name, **{mode: measure(path, mode, args) for mode in MODES}}
            rows.append(row)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    def growth(row):
        return row["stream"]["rss_peak_mb"] - row["stream"]["rss_base_mb"]

    gop_rows = rows[:-1]
    spread = max(growth(r) for r in gop_rows) - min(growth(r) for r in gop_rows)
    result = {
        "stream_over_decode": {r["video"]: round(r["stream"]["cpu_s"] / r["decode"]["cpu_s"], 3) for r in rows},
        "per_window_over_decode": {r["video"]: round(r["per_window"]["cpu_s"] / r["decode"]["cpu_s"], 3)
                                   for r in rows},
        "windows_per_s": {r["video"]: round(r["stream"]["windows"] / r["stream"]["cpu_s"], 1) for r in rows},
        "stream_peak_rss_mb": {r["video"]: round(r["stream"]["rss_peak_mb"], 1) for r in rows},
        "stream_rss_growth_mb": {r["video"]: round(growth(r), 1) for r in rows},
        "stream_max_frames_held": {r["video"]: r["stream"]["max_held"] for r in rows},
        "rss_growth_spread_mb": round(spread, 2),
        "rss_source": "VmHWM" if Path("/proc/self/status").is_file() else "ru_maxrss",
        "model": "manet depth=10 random" if args.model else None,
        "model_size": args.model_size if args.model else None,
        "fps": args.fps,
        "size": f"{w}x{h}",
        "gop_seconds": args.gop_seconds,
        "window_s": DEFAULT_WINDOW_S,
        "stride_s": DEFAULT_STRIDE_S,
        "frames": args.frames,
        "cpu_cores": cpus,
    }

    print(f"machine: {cpus} CPU cores ({os.uname().machine}), PyAV {av.__version__}, "
          f"libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}")
    print(f"videos at {w}x{h}, {args.fps} fps, keyframe every {args.gop_seconds:g} s (made in {made_s:.1f} s); windows "
          f"of {DEFAULT_WINDOW_S:g} s every {DEFAULT_STRIDE_S:g} s, {args.frames} frames each"
          + (f"; stream includes MANet-R10 at {args.model_size} px, batches of {args.batch}" if args.model else ""))
    print()
    print("| video | frames | windows | decode (s) | stream (s) | stream / decode | windows/s | per window / decode "
          "| stream peak RSS (MB) | over imports (MB) | frames held (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d, s, pw = r["decode"], r["stream"], r["per_window"]
        print(f"| {r['video']} | {s['frames']} | {s['windows']} | {d['cpu_s']:.2f} | {s['cpu_s']:.2f} | "
              f"{s['cpu_s'] / d['cpu_s']:.2f}x | {s['windows'] / s['cpu_s']:.0f} | {pw['cpu_s'] / d['cpu_s']:.2f}x | "
              f"{s['rss_peak_mb']:.1f} | {growth(r):.1f} | {s['max_held']} |")
    print("(CPU seconds, one decoder thread; decode = plain PyAV decoding every frame once; per window = read_frames "
          "once per window; RSS = peak resident memory (VmHWM) of a fresh process per measurement, over imports = "
          "less its peak after the imports" + (" and the model's construction)" if args.model else ")"))
    print(json.dumps(result))
    if spread > RSS_SLACK_MB:
        print(f"streamed peak memory grows with the video's length: {spread:.1f} MB between the lengths",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
