"""The data recipes (docs/recipes.md): class-balanced sampling, rare-class augmentation, training on several
splits, test-time views and person crops, on real MP4s decoded by PyAV and checked against hand computations."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from helpers import BASE_TINY, compose_train
from torchvision.transforms.v2 import functional as F

from microaction.data.datamodule import MA52DataModule
from microaction.data.dataset import MA52Dataset
from microaction.data.layout import write_label_names, write_lists
from microaction.data.recipes import RareAug, lateral_classes, make_rare_aug, rare_classes
from microaction.data.samplers import ClassBalancedSampler
from microaction.data.sampling import segment_indices, window_indices
from microaction.data.transforms import CenterCrop, MultiScaleCrop, ThreeCrop
from microaction.data.video import read_frames, write_clip
from microaction.labels import LabelSpace
from microaction.tasks.views import forward_views
from microaction.utils.checks import ConfigError

# --- class-balanced sampling ---------------------------------------------------------------------------------

COUNTS = [400, 120, 30, 8, 2]  # a long tail: 560 clips of 5 classes


def _labels():
    return [c for c, n in enumerate(COUNTS) for _ in range(n)]


def _expected(power: float) -> np.ndarray:
    """Class probabilities by hand: every clip of class c weighs n_c^-power, so the class weighs n_c^(1-power)."""
    mass = np.array([n * n ** -power for n in COUNTS], dtype=np.float64)
    return mass / mass.sum()


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_class_balanced_draws_classes_with_the_expected_frequencies(power):
    labels = _labels()
    sampler = ClassBalancedSampler(labels, power, seed=3)
    assert len(sampler) == len(labels)  # an epoch is as long as the training set
    drawn = []
    for epoch in range(10):
        sampler.set_epoch(epoch)
        drawn += [labels[i] for i in sampler]
    observed = np.bincount(drawn, minlength=len(COUNTS))
    expected = _expected(power) * len(drawn)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 18.47, (observed, expected.round(1), chi2)  # 4 degrees of freedom, p = 0.001
    if power == 1.0:  # every class alike, whatever its count
        assert observed.min() > 0.8 * len(drawn) / len(COUNTS)


def test_ddp_shares_are_disjoint_parts_of_one_draw_that_changes_per_epoch():
    labels = _labels()
    world = 3
    ranks = [ClassBalancedSampler(labels, 0.5, num_replicas=world, rank=r, seed=7) for r in range(world)]
    whole = ClassBalancedSampler(labels, 0.5, num_replicas=world, rank=0, seed=7).draw(epoch=0).tolist()
    assert len(whole) == math.ceil(len(labels) / world) * world
    shares = [list(s) for s in ranks]
    assert {len(s) for s in shares} == {len(whole) // world}  # every process runs as many batches
    # positions r, r + world, ... of the shared draw: disjoint, and together the whole draw
    for r, share in enumerate(shares):
        assert share == whole[r::world]
    rebuilt = [shares[p % world][p // world] for p in range(len(whole))]
    assert rebuilt == whole
    for s in ranks:
        s.set_epoch(1)
    assert [list(s) for s in ranks] != shares
    assert [x for p in range(len(whole)) for x in [list(ranks[p % world])[p // world]]] \
        == ClassBalancedSampler(labels, 0.5, num_replicas=world, seed=7).draw(epoch=1).tolist()


def test_lightning_keeps_the_class_balanced_sampler_under_ddp_and_replaces_a_plain_one():
    """What Lightning does to a training loader under DDP (use_distributed_sampler=True, its default)."""
    import lightning as L
    from lightning.pytorch.trainer.states import RunningStage
    from torch.utils.data import DataLoader, DistributedSampler

    trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    assert trainer.distributed_sampler_kwargs == {"num_replicas": 2, "rank": 0}
    ours = DataLoader(list(range(13)), sampler=ClassBalancedSampler([0] * 10 + [1] * 3, 0.5, 2, 0))
    kept = trainer._data_connector._prepare_dataloader(ours, shuffle=True, mode=RunningStage.TRAINING)
    assert kept.sampler is ours.sampler
    plain = DataLoader(list(range(13)), shuffle=True)
    replaced = trainer._data_connector._prepare_dataloader(plain, shuffle=True, mode=RunningStage.TRAINING)
    assert type(replaced.sampler) is DistributedSampler


def test_the_datamodule_builds_the_sampler_from_the_trainers_ddp_settings(tiny_root, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    dm = MA52DataModule(str(tiny_root), num_segments=2, input_size=32, short_side=32, num_workers=0,
                        sampler="class_balanced", balance_power=1.0)
    dm.setup("fit")

    class FakeTrainer:  # what the datamodule reads of the trainer
        distributed_sampler_kwargs = {"num_replicas": 2, "rank": 1}

    dm.trainer = FakeTrainer()
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, ClassBalancedSampler)
    assert (sampler.num_replicas, sampler.rank, sampler.seed, sampler.power) == (2, 1, 11, 1.0)
    assert len(sampler) == 26  # 52 training clips over 2 processes


def test_defaults_keep_the_plain_shuffled_pass_and_single_views(tiny_root):
    cfg = compose_train([*BASE_TINY, f"data.root={tiny_root}"], tiny_root.parent / "unused")
    assert (cfg.data.sampler, cfg.data.train_splits, cfg.data.rare_aug, cfg.data.person_crop) == \
        ("random", ["train"], None, None)
    assert dict(cfg.data.test_views) == {"clips": 1, "crops": 1, "average": "logits"}
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert type(loader.sampler).__name__ == "RandomSampler"
    assert dm.datasets["val"].views == (1, 1) and dm.datasets["val"].centres is None
    assert dm.datasets["train"].rare is None
    assert dm.view_average == "logits"


@pytest.mark.parametrize("key,value,says", [
    ("sampler", "balanced", "data.sampler='balanced': expected one of random, class_balanced"),
    ("balance_power", 2, "data.balance_power=2"),
    ("train_splits", ["val"], "holding train"),
    ("train_splits", ["train", "test"], "no test split while data.test_has_labels=false"),
    ("test_views", {"clips": 0}, "data.test_views.clips=0"),
    ("test_views", {"crops": 2}, "data.test_views.crops=2"),
    ("test_views", {"clip": 2}, "unknown keys ['clip']"),
    ("rare_aug", {"quantile": 1.5}, "data.rare_aug.quantile=1.5"),
    ("rare_aug", {"flip_p": 0.5}, "while data.flip_p=0"),
])
def test_bad_recipe_settings_are_refused_naming_the_key(tiny_root, key, value, says):
    with pytest.raises(ConfigError, match=None) as err:
        MA52DataModule(str(tiny_root), flip_p=0.0, **{key: value})
    assert says in str(err.value)


# --- rare-class augmentation ---------------------------------------------------------------------------------


def test_rare_classes_are_those_at_or_below_the_quantile():
    labels = [0] * 100 + [1] * 50 + [2] * 10 + [3] * 3 + [4] * 1
    # counts sorted 1, 3, 10, 50, 100: the 0.4 quantile lies 0.6 of the way from 3 to 10, at 7.2
    classes, threshold = rare_classes(labels, 0.4)
    assert classes == {3, 4} and threshold == pytest.approx(7.2)
    assert rare_classes(labels, 0.0)[0] == {4}
    assert rare_classes(labels, 1.0)[0] == {0, 1, 2, 3, 4}


def test_ma52_has_no_side_specific_classes_and_a_lateral_space_refuses_flips():
    # MA-52's names say no side, so a horizontal flip keeps every label
    assert lateral_classes(LabelSpace.ma52().classes) == []
    names = ["waving left hand", "waving right hand", "nodding"]
    assert lateral_classes(names) == names[:2]
    settings = {"quantile": 1.0, "scales": [1.0], "max_scale_gap": 0, "min_span": 1.0, "flip_p": None}
    with pytest.raises(ValueError, match="name a side"):
        make_rare_aug(settings, [0, 1, 2], names, 32, flip_p=0.5)
    assert make_rare_aug({**settings, "flip_p": 0.0}, [0, 1, 2], names, 32, flip_p=0.5) is not None


def test_window_indices_stay_in_a_stretch_of_at_least_min_span():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(300):
        idx = window_indices(60, 8, rng, 0.5)
        assert np.all(np.diff(idx) >= 0) and idx.min() >= 0 and idx.max() < 60
        starts.add(int(idx[0]) // 10)
    assert len(starts) >= 4  # the window moves through the clip
    spreads = [int(np.ptp(window_indices(60, 8, np.random.default_rng(s), 0.5))) for s in range(200)]
    # a window of >= 30 frames cut into 8 segments of >= 3.75: the first frame lies in the first segment, the
    # last in the last, so they are more than 6 segments (22.5 frames) apart
    assert min(spreads) >= 22
    # over the whole clip they would be more than 45 apart (segments of 7.5 frames): the windows are shorter
    assert sum(s < 45 for s in spreads) > 50
    assert window_indices(60, 8, np.random.default_rng(0), 1.0).max() >= 52  # min_span 1: the whole clip


def test_only_training_clips_of_rare_classes_get_the_rare_augmentation(tiny_root):
    dm = MA52DataModule(str(tiny_root), num_segments=2, input_size=32, short_side=32, num_workers=0,
                        rare_aug={"quantile": 1.0})
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert isinstance(train.rare, RareAug) and train.rare.classes == frozenset(range(52))
    assert val.rare is None
    seen = []
    rare_class = train.records[0].label
    train.rare = RareAug(frozenset({rare_class}), lambda clip, *centre: seen.append(clip.shape) or clip[:, :, :32, :32],
                         min_span=1.0)
    train[0]
    train[1]
    assert len(seen) == 1  # the rare clip went through the rare transform, the other through the dataset's


# --- training on train + val ---------------------------------------------------------------------------------


def test_train_splits_concatenate_the_lists(tiny_root, caplog):
    dm = MA52DataModule(str(tiny_root), num_segments=2, input_size=32, short_side=32, num_workers=0,
                        train_splits=["train", "val"])
    assert dm.listed_clips("train") == 104  # before setup: counted from both lists
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "val metrics are optimistic" in caplog.text
    train = dm.datasets["train"]
    val_names = [r.name for r in dm.datasets["val"].records]
    # the val clips are named val/<name>: MA-52's train and val names follow one pattern and may coincide
    assert len(train) == 104 and [n for n, _ in dm.clip_list("train")] == \
        [r.name for r in dm.read_records("train")] + [f"val/{n}" for n in val_names]
    assert len(set(dm.clip_list("train"))) == 104
    assert train.labels() == [r.label for r in dm.read_records("train")] + [r.label for r in dm.read_records("val")]
    sample = train[60]  # a val clip, decoded from videos_val/ with the training transform
    assert sample["name"] == f"val/{val_names[8]}" and sample["index"] == 60
    assert sample["video"].shape == (2, 3, 32, 32)
    assert dm.datasets["val"].train is False and len(dm.datasets["val"]) == 52


# --- test-time views -----------------------------------------------------------------------------------------


@pytest.fixture
def view_clip(tmp_path):
    """One 20-frame portrait clip (48 wide, 80 high) of noise, in a val list."""
    root = tmp_path / "views"
    frames = np.random.default_rng(0).integers(0, 255, size=(20, 80, 48, 3), dtype=np.uint8)
    (root / "videos_val").mkdir(parents=True)
    write_clip(root / "videos_val" / "a.mp4", frames, crf=0)
    write_lists(root, "val", [("a.mp4", 5)])
    write_label_names(root)
    return root


def test_views_one_is_the_centre_clip_and_several_are_the_shifted_clips_and_three_crops(view_clip):
    path = view_clip / "videos_val" / "a.mp4"
    t, size = 4, 32
    one = MA52Dataset(view_clip, "val", num_segments=t, transform=CenterCrop(size), short_side=None)
    video = one[0]["video"]
    centres = [int((i + 0.5) * 20 / t) for i in range(t)]
    by_hand = torch.from_numpy(read_frames(path, lambda n: np.array(centres))).permute(0, 3, 1, 2)
    assert torch.equal(video, F.center_crop(by_hand, [size, size]))

    many = MA52Dataset(view_clip, "val", num_segments=t, transform=ThreeCrop(size), short_side=None)
    many.views = (2, 3)
    video = many[0]["video"]
    assert video.shape == (6, t, 3, size, size)
    for k, offset in enumerate((0.25, 0.75)):
        idx = [int(math.floor((i + offset) * 20 / t)) for i in range(t)]
        frames = torch.from_numpy(read_frames(path, lambda n: np.array(idx))).permute(0, 3, 1, 2)
        left = (48 - size) // 2
        for c, top in enumerate((0, (80 - size) // 2, 80 - size)):  # portrait: top, middle, bottom
            assert torch.equal(video[3 * k + c], frames[:, :, top:top + size, left:left + size]), (k, c)


def test_forward_views_averages_the_single_view_outputs():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.Linear(2 * 3 * 8 * 8, 7))

    def forward(video):
        return {"logits": net(video), "embedding": net(video)[:, :3] * 2}

    video = torch.randn(4, 6, 2, 3, 8, 8)  # 4 clips of 6 views
    out = forward_views(forward, video)
    by_hand = torch.stack([torch.stack([forward(video[n, v][None])["logits"][0] for v in range(6)]).mean(0)
                           for n in range(4)])
    assert out["logits"].shape == (4, 7)
    torch.testing.assert_close(out["logits"], by_hand, rtol=0, atol=1e-5)
    torch.testing.assert_close(out["embedding"], by_hand[:, :3] * 2, rtol=0, atol=1e-5)
    probs = torch.stack([torch.stack([forward(video[n, v][None])["logits"][0].softmax(0) for v in range(6)]).mean(0)
                         for n in range(4)])
    torch.testing.assert_close(forward_views(forward, video, "softmax")["logits"].softmax(1), probs, rtol=0, atol=1e-6)
    single = torch.randn(4, 2, 3, 8, 8)
    assert torch.equal(forward_views(forward, single)["logits"], forward(single)["logits"])


# --- person crop ---------------------------------------------------------------------------------------------

H, W = 240, 400


def _figure_clip(cx: int | None, frames: int = 6, seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3]: a dark standing figure (head, torso, arms, legs) centred at x = ``cx`` on a light
    noisy background, its arms swinging a little; ``cx`` None: the background alone."""
    cv2 = pytest.importorskip("cv2", reason="the faces extra (opencv-python-headless) is not installed")
    rng = np.random.default_rng(seed)
    out = np.empty((frames, H, W, 3), np.uint8)
    for t in range(frames):
        img = np.full((H, W, 3), 200, np.uint8) + rng.integers(0, 20, (H, W, 3)).astype(np.uint8)
        if cx is not None:
            top, col, swing = 40, (40, 40, 60), 3 * math.sin(t)
            cv2.circle(img, (cx, top + 12), 11, col, -1)
            cv2.rectangle(img, (cx - 8, top + 22), (cx + 8, top + 28), col, -1)
            cv2.ellipse(img, (cx, top + 55), (20, 30), 0, 0, 360, col, -1)
            for side in (-1, 1):
                cv2.line(img, (cx + side * 18, top + 32), (int(cx + side * (26 + swing)), top + 85), col, 7)
                cv2.line(img, (cx + side * 8, top + 80), (cx + side * 12, top + 150), col, 10)
        out[t] = img
    return out


