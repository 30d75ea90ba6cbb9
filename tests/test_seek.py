"""read_frames reaching sparse frames by seeking to keyframes: the same bytes as decoding from the start.

Clips are real H.264 written here. Every frame carries its index as an 8-bit code (eight 8x8 blocks along
the top edge, dark = 0, light = 1) over a texture that moves, so P- and B-frames carry real motion; the code
tells which frame came back independently of the reader. Seek and sequential reads of the same clip must
be equal byte for byte; ``DecodeStats`` counts what the decoder delivered.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import coded_frames, read_codes

from microaction.data import video
from microaction.data.sampling import segment_indices
from microaction.data.video import DecodeStats, read_frames, write_clip

FPS = 25
N = 200  # 8 s
W, H = 64, 48
BITS = 8
REPO = Path(__file__).resolve().parents[1]


def packets(path) -> list[tuple]:
    """(pts, dts, keyframe) of the video packets, in file order, as plain PyAV demuxes them."""
    with av.open(str(path)) as c:
        return [(p.pts, p.dts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]


def keyframe_positions(path) -> list[int]:
    return [i for i, (_, _, key) in enumerate(packets(path)) if key]


def has_reordered_frames(path) -> bool:
    pts = [p[0] for p in packets(path)]
    return any(b < a for a, b in zip(pts, pts[1:]))


# gop in frames (None: a single keyframe), B-frames in a row
VARIANTS = {
    "gop1": (1, 0),
    "gop2s": (2 * FPS, 0),
    "gop2s_bframes": (2 * FPS, 3),
    "gop12_bframes": (12, 2),
    "one_keyframe": (None, 0),
    "one_keyframe_bframes": (None, 3),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seek")
    frames = coded_frames(N)
    return {name: write_clip(folder / f"{name}.mp4", frames, fps=FPS, gop=gop, bframes=bf, crf=16)
            for name, (gop, bf) in VARIANTS.items()}


def test_clips_are_what_they_claim(clips):
    assert keyframe_positions(clips["gop1"]) == list(range(N))
    assert keyframe_positions(clips["gop2s"]) == [0, 50, 100, 150]
    assert keyframe_positions(clips["gop2s_bframes"]) == [0, 50, 100, 150]
    assert keyframe_positions(clips["one_keyframe"]) == [0]
    assert keyframe_positions(clips["one_keyframe_bframes"]) == [0]
    for name, (_, bf) in VARIANTS.items():
        assert has_reordered_frames(clips[name]) == (bf > 0), name


PATTERNS = {
    "first": lambda n: [0],
    "last": lambda n: [n - 1],
    "repeated": lambda n: [7, 7, 7, 130, 130],
    "unsorted": lambda n: [150, 3, 99, 3, 51, 0],
    "around_keyframes": lambda n: [49, 50, 51, 99, 100, 149, 150],
    "segment_centres": lambda n: segment_indices(n, 16, False),
    "all": lambda n: np.arange(n),
}


@pytest.mark.parametrize("manifest", [False, True], ids=["counted", "manifest"])
@pytest.mark.parametrize("clip", list(VARIANTS))
def test_seek_returns_the_same_bytes_as_sequential(clips, clip, manifest):
    path = clips[clip]
    count = N if manifest else None
    for name, pick in PATTERNS.items():
        wanted = [int(i) for i in pick(N)]
        sequential = read_frames(path, pick, num_frames=count, seek=False)
        forced, auto = DecodeStats(), DecodeStats()
        seeking = read_frames(path, pick, num_frames=count, seek=True, stats=forced)
        chosen = read_frames(path, pick, num_frames=count, stats=auto)
        assert read_codes(sequential) == wanted, (clip, name)
        assert np.array_equal(seeking, sequential), (clip, name)
        assert np.array_equal(chosen, sequential), (clip, name)
        assert forced.mode == "seek" and forced.fallback == "", (clip, name, forced)


def expected_decoded(keys: list[int], wanted) -> int:
    """Frames a reader decodes that starts a new stretch at a needed frame's keyframe whenever that
    keyframe lies beyond the frame the current stretch would deliver next."""
    total, next_frame = 0, None
    for k in sorted({int(i) for i in wanted}):
        key = max(i for i in keys if i <= k)
        if next_frame is None or key > next_frame:
            total += k - key + 1
        else:
            total += k - next_frame + 1
        next_frame = k + 1
    return total


@pytest.mark.parametrize("clip", ["gop1", "gop2s", "gop2s_bframes", "gop12_bframes"])
@pytest.mark.parametrize("manifest", [False, True], ids=["counted", "manifest"])
def test_seek_decodes_only_the_stretches_it_needs(clips, clip, manifest):
    path = clips[clip]
    keys = keyframe_positions(path)
    for pick in (PATTERNS["segment_centres"], PATTERNS["repeated"], PATTERNS["unsorted"]):
        wanted = pick(N)
        seq, seek = DecodeStats(), DecodeStats()
        read_frames(path, pick, num_frames=N if manifest else None, seek=False, stats=seq)
        read_frames(path, pick, num_frames=N if manifest else None, seek=True, stats=seek)
        assert seq.mode == "sequential" and seq.decoded == max(wanted) + 1
        assert seek.decoded == expected_decoded(keys, wanted)
        assert seek.decoded < seq.decoded
    if clip == "gop1":  # every frame a keyframe: exactly the distinct frames asked for
        stats = DecodeStats()
        read_frames(path, PATTERNS["segment_centres"], seek=True, stats=stats)
        assert stats.decoded == stats.passes == 16


def test_automatic_choice(clips):
    sparse = PATTERNS["segment_centres"]
    stats = DecodeStats()
    read_frames(clips["gop2s_bframes"], sparse, num_frames=N, stats=stats)
    assert stats.mode == "seek" and stats.passes == 4  # one stretch per keyframe, 16 frames
    for clip in ("one_keyframe", "one_keyframe_bframes"):  # nothing to skip: decoded from the start
        for count in (None, N):
            stats = DecodeStats()
            read_frames(clips[clip], sparse, num_frames=count, stats=stats)
            assert stats.mode == "sequential" and stats.decoded == max(sparse(N)) + 1
    stats = DecodeStats()
    read_frames(clips["gop2s"], PATTERNS["all"], stats=stats)  # nothing to skip either
    assert stats.mode == "sequential" and stats.decoded == N
    # forcing seeks on a single-keyframe clip decodes what sequential decoding does, once
    stats = DecodeStats()
    read_frames(clips["one_keyframe_bframes"], sparse, seek=True, stats=stats)
    assert stats.mode == "seek" and stats.passes == 1 and stats.decoded == max(sparse(N)) + 1


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_short_side_and_rotation(tmp_path, threads):
    frames = coded_frames(120, seed=1)
    for rotation in (0, -90):
        path = write_clip(tmp_path / f"rot{rotation}.mp4", frames, fps=FPS, gop=20, bframes=2, crf=16,
                          rotation=rotation)
        for short_side in (None, 24):
            def pick(n):
                return [19, 20, 21, 59, 60, 99, n - 1]  # keyframes every 20 frames
            sequential = read_frames(path, pick, short_side=short_side, threads=threads, seek=False)
            stats = DecodeStats()
            seeking = read_frames(path, pick, short_side=short_side, threads=threads, seek=True, stats=stats)
            assert stats.mode == "seek" and stats.decoded < max(pick(120)) + 1
            assert np.array_equal(seeking, sequential), (rotation, short_side)
            shown = (W, H) if rotation else (H, W)  # a quarter turn shows the stored picture upright
            if short_side:
                shown = tuple(round(s * short_side / min(H, W)) for s in shown)
            assert seeking.shape == (7, *shown, 3)
            if not rotation and not short_side:
                assert read_codes(seeking) == pick(120)


# --- timestamps: a late start, variable frame rate, other containers ---------------------------------


def _remux(src, dst, fmt, offset=0):
    """``src``'s video packets in another container, their timestamps moved by ``offset``."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        istream = inp.streams.video[0]
        ostream = out.add_stream_from_template(istream)
        for packet in inp.demux(istream):
            if packet.dts is None:
                continue
            packet.pts += offset
            packet.dts += offset
            packet.stream = ostream
            out.mux(packet)
    return dst


