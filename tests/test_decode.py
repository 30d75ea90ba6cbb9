"""Decoding real H.264 MP4s (written by the tests with write_clip) with read_frames.

Frame i of every clip is flat grey at 20 + step * i (see conftest), so the mean
brightness of a decoded frame says which frame it is.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from microaction.data.decode import DecodeError, read_frames
from microaction.data.sampling import segment_indices
from microaction.data.video_io import write_clip


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


def _decodable_frames(path):
    """Ground truth, independent of read_frames: frames plain PyAV decodes from ``path``."""
    count = 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for packet in c.demux(stream):
            try:
                count += len(stream.codec_context.decode(packet))
            except av.FFmpegError:
                pass
    return count


@pytest.mark.parametrize("fraction", [0.6, 0.8])
def test_truncated_faststart_clip_decodes_only_existing_frames(tmp_path, markers, fraction):
    """decode.py's contract: if the decoder delivers fewer frames than there are
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
    real = _decodable_frames(cut)
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
    real = _decodable_frames(path)
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
