"""The procedural MA-52-Pro stand-in: layout and list syntax, the designed emotion cues (faces and
action mixes), ground-truth face tracks, reuse, and the MA-52 stand-in left as it was."""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import run_cli
from scipy.stats import chi2_contingency
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.naive_bayes import MultinomialNB

from microaction.data.annotations import name_problem
from microaction.data.synthetic import get_generator
from microaction.data.synthetic import procedural_pro as pro
from microaction.data.synthetic.procedural import plan, render_spec
from microaction.data.synthetic.procedural.figure import Subject
from microaction.labels import LabelSpace

TINY = dict(num_train=10, num_val=4, num_test=4, seed=3, size=(48, 40), fps=10, min_seconds=2, max_seconds=3)
PLAN_ARGS = {k: v for k, v in TINY.items() if k != "size"}
F2C = LabelSpace.ma52().fine_to_coarse
JOY, SADNESS, SURPRISE, FEAR, ANGER = range(5)
LINE = re.compile(r"^(\S+) ([0-9]+) ([0-9]+(?:,[0-9]+)*)$")
HEADER = "frame,x0,y0,x1,y1,score,le_x,le_y,re_x,re_y,nose_x,nose_y,ml_x,ml_y,mr_x,mr_y"


CLI_ARGS = ["--num-train", "10", "--num-val", "4", "--num-test", "4", "--seed", "3", "--size", "48", "40",
            "--fps", "10", "--min-seconds", "2", "--max-seconds", "3"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """18 clips of 2-3 s at 48 x 40, written by the script with two worker processes (the same
    arguments as ``TINY``)."""
    cwd = tmp_path_factory.mktemp("pro")
    proc = run_cli("scripts/generate_ma52pro.py", [str(cwd / "ma52pro"), *CLI_ARGS, "--workers", "2"], cwd=cwd)
    assert "18 clips (train/val/test 10/4/4)" in proc.stdout
    return cwd / "ma52pro"


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def blocks(frames: np.ndarray) -> np.ndarray:
    t, h, w, c = frames.shape
    return frames.astype(np.float64).reshape(t, h // 4, 4, w // 4, 4, c).mean((2, 4))


def read_track(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(v) for v in row] for row in rows[1:]])


# --- layout ------------------------------------------------------------------------------------------
def test_layout_lists_and_names(tiny):
    specs = {(s.split, s.name): s for s in pro.plan_pro(**PLAN_ARGS)}
    assert (tiny / "emotion_name.txt").read_text() == "0\tjoy\n1\tsadness\n2\tsurprise\n3\tfear\n4\tanger\n"
    label_lines = (tiny / "label_name.txt").read_text().splitlines()
    assert label_lines == [f"{i}\t{n}" for i, n in enumerate(LabelSpace.ma52().classes)]
    for split, n in (("train", 10), ("val", 4), ("test", 4)):
        text = (tiny / f"{split}_list_videos.txt").read_text()
        assert not text.endswith("\n")  # as MA-52's lists
        lines = text.split("\n")
        assert len(lines) == n
        for line in lines:
            m = LINE.match(line)
            assert m, line
            name, emotion, fines = m.group(1), int(m.group(2)), [int(x) for x in m.group(3).split(",")]
            assert name_problem(name) is None and name.endswith(".mp4")
            assert 0 <= emotion <= 4
            assert 1 <= len(fines) <= 15 and len(set(fines)) == len(fines) and fines == sorted(fines)
            assert all(0 <= f <= 51 for f in fines)
            spec = specs[(split, name)]
            assert (emotion, tuple(fines)) == (spec.emotion, spec.actions)
            assert (tiny / f"videos_{split}" / name).is_file()
            assert (tiny / f"faces_{split}" / name.replace(".mp4", ".csv")).is_file()
        # emotions balanced within the split
        counts = Counter(int(LINE.match(line).group(2)) for line in lines)
        assert max(counts.values()) - min(counts.get(e, 0) for e in range(5)) <= 1
        assert sorted(p.name for p in (tiny / f"videos_{split}").iterdir()) == sorted(
            LINE.match(line).group(1) for line in lines)


def test_registered_as_a_generator():
    assert get_generator("procedural_pro") is pro.write_procedural_pro


def test_written_clips_and_face_tracks_hold_the_planned_clips(tiny):
    """What the worker processes wrote is what ``render_pro`` renders here, clip by clip."""
    for spec in pro.plan_pro(**PLAN_ARGS)[::3]:
        check_written(tiny, spec)


