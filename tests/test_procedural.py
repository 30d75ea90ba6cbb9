"""The procedural micro-action dataset: determinism, layout, long tail, splits, order-only pairs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from microaction.classes import NUM_FINE, class_table
from microaction.data.synthetic import get_generator
from microaction.data.synthetic.procedural import (
    ORDER_PAIRS,
    ClipParams,
    class_counts,
    plan,
    render_clip,
    render_spec,
    subject_of,
    write_procedural,
)
from microaction.data.synthetic.procedural.figure import Subject

TINY = dict(scale=0.001, seed=3, size=(32, 24), num_subjects=6, workers=2, progress=False, audio=True)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    # every class at its minimum (2 train, 1 val, 1 test clip): 208 clips of 32 x 24
    return write_procedural(tmp_path_factory.mktemp("proc") / "ma52_procedural", **TINY)


def read_list(root: Path, split: str) -> list[tuple[str, int]]:
    lines = (root / f"{split}_list_videos.txt").read_text().split("\n")
    return [(name, int(label)) for name, label in (line.split() for line in lines if line.strip())]


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(stream)])


def still(seed: int = 0, **kw) -> ClipParams:
    """Clip parameters without noise and camera shake, so that only the figure moves."""
    return ClipParams.sample(np.random.default_rng(seed), noise=0.0, jitter=0.0, **kw)


# --- determinism ---------------------------------------------------------------------------
def test_same_seed_same_frames_other_seed_other_frames():
    specs, _ = plan(scale=0.01, seed=5)
    a = render_spec(specs[7], seed=5, size=(32, 24))
    b = render_spec(specs[7], seed=5, size=(32, 24))
    c = render_spec(specs[7], seed=6, size=(32, 24))
    np.testing.assert_array_equal(a, b)
    assert a.shape[1:] == (32, 24, 3) and 45 <= a.shape[0] <= 75
    assert a.shape != c.shape or np.abs(a.astype(int) - c.astype(int)).mean() > 5


def test_plan_is_deterministic_and_independent_of_rendering_order():
    assert plan(scale=0.02, seed=1) == plan(scale=0.02, seed=1)
    assert plan(scale=0.02, seed=1) != plan(scale=0.02, seed=2)
    specs, _ = plan(scale=0.01, seed=0)
    first = render_spec(specs[3], 0, (32, 24))
    render_spec(specs[9], 0, (32, 24))
    np.testing.assert_array_equal(first, render_spec(specs[3], 0, (32, 24)))


def test_written_clip_holds_the_planned_frames(tiny):
    specs, _ = plan(scale=TINY["scale"], seed=TINY["seed"], num_subjects=TINY["num_subjects"])
    spec = next(s for s in specs if s.split == "val" and s.label == 9)
    frames = decode(tiny / "videos_val" / spec.name)
    expected = render_spec(spec, TINY["seed"], TINY["size"])
    other = render_spec(next(s for s in specs if s.split == "val" and s.label == 45), TINY["seed"], TINY["size"])
    assert frames.shape == expected.shape
    # H.264 at this size removes most of the pixel noise, hence a relative bound
    err = np.abs(frames.astype(int) - expected.astype(int)).mean()
    n = min(len(other), len(frames))
    assert err < 0.25 * np.abs(frames[:n].astype(int) - other[:n].astype(int)).mean()


# --- layout and class balance ---------------------------------------------------------------
def test_official_layout_and_names(tiny):
    table = class_table()
    names = (tiny / "label_name.txt").read_text().splitlines()
    assert names == [f"{i}\t{n}" for i, n in enumerate(table.fine_names)]
    for split in ("train", "val", "test"):
        entries = read_list(tiny, split)
        files = {p.name for p in (tiny / f"videos_{split}").iterdir()}
        assert {n for n, _ in entries} == files
        for name, label in entries:
            if split == "test":
                assert name.startswith("test") and name.endswith(".mp4")
            else:
                subject, body, _ = name[:-4].split("_")
                assert int(body) == table.fine_to_coarse[label] and len(subject) == 4
    assert not (tiny / "train_list_videos.txt").read_text().endswith("\n")
    with av.open(str(tiny / "videos_test" / "test0000.mp4")) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert c.streams.video[0].average_rate == 30
    meta = json.loads((tiny / "procedural.json").read_text())
    assert meta["order_pairs"] == [list(p) for p in ORDER_PAIRS]


def test_the_datamodule_reads_it(tiny):
    from microaction.data.datamodule import MA52DataModule

    dm = MA52DataModule(str(tiny), num_segments=4, input_size=16, short_side=16, num_workers=0, test_has_labels=True)
    dm.setup("fit")
    item = dm.datasets["train"][0]
    assert tuple(item["video"].shape) == (4, 3, 16, 16)
    assert item["label"] == read_list(tiny, "train")[0][1]


def test_class_counts_follow_the_scaled_long_tail_2_1_1():
    ma52 = class_table().train_counts
    counts = class_counts(0.1)
    for n, (train, val, test) in zip(ma52, counts):
        assert train == max(2, round(0.1 * n)) + max(2, round(0.1 * n)) % 2
        assert val == test == train // 2
    train = [c[0] for c in counts]
    assert train.index(max(train)) == 9  # nodding, MA-52's head class
    assert train[45] == min(train)  # covering face, its rarest
    # rank order preserved: a class never has fewer clips than a rarer one
    order = np.argsort(ma52, kind="stable")
    assert all(train[a] <= train[b] for a, b in zip(order, order[1:]))
    assert sum(train) == 2 * sum(c[1] for c in counts) == 2 * sum(c[2] for c in counts)


def test_written_lists_match_the_counts(tiny):
    counts = class_counts(TINY["scale"])
    for k, split in enumerate(("train", "val", "test")):
        got = Counter(label for _, label in read_list(tiny, split))
        assert [got[c] for c in range(NUM_FINE)] == [c[k] for c in counts]


def test_subject_disjoint_splits_really_are():
    specs, pools = plan(scale=0.05, seed=0, subject_disjoint=True, num_subjects=12)
    used = {s: {c.subject for c in specs if c.split == s} for s in ("train", "val", "test")}
    assert not used["train"] & used["val"] and not used["train"] & used["test"] and not used["val"] & used["test"]
    assert all(used[s] <= set(pools[s]) for s in used)
    for c in specs:
        if c.split != "test":
            assert int(c.name.split("_")[0]) == c.subject
    shared, _ = plan(scale=0.05, seed=0, subject_disjoint=False, num_subjects=12)
    train = {c.subject for c in shared if c.split == "train"}
    assert train & {c.subject for c in shared if c.split == "val"}


# --- the classes --------------------------------------------------------------------------
@pytest.mark.parametrize("forward,backward", ORDER_PAIRS)
def test_order_only_pairs_are_the_same_frames_reversed(forward, backward):
    subject = subject_of(11, 4)
    params = ClipParams.sample(np.random.default_rng(17))
    a = render_clip(forward, subject, params, (48, 40), noise_seed=99)
    b = render_clip(backward, subject, params, (48, 40), noise_seed=99)
    np.testing.assert_array_equal(b, a[::-1])
    # and the movement is real: the clip is not its own reverse
    assert np.abs(a[0].astype(int) - a[-1].astype(int)).max() > 40


def test_every_class_is_its_own_movement():
    subject = Subject.sample(np.random.default_rng(2))
    params = still(4, frames=(45, 45))
    clips = np.stack([render_clip(c, subject, params, (40, 32)).astype(np.int16) for c in range(NUM_FINE)])
    rest = clips[:, :1]
    # something moves in every class ...
    motion = np.abs(clips - rest).reshape(NUM_FINE, -1).max(1)
    assert (motion > 40).all(), np.flatnonzero(motion <= 40)
    # ... and no two classes give the same clip
    flat = clips.reshape(NUM_FINE, -1)
    for i in range(NUM_FINE):
        diff = np.abs(flat - flat[i]).mean(1)
        diff[i] = np.inf
        assert diff.min() > 0.03, (i, int(diff.argmin()))


def test_lower_crf_keeps_more_of_a_subtle_movement(tmp_path):
    """At 48 x 40 px the default H.264 quality erases much of a nod; crf=12 keeps more of it."""
    from microaction.data.video import write_clip

    nodding = 9
    params = ClipParams.sample(np.random.default_rng(4), amplitude=3.0, noise=0.25, jitter=0.25)
    clean = render_clip(nodding, subject_of(0, 1), ClipParams(**{**params.__dict__, "noise": 0.0}), (48, 40))
    noisy = render_clip(nodding, subject_of(0, 1), params, (48, 40), noise_seed=1)

    def temporal_corr(frames: np.ndarray) -> float:
        a, b = clean.astype(float), frames.astype(float)
        return float(np.corrcoef((a - a.mean(0)).ravel(), (b - b.mean(0)).ravel())[0, 1])

    kept = {}
    for crf in (23, 12):
        path = tmp_path / f"crf{crf}.mp4"
        write_clip(path, noisy, fps=30, audio=False, crf=crf)
        kept[crf] = temporal_corr(decode(path))
    assert temporal_corr(noisy) > 0.9  # the pixel noise alone hides little
    assert kept[12] > kept[23] + 0.05, kept


# --- arguments and reuse -----------------------------------------------------------------
def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        write_procedural(tmp_path / "a", scale=0)
    with pytest.raises(ValueError, match="size"):
        write_procedural(tmp_path / "b", size=(31, 24))
    with pytest.raises(ValueError, match="size"):
        write_procedural(tmp_path / "c", size=(24, 32))
    with pytest.raises(ValueError, match="amplitude"):
        write_procedural(tmp_path / "d", amplitude=-1)
    with pytest.raises(ValueError, match="num_subjects"):
        write_procedural(tmp_path / "e", subject_disjoint=True, num_subjects=3)
    with pytest.raises(ValueError, match="crf=60"):
        write_procedural(tmp_path / "f", crf=60)
    with pytest.raises(ValueError, match="label"):
        render_clip(52, subject_of(0, 0), still())


def test_finished_dataset_is_reused_only_with_the_same_arguments(tiny):
    assert write_procedural(tiny, **TINY) == tiny
    with pytest.raises(ValueError, match="amplitude"):
        write_procedural(tiny, **{**TINY, "amplitude": 2.0})


def test_registered_generator_and_config():
    from hydra import compose, initialize_config_dir

    assert get_generator("procedural") is write_procedural
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["data=procedural", "paths.data_dir=/data"])
    assert cfg.data.generate == "procedural"
    assert cfg.data.root == "/data/ma52_procedural"
    import inspect

    params = inspect.signature(write_procedural).parameters
    assert set(cfg.data.generate_kwargs) <= set(params)
