#!/usr/bin/env python
"""How fast the data path is, against what the decoder itself allows.

    python scripts/bench_loader.py                              # 12 clips at 1080x1296 (a few minutes)
    python scripts/bench_loader.py --release-size 360x432 --clips 6   # quick look
    python scripts/bench_loader.py --source /data/MA-52 --split val --clips 24   # real clips

Makes (or takes from --source) clips shaped like MA-52's (portrait, 30 fps,
45-75 frames, one keyframe, an AAC track), builds the short-side cache from
them with prepare_ma52's own code, and measures, in this one run on this one
machine:

- decode path: one sample of the datamodule's validation dataset (T=8 centre
  frames decoded, converted to RGB at the short side, centre crop), one process,
  one decoder thread; ``read_frames`` alone is shown beside it;
- floor: the same files fully decoded, no colour conversion, one thread: no
  sampling scheme can cost less per clip without changing the file;
- the speed-up of the cache over the release size (decode path);
- the DataLoader end to end with --workers processes, on the cache.

Per-core figures use the process's CPU time (one decoder thread, so CPU time
is the time of one core), which other jobs on a shared machine disturb less
than wall time; each figure is the best of --repeat rounds. The last line of
output is one JSON object with the headline figures.
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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

try:
    import microaction  # noqa: F401
except ImportError:
    # Lets the script run from a plain checkout without installing the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import av  # noqa: E402
import torch  # noqa: E402

from microaction.data.annotations import list_path, read_list, video_dir  # noqa: E402
from microaction.data.datamodule import MA52DataModule, default_num_workers  # noqa: E402
from microaction.data.layout import write_label_names, write_lists  # noqa: E402
from microaction.data.prepare import EncodeSettings, prepare  # noqa: E402
from microaction.utils.cli import parse_size  # noqa: E402
from microaction.utils.cpus import usable_cpus  # noqa: E402
from microaction.data.sampling import segment_indices  # noqa: E402
from microaction.data.video import read_frames, write_clip  # noqa: E402

SPLIT = "val"


# --- clips ----------------------------------------------------------------------------------


def synthetic_frames(seed: int, num_frames: int, width: int, height: int) -> np.ndarray:
    """A smooth scene drifting past the camera, a moving patch and fresh sensor noise in every
    frame: like camera footage, the detail is mostly fine-grained noise that costs bits at the
    release size and averages away at the cache size."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    cell = max(4, min(width, height) // 24)
    gh, gw = (height + num_frames) // cell + 2, (width + 2 * num_frames) // cell + 2
    coarse = torch.from_numpy(rng.uniform(30, 220, size=(1, 3, gh, gw)).astype(np.float32))
    scene = F.interpolate(coarse, scale_factor=cell, mode="bicubic", align_corners=False)[0]
    scene = scene.permute(1, 2, 0).numpy()
    out = np.empty((num_frames, height, width, 3), np.uint8)
    py, px = height // 3, width // 3
    for t in range(num_frames):
        frame = scene[t : t + height, 2 * t : 2 * t + width] + rng.normal(0, 3, size=(height, width, 1))
        y0 = py + int(height * 0.1 * math.sin(t / 7))
        frame[y0 : y0 + height // 4, px : px + width // 3] += 40
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def _write_one(args) -> str:
    path, seed, n, w, h = args
    write_clip(path, synthetic_frames(seed, n, w, h), fps=30, audio=True, crf=18)
    return str(path)


def make_release(root: Path, clips: int, size: tuple[int, int], frames: tuple[int, int], workers: int) -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(frames[0], frames[1] + 1, size=clips)
    folder = video_dir(root, SPLIT)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"test{i:04d}.mp4", i, int(n), size[0], size[1]) for i, n in enumerate(counts)]
    with ProcessPoolExecutor(max(1, workers)) as pool:
        list(pool.map(_write_one, jobs))
    write_lists(root, SPLIT, [(f"test{i:04d}.mp4", i % 52) for i in range(clips)])
    write_label_names(root)


def take_release(source: Path, split: str, clips: int, root: Path) -> None:
    """Link the first ``clips`` clips of a real release into a one-split layout."""
    records = read_list(list_path(source, split))[:clips]
    folder = video_dir(root, SPLIT)
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        os.symlink(video_dir(source, split) / r.name, folder / r.name)
    write_lists(root, SPLIT, [(r.name, r.label) for r in records])
    write_label_names(root)


# --- measurements -----------------------------------------------------------------------------


def _datamodule(root: Path, short_side: int, workers: int, batch_size: int) -> MA52DataModule:
    dm = MA52DataModule(str(root), num_segments=8, input_size=224, short_side=short_side, batch_size=batch_size,
                        num_workers=workers, decode_threads=1, on_decode_error="raise", manifest="auto")
    dm.setup("validate")
    return dm


def cpu_rate(fn, items, repeat: int) -> float:
    """Items per CPU-second of this process, best of ``repeat`` rounds."""
    best = math.inf
    for _ in range(repeat):
        start = time.process_time()
        for item in items:
            fn(item)
        best = min(best, time.process_time() - start)
    return len(items) / max(best, 1e-9)


def decode_path_rate(root: Path, short_side: int, repeat: int) -> tuple[float, float]:
    """(read_frames alone, the dataset's whole sample: decode, tensor, centre crop) in clips per CPU-second."""
    ds = _datamodule(root, short_side, 0, 1).datasets[SPLIT]
    paths = [ds.video_root / r.name for r in ds.records]
    known = [ds._known_frames(r.name, p) for r, p in zip(ds.records, paths)]

    def decode(i: int):
        read_frames(paths[i], lambda n: segment_indices(n, ds.num_segments, False), short_side=short_side,
                    threads=1, num_frames=known[i])

    items = list(range(len(ds)))
    return cpu_rate(decode, items, repeat), cpu_rate(ds.__getitem__, items, repeat)