@pytest.fixture
def figure_root(tmp_path):
    """An MA-52 layout whose val clips show the figure right of centre (x = 0.7 and 0.65 of the width) and one
    clip without anyone."""
    root = tmp_path / "people"
    clips = [("right.mp4", 3, int(0.7 * W)), ("right2.mp4", 9, int(0.65 * W)), ("empty.mp4", 1, None)]
    (root / "videos_val").mkdir(parents=True)
    for name, _, cx in clips:
        write_clip(root / "videos_val" / name, _figure_clip(cx), crf=18)
    write_lists(root, "val", [(n, label) for n, label, _ in clips])
    write_label_names(root)
    return root


def _detect_people_script():
    """scripts/detect_people.py as a module (its main() takes the command line's arguments)."""
    from importlib import util

    from helpers import REPO

    spec = util.spec_from_file_location("detect_people_script", REPO / "scripts" / "detect_people.py")
    script = util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_detect_people_finds_the_off_centre_figure_and_crops_follow_it(figure_root, tmp_path, caplog, capsys):
    boxes = tmp_path / "boxes"
    # the documented command line: python scripts/detect_people.py ROOT OUT (here one split, 3 frames a clip)
    assert _detect_people_script().main([str(figure_root), str(boxes), "--splits", "val", "--frames", "3"]) == 0
    assert "a person in 2 of 3 clips" in capsys.readouterr().out
    from microaction.data.person_boxes import read_boxes

    found = read_boxes(boxes / "val.csv")
    assert found["empty.mp4"] is None
    for name, cx in (("right.mp4", 0.7), ("right2.mp4", 0.65)):
        x0, y0, x1, y1 = found[name]
        assert abs((x0 + x1) / 2 - cx) < 0.05, (name, found[name])  # the figure, not the frame's centre
        assert y0 < 40 / H + 0.1 and y1 > 190 / H - 0.1  # from the head to the feet

    short, size = 64, 48
    with caplog.at_level(logging.WARNING):
        dm = MA52DataModule(str(figure_root), num_segments=2, input_size=size, short_side=short, num_workers=0,
                            person_crop=str(boxes))
        dm.setup("validate")
    assert dm.no_person == {"val": ["empty.mp4"]}
    assert "1 of 3 clips have no person box" in caplog.text
    val = dm.datasets["val"]
    width = round(W * short / H)  # the decoded frames: short side 64
    for i, name in enumerate(["right.mp4", "right2.mp4", "empty.mp4"]):
        frames = read_frames(figure_root / "videos_val" / name, lambda n: segment_indices(n, 2, False), short)
        clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
        if found[name] is None:
            expected = F.center_crop(clip, [size, size])  # no box: the frame's centre
        else:
            x0, y0, x1, y1 = found[name]
            left = min(max(round((x0 + x1) / 2 * width - size / 2), 0), width - size)
            top = min(max(round((y0 + y1) / 2 * short - size / 2), 0), short - size)
            expected = clip[:, :, top:top + size, left:left + size]
            assert left > (width - size) // 2  # right of the centre crop
        assert torch.equal(val[i]["video"], expected), name


