"""Video files with PyAV: reading sampled frames, probing, decoding a whole clip, writing H.264.

Every reader here treats a clip the same way: its first video stream, decoded
with one thread unless asked otherwise; its frame count is the number of
non-empty demuxed packets (container headers may lack or misstate it; the
demuxer's trailing empty packets only drain the decoder); a packet the decoder
rejects as damaged is skipped, the frames around it stay valid; the decoder is
drained at the end. Any failure to read becomes a ``DecodeError`` naming the
file.

``read_frames`` serves the training loader. MA-52 clips are H.264 with
typically a single keyframe, so reaching frame k means decoding every frame
before it. It therefore (1) demuxes the packets once, which is cheap and gives
the frame count, (2) decodes only up to the last frame it needs, and (3)
converts (colour and scale, in one swscale call) only the frames it keeps.
A clip with keyframes inside it (the short-side cache, MA-52-Pro's long
clips) is read by seeking instead when that pays: only the stretch from each
needed frame's keyframe to it is decoded, and the packet index (pts, keyframe
flags) ties every frame to its rank in presentation order, so the frames are
the same as decoding from the start gives.

Frames come out in display orientation: a clip whose display matrix says to
rotate it by a quarter, half or three-quarter turn (phones store portrait video
as landscape pictures plus such a matrix) has its kept frames turned by it. The
scale to a short side is the same before and after a quarter turn (the short
side stays the short side), so it is done on the stored picture.

``iter_frames`` serves long recordings (prediction over sliding windows): it
decodes the file once from the start and hands out the frames asked for one at
a time, as ``read_frames`` converts them, so memory does not grow with the
video's length.

``probe`` gives a clip's facts (frame count, fps, duration, displayed size),
``decode_all`` and ``encode_clip`` are the two halves of a transcode (the
stored picture and its display rotation are carried over), and ``write_clip``
writes frames from arrays (the dataset generators, tests and benchmarks).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# What the library or the file system raise for a file that cannot be read.
_READ_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


class DecodeError(RuntimeError):
    """A clip that cannot be decoded into the frames asked for.

    When the decoder or the file system failed, their exception is the ``__cause__``; a clip that
    lacks what was asked for (no video stream, fewer frames than packets) has none.
    """

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


# --- size and orientation --------------------------------------------------------------------


def scaled_size(
    width: int, height: int, short_side: int | None, *, upscale: bool = True, multiple: int = 1
) -> tuple[int, int]:
    """(width, height) scaled so the short side is ``short_side`` and the long side keeps the aspect.

    ``short_side`` None (or 0) keeps the size. With ``upscale=False`` a picture whose short side is
    already at most ``short_side`` keeps its scale. Each side is rounded to the nearest multiple of
    ``multiple`` (a tie to the even multiple), and is at least ``multiple``: ``multiple=2`` gives the
    even sizes H.264 yuv420p needs. The long side is rounded from the quotient of whole numbers, so
    a size never depends on floating-point noise.
    """
    if not short_side:
        return width, height
    short = min(width, height)
    target = short_side if upscale else min(short_side, short)

    def fit(x: float) -> int:
        return max(multiple, round(x / multiple) * multiple)

    if width <= height:
        return fit(target), fit(height * target / width)
    return fit(width * target / height), fit(target)


def quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns (0-3) for a display-matrix rotation in degrees.

    ``rotation`` is FFmpeg's counter-clockwise angle (PyAV's ``VideoFrame.rotation``):
    a phone's portrait clip stored as landscape reads -90, i.e. turn clockwise. Angles
    that are not a multiple of 90 degrees (within one degree) are not applied.
    """
    turns = round(rotation / 90)
    if abs(rotation - 90 * turns) > 1:
        return 0
    return turns % 4


# --- reading: the stream, its packets, its frames ------------------------------------------------


