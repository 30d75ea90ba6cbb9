"""Timelines of long videos: window plans, streamed window frames, merged segments, scores, files, the picture.

Clips are real H.264 written here. Every frame carries its index as an 8-bit code (8x8 blocks along the top,
dark = 0, light = 1) over a texture that moves, so the code tells which frame came back whatever the reader
did; streamed windows must also equal, byte for byte, the same frames out of a plain full decode. Merging is
checked against a frame-by-frame loop, segment F1 against an exhaustive search over matchings.
"""

from __future__ import annotations

import itertools
import json

import matplotlib.image
import numpy as np
import pytest
from helpers import coded_frames, read_codes

from microaction.data.sampling import segment_indices
from microaction.data.video import DecodeError, probe, read_frames, write_clip
from microaction.labels import LabelSpace
from microaction.timeline import (
    DEFAULT_STRIDE_S,
    DEFAULT_WINDOW_S,
    NONE,
    Segment,
    StreamStats,
    Window,
    class_colour,
    frame_accuracy,
    frame_labels,
    iter_window_frames,
    labels_of,
    merge_segments,
    plan_windows,
    plot_timeline,
    read_timeline,
    read_timeline_csv,
    sample_indices,
    segment_f1,
    segment_iou,
    tick_step,
    timeline_figure,
    window_indices,
    write_timeline,
)

FPS = 10
W, H = 64, 48
BITS = 8
T = 8