def test_missing_or_malformed_person_boxes_are_named_before_any_decoding(tiny_root, tmp_path):
    from microaction.data.person_boxes import PersonBoxError, read_boxes, write_boxes

    dm = MA52DataModule(str(tiny_root), person_crop=str(tmp_path / "boxes"))
    with pytest.raises(FileNotFoundError, match=r"no person boxes for split train .*detect_people.py"):
        dm.check_layout(["train", "val"])
    path = write_boxes(tmp_path / "boxes" / "val.csv", [("a.mp4", (0.1, 0.2, 0.5, 0.9), 0.8), ("b.mp4", None, None)])
    assert read_boxes(path) == {"a.mp4": pytest.approx((0.1, 0.2, 0.5, 0.9)), "b.mp4": None}
    path.write_text(path.read_text() + "c.mp4,0.6,0.2,0.5,0.9,0.7\n")
    with pytest.raises(PersonBoxError, match=rf"{path}:4: expected 0 <= x0 < x1 <= 1"):
        read_boxes(path)


def test_training_crop_is_placed_around_the_centre():
    # every pixel holds its own x coordinate: a crop's mean value is its middle column
    clip = torch.arange(100, dtype=torch.uint8).expand(2, 3, 60, 100).contiguous()
    crop = MultiScaleCrop(30, scales=[0.5], flip_p=0.0)
    for cx in (0.2, 0.5, 0.7):
        out = crop(clip, (cx, 0.5))
        assert out.shape == (2, 3, 30, 30)
        assert out.float().mean().item() == pytest.approx(round(cx * 100 - 15) + 14.5)
    assert crop(clip, (0.99, 0.5)).float().mean().item() == pytest.approx(70 + 14.5)  # kept inside the frame


