"""MA52Dataset, collate_skipping and MA52DataModule on tiny datasets in the official layout."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import decodable_frames
import torch
from torch.utils.data import DataLoader, get_worker_info

from microaction.classes import class_table
from microaction.data.annotations import LAYOUT_HELP, AnnotationError, list_path, video_dir
from microaction.data.datamodule import MA52DataModule
from microaction.data.dataset import MA52Dataset, UndecodableClipError, collate_skipping
from microaction.data.layout import write_label_names, write_lists
from microaction.data.synthetic.staging import COMPLETE_MARKER, is_complete
from microaction.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from microaction.data.video import DecodeError, write_clip

# Body part by fine id, straight from SPEC section 2 (independent of classes.csv).
SPEC_COARSE = {**{f: 0 for f in range(0, 5)}, **{f: 1 for f in range(5, 11)}, **{f: 2 for f in range(11, 24)},
               **{f: 3 for f in range(24, 32)}, **{f: 4 for f in range(32, 38)}, **{f: 5 for f in range(38, 48)},
               **{f: 6 for f in range(48, 52)}}

# (file name, fine id, frames). The BB field of every train/val name is a WRONG body part.
LEAKY = [
    ("0001_06_0001.mp4", 9, 12),  # head (1), name says leg-hand (6)
    ("0002_00_0002.mp4", 30, 9),  # lower limb (3), name says body (0)
    ("0003_03_0003.mp4", 0, 5),  # body (0), name says lower limb (3)
    ("0004_01_0004.mp4", 51, 16),  # leg-hand (6), name says head (1)
    ("0005_02_0005.mp4", 40, 7),  # head-hand (5), name says upper limb (2)
    ("0006_05_0006.mp4", 12, 10),  # upper limb (2), name says head-hand (5)
]


def _make_split(root, split, entries, markers, corrupt=(), size=(32, 48)):
    """Write clips (marked frames) and the list file for ``split``; ``corrupt`` names get junk bytes."""
    vdir = video_dir(root, split)
    vdir.mkdir(parents=True, exist_ok=True)
    for name, _, n in entries:
        if name in corrupt:
            (vdir / name).write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
        else:
            write_clip(vdir / name, markers.frames(n, *size), crf=12)
    write_lists(root, split, [(name, label) for name, label, _ in entries])
    return root


@pytest.fixture
def leaky_root(tmp_path, markers):
    root = tmp_path / "ma52"
    _make_split(root, "val", LEAKY, markers)
    write_label_names(root)
    return root


def _centres(n, t):
    return [int((i + 0.5) * n / t) for i in range(t)]


# --- samples ---------------------------------------------------------------------------


def test_coarse_label_comes_from_class_table_not_file_name(leaky_root):
    ds = MA52Dataset(leaky_root, "val", num_segments=4, short_side=None)
    table = class_table().fine_to_coarse
    assert len(ds) == len(LEAKY)
    for i, (name, fine, _) in enumerate(LEAKY):
        s = ds[i]
        leaked = int(name.split("_")[1])
        assert s["name"] == name
        assert s["label"] == fine
        assert s["coarse"] == table[fine] == SPEC_COARSE[fine]
        assert s["coarse"] != leaked


def test_coarse_label_never_parsed_from_name_even_for_test_style_names(tmp_path, markers):
    entries = [("test0000.mp4", 45, 6), ("test0001.mp4", 25, 6), ("weird_name.mp4", 7, 6)]
    root = _make_split(tmp_path / "r", "test", entries, markers)
    ds = MA52Dataset(root, "test", num_segments=2, short_side=None)
    assert [ds[i]["coarse"] for i in range(3)] == [5, 3, 1]


def test_sample_keys_shapes_dtypes_and_frames(leaky_root, markers):
    t = 8
    ds = MA52Dataset(leaky_root, "val", num_segments=t, short_side=None)
    assert ds.labels() == [fine for _, fine, _ in LEAKY]
    for i, (name, fine, n) in enumerate(LEAKY):
        s = ds[i]
        assert set(s) == {"video", "label", "coarse", "index", "name", "partial"}
        assert s["partial"] == ""  # decoded in full
        v = s["video"]
        assert isinstance(v, torch.Tensor)
        assert v.dtype == torch.uint8
        assert v.shape == (t, 3, 32, 48)
        assert s["index"] == i and isinstance(s["index"], int)
        assert isinstance(s["label"], int) and isinstance(s["coarse"], int)
        # [T, 3, H, W]: channel axis is 1 and the frames are the TSN centres.
        assert markers.read(v.permute(0, 2, 3, 1).numpy(), n) == _centres(n, t)


def test_short_side_and_transform(leaky_root):
    seen = []

    def transform(clip):
        seen.append((clip.shape, clip.dtype))
        return clip[:, :, :8, :10].clone()

    ds = MA52Dataset(leaky_root, "val", num_segments=3, short_side=16, transform=transform)
    s = ds[0]
    assert seen == [(torch.Size([3, 3, 16, 24]), torch.uint8)]
    assert s["video"].shape == (3, 3, 8, 10)


def test_train_mode_samples_inside_segments(leaky_root, markers):
    ds = MA52Dataset(leaky_root, "val", num_segments=4, train=True, short_side=None)
    name, fine, n = LEAKY[3]  # 16 frames
    draws = set()
    for _ in range(12):
        ids = markers.read(ds[3]["video"].permute(0, 2, 3, 1).numpy(), n)
        for i, k in enumerate(ids):
            assert 4 * i <= k < 4 * (i + 1)
        draws.add(tuple(ids))
    assert len(draws) > 1


# --- construction errors -------------------------------------------------------------------


def test_listed_but_missing_video_fails_at_construction(leaky_root):
    missing = video_dir(leaky_root, "val") / LEAKY[2][0]
    missing.unlink()
    with pytest.raises(FileNotFoundError) as exc:
        MA52Dataset(leaky_root, "val")
    msg = str(exc.value)
    assert str(missing) in msg
    assert f"{list_path(leaky_root, 'val')}:3" in msg
    assert "1 of 6" in msg
    # Present clips are not reported.
    assert LEAKY[0][0] not in msg


def test_missing_video_folder(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    write_lists(root, "train", [("a.mp4", 1)])
    with pytest.raises(FileNotFoundError) as exc:
        MA52Dataset(root, "train")
    assert str(video_dir(root, "train")) in str(exc.value)
    assert LAYOUT_HELP in str(exc.value)


def test_missing_list_file(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        MA52Dataset(tmp_path, "val")
    assert str(list_path(tmp_path, "val")) in str(exc.value)


def test_bad_list_line_propagates(tmp_path):
    video_dir(tmp_path, "val").mkdir()
    list_path(tmp_path, "val").write_text("a.mp4 3\nb.mp4 77")
    with pytest.raises(AnnotationError, match=r"val_list_videos\.txt:2"):
        MA52Dataset(tmp_path, "val")


def test_invalid_on_decode_error_mode(leaky_root):
    with pytest.raises(ValueError, match="on_decode_error"):
        MA52Dataset(leaky_root, "val", on_decode_error="ignore")


# --- corrupt clips and collate ----------------------------------------------------------------


@pytest.fixture
def corrupt_root(tmp_path, markers):
    entries = [("0001_01_0001.mp4", 5, 10), ("0002_01_0002.mp4", 6, 10), ("0003_02_0003.mp4", 20, 14)]
    return _make_split(tmp_path / "c", "val", entries, markers, corrupt={"0002_01_0002.mp4"}), entries


def test_corrupt_clip_skipped_and_collate_drops_it(corrupt_root, markers):
    root, entries = corrupt_root
    ds = MA52Dataset(root, "val", num_segments=4, short_side=None, on_decode_error="skip")
    samples = [ds[i] for i in range(3)]
    assert samples[1]["skipped"] == "0002_01_0002.mp4" and samples[1]["reason"]
    batch = collate_skipping(samples)
    assert batch["num_skipped"] == 1
    assert batch["skipped"] == ["0002_01_0002.mp4"]
    assert batch["partial"] == [] and set(batch["decode_notes"]) == {"0002_01_0002.mp4"}
    assert batch["video"].shape == (2, 4, 3, 32, 48)
    assert batch["video"].dtype == torch.uint8
    assert batch["label"].tolist() == [5, 20]
    assert batch["coarse"].tolist() == [1, 2]
    assert batch["index"].tolist() == [0, 2]
    assert batch["name"] == ["0001_01_0001.mp4", "0003_02_0003.mp4"]
    assert markers.read(batch["video"][0].permute(0, 2, 3, 1).numpy(), 10) == _centres(10, 4)
    assert markers.read(batch["video"][1].permute(0, 2, 3, 1).numpy(), 14) == _centres(14, 4)


def test_collate_all_skipped_and_none_skipped(corrupt_root):
    root, _ = corrupt_root
    ds = MA52Dataset(root, "val", num_segments=2, short_side=None, on_decode_error="skip")
    batch = collate_skipping([ds[1], ds[1]])
    assert {k: batch[k] for k in ("num_skipped", "skipped", "partial")} == {
        "num_skipped": 2, "skipped": ["0002_01_0002.mp4", "0002_01_0002.mp4"], "partial": []}
    assert "video" not in batch
    batch = collate_skipping([ds[0], ds[2]])
    assert batch["num_skipped"] == 0 and batch["skipped"] == [] and batch["decode_notes"] == {}
    assert batch["video"].shape[0] == 2


def test_corrupt_clip_raises_in_raise_mode(corrupt_root):
    root, _ = corrupt_root
    ds = MA52Dataset(root, "val", num_segments=2, short_side=None, on_decode_error="raise")
    assert ds[0]["label"] == 5
    with pytest.raises(UndecodableClipError) as exc:
        ds[1]
    assert isinstance(exc.value, DecodeError)
    # the file, its list file and line, and the key that would skip it
    assert str(video_dir(root, "val") / "0002_01_0002.mp4") in str(exc.value)
    assert f"{list_path(root, 'val')}:2:" in str(exc.value)
    assert "data.on_decode_error=skip" in str(exc.value)
    # raising is the dataset's default: skipping is asked for
    with pytest.raises(UndecodableClipError):
        MA52Dataset(root, "val", num_segments=2, short_side=None)[1]


def test_undecodable_clip_in_a_worker_keeps_its_type_and_line(corrupt_root):
    root, _ = corrupt_root
    ds = MA52Dataset(root, "val", num_segments=2, short_side=None, on_decode_error="raise")
    loader = DataLoader(ds, batch_size=3, num_workers=1, collate_fn=collate_skipping)
    with pytest.raises(UndecodableClipError, match=r"val_list_videos\.txt:2: .*0002_01_0002\.mp4"):
        list(loader)


class _WorkerTaggingDataset(MA52Dataset):
    def __getitem__(self, index):
        sample = super().__getitem__(index)
        info = get_worker_info()
        sample["worker"] = -1 if info is None else info.id
        sample["pid"] = os.getpid()
        return sample


def test_dataloader_with_two_workers_yields_each_clip_once(leaky_root, corrupt_root, markers):
    ds = _WorkerTaggingDataset(leaky_root, "val", num_segments=4, short_side=None)
    loader = DataLoader(ds, batch_size=2, shuffle=False, num_workers=2, collate_fn=collate_skipping)
    names, workers, pids = [], set(), set()
    frames_by_name = {n: k for n, _, k in LEAKY}
    for batch in loader:
        assert batch["num_skipped"] == 0
        assert batch["video"].shape[1:] == (4, 3, 32, 48)
        names += batch["name"]
        workers.update(batch["worker"].tolist())
        pids.update(batch["pid"].tolist())
        for name, clip, label in zip(batch["name"], batch["video"], batch["label"].tolist()):
            n = frames_by_name[name]
            assert markers.read(clip.permute(0, 2, 3, 1).numpy(), n) == _centres(n, 4)
            assert label == dict((a, b) for a, b, _ in LEAKY)[name]
    assert sorted(names) == sorted(n for n, _, _ in LEAKY)
    assert len(names) == len(set(names))
    assert names == [n for n, _, _ in LEAKY]  # eval, no shuffle: list order
    assert workers == {0, 1}
    assert os.getpid() not in pids and len(pids) == 2

    # Skipping works across worker processes too.
    root, _ = corrupt_root
    ds = MA52Dataset(root, "val", num_segments=2, short_side=None, on_decode_error="skip")
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_skipping)
    batches = list(loader)
    assert len(batches) == 1
    assert batches[0]["num_skipped"] == 1 and batches[0]["name"] == ["0001_01_0001.mp4", "0003_02_0003.mp4"]


# --- datamodule -----------------------------------------------------------------------------


@pytest.mark.parametrize("root", [None, ""])
def test_datamodule_root_not_set(root):
    dm = MA52DataModule(root=root, num_workers=0)
    with pytest.raises(ValueError, match=r"data\.root"):
        dm.setup("fit")


def test_datamodule_root_missing(tmp_path):
    root = tmp_path / "no" / "such" / "dir"
    dm = MA52DataModule(root=str(root), num_workers=0)
    with pytest.raises(FileNotFoundError) as exc:
        dm.setup("fit")
    msg = str(exc.value)
    assert str(root) in msg
    assert "data.root" in msg  # the root itself is reported, not a file under it
    assert "train_list_videos.txt" not in msg.split("\n")[0]
    assert LAYOUT_HELP in msg


def test_datamodule_missing_val_list(tmp_path, markers):
    root = _make_split(tmp_path / "r", "train", LEAKY[:1], markers)
    dm = MA52DataModule(root=str(root), num_workers=0)
    with pytest.raises(FileNotFoundError) as exc:
        dm.setup("fit")
    assert str(list_path(root, "val")) in str(exc.value)
    # validate only needs val; test only needs test
    with pytest.raises(FileNotFoundError, match="test_list_videos.txt"):
        MA52DataModule(root=str(root), num_workers=0).setup("test")


def test_datamodule_unknown_generator():
    with pytest.raises(ValueError, match="data.generate"):
        MA52DataModule(root="x", generate="nope")


def _snapshot(root):
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_datamodule_generates_quickstart_once(tmp_path):
    root = tmp_path / "qs"
    kwargs = {"per_class": (1, 1, 1)}
    dm = MA52DataModule(root=str(root), generate="quickstart", generate_kwargs=kwargs, num_workers=0,
                        num_segments=4, input_size=32, short_side=40, batch_size=4)
    dm.prepare_data()
    assert is_complete(root)
    assert (root / COMPLETE_MARKER).is_file()
    assert not list(tmp_path.glob(".qs.partial-*"))
    for split in ("train", "val", "test"):
        lines = list_path(root, split).read_text().splitlines()
        assert len(lines) == 52
        names = {line.split()[0] for line in lines}
        assert names == {p.name for p in video_dir(root, split).iterdir()}
        assert sorted(int(line.split()[1]) for line in lines) == list(range(52))
    assert len((root / "label_name.txt").read_text().splitlines()) == 52

    before = _snapshot(root)
    assert len(before) == 3 * 52 + 5  # videos, 3 lists, label names, marker
    # A second prepare_data (same or a new datamodule) rewrites nothing.
    dm.prepare_data()
    MA52DataModule(root=str(root), generate="quickstart", generate_kwargs=kwargs, num_workers=0).prepare_data()
    assert _snapshot(root) == before

    # And the generated data loads: labels from the list, coarse from the class table.
    dm.setup("fit")
    assert dm.label_space.classes == class_table().fine_names
    batch = next(iter(dm.val_dataloader()))
    assert batch["video"].shape == (4, 4, 3, 32, 32) and batch["video"].dtype == torch.uint8
    table = class_table().fine_to_coarse
    assert batch["coarse"].tolist() == [table[f] for f in batch["label"].tolist()]
    out = dm.on_after_batch_transfer(batch, 0)
    assert out["video"].dtype == torch.float32


def test_datamodule_refuses_to_overwrite_unrelated_folder(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    keep = root / "thesis.txt"
    keep.write_text("do not delete")
    dm = MA52DataModule(root=str(root), generate="quickstart", generate_kwargs={"per_class": (1, 1, 1)})
    with pytest.raises(FileExistsError) as exc:
        dm.prepare_data()
    assert str(root) in str(exc.value)
    assert keep.read_text() == "do not delete"
    assert [p.name for p in root.iterdir()] == ["thesis.txt"]
    assert not list(tmp_path.glob(".mine.partial-*"))


def test_on_after_batch_transfer_normalises_like_imagenet():
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (2, 3, 3, 4, 5), dtype=torch.uint8, generator=g)
    video[0, 0, :, 0, 0] = torch.tensor([0, 128, 255], dtype=torch.uint8)
    dm = MA52DataModule(root="unused", num_workers=0)
    batch = dm.on_after_batch_transfer({"video": video.clone(), "label": torch.tensor([1, 2])}, 0)
    out = batch["video"]
    assert out.dtype == torch.float32 and out.shape == video.shape
    assert batch["label"].tolist() == [1, 2]
    expect = np.empty(video.shape, dtype=np.float64)
    v = video.numpy().astype(np.float64)
    for c in range(3):
        expect[:, :, c] = (v[:, :, c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    assert np.allclose(out.numpy(), expect, atol=1e-5)
    # Spot values by hand: channel 0 of pixel 0 is 0, channel 1 is 128, channel 2 is 255.
    assert out[0, 0, 0, 0, 0].item() == pytest.approx((0 - 0.485) / 0.229, abs=1e-5)
    assert out[0, 0, 1, 0, 0].item() == pytest.approx((128 / 255 - 0.456) / 0.224, abs=1e-5)
    assert out[0, 0, 2, 0, 0].item() == pytest.approx((1 - 0.406) / 0.225, abs=1e-5)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    # A batch that is all skipped has no video and passes through.
    assert dm.on_after_batch_transfer({"num_skipped": 3, "skipped": []}, 0) == {"num_skipped": 3, "skipped": []}


# --- partly decodable clips ------------------------------------------------------------------


def _damage_packet(path, index):
    """Overwrite one video packet with zeros: the decoder drops it (and what depends on it)."""
    import av

    with av.open(str(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    pos, size = spans[index]
    data[pos : pos + size] = b"\x00" * size
    path.write_bytes(bytes(data))
    return len(spans)


@pytest.fixture
def partial_root(tmp_path, markers):
    """val: clip 2 of 3 has a damaged packet, so the decoder delivers fewer frames than it has packets."""
    entries = [("a.mp4", 3, 12), ("b.mp4", 4, 20), ("c.mp4", 5, 12)]
    root = _make_split(tmp_path / "p", "val", entries, markers)
    packets = _damage_packet(video_dir(root, "val") / "b.mp4", 10)
    real = decodable_frames(video_dir(root, "val") / "b.mp4")
    assert packets == 20 and real < packets
    return root, real


def test_partly_decodable_clip_is_marked_and_collated_by_name(partial_root, markers):
    root, real = partial_root
    # every frame asked for: the last one is missing, so the frames are chosen again within what decoded
    ds = MA52Dataset(root, "val", num_segments=20, short_side=None, on_decode_error="raise")
    samples = [ds[i] for i in range(3)]
    assert samples[0]["partial"] == "" and samples[2]["partial"] == ""
    assert samples[1]["partial"] == f"decoded {real} of 20 frames; sampled within those"
    batch = collate_skipping(samples)
    assert batch["partial"] == ["b.mp4"] and batch["skipped"] == [] and batch["num_skipped"] == 0
    assert batch["decode_notes"] == {"b.mp4": samples[1]["partial"]}
    # the partly decoded clip is still in the batch, with real frames only
    assert batch["name"] == ["a.mp4", "b.mp4", "c.mp4"]
    ids = markers.read(batch["video"][1].permute(0, 2, 3, 1).numpy(), 20)
    assert len(set(ids)) == real


# --- undecodable clips per split, dummy test labels, the training prior ----------------------------


def _three_splits(root, markers, test_labels=(7, 8, 9), corrupt=()):
    for split, labels in (("train", (1, 2, 2, 3, 3, 3)), ("val", (1, 2, 3)), ("test", test_labels)):
        entries = [(f"{split}{i}.mp4", lab, 6) for i, lab in enumerate(labels)]
        _make_split(root, split, entries, markers, corrupt=corrupt)
    return root


@pytest.mark.parametrize("mode,expect", [("auto", {"train": "skip", "val": "raise", "test": "raise"}),
                                         ("skip", {"train": "skip", "val": "skip", "test": "skip"}),
                                         ("raise", {"train": "raise", "val": "raise", "test": "raise"})])
def test_on_decode_error_per_split(tmp_path, markers, mode, expect):
    root = _three_splits(tmp_path / "r", markers, corrupt={"train1.mp4", "val1.mp4", "test1.mp4"})
    dm = MA52DataModule(root=str(root), num_workers=0, on_decode_error=mode, num_segments=2, input_size=16,
                        short_side=16)
    dm.setup(None)
    for split, what in expect.items():
        ds = dm.datasets[split]
        assert ds.on_decode_error == what
        if what == "skip":
            assert ds[1] == {"skipped": f"{split}1.mp4", "reason": ds[1]["reason"]}
        else:
            with pytest.raises(UndecodableClipError, match=rf"{split}_list_videos\.txt:2: "):
                ds[1]


def test_dummy_test_labels_refused_with_test_has_labels(tmp_path, markers):
    root = _three_splits(tmp_path / "r", markers, test_labels=(0, 0, 0))
    dm = MA52DataModule(root=str(root), num_workers=0, test_has_labels=True)
    with pytest.raises(AnnotationError) as exc:
        dm.check_layout(("test",))
    msg = str(exc.value)
    assert str(list_path(root, "test")) in msg and "all 3 lines carry label 0" in msg
    assert "data.test_has_labels=false" in msg
    with pytest.raises(AnnotationError):
        dm.setup("test")
    # hidden labels are what the default expects; real labels pass
    MA52DataModule(root=str(root), num_workers=0).setup("test")
    root2 = _three_splits(tmp_path / "r2", markers, test_labels=(0, 0, 5))
    MA52DataModule(root=str(root2), num_workers=0, test_has_labels=True).setup("test")


def test_class_prior_order_counts_the_training_list(tmp_path, markers):
    root = _three_splits(tmp_path / "r", markers)
    dm = MA52DataModule(root=str(root), num_workers=0)
    order, source = dm.class_prior_order()
    # train labels 1, 2, 2, 3, 3, 3: 3 > 2 > 1, then every other class by id
    assert order[:5] == [3, 2, 1, 0, 4] and sorted(order) == list(range(52))
    assert str(list_path(root, "train")) in source
    list_path(root, "train").unlink()
    order, source = MA52DataModule(root=str(root), num_workers=0).class_prior_order()
    assert order[:5] == [0, 1, 2, 3, 4] and "no training list" in source