@contextmanager
def _open_video(path: Path, threads: int = 1):
    """The open container and its first video stream; any failure to read becomes a DecodeError."""
    try:
        with av.open(str(path), mode="r") as container:
            yield container, _video_stream(container, path, threads)
    except DecodeError:
        raise
    except _READ_ERRORS as err:
        if _is_empty(path):
            raise DecodeError(path, "empty file (0 bytes)") from None
        raise DecodeError(path, f"{type(err).__name__}: {err}") from err


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _video_stream(container, path: Path, threads: int):
    if not container.streams:
        raise DecodeError(path, "no streams found (truncated, or not a video file)")
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams)
        raise DecodeError(path, f"no video stream (streams: {kinds})")
    stream = container.streams.video[0]
    # One thread by default: the callers (DataLoader workers, prepare's processes) already fill the cores.
    stream.thread_type = "AUTO" if threads > 1 else "SLICE"
    stream.codec_context.thread_count = threads
    return stream


def _frame_packets(container, stream) -> Iterator:
    """The stream's packets that carry a frame each, in file order."""
    return (p for p in container.demux(stream) if p.size > 0)


def _decoded(stream, packets: Iterable, on_rejected: Callable[[], None] | None = None) -> Iterator:
    """The frames the decoder delivers for ``packets``, then those it still holds, lazily.

    A packet the decoder rejects as damaged is skipped (``on_rejected`` is told); a failure while
    draining ends the frames. Other decoder errors are raised.
    """
    codec = stream.codec_context
    codec.flush_buffers()
    for packet in packets:
        try:
            frames = codec.decode(packet)
        except av.InvalidDataError:
            if on_rejected is not None:
                on_rejected()
            continue
        yield from frames
    try:
        rest = codec.decode(None)
    except av.FFmpegError:
        return
    yield from rest


@dataclass
class DecodeStats:
    """What one ``read_frames`` call did, filled in when one is passed to it.

    ``mode`` is ``"seek"`` when the returned frames came from decoding only the stretches that
    hold them, ``"sequential"`` when from decoding the clip from its start. ``decoded`` counts
    every frame the decoder delivered during the call (a seek attempt given up included),
    ``passes`` the stretches the seeking path decoded, each started at a keyframe, and
    ``fallback`` says why seeking was considered and given up ("" when it was not).
    """

    mode: str = ""
    decoded: int = 0
    passes: int = 0
    fallback: str = ""


def read_frames(
    path: str | Path,
    choose_indices: Callable[[int], np.ndarray],
    short_side: int | None = None,
    threads: int = 1,
    num_frames: int | None = None,
    on_partial: Callable[[int, int], None] | None = None,
    *,
    seek: bool | None = None,
    stats: DecodeStats | None = None,
) -> np.ndarray:
    """Decode the frames ``choose_indices(num_frames)`` picks; returns uint8 [T, H, W, 3].

    Frame k is the k-th frame in presentation order, as a decoder run from
    the start delivers them. ``num_frames`` is the clip's frame count when
    known (from a manifest); the file is then read only up to the last frame
    needed. Otherwise it is the number of video packets in the file. If the
    decoder then delivers fewer frames (a truncated or damaged stream, a stale
    manifest), indices are chosen again from the number it did deliver, so
    nothing beyond the real end is ever returned. Such a partly decodable clip
    is reported, not hidden: ``on_partial(packets, decoded)`` is called with the
    stream's packet count and the number of frames the decoder delivered (the
    returned frames then cover only those). Frames are scaled to
    ``scaled_size(..., short_side)``.

    ``seek`` chooses how the frames are reached. A clip with keyframes inside
    it can be decoded in stretches: each starts at the last keyframe at or
    before a needed frame, frames needed within one stretch are decoded in one
    pass, and the frames between stretches are never decoded. ``None`` (the
    default) seeks when that skips enough frames to pay for the jumps,
    ``True`` whenever the clip allows it, ``False`` never. Either way the same
    frames come back: the packet index (demuxed, not decoded) maps each frame
    to its keyframe, and every frame a stretch delivers is checked against it;
    a stream without a usable index, a demuxer that cannot seek, or a stretch
    that delivers anything else (a damaged packet, a missing frame) makes the
    call decode from the start instead, with the behaviour described above.
    ``stats``, when given, is filled in with what the call did.
    """
    path = Path(path)
    if stats is None:
        stats = DecodeStats()
    if num_frames:
        frames: np.ndarray | None = None
        with _open_video(path, threads) as (container, stream):
            indices = np.asarray(choose_indices(num_frames), dtype=np.int64)
            moved = False
            # The index is demuxed first and the file read again from each keyframe: only a regular file
            # (not a pipe) can be read twice.
            if seek and not path.is_file():
                stats.fallback = "not a regular file"
            if seek is not False and path.is_file() and (seek or _keyframes_may_pay(stream, indices)):
                moved = True  # the index is demuxed from this container, which then has to seek
                frames = _read_seeking(stream, _demux_index(container, stream), indices, short_side, seek, stats,
                                       lambda cut, index: _packets_from(container, stream, index, cut))
            if frames is None and not moved:
                frames, _ = _decode_chosen(stream, _frame_packets(container, stream), indices, short_side, stats)
        if frames is None and moved:
            with _open_video(path, threads) as (container, stream):
                frames, _ = _decode_chosen(stream, _frame_packets(container, stream), indices, short_side, stats)
        if frames is not None:
            return frames
        # The count was wrong for this file: count the real frames below.
    with _open_video(path, threads) as (container, stream):
        packets = list(_frame_packets(container, stream))
        if not packets:
            raise DecodeError(path, "video stream has no packets")
        indices = np.asarray(choose_indices(len(packets)), dtype=np.int64)
        frames = None
        if seek or (seek is None and sum(p.is_keyframe for p in packets) > 1):
            frames = _read_seeking(stream, _packet_index([(p.pts, p.dts, p.is_keyframe) for p in packets]), indices,
                                   short_side, seek, stats, lambda cut, index: iter(packets[cut:]))
        if frames is None:
            frames, decoded = _decode_chosen(stream, packets, indices, short_side, stats)
        if frames is None:
            # Fewer frames than packets: choose again within what exists.
            if decoded == 0:
                raise DecodeError(path, "no frame could be decoded")
            frames, _ = _decode_chosen(stream, packets, choose_indices(decoded), short_side, stats)
            if frames is None:
                raise DecodeError(path, "decoder output changed between two passes")
            if on_partial is not None:
                on_partial(len(packets), decoded)
        return frames


