"""Decoding real H.264 MP4s (written by the tests with write_clip) with read_frames.

Frame i of every clip is flat grey at 20 + step * i (see conftest), so the mean
brightness of a decoded frame says which frame it is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pytest
from helpers import decodable_frames

from microaction.data.sampling import segment_indices
from microaction.data.video import DecodeError, quarter_turns, read_frames, write_clip


class Recorder:
    """A choose_indices that records the frame counts it is called with."""

    def __init__(self, pick):
        self.pick = pick
        self.calls: list[int] = []

    def __call__(self, n):
        self.calls.append(int(n))
        return np.asarray(self.pick(n), dtype=np.int64)


def _eval8(n):
    return segment_indices(n, 8, train=False)


def _centres(n, t):
    return [int((i + 0.5) * n / t) for i in range(t)]


def _remux(src, dst, fmt, options=None):
    """Copy the video packets of ``src`` into a new container (no re-encoding)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt, options=options or {}) as out:
        istream = inp.streams.video[0]
        ostream = out.add_stream_from_template(istream)
        for packet in inp.demux(istream):
            if packet.dts is None:
                continue
            packet.stream = ostream
            out.mux(packet)
    return dst


# --- the right frames ------------------------------------------------------------


def test_exact_frames_in_requested_order(marker_clip, markers):
    path = marker_clip(num_frames=20)
    wanted = [5, 0, 19, 7, 7, 2, 13]
    rec = Recorder(lambda n: wanted)
    frames = read_frames(path, rec)
    assert rec.calls == [20]
    assert frames.dtype == np.uint8
    assert frames.shape == (7, 32, 48, 3)
    assert markers.read(frames, 20) == wanted


def test_every_frame_in_order(marker_clip, markers):
    path = marker_clip(num_frames=30)
    frames = read_frames(path, lambda n: np.arange(n))
    assert markers.read(frames, 30) == list(range(30))


@pytest.mark.parametrize("n", [9, 24, 33])
def test_eval_sampling_returns_segment_centres(marker_clip, markers, n):
    path = marker_clip(num_frames=n)
    rec = Recorder(_eval8)
    frames = read_frames(path, rec)
    assert rec.calls == [n]
    assert markers.read(frames, n) == _centres(n, 8)


def test_only_first_frame(marker_clip, markers):
    path = marker_clip(num_frames=10)
    assert markers.read(read_frames(path, lambda n: [0]), 10) == [0]
    assert markers.read(read_frames(path, lambda n: [n - 1]), 10) == [9]


@pytest.mark.parametrize("threads", [1, 2])
def test_several_keyframes_and_threads(marker_clip, markers, threads):
    path = marker_clip(num_frames=25, gop=4)
    with av.open(str(path)) as c:
        keys = sum(p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size)
    assert keys >= 6
    wanted = [1, 4, 8, 11, 24, 3]
    assert markers.read(read_frames(path, lambda n: wanted, threads=threads), 25) == wanted


def test_rgb_channel_order(tmp_path):
    frames = np.empty((4, 32, 48, 3), np.uint8)
    frames[...] = (200, 60, 30)
    path = write_clip(tmp_path / "rgb.mp4", frames, crf=10)
    out = read_frames(path, lambda n: [0, 3])
    mean = out.reshape(-1, 3).mean(0)
    assert np.all(np.abs(mean - (200, 60, 30)) < 8), mean


# --- container variants ----------------------------------------------------------


@pytest.mark.parametrize("audio_first", [True, False])
def test_audio_stream_beside_video(marker_clip, markers, audio_first):
    path = marker_clip(num_frames=16, audio=True, audio_first=audio_first)
    with av.open(str(path)) as c:
        types = [s.type for s in c.streams]
    assert sorted(types) == ["audio", "video"]
    assert types[0] == ("audio" if audio_first else "video")
    rec = Recorder(_eval8)
    frames = read_frames(path, rec)
    assert rec.calls == [16]
    assert markers.read(frames, 16) == _centres(16, 8)


@pytest.mark.parametrize(
    "h,w,short,expect",
    [
        (48, 32, 16, (24, 16)),  # portrait: width is the short side
        (32, 48, 16, (16, 24)),  # landscape
        (44, 30, 16, (23, 16)),  # 44 * 16 / 30 = 23.47 -> 23
        (40, 40, 20, (20, 20)),
        (48, 32, None, (48, 32)),  # no scaling
    ],
)
def test_short_side_scaling_keeps_aspect(marker_clip, markers, h, w, short, expect):
    path = marker_clip(num_frames=6, height=h, width=w)
    frames = read_frames(path, lambda n: [0, 5, 2], short_side=short)
    assert frames.shape == (3, *expect, 3)
    oh, ow = frames.shape[1:3]
    if short:
        assert min(oh, ow) == short
        assert (oh > ow) == (h > w)
        # Aspect kept up to rounding of the long side by half a pixel.
        long_exact = max(h, w) * short / min(h, w)
        assert abs(max(oh, ow) - long_exact) <= 0.5
    assert markers.read(frames, 6) == [0, 5, 2]