# --- the documented commands ---------------------------------------------------------------------------------


def _recipe_train_commands() -> list[str]:
    from test_docs_commands import documented_commands

    keys = ("data.sampler=", "data.rare_aug=", "data.train_splits=", "data.person_crop=")
    return [c for c, doc in documented_commands().items()
            if doc == "docs/recipes.md" and c.startswith("python train.py") and any(k in c for k in keys)]


def test_documented_recipe_commands_compose_and_switch_their_recipe_on(tiny_root, tmp_path):
    """Each train.py line of docs/recipes.md's recipe sections as train.py composes it (the data root and the
    box folder replaced by the tiny dataset's), its data set up: the switch it names is on."""
    import shlex

    from helpers import TINY
    from hydra.utils import instantiate

    from microaction.data.person_boxes import write_boxes

    boxes = tmp_path / "boxes"
    for split in ("train", "val"):
        names = [r.name for r in MA52DataModule(str(tiny_root)).read_records(split)]
        write_boxes(boxes / f"{split}.csv", [(n, (0.5, 0.1, 0.9, 0.9), 0.9) for n in names[:40]] +
                    [(n, None, None) for n in names[40:]])
    commands = _recipe_train_commands()
    assert len(commands) == 4, commands
    for command in commands:
        args = shlex.split(command)[2:]
        args = [f"data.root={tiny_root}" if a.startswith("data.root=") else
                f"data.person_crop={boxes}" if a.startswith("data.person_crop=") else a for a in args]
        cfg = compose_train([*args, *(t for t in TINY if t.startswith("data.")), "data.num_workers=0"],
                            tmp_path / "run")
        dm = instantiate(cfg.data)
        dm.setup("fit")
        train = dm.datasets["train"]
        if "data.sampler=class_balanced" in command:
            assert isinstance(dm.train_dataloader().sampler, ClassBalancedSampler)
            assert dm.train_dataloader().sampler.power == 0.5
        elif "data.rare_aug=true" in command:
            assert train.rare is not None and len(train.rare.classes) == 52  # one clip per class: all at the quantile
        elif "data.train_splits" in command:
            assert len(train) == 104
        else:
            assert len(train.centres) == 40 and centre_of(train, 0) == pytest.approx((0.7, 0.5))
            assert len(dm.no_person["train"]) == 12 and len(dm.datasets["val"].centres) == 40


def centre_of(dataset, i: int) -> tuple[float, float]:
    return dataset.centres[dataset.records[i].name]