def floor_decode(path: Path) -> int:
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        for packet in container.demux(stream):
            n += len(packet.decode())
    return n


def floor_rate(root: Path, repeat: int) -> float:
    paths = sorted(p for p in video_dir(root, SPLIT).iterdir() if p.suffix == ".mp4")
    return cpu_rate(floor_decode, paths, repeat)


def loader_rate(root: Path, short_side: int, workers: int, batch_size: int, min_clips: int) -> float:
    dm = _datamodule(root, short_side, workers, batch_size)
    loader = dm.val_dataloader()
    for _ in loader:  # starts the (persistent) workers
        pass
    epochs = max(1, math.ceil(min_clips / len(dm.datasets[SPLIT])))
    seen = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            seen += batch["video"].shape[0]
    return seen / (time.perf_counter() - start)


def mean_size_mb(root: Path) -> float:
    sizes = [p.stat().st_size for p in video_dir(root, SPLIT).iterdir() if p.suffix == ".mp4"]
    return sum(sizes) / len(sizes) / 1e6


def clip_shape(root: Path) -> str:
    path = next(p for p in sorted(video_dir(root, SPLIT).iterdir()) if p.suffix == ".mp4")
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return f"{s.codec_context.width}x{s.codec_context.height}"


# --- main -------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--release-size", type=parse_size, default=(1080, 1296), help="WIDTHxHEIGHT (default 1080x1296)")
    p.add_argument("--frames", type=int, nargs=2, default=(45, 75), metavar=("MIN", "MAX"))
    p.add_argument("--short-side", type=int, default=256, help="cache short side (default 256)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the datamodule's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3, help="rounds per figure; the best counts")
    p.add_argument("--loader-clips", type=int, default=96, help="clips the DataLoader measurement reads")
    p.add_argument("--source", type=Path, default=None, help="take clips from this release root instead")
    p.add_argument("--split", default="val", help="split of --source to take clips from")
    p.add_argument("--work-dir", type=Path, default=None, help="keep the clips here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.clips < 1 or not 1 <= args.frames[0] <= args.frames[1]:
        p.error("--clips must be >= 1 and --frames MIN <= MAX")
    workers = default_num_workers() if args.workers is None else args.workers
    # As in a DataLoader worker: one torch thread, so per-core figures are per core.
    torch.set_num_threads(1)
    cpus = usable_cpus()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    release, cache = work / "release", work / f"cache{args.short_side}"
    try:
        t0 = time.perf_counter()
        reused = list_path(release, SPLIT).is_file()
        if not reused:
            if args.source:
                take_release(args.source, args.split, args.clips, release)
            else:
                make_release(release, args.clips, args.release_size, tuple(args.frames), cpus or 1)
        t1 = time.perf_counter()
        # The release made from --source links to its clips, so prepare may read them there.
        summary = prepare(release, cache, EncodeSettings(short_side=args.short_side), splits=[SPLIT],
                          workers=cpus, report=work / "prepare_report.txt", show_progress=False,
                          link_roots=[args.source] if args.source else ())
        if not summary.ok:
            print("\n".join(summary.problems), file=sys.stderr)
            return 1
        t2 = time.perf_counter()

        rows = {}
        for name, root in (("release", release), ("cache", cache)):
            rows[name] = {"shape": clip_shape(root), "mb": mean_size_mb(root), "floor": floor_rate(root, args.repeat)}
            rows[name]["read"], rows[name]["decode"] = decode_path_rate(root, args.short_side, args.repeat)
        loader = loader_rate(cache, args.short_side, workers, args.batch_size, args.loader_clips)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    rel, cac = rows["release"], rows["cache"]
    result = {
        "decode_clips_per_s_per_core": round(cac["decode"], 2),
        "floor_clips_per_s_per_core": round(cac["floor"], 2),
        "decode_over_floor": round(cac["floor"] / cac["decode"], 3),
        "cache_speedup": round(cac["decode"] / rel["decode"], 2),
        "loader_clips_per_s": round(loader, 2),
        "release_decode_clips_per_s_per_core": round(rel["decode"], 2),
        "release_floor_clips_per_s_per_core": round(rel["floor"], 2),
        "release_decode_over_floor": round(rel["floor"] / rel["decode"], 3),
        "read_frames_over_floor": round(cac["floor"] / cac["read"], 3),
        "release_read_frames_over_floor": round(rel["floor"] / rel["read"], 3),
        "loader_workers": workers,
        "cpu_cores": cpus,
    }
    origin = f"from {args.source}" if args.source else "synthetic"
    print(f"machine: {cpus} CPU cores ({os.uname().machine}), PyAV {av.__version__}, "
          f"libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}")
    print(f"{args.clips} clips ({origin}, {args.frames[0]}-{args.frames[1]} frames, T=8 centre frames, "
          f"short side {args.short_side}); " + ("reused from --work-dir" if reused else
                                                f"made in {t1 - t0:.1f} s, cache built in {t2 - t1:.1f} s"))
    print()
    print("| clips | size | MB/clip | floor | read_frames | decode path (sample) | read_frames / floor "
          "| decode path / floor |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['shape']} | {r['mb']:.2f} | {r['floor']:.1f} | {r['read']:.1f} | {r['decode']:.1f} | "
              f"{r['floor'] / r['read']:.2f}x | {r['floor'] / r['decode']:.2f}x |")
    print("(clips/s per core; cost ratios: how much more CPU per clip than the floor)")
    print()
    print(f"cache speed-up (decode path, cache over release): {result['cache_speedup']:.1f}x")
    print(f"DataLoader, {workers} workers, batch {args.batch_size}, cache: {loader:.1f} clips/s (wall)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