def check_written(tiny: Path, spec) -> None:
    frames = decode(tiny / f"videos_{spec.split}" / spec.name)
    expected, track = pro.render_pro(spec, TINY["seed"], TINY["size"])
    assert frames.shape == expected.shape == (spec.frames, 48, 40, 3)
    assert 20 <= spec.frames <= 30
    # 4 x 4 block means: the pixel noise (and what H.264 keeps of it) averages out, the picture stays
    err = np.abs(blocks(frames) - blocks(expected)).mean()
    other, _ = pro.render_pro(replace(spec, subject=spec.subject + 1), TINY["seed"], TINY["size"])  # another person
    t = min(len(other), len(frames))
    assert err < 2.5 and err < np.abs(blocks(frames[:t]) - blocks(other[:t])).mean() / 3
    header, rows = read_track(tiny / f"faces_{spec.split}" / spec.name.replace(".mp4", ".csv"))
    assert ",".join(header) == HEADER
    assert rows[:, 0].tolist() == list(range(spec.frames))  # one row per decoded frame, in order
    values = rows[:, 1:]
    assert (values >= 0).all() and (values <= 1).all()
    assert (values[:, 0] < values[:, 2]).all() and (values[:, 1] < values[:, 3]).all()
    np.testing.assert_allclose(values, track, atol=1e-5)


# --- the plan: timelines and action mixes -----------------------------------------------------------
@pytest.fixture(scope="module")
def big_plan() -> list:
    return pro.plan_pro(num_train=3000, num_val=1, num_test=1, seed=1)


def test_every_timeline_is_valid(big_plan):
    for s in big_plan:
        assert 5 * 10 <= s.frames <= 20 * 10
        assert 1 <= len(s.actions) <= 15 and 1 <= len(s.performances) <= 15
        end = 0
        for fine, a, b in s.performances:
            assert 0 <= fine <= 51 and end <= a and b - a >= 3
            end = b
        assert end <= s.frames
    # the clip length limits how many actions fit: a long clip can hold many
    assert max(len(s.performances) for s in big_plan) >= 12


def part_shares(specs, emotion) -> np.ndarray:
    counts = np.zeros(7)
    for s in specs:
        if s.emotion == emotion:
            for fine, _, _ in s.performances:
                counts[F2C[fine]] += 1
    return counts


def test_action_mix_follows_the_design(big_plan):
    counts = {e: part_shares(big_plan, e) for e in range(5)}
    for e in range(5):
        np.testing.assert_allclose(counts[e] / counts[e].sum(), pro.ACTION_MIX[e], atol=0.02)
    # joy and sadness: one mix (a homogeneity test does not reject it)
    assert chi2_contingency(np.stack([counts[JOY], counts[SADNESS]])).pvalue > 1e-3
    # surprise, fear and anger differ from each other and from joy
    for a, b in ((SURPRISE, FEAR), (SURPRISE, ANGER), (FEAR, ANGER), (JOY, SURPRISE), (JOY, FEAR), (JOY, ANGER)):
        assert chi2_contingency(np.stack([counts[a], counts[b]])).pvalue < 1e-12
    # what a face crop would see (body, head and head-hand actions) is the same share in every emotion
    seen = np.stack([[*counts[e][[0, 1, 5]], counts[e][[2, 3, 4, 6]].sum()] for e in range(5)])
    assert chi2_contingency(seen).pvalue > 1e-3


def test_actions_alone_tell_the_startled_emotions_apart_but_not_joy_from_sadness():
    """A naive Bayes classifier on the body-part counts of each clip's actions (fit on one plan,
    scored on another), and the same classifier restricted to the emotions a face allows."""
    def features(specs):
        x = np.zeros((len(specs), 7))
        for i, s in enumerate(specs):
            for fine, _, _ in s.performances:
                x[i, F2C[fine]] += 1
        return x, np.array([s.emotion for s in specs])

    x_fit, y_fit = features(pro.plan_pro(num_train=3000, num_val=1, num_test=1, seed=1))
    x, y = features(pro.plan_pro(num_train=2000, num_val=1, num_test=1, seed=2))
    proba = MultinomialNB(alpha=1.0).fit(x_fit, y_fit).predict_proba(x)

    def accuracy(among: list[int], clips) -> float:
        return float((np.array(among)[proba[np.ix_(clips, among)].argmax(1)] == y[clips]).mean())

    joy_sad = np.flatnonzero(np.isin(y, [JOY, SADNESS]))
    startled = np.flatnonzero(np.isin(y, [SURPRISE, FEAR, ANGER]))
    assert 0.4 < accuracy([JOY, SADNESS], joy_sad) < 0.6  # chance: the same mix
    assert accuracy([SURPRISE, FEAR, ANGER], startled) > 0.65  # chance 1/3
    action_only = float((proba.argmax(1) == y).mean())
    # the face's groups: joy, sadness, {surprise, fear, anger}; within the startled group only actions help
    face_only = (len(joy_sad) + len(startled) / 3) / len(y)
    both = (len(joy_sad) + accuracy([SURPRISE, FEAR, ANGER], startled) * len(startled)) / len(y)
    assert both > face_only + 0.15 and both > action_only + 0.15