def test_late_start_and_variable_frame_rate(tmp_path):
    n = 90
    gaps = np.random.default_rng(3).choice([0.01, 0.04, 0.1, 0.3], size=n)
    times = (1.5 + np.cumsum(gaps)).tolist()
    path = write_clip(tmp_path / "vfr.mp4", coded_frames(n, seed=2), gop=10, bframes=2, crf=16, frame_times=times)
    ts = _remux(path, tmp_path / "vfr.ts", "mpegts")
    mkv = _remux(path, tmp_path / "late.mkv", "matroska", offset=7_777)
    for clip in (path, ts, mkv):
        first = min(p[0] for p in packets(clip))
        assert first > 0, clip
        for pick in (lambda k: [k - 1, 0, 44, 45], lambda k: segment_indices(k, 8, False)):
            wanted = [int(i) for i in pick(n)]
            sequential = read_frames(clip, pick, seek=False)
            for count in (None, n):
                stats = DecodeStats()
                seeking = read_frames(clip, pick, num_frames=count, seek=True, stats=stats)
                assert stats.mode == "seek", (clip, stats)
                assert np.array_equal(seeking, sequential), clip
                assert read_codes(seeking) == wanted


def test_stream_without_timestamps_falls_back(clips, tmp_path):
    raw = tmp_path / "raw.h264"
    with av.open(str(clips["gop12_bframes"])) as inp, av.open(str(raw), "w", format="h264") as out:
        istream = inp.streams.video[0]
        ostream = out.add_stream_from_template(istream)
        for packet in inp.demux(istream):
            if packet.dts is not None:
                packet.stream = ostream
                out.mux(packet)
    assert all(p[0] is None for p in packets(raw))  # an elementary stream: no timestamps at all
    pick = PATTERNS["unsorted"]
    for count in (None, N):
        stats = DecodeStats()
        frames = read_frames(raw, pick, num_frames=count, seek=True, stats=stats)
        assert stats.mode == "sequential" and "timestamp" in stats.fallback
        assert read_codes(frames) == pick(N)