@functools.cache
def _reformat_threads() -> bool:
    """Whether this PyAV's ``VideoFrame.reformat`` takes ``threads`` (newer releases do)."""
    try:
        av.VideoFrame(16, 16, "yuv420p").reformat(format="rgb24", threads=1)
    except TypeError:
        return False
    return True


class _Kept:
    """The output array, filled from decoded frames: frame ``n`` goes to every slot that asked for it.

    swscale runs with ``threads`` threads (the decoder's count): left to itself it starts a pool
    sized to the machine for every frame it converts, which costs more than the conversion of a
    frame at the cache size and stalls when the cores are busy with other workers. The output is
    the same bytes either way.
    """

    def __init__(self, indices: np.ndarray, short_side: int | None, threads: int = 1):
        self.size = len(indices)
        self.short_side = short_side
        self.options = {"threads": threads} if _reformat_threads() else {}
        self.slots: dict[int, list[int]] = {}
        for slot, i in enumerate(indices.tolist()):
            self.slots.setdefault(i, []).append(slot)
        self.result: np.ndarray | None = None

    def keep(self, n: int, frame) -> None:
        w, h = scaled_size(frame.width, frame.height, self.short_side)
        # One swscale call for colour and size; at the cache size there is nothing to scale,
        # and not asking for a size keeps swscale on its unscaled fast path.
        if (w, h) == (frame.width, frame.height):
            rgb = frame.reformat(format="rgb24", **self.options)
        else:
            rgb = frame.reformat(width=w, height=h, format="rgb24", **self.options)
        # The display matrix travels with every decoded frame (FFmpeg copies the stream's).
        turns = quarter_turns(frame.rotation)
        if self.result is None:
            shape = (w, h) if turns % 2 else (h, w)
            self.result = np.empty((self.size, *shape, 3), np.uint8)
        # Copy straight from swscale's buffer into the output: one copy per frame, not two
        # (a turn is a strided view of that buffer, so it costs no extra copy either).
        plane = rgb.planes[0]
        view = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, : 3 * w].reshape(h, w, 3)
        if turns:
            view = np.rot90(view, turns)
        for slot in self.slots[n]:
            self.result[slot] = view