# name: (frames, gop, B-frames, rotation)
CLIPS = {
    "gop2s": (125, 2 * FPS, 0, 0),
    "one_keyframe_bframes": (125, None, 2, 0),
    "rotated": (64, 2 * FPS, 0, -90),
    "short": (5, None, 0, 0),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("timeline")
    frames = coded_frames(max(n for n, *_ in CLIPS.values()))
    return {name: write_clip(folder / f"{name}.mp4", frames[:n], fps=FPS, gop=gop, bframes=bf, rotation=rot,
                             crf=16)
            for name, (n, gop, bf, rot) in CLIPS.items()}


# --- window plans ---------------------------------------------------------------------------------


def test_defaults_are_about_one_ma52_clip():
    # MA-52 clips: 1-7 s, mean 1.9 s; the window holds one, the stride is half of it
    assert 1.0 <= DEFAULT_WINDOW_S <= 3.0 and DEFAULT_STRIDE_S == DEFAULT_WINDOW_S / 2


@pytest.mark.parametrize("num_frames", [1, 19, 20, 21, 29, 30, 31, 100, 101, 1234])
@pytest.mark.parametrize("fps,window_s,stride_s", [(10, 2.0, 1.0), (30, 2.0, 1.0), (29.97, 2.0, 0.5),
                                                   (25, 1.0, 1.0), (10, 0.05, 0.05), (12, 3.0, 1.3)])
def test_windows_cover_the_video(num_frames, fps, window_s, stride_s):
    windows = plan_windows(num_frames, fps, window_s, stride_s)
    length, stride = max(1, round(window_s * fps)), max(1, round(stride_s * fps))
    covered = np.zeros(num_frames, int)
    for i, w in enumerate(windows):
        assert w.index == i and 0 <= w.first < w.end <= num_frames
        assert w.start_s == pytest.approx(w.first / fps) and w.end_s == pytest.approx(w.end / fps)
        covered[w.first : w.end] += 1
    assert covered.min() >= 1  # every frame lies in a window
    assert windows[0].first == 0 and windows[-1].end == num_frames  # the tail is covered
    if num_frames < length:
        assert len(windows) == 1 and windows[0].whole
        return
    assert not any(w.whole for w in windows)
    assert all(w.num_frames == length for w in windows)
    steps = np.diff([w.first for w in windows]).tolist()
    # a stride between all windows but the last, which is moved back to end with the video
    assert all(s == stride for s in steps[:-1])
    if steps:
        assert 0 < steps[-1] <= stride
    # no window more than needed: without the last, the video would not be covered
    assert len(windows) == 1 or windows[-2].end < num_frames


def test_a_short_video_is_one_whole_window():
    (window,) = plan_windows(5, 10, 2.0, 1.0)
    assert window == Window(0, 0, 5, 0.0, 0.5, whole=True)
    (exact,) = plan_windows(20, 10, 2.0, 1.0)
    assert exact == Window(0, 0, 20, 0.0, 2.0, whole=False)


def test_window_frames_are_the_segment_centres():
    window = Window(3, 10, 30, 1.0, 3.0)
    # centres of 8 segments of 2.5 frames each: floor(1.25 + 2.5 i) = 1, 3, 6, 8, 11, 13, 16, 18; plus 10
    assert window_indices(window, 8).tolist() == [11, 13, 16, 18, 21, 23, 26, 28]
    # a window shorter than T repeats frames, as the clip sampler does
    assert window_indices(Window(0, 0, 3, 0.0, 0.3, whole=True), 6).tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("kwargs,key", [
    (dict(window_s=0), "predict.window_s"),
    (dict(window_s=-2), "predict.window_s"),
    (dict(window_s=float("nan")), "predict.window_s"),
    (dict(window_s="2"), "predict.window_s"),
    (dict(stride_s=0), "predict.stride_s"),
    (dict(stride_s=-1), "predict.stride_s"),
    (dict(stride_s=3.0), "predict.stride_s"),  # longer than the window: gaps
    (dict(fps=0), "fps"),
    (dict(num_frames=0), "at least one frame"),
])
def test_bad_plans_name_the_setting(kwargs, key):
    args = dict(num_frames=100, fps=10, window_s=2.0, stride_s=1.0) | kwargs
    with pytest.raises(ValueError, match=key):
        plan_windows(**args)


# --- streamed window frames --------------------------------------------------------------------------


@pytest.mark.parametrize("name,short_side", [("gop2s", None), ("one_keyframe_bframes", None),
                                             ("gop2s", 24), ("rotated", None)])
def test_streamed_windows_are_the_frames_of_a_full_decode(clips, name, short_side):
    path = clips[name]
    info = probe(path)
    assert info.frames == CLIPS[name][0]
    windows = plan_windows(info.frames, info.fps, 2.0, 1.0)
    indices = sample_indices(windows, T)
    full = read_frames(path, lambda n: np.arange(n), short_side=short_side)
    stats = StreamStats()
    out = list(iter_window_frames(path, windows, indices, short_side=short_side, stats=stats))
    assert [w for w, _ in out] == windows
    for (window, frames), idx in zip(out, indices):
        assert frames.dtype == np.uint8 and frames.shape == (T, *full.shape[1:])
        assert np.array_equal(frames, full[idx])
        if name != "rotated" and short_side is None:
            assert read_codes(frames) == idx.tolist()
    if name == "rotated":  # display orientation: the stored 64x48 pictures come out 48 wide, 64 high
        assert out[0][1].shape[1:] == (W, H, 3)
    # one pass: every frame up to the last one needed decoded once, each needed frame converted once
    last = max(int(i.max()) for i in indices)
    assert stats.decoded == last + 1
    assert stats.converted == len(set(np.concatenate(indices).tolist()))
    assert stats.yielded == len(windows) and stats.held == 0


def test_a_short_clip_streams_as_one_whole_window(clips):
    path = clips["short"]
    info = probe(path)
    windows = plan_windows(info.frames, info.fps)
    assert len(windows) == 1 and windows[0].whole
    ((_, frames),) = list(iter_window_frames(path, windows, sample_indices(windows, T)))
    assert read_codes(frames) == segment_indices(5, T, train=False).tolist() == [0, 0, 1, 2, 2, 3, 4, 4]


def test_frames_past_the_end_or_an_unreadable_file_raise_naming_it(clips, tmp_path):
    path = clips["gop2s"]
    windows = plan_windows(200, FPS)  # planned for more frames than the file holds
    with pytest.raises(DecodeError, match="ends after 125 frames") as info:
        list(iter_window_frames(path, windows, sample_indices(windows, T)))
    assert info.value.path == str(path)
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    windows = plan_windows(20, FPS)
    with pytest.raises(DecodeError) as info:
        list(iter_window_frames(bad, windows, sample_indices(windows, T)))
    assert info.value.path == str(bad)
    with pytest.raises(ValueError, match="outside it"):
        list(iter_window_frames(path, windows, [np.array([0, 25])]))


def held_bound(indices: list[np.ndarray]) -> int:
    """The most frames any moment needs held: at frame p (just decoded), the needed frames up to p that a
    window ending at p or later still needs."""
    last = [int(i.max()) for i in indices]
    needed = sorted(set(np.concatenate(indices).tolist()))
    best = 0
    for p in needed:
        open_frames = {n for idx, end in zip(indices, last) if end >= p for n in idx.tolist() if n <= p}
        best = max(best, len(open_frames))
    return best


@pytest.fixture(scope="module")
def long_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(60 * FPS, 32, 32, 3), dtype=np.uint8)
    return {s: write_clip(folder / f"{s}s.mp4", frames[: s * FPS], fps=FPS, gop=2 * FPS, preset="ultrafast")
            for s in (30, 60)}