def test_portrait_like_ma52_demo_aspect(marker_clip):
    # The demo clips are 1080 x 1296 (W x H), i.e. H/W = 1.2.
    path = marker_clip(num_frames=5, height=60, width=50)
    frames = read_frames(path, lambda n: [0], short_side=20)
    assert frames.shape == (1, 24, 20, 3)


def test_variable_frame_rate_returns_frames_in_decode_order(tmp_path, markers):
    n = 14
    times = [0.0, 0.01, 0.05, 0.06, 0.2, 0.21, 0.5, 0.9, 0.91, 1.0, 1.3, 1.31, 1.7, 1.71]
    path = write_clip(tmp_path / "vfr.mp4", markers.frames(n), crf=12, frame_times=times)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = [f.time for f in c.decode(s)]
    gaps = np.diff(pts)
    assert gaps.max() > 10 * gaps.min()  # really variable frame rate
    assert np.allclose(pts, times, atol=1e-3)
    rec = Recorder(_eval8)
    frames = read_frames(path, rec)
    assert rec.calls == [n]
    # Indices are frame numbers, not times: the centre of segment i by count.
    assert markers.read(frames, n) == _centres(n, 8)
    assert markers.read(read_frames(path, lambda k: np.arange(k)), n) == list(range(n))


def test_clip_shorter_than_t_repeats(marker_clip, markers):
    path = marker_clip(num_frames=5)
    rec = Recorder(_eval8)
    frames = read_frames(path, rec)
    assert rec.calls == [5]
    assert frames.shape[0] == 8
    ids = markers.read(frames, 5)
    assert ids == _centres(5, 8) == [0, 0, 1, 2, 2, 3, 4, 4]
    # Repeated frames are identical copies.
    assert np.array_equal(frames[0], frames[1])


def test_train_sampling_frames_inside_segments(marker_clip, markers):
    n = 30
    path = marker_clip(num_frames=n)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        rec = Recorder(lambda k: segment_indices(k, 8, True, rng))
        ids = markers.read(read_frames(path, rec), n)
        assert rec.calls == [n]
        for i, k in enumerate(ids):
            assert (i * n) // 8 <= k <= ((i + 1) * n - 1) // 8


# --- frame count: from the packets, not the header ---------------------------------


def test_choose_indices_gets_frames_written(marker_clip):
    for n in (5, 17, 40):
        rec = Recorder(lambda k: [0])
        read_frames(marker_clip(name=f"c{n}.mp4", num_frames=n, audio=True, audio_first=True), rec)
        assert rec.calls == [n]


def test_frame_count_without_header_count(marker_clip, markers, tmp_path):
    src = marker_clip(num_frames=30)
    mkv = _remux(src, tmp_path / "clip.mkv", "matroska")
    with av.open(str(mkv)) as c:
        assert c.streams.video[0].frames == 0  # Matroska carries no frame count
    rec = Recorder(_eval8)
    frames = read_frames(mkv, rec)
    assert rec.calls == [30]
    assert markers.read(frames, 30) == _centres(30, 8)


# --- damaged and invalid files --------------------------------------------------------


def _noisy_clip(tmp_path, markers, n=40):
    # Noise makes every packet sizeable, so cutting the file removes a proportional share of frames.
    frames = markers.frames(n, 32, 48, noise=6)
    return write_clip(tmp_path / "noisy.mp4", frames, crf=18)


def test_truncated_clip_with_index_at_end_raises(tmp_path, marker_clip):
    # write_clip (like most muxers) puts the moov index at the end: a cut file has no index.
    path = marker_clip(num_frames=30)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(DecodeError) as exc:
        read_frames(path, _eval8)
    assert str(path) in str(exc.value)
    assert exc.value.path == str(path)