# --- faces ---------------------------------------------------------------------------------------------
def expression_features(spec) -> np.ndarray:
    e = pro.expressions(spec, 0)
    return np.array([[x.mouth_curve, x.mouth_open, x.brow_raise, x.brow_slant, x.eye_open] for x in e]).mean(0)


def test_expression_separates_joy_and_sadness_not_the_startled_emotions():
    specs = pro.plan_pro(num_train=400, num_val=1, num_test=1, seed=4, min_seconds=2, max_seconds=3)
    x = np.stack([expression_features(s) for s in specs])
    y = np.array([s.emotion for s in specs])
    pair = np.isin(y, [JOY, SADNESS])
    assert cross_val_score(LogisticRegression(), x[pair], y[pair], cv=5).mean() > 0.95
    assert (x[y == JOY, 0] > 0).mean() > 0.9 and (x[y == SADNESS, 0] < 0).mean() > 0.9
    # per clip not trivially constant: the strength and the bias vary
    assert x[y == JOY, 0].std() > 0.08
    for s in specs[:20]:
        faces = {e: pro.expressions(replace(s, emotion=e), 0) for e in (SURPRISE, FEAR, ANGER)}
        assert faces[SURPRISE] == faces[FEAR] == faces[ANGER]


def test_rendered_faces_differ_for_joy_and_sadness_and_not_for_anger_and_surprise():
    spec = replace(pro.plan_pro(**PLAN_ARGS)[0], performances=((24, 3, 20),))  # a leg moves, not the face
    frames, tracks = {}, {}
    for e in range(5):
        frames[e], tracks[e] = pro.render_pro(replace(spec, emotion=e), 0, (96, 80))
    np.testing.assert_array_equal(frames[ANGER], frames[SURPRISE])
    np.testing.assert_array_equal(frames[FEAR], frames[SURPRISE])
    np.testing.assert_array_equal(tracks[ANGER], tracks[SURPRISE])
    np.testing.assert_array_equal(tracks[JOY][:, :5], tracks[SADNESS][:, :5])  # same head, other mouth
    # joy and sadness: the same pixels outside the face box, other pixels inside it
    diff = np.abs(frames[JOY].astype(int) - frames[SADNESS].astype(int)).sum(-1)
    h, w = diff.shape[1:]
    inside = np.zeros_like(diff, dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(tracks[JOY][:, :4]):
        inside[i, int(y0 * h):int(np.ceil(y1 * h)), int(x0 * w):int(np.ceil(x1 * w))] = True
    assert diff[~inside].max() == 0
    assert (diff[inside] > 30).sum() >= 3 * spec.frames
    # a smile lifts the mouth corners, a frown drops them (landmark y: ml_y, mr_y)
    assert (tracks[JOY][:, [12, 14]] < tracks[SADNESS][:, [12, 14]]).all()


# --- face tracks against the pixels ------------------------------------------------------------------
SKIN, HAIR, GREY = (np.array(c, np.float32) for c in ([0, 200, 0], [0, 0, 200], [128, 128, 128]))


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """A clip of a person with pure green skin and pure blue hair on a flat grey background whose head
    nods, turns and tilts (hands stay on the thighs), rendered large, without pixel noise."""
    base = Subject.sample(np.random.default_rng(0))
    person = replace(base, skin=SKIN, hair=HAIR, long_hair=False, glasses=False, bg=GREY,
                     bg_grad=np.zeros(3, np.float32), bg_tex_amp=0.0, shirt=np.array([200, 40, 40], np.float32),
                     shirt_pattern=0, chair=np.array([90, 90, 90], np.float32))
    spec = pro.ProClipSpec("train", "x.mp4", SURPRISE, 0, 5, 60, 10, ((9, 2, 17), (8, 18, 33), (7, 35, 50)))
    mp = pytest.MonkeyPatch()
    mp.setattr(pro, "subject_of", lambda seed, subject: person)
    try:
        frames, track = pro.render_pro(spec, 0, (240, 200), noise=0.0, jitter=3.0)
    finally:
        mp.undo()
    gain = frames[:, :4, :4].reshape(-1, 3).mean(0)[0] / GREY[0]  # the clip's brightness, from the background
    return frames.astype(np.float32), track, gain


def test_face_box_holds_every_head_pixel_and_little_more(marked):
    frames, track, gain = marked
    t, h, w, _ = frames.shape
    top = int(0.45 * h)  # hands resting on the thighs are far below
    for i in range(t):
        img = frames[i, :top]
        # fully covered face and hair pixels (neck and ears are darker shades of the skin)
        head = (np.abs(img - SKIN * gain).max(-1) <= 2) | (np.abs(img - HAIR * gain).max(-1) <= 2)
        ys, xs = np.nonzero(head)
        assert len(ys) > 300
        x0, y0, x1, y1 = track[i, :4] * [w, h, w, h]
        assert x0 <= xs.min() + 0.5 and xs.max() + 0.5 <= x1 and y0 <= ys.min() + 0.5 and ys.max() + 0.5 <= y1
        tight = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
        assert (x1 - x0) * (y1 - y0) < 1.8 * tight
        # above the eyes (the neck is far below), pixels that the head covers by a tenth or more, edges
        # included: on a grey background those are the ones where green or blue stands out
        above = frames[i, :int(track[i, 6:9:2].min() * h)]
        edge = np.maximum(above[..., 1], above[..., 2]) - above[..., 0] > 0.1 * SKIN[1] * gain
        ys, xs = np.nonzero(edge)
        assert x0 <= xs.min() + 0.5 and xs.max() + 0.5 <= x1 and y0 <= ys.min() + 0.5
    # the head moved: the box followed it
    assert np.ptp(track[:, 0]) * w > 2


def test_landmarks_sit_on_the_eyes_nose_and_mouth(marked):
    frames, track, gain = marked
    _, h, w, _ = frames.shape
    skin = SKIN * gain
    for img, row in zip(frames, track):

        def at(col: int, img=img, row=row) -> np.ndarray:
            return img[int(row[col + 1] * h), int(row[col] * w)]

        assert row[5] < row[7]  # left eye left of the right one
        for col in (5, 7):  # pupils: dark
            assert at(col).sum() < 0.6 * skin.sum()
        nose = at(9)  # a darker shade of the skin
        assert nose[0] < 10 and nose[2] < 10 and 0.6 * skin[1] < nose[1] < 0.95 * skin[1]
        for col in (11, 13):  # lips: red, on green skin
            px = at(col)
            assert px[0] > px[1]
        assert row[10] > max(row[6], row[8]) and row[12] > row[10]


# --- reuse, refusals -----------------------------------------------------------------------------------
def test_rerun_reuses_the_dataset_and_other_arguments_are_refused(tiny):
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*") if p.is_file()}
    assert pro.write_procedural_pro(tiny, progress=False, **TINY) == tiny
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*") if p.is_file()} == before
    with pytest.raises(ValueError, match=r"num_train: 10 there, 11 asked"):
        pro.write_procedural_pro(tiny, progress=False, **{**TINY, "num_train": 11})


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    for bad, match in (({"num_val": 0}, "num_val=0"), ({"fps": 0}, "fps=0"),
                       ({"min_seconds": 4, "max_seconds": 3}, "min_seconds=4"),
                       ({"min_seconds": 0.5}, "at least 8"), ({"size": (47, 40)}, "size="),
                       ({"crf": 60}, "crf=60"), ({"noise": -1}, "noise=-1")):
        with pytest.raises(ValueError, match=re.escape(match)):
            pro.write_procedural_pro(tmp_path / "x", progress=False, **{**TINY, **bad})
    assert not (tmp_path / "x").exists()


# --- the MA-52 stand-in is untouched -------------------------------------------------------------------
# SHA-256 of frames rendered by the MA-52 stand-in before faces could show expressions (same code
# path, same seeds); a change to the figure that moves any of its pixels changes them.
MA52_FRAMES_48x40 = "99a01239a74cdef985615d35e3acc1cdfc674d099af0925677c898b06bb26a2c"
MA52_FRAMES_96x80 = "0788b3c5ff83b363bfe5a3b5e735952f77a5fc7b239f9ed04cdb28e068ea5d47"


def test_ma52_procedural_pixels_are_unchanged():
    specs, _ = plan(scale=0.01, seed=5)
    digest = hashlib.sha256()
    for label in (0, 3, 5, 6, 9, 10, 17, 28, 38, 42, 45, 47, 51):
        spec = next(s for s in specs if s.label == label)
        digest.update(render_spec(spec, seed=5, size=(48, 40)).tobytes())
    assert digest.hexdigest() == MA52_FRAMES_48x40
    spec = next(s for s in specs if s.label == 47)  # pushing glasses: the head, glasses and a hand at the face
    assert hashlib.sha256(render_spec(spec, seed=5, size=(96, 80)).tobytes()).hexdigest() == MA52_FRAMES_96x80