def test_frames_held_do_not_grow_with_the_video(long_clips):
    held = {}
    for seconds, path in long_clips.items():
        windows = plan_windows(seconds * FPS, FPS)
        indices = sample_indices(windows, T)
        stats = StreamStats()
        count = sum(1 for _ in iter_window_frames(path, windows, indices, stats=stats))
        assert count == len(windows) == seconds - 1
        assert stats.decoded == seconds * FPS - 1  # the last frame is no segment centre: never decoded
        # exactly what the open windows need, far below the video's needed frames
        assert stats.max_held == held_bound(indices)
        assert stats.max_held <= 2 * T < stats.converted / 5
        held[seconds] = stats.max_held
    assert held[30] == held[60]


# --- merging ---------------------------------------------------------------------------------------


def test_merge_a_hand_worked_case():
    # 4 frames at 1 fps, windows of 2 frames every frame: [0, 2), [1, 3), [2, 4)
    windows = plan_windows(4, 1.0, 2.0, 1.0)
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    names, parts = ["nod", "shrug"], ["head", "shoulder"]
    # cells: [0,1) -> w0 (0.9, 0.1); [1,2) -> w0,w1 (0.7, 0.3); [2,3) -> w1,w2 (0.35, 0.65); [3,4) -> w2 (0.2, 0.8)
    assert merge_segments(windows, probs, names, parts, threshold=0.3) == [
        Segment(0.0, 2.0, 0, 2, 0, "nod", "head", pytest.approx(0.8)),
        Segment(2.0, 4.0, 2, 4, 1, "shrug", "shoulder", pytest.approx(0.725)),
    ]
    # at 0.7 the third cell (0.65) names no action and splits the shrug off
    assert merge_segments(windows, probs, names, parts, threshold=0.7) == [
        Segment(0.0, 2.0, 0, 2, 0, "nod", "head", pytest.approx(0.8)),
        Segment(3.0, 4.0, 3, 4, 1, "shrug", "shoulder", pytest.approx(0.8)),
    ]
    # multi-label at 0.25: each class on its own, nod over cells 0-2 (0.9, 0.7, 0.35), shrug over 1-3
    multi = merge_segments(windows, probs, names, parts, threshold=0.25, multi_label=True)
    assert [(s.class_id, s.first_frame, s.end_frame) for s in multi] == [(0, 0, 3), (1, 1, 4)]
    assert multi[0].score == pytest.approx((0.9 + 0.7 + 0.35) / 3)
    assert multi[1].score == pytest.approx((0.3 + 0.65 + 0.8) / 3)