@pytest.mark.parametrize("fraction", [0.6, 0.8])
def test_truncated_faststart_clip_decodes_only_existing_frames(tmp_path, markers, fraction):
    """read_frames' contract: if the decoder delivers fewer frames than there are
    packets, indices are chosen again from the number it did deliver, so only
    real frames come back and nothing past the real end."""
    n = 40
    fast = _remux(_noisy_clip(tmp_path, markers, n), tmp_path / "fast.mp4", "mp4", {"movflags": "faststart"})
    with av.open(str(fast)) as c:
        stream = c.streams.video[0]
        assert stream.frames == n  # the header promises all frames
        spans = [(p.pos, p.size) for p in c.demux(stream) if p.size]
    data = fast.read_bytes()
    # Cut through the middle of the packet at about `fraction` of the file.
    pos, size = next((p, s) for p, s in spans if p + s > fraction * len(data))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: pos + size // 2])
    packets = sum(p + s <= pos + size // 2 for p, s in spans) + 1  # the last one is partial
    real = decodable_frames(cut)
    assert 0 < real < packets < n

    # Asking for the last frame forces the second pass.
    rec = Recorder(lambda k: [0, k - 1, k // 2])
    frames = read_frames(cut, rec)
    assert rec.calls == [packets, real]
    assert markers.read(frames, n) == [0, real - 1, real // 2]

    # Every frame: exactly the first `real` frames, in order.
    assert markers.read(read_frames(cut, lambda k: np.arange(k)), n) == list(range(real))

    # TSN eval sampling: counted from the packets present, never the header;
    # every returned frame is a real frame chosen from the last count.
    rec = Recorder(_eval8)
    frames = read_frames(cut, rec)
    assert frames.shape == (8, 32, 48, 3)
    assert rec.calls[0] == packets
    assert rec.calls[-1] in (packets, real)
    ids = markers.read(frames, n)
    assert ids == _centres(rec.calls[-1], 8)
    assert max(ids) < real


def test_damaged_packet_mid_clip_keeps_decoding(marker_clip, markers):
    """A packet the decoder rejects is skipped; the frames after it still come back
    (by decode order), and only frames that were written."""
    n = 20
    path = marker_clip(num_frames=n)
    with av.open(str(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    assert len(spans) == n
    data = bytearray(path.read_bytes())
    pos, size = spans[10]
    data[pos : pos + size] = b"\x00" * size
    path.write_bytes(bytes(data))
    real = decodable_frames(path)
    assert n // 2 < real < n

    rec = Recorder(lambda k: np.arange(k))
    frames = read_frames(path, rec)
    assert rec.calls == [n, real]
    ids = markers.read(frames, n)
    assert len(ids) == real
    assert ids[:10] == list(range(10))
    assert all(a < b for a, b in zip(ids, ids[1:]))
    assert ids[-1] == n - 1  # decoding went on past the damage


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(DecodeError) as exc:
        read_frames(path, _eval8)
    assert str(path) in str(exc.value)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(DecodeError) as exc:
        read_frames(path, _eval8)
    assert str(path) in str(exc.value)


def test_missing_file(tmp_path):
    path = tmp_path / "gone.mp4"
    with pytest.raises(DecodeError) as exc:
        read_frames(path, _eval8)
    assert str(path) in str(exc.value)


def test_audio_only_file(tmp_path):
    path = tmp_path / "audio_only.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for k in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = k * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["audio"]
    rec = Recorder(_eval8)
    with pytest.raises(DecodeError) as exc:
        read_frames(path, rec)
    assert str(path) in str(exc.value)
    assert "video" in str(exc.value)
    assert rec.calls == []


def test_decode_error_carries_path_and_reason():
    err = DecodeError("/x/y.mp4", "broken")
    assert err.path == "/x/y.mp4"
    assert err.reason == "broken"
    assert str(err) == "/x/y.mp4: broken"
    assert isinstance(err, RuntimeError)


# --- display orientation (rotation metadata) -----------------------------------------

WHITE, MID, DARK = 230, 140, 40


def _corner_means(frame: np.ndarray) -> dict[str, float]:
    """Mean of a box a quarter of each side long in each corner (inside the 16-px blocks below)."""
    h, w = frame.shape[:2]
    bh, bw = h // 4, w // 4
    boxes = {"TL": frame[:bh, :bw], "TR": frame[:bh, -bw:], "BL": frame[-bh:, :bw], "BR": frame[-bh:, -bw:]}
    return {k: float(v.mean()) for k, v in boxes.items()}


# Where the stored picture's top-left (white) and bottom-left (mid grey) corners are shown, for a
# display rotation in FFmpeg's sense (degrees counter-clockwise): worked out by hand, not by the code.
SHOWN_AT = {
    0: {"TL": WHITE, "BL": MID},
    90: {"BL": WHITE, "BR": MID},  # a quarter turn counter-clockwise: the top edge becomes the left edge
    180: {"BR": WHITE, "TR": MID},
    -90: {"TR": WHITE, "TL": MID},  # a phone's portrait clip: turn clockwise, the left edge becomes the top
}


@pytest.mark.parametrize(
    "rotation,short_side,threads",
    [(0, None, 1), (-90, None, 1), (90, None, 1), (180, None, 1), (-90, 16, 1), (90, 16, 2)],
)
def test_rotated_clip_comes_out_in_display_orientation(tmp_path, rotation, short_side, threads):
    # Stored as landscape 48 x 32 (W x H): a white block in the top-left corner, a mid-grey block in the
    # bottom-left one, dark elsewhere; the display matrix says how a player turns it.
    stored = np.full((6, 32, 48, 3), DARK, np.uint8)
    stored[:, :16, :16] = WHITE
    stored[:, -16:, :16] = MID
    path = write_clip(tmp_path / "rot.mp4", stored, crf=10, rotation=rotation)

    with av.open(str(path)) as c:  # PyAV itself returns the stored picture and the rotation
        frame = next(c.decode(c.streams.video[0]))
        assert (frame.width, frame.height) == (48, 32)
        assert quarter_turns(frame.rotation) == (rotation // 90) % 4

    frames = read_frames(path, lambda n: [0, n - 1, 2], short_side=short_side, threads=threads)
    quarter = rotation in (90, -90)
    h, w = (48, 32) if quarter else (32, 48)
    if short_side:
        h, w = h * short_side // 32, w * short_side // 32  # the short side (32) becomes short_side
    assert frames.shape == (3, h, w, 3)
    expected = {corner: SHOWN_AT[rotation].get(corner, DARK) for corner in ("TL", "TR", "BL", "BR")}
    for f in frames:
        got = _corner_means(f)
        for corner, level in expected.items():
            assert abs(got[corner] - level) < 12, (rotation, corner, got)


def test_quarter_turns_of_display_rotation():
    assert [quarter_turns(r) for r in (0, 90, 180, -180, -90, 270, 89.7, -90.4)] == [0, 1, 2, 2, 3, 3, 1, 3]
    assert quarter_turns(45) == 0  # not a multiple of 90 degrees: left as stored
    assert quarter_turns(30.0) == 0


def test_write_clip_refuses_a_rotation_that_is_not_a_quarter_turn(tmp_path):
    with pytest.raises(ValueError, match="multiple of 90"):
        write_clip(tmp_path / "x.mp4", np.zeros((2, 16, 16, 3), np.uint8), rotation=45)


# --- huge resolution: scaled while decoding, memory bounded by the output ------------------

HUGE_W, HUGE_H = 4000, 3000  # stored landscape; shown as portrait 3000 x 4000 (a phone's 12 MP clip)


@pytest.fixture(scope="module")
def huge_clip(tmp_path_factory):
    """3 frames of 4000 x 3000 with a phone's rotation (-90); frame i carries its index as brightness."""
    frames = np.empty((3, HUGE_H, HUGE_W, 3), np.uint8)
    for i in range(3):
        frames[i] = 60 + 40 * i
        frames[i, : HUGE_H // 4, : HUGE_W // 4] = WHITE  # stored top-left: shown top-right
    path = tmp_path_factory.mktemp("huge") / "huge.mp4"
    return write_clip(path, frames, crf=30, preset="ultrafast", rotation=-90)


_PEAK_RSS = """
import json, resource, sys
import numpy as np
from microaction.data.video import read_frames

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

before = peak_mib()
out = read_frames(sys.argv[1], lambda n: np.linspace(0, n - 1, 8).round().astype(int), short_side=32)
print(json.dumps({"shape": list(out.shape), "mean": float(out.mean()), "before": before, "after": peak_mib()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux only")
def test_huge_resolution_clip_decodes_with_memory_bounded_by_the_output(huge_clip):
    """8 frames sampled from a 4000 x 3000 clip at short side 32: each frame is scaled by swscale as
    it is converted, so the process holds the decoder's few frames, never the 8 sampled frames at
    full size (275 MiB as RGB). Measured in a fresh process, so the figure is read_frames' alone."""
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(huge_clip)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["shape"] == [8, 43, 32, 3]  # portrait, 32 x round(4000 * 32 / 3000)
    full_size_rgb = 8 * HUGE_W * HUGE_H * 3 / 2**20
    grown = got["after"] - got["before"]
    assert grown < full_size_rgb, f"peak memory grew by {grown:.0f} MiB decoding 8 frames at short side 32"


def test_huge_resolution_clip_gives_a_dataset_sample(huge_clip, tmp_path):
    import shutil

    from microaction.data.dataset import MA52Dataset
    from microaction.data.transforms import CenterCrop

    root = tmp_path / "root"
    (root / "videos_val").mkdir(parents=True)
    shutil.copy(huge_clip, root / "videos_val" / "huge.mp4")
    (root / "val_list_videos.txt").write_text("huge.mp4 7\n")
    ds = MA52Dataset(root, "val", num_segments=4, short_side=32, transform=CenterCrop(32))
    sample = ds[0]
    assert sample["label"] == 7
    video = sample["video"]
    assert video.dtype.is_floating_point is False and tuple(video.shape) == (4, 3, 32, 32)
    # centre frames of 4 segments of 3 frames: 0, 1, 1, 2 (brightness 60 + 40 i outside the white block)
    levels = video[:, :, -8:, :8].float().mean(dim=(1, 2, 3))  # bottom-left: away from the block
    assert [round((float(v) - 60) / 40) for v in levels] == [0, 1, 1, 2]