def _decode_chosen(stream, packets, indices: np.ndarray, short_side: int | None, stats: DecodeStats):
    """Decode in order until ``max(indices)``; None plus the count if the stream ends first."""
    indices = np.asarray(indices, dtype=np.int64)
    last = int(indices.max())
    kept = _Kept(indices, short_side, stream.codec_context.thread_count)
    stats.mode = "sequential"
    n = 0
    for frame in _decoded(stream, packets):
        stats.decoded += 1
        if n in kept.slots:
            kept.keep(n, frame)
        n += 1
        if n > last:
            return kept.result, n
    return None, n


# --- reading by seeking: the packet index, the plan, the stretches --------------------------------

# Costs in units of one decoded P-frame, measured on one core (PyAV 18, 160x120 and 256x308 clips, the
# smaller the frame the larger these shares): a jump to a keyframe (demuxer seek, decoder flush) about
# 0.2, demuxing the packet index about 0.015 per packet. The automatic choice counts each at about three
# times that, so a clip where seeking barely helps keeps the plain path.
_MIN_SKIP = 2  # frames a jump must skip to be taken (the automatic choice; forced seeking takes any)
_JUMP_COST = 0.5
_INDEX_COST = 0.05


class _SeekFailed(Exception):
    """The seeking path cannot vouch for its frames; the caller decodes from the start instead."""


@dataclass(frozen=True)
class _PacketIndex:
    """The video packets in decode order, as the demuxer gives them (no frame decoded).

    ``order[k]`` is the pts of frame k (the k-th in presentation order), ``position`` maps a pts to
    its packet's place in decode order, ``cuts`` holds the decode positions (ascending, 0 first)
    where decoding can start: a keyframe shown before every packet that follows it and after every
    packet that precedes it, so decoding from cut c delivers exactly frames c, c + 1, ... in order.
    """

    pts: np.ndarray
    seek_to: np.ndarray  # [packets, 2]: the timestamps a demuxer seek to a packet asks for, in turn
    order: np.ndarray
    position: dict
    cuts: np.ndarray

    @property
    def count(self) -> int:
        return len(self.pts)


def _packet_index(meta: list[tuple[int | None, int | None, bool]]) -> _PacketIndex | str:
    """The index of packets given as (pts, dts, keyframe) in decode order, or why there is none."""
    if not meta:
        return "no packets"
    if any(pts is None for pts, _, _ in meta):
        return "a packet without a timestamp"
    pts = np.array([m[0] for m in meta], dtype=np.int64)
    order = np.sort(pts)
    if len(order) > 1 and not np.all(order[1:] > order[:-1]):
        return "two packets with the same timestamp"
    dts = np.array([pts[i] if m[1] is None else m[1] for i, m in enumerate(meta)], dtype=np.int64)
    key = np.array([m[2] for m in meta], dtype=bool)
    before = np.maximum.accumulate(np.concatenate([[np.iinfo(np.int64).min], pts[:-1]]))
    after = np.minimum.accumulate(pts[::-1])[::-1]
    cuts = np.flatnonzero(key & (before < pts) & (pts == after))
    if len(cuts) == 0 or cuts[0] != 0:
        return "the stream does not start at a keyframe"
    position = {int(p): i for i, p in enumerate(pts.tolist())}
    # Most demuxers take a seek's target as a presentation time (MP4's shifts it onto its decode-time
    # index, Matroska's cues hold presentation times), so a keyframe is asked for by its pts first;
    # others (MPEG-TS) land past the keyframe for that, and are asked again by the earlier of its
    # decode and presentation times.
    return _PacketIndex(pts, np.stack([pts, np.minimum(pts, dts)], axis=1), order, position, cuts)


def _demux_index(container, stream) -> _PacketIndex | str:
    return _packet_index([(p.pts, p.dts, p.is_keyframe) for p in _frame_packets(container, stream)])