def per_frame_segments(windows, probs, num_frames, threshold, multi_label):
    """The merge rule frame by frame: each frame's mean over the windows holding it, then runs."""
    frame_probs = np.zeros((num_frames, probs.shape[1]))
    for n in range(num_frames):
        holding = [p for w, p in zip(windows, probs) if w.first <= n < w.end]
        frame_probs[n] = np.mean(holding, axis=0)
    if multi_label:
        tracks = [[c if frame_probs[n, c] >= threshold else NONE for n in range(num_frames)]
                  for c in range(probs.shape[1])]
    else:
        tracks = [[int(np.argmax(frame_probs[n])) if frame_probs[n].max() >= threshold else NONE
                   for n in range(num_frames)]]
    out = []
    for track in tracks:
        n = 0
        while n < num_frames:
            m = n
            while m < num_frames and track[m] == track[n]:
                m += 1
            if track[n] != NONE:
                out.append((track[n], n, m, float(np.mean(frame_probs[n:m, track[n]]))))
            n = m
    return sorted(out, key=lambda s: (s[1], s[0]))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("multi_label", [False, True])
def test_merge_matches_a_frame_by_frame_loop(seed, multi_label):
    rng = np.random.default_rng(seed)
    num_frames = int(rng.integers(5, 120))
    fps = float(rng.choice([5, 10, 30]))
    windows = plan_windows(num_frames, fps, 2.0, float(rng.choice([0.5, 1.0, 2.0])))
    classes = 4
    # a few runs of the same favourite class, so segments span several windows
    favourite = np.repeat(rng.integers(0, classes, size=len(windows) // 3 + 1), 3)[: len(windows)]
    logits = rng.normal(size=(len(windows), classes)) + 2.5 * np.eye(classes)[favourite]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if multi_label:
        probs = 1 / (1 + np.exp(-logits + 1))
    names = [f"a{c}" for c in range(classes)]
    parts = ["head", "hand", "head", "leg"]
    got = merge_segments(windows, probs, names, parts, threshold=0.4, multi_label=multi_label)
    expected = per_frame_segments(windows, probs, num_frames, 0.4, multi_label)
    assert [(s.class_id, s.first_frame, s.end_frame) for s in got] == [e[:3] for e in expected]
    assert [s.score for s in got] == pytest.approx([e[3] for e in expected])
    for s in got:
        assert s.class_name == names[s.class_id] and s.body_part == parts[s.class_id]
        assert s.start_s == pytest.approx(s.first_frame / fps) and s.end_s == pytest.approx(s.end_frame / fps)


def test_merge_refuses_what_is_no_probability():
    windows = plan_windows(40, 10)
    names, parts = ["a", "b"], ["head", "leg"]
    good = np.full((len(windows), 2), 0.5)
    with pytest.raises(ValueError, match="predict.threshold"):
        merge_segments(windows, good, names, parts, threshold=1.5)
    with pytest.raises(ValueError, match=r"\[3, 2\]"):
        merge_segments(windows, good[:, :1], names, parts)
    with pytest.raises(ValueError, match="softmax or sigmoid"):
        merge_segments(windows, good * 4, names, parts)
    with pytest.raises(ValueError, match="body_parts"):
        merge_segments(windows, good, names, parts[:1])


def test_labels_of_the_ma52_space():
    names, parts = labels_of(LabelSpace.ma52())
    assert len(names) == len(parts) == 52 and len(set(parts)) == 7


# --- scores ----------------------------------------------------------------------------------------------


def test_frame_labels_and_accuracy_by_hand():
    segments = [Segment(0.2, 0.5, 2, 5, 3, "x", "head", 0.9), (7, 6, 8)]
    labels = frame_labels(segments, 10)
    assert labels.tolist() == [-1, -1, 3, 3, 3, -1, 7, 7, -1, -1]
    truth = frame_labels([(3, 1, 4), (7, 4, 8)], 10)  # [-1, 3, 3, 3, 7, 7, 7, 7, -1, -1]
    # equal at frames 0, 2, 3, 6, 7, 8, 9
    assert frame_accuracy(labels, truth) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="overlaps"):
        frame_labels([(1, 0, 5), (2, 4, 6)], 10)
    with pytest.raises(ValueError, match="past the video's 10 frames"):
        frame_labels([(1, 5, 11)], 10)
    with pytest.raises(ValueError, match="one length"):
        frame_accuracy(labels, truth[:5])


def test_segment_f1_by_hand():
    truth = [(1, 0, 10), (2, 10, 20), (1, 30, 40)]
    predicted = [
        (1, 0, 8),    # IoU 8/10 with truth 0: matched
        (1, 2, 12),   # IoU 8/12 with truth 0 as well, which is taken: unmatched
        (2, 15, 30),  # IoU 5/20 with truth 1: below 0.5
        (1, 31, 45),  # IoU 9/15 = 0.6 with truth 2: matched
        (3, 30, 40),  # no true segment of class 3
    ]
    scores = segment_f1(predicted, truth, iou=0.5)
    assert (scores.tp, scores.fp, scores.fn) == (2, 3, 1)
    assert scores.precision == pytest.approx(2 / 5) and scores.recall == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))
    assert [(i, j) for i, j, _ in scores.matches] == [(0, 0), (3, 2)]
    # the better overlap wins the contested true segment, whichever comes first
    assert segment_f1([(1, 2, 12), (1, 0, 9)], [(1, 0, 10)]).matches == ((1, 0, pytest.approx(0.9)),)
    assert segment_f1([], []).f1 == 1.0 and segment_f1([], [(1, 0, 5)]).f1 == 0.0
    assert segment_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)