def test_a_seek_that_lands_past_the_keyframe_falls_back(clips, monkeypatch):
    """A demuxer that lands after the keyframe asked for (here: told to seek one stretch too far, by
    every timestamp it is asked with) is caught by the packet check; the call decodes from the start."""
    real = video._packets_from

    def too_far(container, stream, index, cut):
        later = index.cuts[index.cuts > cut]
        seek_to = index.seek_to.copy()
        if len(later):
            seek_to[cut] = index.pts[later[0]]  # the next keyframe's own time, whichever way it is asked
        return real(container, stream, dataclasses.replace(index, seek_to=seek_to), cut)

    monkeypatch.setattr(video, "_packets_from", too_far)
    pick = PATTERNS["around_keyframes"]
    stats = DecodeStats()
    frames = read_frames(clips["gop2s_bframes"], pick, num_frames=N, seek=True, stats=stats)
    assert stats.mode == "sequential" and "did not land" in stats.fallback
    assert read_codes(frames) == pick(N)


def test_frames_of_another_stretch_are_caught(clips, monkeypatch):
    """Packets from the wrong keyframe that pass for the right ones (a second line of defence) deliver
    frames whose timestamps are not the index's: the call decodes from the start."""
    real = video._packets_from

    def wrong_stretch(container, stream, index, cut):
        later = index.cuts[index.cuts > cut]
        return real(container, stream, index, int(later[0]) if len(later) else cut)

    monkeypatch.setattr(video, "_packets_from", wrong_stretch)
    pick = PATTERNS["segment_centres"]
    stats = DecodeStats()
    frames = read_frames(clips["gop2s"], pick, num_frames=N, seek=True, stats=stats)
    assert stats.mode == "sequential" and "timestamp" in stats.fallback
    assert read_codes(frames) == pick(N).tolist()


# --- damaged packets, stale counts -----------------------------------------------------------------


def _damaged(src, dst, position: int):
    """A copy of ``src`` with the packet at decode ``position`` overwritten by zeros."""
    with av.open(str(src)) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(Path(src).read_bytes())
    pos, size = spans[position]
    data[pos : pos + size] = b"\x00" * size
    Path(dst).write_bytes(bytes(data))
    return dst