def _seek_plan(cuts: np.ndarray, indices: np.ndarray, min_skip: int) -> list[tuple[int, list[int]]]:
    """Stretches to decode: (cut to start at, the needed frames it delivers, ascending).

    A needed frame joins the open stretch unless its own cut lies at least ``min_skip`` frames
    beyond the frame the stretch would deliver next.
    """
    plan: list[tuple[int, list[int]]] = []
    next_frame = -1
    for k in np.unique(indices).tolist():
        cut = int(cuts[np.searchsorted(cuts, k, side="right") - 1])
        if not plan or cut - next_frame >= min_skip:
            plan.append((cut, [k]))
        else:
            plan[-1][1].append(k)
        next_frame = k + 1
    return plan


def _plan_cost(plan: list[tuple[int, list[int]]]) -> int:
    """Frames the decoder delivers for ``plan``."""
    return sum(frames[-1] - cut + 1 for cut, frames in plan)


def _pays(plan: list[tuple[int, list[int]]], indices: np.ndarray, packets: int) -> bool:
    """Whether the frames ``plan`` saves, against decoding up to ``max(indices)``, outweigh its jumps
    and the index of ``packets`` packets."""
    saved = int(indices.max()) + 1 - _plan_cost(plan)
    return saved > 0 and saved >= _JUMP_COST * len(plan) + _INDEX_COST * packets


def _keyframes_may_pay(stream, indices: np.ndarray) -> bool:
    """Whether the container's own index (read when the file was opened) leaves a chance that seeking
    pays: it lists keyframes, in decode order, at which a clean stream's cuts lie. A container that
    keeps no index at open says nothing, and the packets are demuxed to find out."""
    try:
        entries = stream.index_entries
        keys = np.flatnonzero([e.is_keyframe for e in entries]) if len(entries) else None
    except (AttributeError, *_READ_ERRORS):
        keys = None
    if keys is None:
        return True
    if len(keys) < 2 or keys[0] != 0 or len(indices) == 0:
        return False
    indices = np.asarray(indices, dtype=np.int64)
    if indices.min() < 0:
        return False
    return _pays(_seek_plan(keys, indices, _MIN_SKIP), indices, len(entries))


def _packets_from(container, stream, index: _PacketIndex, cut: int) -> Iterator:
    """The stream's packets from decode position ``cut`` on, after a demuxer seek to it.

    The demuxer may land at or before the keyframe (packets before it are passed over, not
    decoded); landing after it for every timestamp tried, or on packets the index does not hold
    in this order, is a failure.
    """
    for target in dict.fromkeys(index.seek_to[cut].tolist()):
        try:
            container.seek(int(target), backward=True, any_frame=False, stream=stream)
        except _READ_ERRORS as err:
            raise _SeekFailed(f"the demuxer cannot seek ({type(err).__name__}: {err})") from err
        source = _frame_packets(container, stream)
        for packet in source:
            at = index.position.get(packet.pts)
            if at is None or at >= cut:
                break
        else:
            at = None  # the stream ended before the keyframe
        if at == cut:
            break
    else:
        raise _SeekFailed("the demuxer's seek did not land at or before the keyframe")
    expected = cut
    while True:
        if at != expected:
            raise _SeekFailed("the packets after a seek differ from the index")
        yield packet
        expected += 1
        packet = next(source, None)
        if packet is None:
            return
        at = index.position.get(packet.pts)


def _read_seeking(stream, index: _PacketIndex | str, indices: np.ndarray, short_side: int | None,
                  seek: bool | None, stats: DecodeStats, packets_from: Callable[[int, _PacketIndex], Iterable]):
    """The frames at ``indices`` decoded stretch by stretch, or None to decode from the start.

    None when the index is unusable, when seeking would not pay (``seek`` None), or when a stretch
    cannot vouch for its frames (``stats.fallback`` then says why).
    """
    if isinstance(index, str):
        stats.fallback = f"no packet index: {index}"
        return None
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= index.count:
        return None  # the plain path reports these
    plan = _seek_plan(index.cuts, indices, 1 if seek else _MIN_SKIP)
    if not seek and not _pays(plan, indices, index.count):
        return None
    try:
        frames = _decode_stretches(stream, index, plan, indices, short_side, stats, packets_from)
    except _SeekFailed as err:
        stats.fallback = str(err)
        return None
    except _READ_ERRORS as err:
        stats.fallback = f"{type(err).__name__}: {err}"
        return None
    stats.mode = "seek"
    return frames