def most_matches(predicted, truth, iou):
    """The largest one-to-one matching of same-class pairs at or above ``iou``, by trying them all."""
    pairs = [(i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)
             if p[0] == t[0] and segment_iou(p[1:], t[1:]) >= iou]
    for size in range(min(len(predicted), len(truth)), 0, -1):
        for chosen in itertools.combinations(pairs, size):
            if len({i for i, _ in chosen}) == size and len({j for _, j in chosen}) == size:
                return size
    return 0


def random_segments(rng, count, classes, length):
    """Non-overlapping segments of random classes inside ``length`` frames."""
    cuts = np.sort(rng.choice(np.arange(1, length), size=2 * count, replace=False))
    return [(int(rng.integers(classes)), int(a), int(b)) for a, b in cuts.reshape(-1, 2)]


@pytest.mark.parametrize("seed", range(30))
def test_segment_f1_finds_the_most_matches(seed):
    # true segments do not overlap, and neither do a timeline's predictions: at IoU >= 0.5 the greedy
    # matching is then a largest one
    rng = np.random.default_rng(seed)
    truth = random_segments(rng, int(rng.integers(0, 5)), 2, 40)
    predicted = random_segments(rng, int(rng.integers(0, 5)), 2, 40)
    scores = segment_f1(predicted, truth, iou=0.5)
    assert scores.tp == most_matches(predicted, truth, 0.5)
    for i, j, value in scores.matches:
        assert predicted[i][0] == truth[j][0] and value >= 0.5


# --- files -----------------------------------------------------------------------------------------------


@pytest.fixture
def timeline():
    windows = plan_windows(300, 30.0)
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(52, 0.05), size=len(windows))
    names, parts = labels_of(LabelSpace.ma52())
    segments = merge_segments(windows, probs, names, parts, threshold=0.2)
    assert len(segments) >= 2
    return {"interview.mp4": segments, "empty.mp4": []}


def test_json_and_csv_round_trip(tmp_path, timeline):
    js, cs = tmp_path / "out" / "timeline.json", tmp_path / "out" / "timeline.csv"
    write_timeline(js, cs, timeline, info={"window_s": 2.0, "stride_s": 1.0})
    assert sorted(p.name for p in js.parent.iterdir()) == ["timeline.csv", "timeline.json"]  # no temp files
    assert read_timeline(js) == timeline
    assert json.loads(js.read_text())["info"] == {"window_s": 2.0, "stride_s": 1.0}
    assert read_timeline_csv(cs) == {"interview.mp4": timeline["interview.mp4"]}  # no rows for no segments
    lines = cs.read_text().splitlines()
    assert lines[0] == "video,start_s,end_s,first_frame,end_frame,class_id,class_name,body_part,score"
    assert len(lines) == 1 + len(timeline["interview.mp4"])