def test_damage_inside_a_needed_stretch_behaves_as_sequential(clips, tmp_path):
    path = _damaged(clips["gop2s"], tmp_path / "damaged.mp4", 55)
    for pick in (lambda k: [10, 60, 120], lambda k: [k - 1, 60]):
        results = []
        for seek in (False, True):
            partial: list = []
            stats = DecodeStats()
            frames = read_frames(path, pick, seek=seek, stats=stats, on_partial=lambda *a, to=partial: to.append(a))
            results.append((frames, partial, stats))
        (seq, seq_partial, _), (got, got_partial, stats) = results
        assert stats.mode == "sequential" and stats.fallback  # the seek attempt saw the damage and gave up
        assert np.array_equal(got, seq)
        assert got_partial == seq_partial


def test_damage_in_a_skipped_stretch_is_never_decoded(clips, tmp_path):
    """Damage between the stretches is not read, so it cannot shift the frames: each comes back as the
    frame of that rank in presentation order (decoding from the start counts the frames the decoder
    delivers, which a rejected packet shifts by one)."""
    path = _damaged(clips["gop2s"], tmp_path / "damaged.mp4", 75)
    stats = DecodeStats()
    frames = read_frames(path, lambda k: [10, 120, 180], seek=True, stats=stats)
    assert stats.mode == "seek" and stats.fallback == ""
    assert read_codes(frames) == [10, 120, 180]


def test_stale_manifest_count_chooses_as_before(clips):
    calls = {False: [], True: []}
    out = {}
    for seek in (False, True):
        out[seek] = read_frames(clips["gop2s"], lambda k, s=seek: calls[s].append(k) or [k - 1, 3, 77],
                                num_frames=N + 40, seek=seek)
    assert calls[False] == calls[True] == [N + 40, N]
    assert np.array_equal(out[False], out[True])
    assert read_codes(out[True]) == [N - 1, 3, 77]


def test_write_clip_refuses_impossible_bframes(tmp_path):
    for bad in (-1, 17):
        with pytest.raises(ValueError, match="bframes"):
            write_clip(tmp_path / "x.mp4", np.zeros((2, 16, 16, 3), np.uint8), bframes=bad)


# --- the dataset and the benchmark ---------------------------------------------------------------------


def test_dataset_sample_unchanged_and_seeking(clips, tmp_path, monkeypatch):
    import torch

    from microaction.data import dataset as dataset_module
    from microaction.data.dataset import MA52Dataset

    root = tmp_path / "root"
    (root / "videos_val").mkdir(parents=True)
    (root / "videos_val" / "long.mp4").write_bytes(Path(clips["gop2s_bframes"]).read_bytes())
    (root / "val_list_videos.txt").write_text("long.mp4 3\n")
    modes = []

    def recording(*args, **kwargs):
        stats = DecodeStats()
        frames = read_frames(*args, **kwargs, stats=stats)
        modes.append(stats.mode)
        return frames

    monkeypatch.setattr(dataset_module, "read_frames", recording)
    ds = MA52Dataset(root, "val", num_segments=8, short_side=32)
    sample = ds[0]
    assert modes == ["seek"]
    plain = read_frames(root / "videos_val" / "long.mp4", lambda n: segment_indices(n, 8, False), short_side=32,
                        seek=False)
    expected = torch.from_numpy(plain).permute(0, 3, 1, 2)
    assert sample["label"] == 3
    assert torch.equal(sample["video"], expected)


def test_bench_script_runs_tiny():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_long_decode.py"), "--seconds", "4", "--fps", "10",
         "--gop-seconds", "1", "--size", "32x32", "--frames", "8", "--repeats", "1"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    for key in ("seek_speedup", "seek_over_floor", "auto_speedup", "gop_sequential_ms", "gop_seek_ms",
                "gop_floor_ms", "one_keyframe_sequential_ms", "one_keyframe_auto_ms"):
        assert isinstance(result[key], (int, float)) and result[key] > 0, key
    assert result["gop_packets"] == result["one_keyframe_packets"] == 40
    assert result["gop_keyframes"] == 4 and result["one_keyframe_keyframes"] == 1
    assert result["gop_seek_decoded"] == result["gop_floor_decoded"] < result["gop_sequential_decoded"]
    assert result["one_keyframe_auto_mode"] == "sequential"
    assert any(line.startswith("| keyframe every 1 s | 4 |") for line in lines)