def _decode_stretches(stream, index: _PacketIndex, plan, indices: np.ndarray, short_side: int | None,
                      stats: DecodeStats, packets_from) -> np.ndarray:
    kept = _Kept(indices, short_side, stream.codec_context.thread_count)

    def rejected() -> None:
        raise _SeekFailed("the decoder rejected a packet")

    for cut, wanted in plan:
        stats.passes += 1
        source = packets_from(cut, index)
        frames = _decoded(stream, source, rejected)
        try:
            todo = iter(wanted)
            want = next(todo)
            rank = cut
            for frame in frames:
                stats.decoded += 1
                if rank >= index.count or frame.pts is None or frame.pts != index.order[rank]:
                    raise _SeekFailed(f"frame {rank} came out with another timestamp than the index holds")
                if rank == want:
                    kept.keep(rank, frame)
                    want = next(todo, None)
                    if want is None:
                        break
                rank += 1
            else:
                raise _SeekFailed(f"the stream ended before frame {want}")
        finally:
            frames.close()
            if hasattr(source, "close"):
                source.close()
    return kept.result


# --- every needed frame of a long video in one forward pass ---------------------------------------


def iter_frames(
    path: str | Path,
    indices: Iterable[int],
    short_side: int | None = None,
    threads: int = 1,
    *,
    stats: DecodeStats | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the video once from its start; yield ``(k, frame)`` for each distinct index in ``indices``,
    ascending.

    Frame k is the k-th frame in presentation order, as ``read_frames`` counts them, and each frame
    is uint8 [H, W, 3] exactly as ``read_frames`` returns it (display orientation, scaled to
    ``scaled_size(..., short_side)``), in an array of its own. Decoding is lazy: it goes only as far
    as the consumer asks, only the frames asked for are converted, and nothing is kept between frames
    but the decoder's own reference frames, so a video of any length costs the same memory. Closing
    the generator early closes the file.

    Refused, as a ``DecodeError`` naming the file: a packet the decoder rejects as damaged (every
    later frame would be counted one place early, i.e. stand at the wrong time), and a stream that
    ends before the largest index. A negative index is a ``ValueError``. ``stats``, when given, is
    kept up to date while the generator runs (``mode`` "sequential", ``decoded`` frames so far).
    """
    path = Path(path)
    wanted = np.unique(np.fromiter((int(i) for i in indices), dtype=np.int64))
    if len(wanted) and wanted[0] < 0:
        raise ValueError(f"{path}: frame indices must be >= 0, got {int(wanted[0])}")
    if stats is None:
        stats = DecodeStats()
    stats.mode = "sequential"
    if len(wanted) == 0:
        return
    n = 0

    def rejected() -> None:
        raise DecodeError(path, f"the decoder rejected a damaged packet after frame {n} "
                                f"(the frames after it would stand at the wrong times)")

    with _open_video(path, threads) as (container, stream):
        threads_used = stream.codec_context.thread_count
        todo = iter(wanted.tolist())
        want = next(todo)
        frames = _decoded(stream, _frame_packets(container, stream), rejected)
        try:
            for frame in frames:
                stats.decoded += 1
                if n == want:
                    # a one-slot _Kept converts the frame exactly as read_frames does
                    kept = _Kept(np.zeros(1, np.int64), short_side, threads_used)
                    kept.keep(0, frame)
                    del frame
                    yield n, kept.result[0]
                    want = next(todo, None)
                    if want is None:
                        return
                n += 1
        finally:
            frames.close()
    raise DecodeError(path, f"the video stream ends after {n} frames; frame {want} was asked for")


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # non-empty packets of the video stream
    fps: float
    duration: float  # seconds
    width: int  # as displayed (a quarter-turn display matrix swaps the stored sides)
    height: int
    bytes: int  # file size


def probe(path: str | Path) -> VideoInfo:
    """Facts of a clip from its demuxed video packets (headers may lack or misstate them).

    Only the packets are read, plus the first frame for its display rotation.
    """
    path = Path(path)
    with _open_video(path) as (container, stream):
        pts: list[int | None] = []

        def packets():
            for packet in _frame_packets(container, stream):
                pts.append(packet.pts)
                yield packet

        source = packets()
        try:
            # decodes only as far as the first frame; the rest of ``source`` is counted below
            first = next(_decoded(stream, source), None)
        except av.FFmpegError:
            first = None
        for _ in source:
            pass
        width, height = stream.codec_context.width, stream.codec_context.height
        if first is not None and quarter_turns(first.rotation) % 2:
            width, height = height, width
        rate, tb = stream.average_rate, stream.time_base
        size = path.stat().st_size
    frames = len(pts)
    fps = float(rate) if rate else 0.0
    known = sorted(p for p in pts if p is not None)
    if tb and len(known) > 1:
        # Span of the timestamps plus one mean frame step, i.e. the clip's length.
        span = Fraction(known[-1] - known[0]) * tb
        duration = float(span * len(known) / (len(known) - 1))
        fps = fps or (len(known) / duration if duration > 0 else 0.0)
    else:
        duration = frames / fps if fps else 0.0
    return VideoInfo(frames, fps, duration, width, height, size)


# --- a whole clip, for a transcode ---------------------------------------------------------------


@dataclass
class DecodedClip:
    frames: list = field(repr=False)  # yuv420p VideoFrames with their own timestamps; empty if not kept
    count: int  # frames decoded (equal to the stream's packets)
    time_base: Fraction | None
    rate: Fraction | None  # the stream's average frame rate
    rotation: int  # display rotation, degrees counter-clockwise, a multiple of 90


def decode_all(path: str | Path, short_side: int | None = None) -> DecodedClip:
    """Decode every frame of the video stream, for a transcode.

    With ``short_side`` the frames are kept as yuv420p, scaled down (never up) so the short side is
    ``short_side``, both sides even (``scaled_size(..., upscale=False, multiple=2)``: what H.264
    yuv420p needs); without it they are only counted (a check that the clip decodes whole). The
    first frame's display rotation is returned, to be written with the copy. A clip from which
    fewer frames decode than it has packets raises DecodeError: a copy would silently miss frames.
    """
    path = Path(path)
    frames: list = []
    count = packets = rejected = 0
    rotation = 0
    size = None

    def reject() -> None:
        nonlocal rejected
        rejected += 1

    with _open_video(path) as (container, stream):
        def counted():
            nonlocal packets
            for packet in _frame_packets(container, stream):
                packets += 1
                yield packet

        for frame in _decoded(stream, counted(), reject):
            if count == 0:
                rotation = quarter_turns(frame.rotation) * 90
            count += 1
            if short_side is None:
                continue
            if size is None:
                size = scaled_size(frame.width, frame.height, short_side, upscale=False, multiple=2)
            small = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            small.pts, small.time_base = frame.pts, frame.time_base
            frames.append(small)
        time_base, rate = stream.time_base, stream.average_rate
    if packets == 0:
        raise DecodeError(path, "video stream has no packets")
    if count < packets:
        raise DecodeError(path, f"only {count} of {packets} frames decode (damaged or truncated)"
                          + (f", {rejected} packets rejected" if rejected else ""))
    return DecodedClip(frames, count, time_base, rate, rotation)


# --- writing -----------------------------------------------------------------------------------


def _add_h264_stream(out, rate, width: int, height: int, time_base: Fraction, *, gop: int, crf: int,
                     preset: str, tune: str | None = None, rotation: int = 0, threads: int | None = None,
                     bframes: int = 0):
    """An H.264 yuv420p stream in ``out``: keyframes every ``gop`` frames and nowhere else (closed GOPs),
    up to ``bframes`` B-frames in a row (0: none), ``rotation`` (degrees counter-clockwise) as its
    display matrix; ``threads`` None leaves x264's own."""
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    if rotation % 360:
        if not hasattr(stream, "set_display_rotation"):
            raise RuntimeError(f"writing a rotated clip needs a PyAV with VideoStream.set_display_rotation "
                               f"(PyAV {av.__version__} has none)")
        stream.set_display_rotation(rotation)
    stream.codec_context.time_base = time_base
    if threads is not None:
        stream.codec_context.thread_count = threads
    options = {"crf": str(crf), "preset": preset, "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
               "bf": str(bframes)}
    if tune:
        options["tune"] = tune
    stream.options = options
    return stream


def _encode(out, stream, frames: Iterable) -> None:
    for frame in frames:
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def encode_clip(
    path: str | Path,
    frames: list,
    time_base: Fraction | None,
    rate: Fraction | None,
    *,
    gop: int,
    crf: int = 23,
    preset: str = "veryfast",
    tune: str | None = None,
    rotation: int = 0,
) -> None:
    """Write yuv420p VideoFrames (as ``decode_all`` keeps them) to ``path`` as H.264 MP4, no audio.

    The frames' own timestamps are kept when they increase, so a variable-frame-rate clip stays
    one; otherwise frame i is written at i / ``rate`` (30 fps when the rate is unknown). ``rotation``
    (degrees counter-clockwise, a multiple of 90) is written as the display matrix. One encoder
    thread. ``path`` is written directly: the caller picks a temporary name and renames it.
    """
    pts = [f.pts for f in frames]
    keep_times = time_base is not None and all(p is not None for p in pts) and all(
        a < b for a, b in zip(pts, pts[1:]))
    fps = rate if rate else Fraction(30)
    step = time_base if keep_times else 1 / Fraction(fps)
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = _add_h264_stream(out, fps, frames[0].width, frames[0].height, step, gop=gop, crf=crf,
                                  preset=preset, tune=tune, rotation=rotation, threads=1)
        if not keep_times:
            for i, frame in enumerate(frames):
                frame.pts, frame.time_base = i, step
        _encode(out, stream, frames)


def write_clip(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 30,
    *,
    audio: bool = False,
    audio_first: bool = False,
    gop: int | None = None,
    crf: int = 23,
    frame_times: list[float] | None = None,
    rotation: int = 0,
    preset: str = "veryfast",
    bframes: int = 0,
) -> Path:
    """Write uint8 frames [T, H, W, 3] as H.264 (yuv420p) MP4.

    ``gop=None`` gives one keyframe per clip, as in the MA-52 release.
    ``audio`` adds a silent AAC track, ``audio_first`` makes it stream 0.
    ``frame_times`` (seconds, increasing) writes a variable-frame-rate clip.
    ``rotation`` (degrees counter-clockwise, a multiple of 90) is written as the
    stream's display matrix, as phones do: ``frames`` are the stored pictures and a
    player shows them turned by it (-90, a quarter turn clockwise, is a phone's
    portrait clip stored as landscape). ``preset`` is x264's speed/size trade-off.
    ``bframes`` allows up to that many B-frames in a row (0, the default: none), so
    frames are stored out of presentation order, as many cameras and encoders do.
    The file is written to a temporary name and renamed, so a crash never
    leaves a half-written clip under the final name.
    """
    path = Path(path)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even sizes, got {w}x{h}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    if not 0 <= bframes <= 16:
        raise ValueError(f"bframes must be in 0..16 (H.264's limit), got {bframes}")
    tb = Fraction(1, 90000) if frame_times else Fraction(1, fps)

    def video_frames():
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if frame_times:
                frame.pts = int(round(frame_times[i] * 90000))
                frame.time_base = tb
            else:
                frame.pts = i
            yield frame

    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            astream = None
            if audio and audio_first:
                astream = _add_audio(out)
            keyint = gop if gop else max(t, 1) + 1
            # one encoder thread: x264's threaded encoding differs from run to run, and a generated
            # dataset must be the same bytes for the same seed (the quickstart's figures are pinned)
            vstream = _add_h264_stream(out, fps, w, h, tb, gop=keyint, crf=crf, preset=preset, rotation=rotation,
                                       threads=1, bframes=bframes)
            if audio and not audio_first:
                astream = _add_audio(out)
            _encode(out, vstream, video_frames())
            if astream is not None:
                _write_silence(out, astream, t / fps)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _add_audio(out):
    stream = out.add_stream("aac", rate=16000)
    stream.layout = "mono"
    return stream


def _write_silence(out, stream, seconds: float) -> None:
    rate = 16000
    samples = max(1024, int(seconds * rate))
    pts = 0
    while pts < samples:
        n = min(1024, samples - pts)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, n), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = pts
        pts += n
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