def test_bad_timeline_files_are_named(tmp_path, timeline):
    js, cs = tmp_path / "t.json", tmp_path / "t.csv"
    write_timeline(js, cs, timeline)
    data = json.loads(js.read_text())
    data["videos"]["interview.mp4"][1]["score"] = "high"
    js.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"t\.json: videos\['interview\.mp4'\]\[1\]\.score: expected int or float"):
        read_timeline(js)
    lines = cs.read_text().splitlines()
    fields = lines[2].split(",")
    fields[3] = "x"  # first_frame
    lines[2] = ",".join(fields)
    cs.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"t\.csv, line 3: first_frame must be int"):
        read_timeline_csv(cs)
    cs.write_text("\n".join([lines[0], lines[1].rsplit(",", 4)[0]]) + "\n")  # a row cut short
    with pytest.raises(ValueError, match=r"t\.csv, line 2: no class_id \(the row has 5 of 9 columns\)"):
        read_timeline_csv(cs)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="other.json: not a timeline file"):
        read_timeline(tmp_path / "other.json")


# --- the picture ---------------------------------------------------------------------------------------


def test_the_png_has_a_row_per_body_part_and_bars_in_the_action_colours(tmp_path):
    space = LabelSpace.ma52()
    names, parts = labels_of(space)
    rows = list(space.coarse_classes)
    duration = 600.0
    picks = [0, 10, 20, 30, 35, 45, 50]  # one action per body part, as the class table groups them
    assert sorted({parts[c] for c in picks}) == sorted(rows)
    segments = [Segment(40.0 + 70 * k, 75.0 + 70 * k, 0, 1, c, names[c], parts[c], 0.9) for k, c in enumerate(picks)]
    path = plot_timeline(segments, duration, rows, tmp_path / "timeline.png", title="interview.mp4")
    image = matplotlib.image.imread(path)
    fig = timeline_figure(segments, duration, rows, title="interview.mp4")
    width, height = fig.get_size_inches() * fig.dpi
    assert image.shape[:2] == (round(height), round(width))
    assert width >= 1600  # 10 minutes: wide enough to read
    fig.savefig(tmp_path / "again.png")  # lays the figure out as the saved one, so positions can be mapped
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == rows[::-1]
    for s in segments:
        x, y = ax.transData.transform(((s.start_s + s.end_s) / 2, len(rows) - 1 - rows.index(s.body_part)))
        pixel = image[int(round(image.shape[0] - y)), int(round(x)), :3]
        assert np.allclose(pixel, class_colour(s.class_id), atol=2 / 255), (s.class_name, pixel)
        # half a row up, between the bars, the colour is gone
        _, gap = ax.transData.transform((0, len(rows) - 1 - rows.index(s.body_part) + 0.5))
        assert not np.allclose(image[int(round(image.shape[0] - gap)), int(round(x)), :3],
                               class_colour(s.class_id), atol=2 / 255)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[:3] == ["00:00", "00:30", "01:00"] and ticks[-1] == "10:00"
    assert tick_step(600, 18) == 30 and tick_step(60, 8) == 10 and tick_step(3 * 3600, 24) == 600


def test_a_plot_refuses_an_unknown_body_part(tmp_path):
    segment = Segment(0.0, 1.0, 0, 10, 0, "a", "tail", 0.5)
    with pytest.raises(ValueError, match="'tail', which is no row"):
        plot_timeline([segment], 10.0, ["head", "hand"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    path = plot_timeline([], 10.0, ["head", "hand"], tmp_path / "empty.png")
    assert matplotlib.image.imread(path).shape[1] == 800
