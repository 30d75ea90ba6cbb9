"""Label spaces: MA-52's from the packaged table, plain data that survives a weights_only checkpoint, checked
when read back, and sizing the recognition task (network, label-embedding matrix, metrics) by themselves."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np
import pytest
import torch

from microaction.labels import LabelSet, LabelSpace, LabelSpaceError

# a 6-class space in 3 groups, numbered so that no fine id equals its group
SMALL = LabelSpace(name="small", classes=("a", "b", "c", "d", "e", "f"), coarse_classes=("x", "y", "z"),
                   fine_to_coarse=(2, 2, 0, 1, 1, 0), train_counts=(5, 4, 3, 2, 1, 0))


def pro_like() -> LabelSpace:
    """MA-52-Pro's shape: 52 actions, several per clip, and 5 emotions beside them."""
    ma52 = LabelSpace.ma52()
    return LabelSpace(name="ma52_pro", classes=ma52.classes, coarse_classes=ma52.coarse_classes,
                      fine_to_coarse=ma52.fine_to_coarse, train_counts=None, multi_label=True,
                      extra=(LabelSet("emotion", ("neutral", "happy", "sad", "angry", "surprised")),))


def test_ma52_is_the_packaged_table():
    text = resources.files("microaction.assets").joinpath("classes.csv").read_text()
    rows = sorted(csv.DictReader(text.splitlines()), key=lambda r: int(r["fine_id"]))
    space = LabelSpace.ma52()
    assert space.name == "ma52" and space.num_classes == 52 and space.num_coarse == 7
    assert list(space.classes) == [r["name"] for r in rows]
    assert list(space.fine_to_coarse) == [int(r["coarse_id"]) for r in rows]
    assert list(space.train_counts) == [int(r["train_count"]) for r in rows]
    assert {space.coarse_classes[int(r["coarse_id"])] for r in rows if r["coarse_name"] == "head"} == {"head"}
    # label_name.txt names replace the packaged ones; the mapping stays
    named = LabelSpace.ma52([f"n{i}" for i in range(52)])
    assert named.classes[7] == "n7" and named.fine_to_coarse == space.fine_to_coarse
    with pytest.raises(LabelSpaceError, match="52 classes, got 3 names"):
        LabelSpace.ma52(["a", "b", "c"])


@pytest.mark.parametrize("space", [LabelSpace.ma52(), SMALL, pro_like()], ids=["ma52", "small", "pro"])
def test_plain_data_survives_a_weights_only_checkpoint(tmp_path, space):
    path = tmp_path / "x.ckpt"
    torch.save({"hyper_parameters": {"label_space": space.to_dict()}}, path)
    stored = torch.load(path, weights_only=True)["hyper_parameters"]["label_space"]
    assert LabelSpace.from_dict(stored) == space
    assert space.mismatch(LabelSpace.from_dict(stored)) == []


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.update(fine_to_coarse=d["fine_to_coarse"][:-1]), "fine_to_coarse has 5 entries for 6 classes"),
    (lambda d: d["fine_to_coarse"].__setitem__(0, 3), r"coarse ids \[3\] outside 0..2"),
    (lambda d: d.update(train_counts=[1, 2]), "train_counts has 2 entries"),
    (lambda d: d["classes"].__setitem__(1, 7), r"label_space.classes\[1\]: expected a string"),
    (lambda d: d.update(multi_label="no"), "label_space.multi_label: expected true or false"),
    (lambda d: d.update(colour="red"), r"unknown keys \['colour'\]"),
    (lambda d: d.pop("coarse_classes"), "missing 'coarse_classes'"),
    (lambda d: d.update(extra=[{"name": "e", "classes": []}]), "extra label set 'e' has no classes"),
])
def test_a_bad_stored_label_space_is_named(edit, message):
    stored = SMALL.to_dict()
    edit(stored)
    with pytest.raises(LabelSpaceError, match=message):
        LabelSpace.from_dict(stored)


def test_mismatch_names_what_a_network_depends_on():
    ma52 = LabelSpace.ma52()
    assert ma52.mismatch(LabelSpace.ma52([f"n{i}" for i in range(52)])) == []  # names may differ
    assert ma52.mismatch(SMALL) == ["6 fine classes, not 52"]
    assert ma52.mismatch(pro_like()) == ["multi-label", "extra label sets {'emotion': (5, False)}, not {}"]
    shuffled = LabelSpace(name="ma52", classes=ma52.classes, coarse_classes=ma52.coarse_classes,
                          fine_to_coarse=(ma52.fine_to_coarse[1:] + ma52.fine_to_coarse[:1]))
    assert ma52.mismatch(shuffled) == ["another fine -> coarse mapping"]


def _task(label_space, tmp_path=None, rows=None):
    from microaction.tasks import MicroActionRecognition

    loss = {"alpha": 1.0}
    if rows is not None:
        path = tmp_path / "emb.npy"
        np.save(path, np.random.default_rng(0).normal(size=(rows, 5)))
        loss["embeddings"] = str(path)
    model = {"name": "tsn", "depth": 10, "num_segments": 2, "pretrained": False, "dropout": 0.0}
    return MicroActionRecognition(model=model, loss=loss, label_space=label_space)


def test_the_task_is_sized_by_its_label_space(tmp_path):
    task = _task(SMALL, tmp_path, rows=6).eval()
    out = task(torch.zeros(3, 2, 3, 32, 32))
    assert out["logits"].shape == (3, 6) and out["embedding"].shape == (3, 5)
    assert task.val_metrics.fine_to_coarse.tolist() == list(SMALL.fine_to_coarse)
    assert task.hparams["label_space"] == SMALL.to_dict()
    # the packaged 52-row matrix is MA-52's: another space must bring its own
    with pytest.raises(ValueError, match="no packaged label-embedding matrix for label space 'small'"):
        _task(SMALL)
    with pytest.raises(ValueError, match=r"shape \(4, 5\), expected \(6, D\): one row per class of label space 'small'"):
        _task(SMALL, tmp_path, rows=4)


def test_the_recognition_task_refuses_a_multi_label_space():
    with pytest.raises(ValueError, match="'ma52_pro' is multi-label"):
        _task(pro_like())


def test_a_batch_with_other_frames_names_both_settings(tmp_path):
    task = _task(SMALL, tmp_path, rows=6)
    with pytest.raises(ValueError, match=r"clips have 4 frames \(data.num_segments\) but the network was built for 2"):
        task(torch.zeros(1, 4, 3, 32, 32))


@pytest.mark.parametrize("hparams,ok", [({"num_classes": 52}, True), ({}, True), ({"num_classes": 40}, False)])
def test_hyperparameters_from_before_label_spaces(hparams, ok):
    from microaction.tasks.recognition import label_space_of

    if ok:
        assert label_space_of(None, **hparams) == LabelSpace.ma52()
    else:
        with pytest.raises(ValueError, match=r"num_classes=40 and no label_space .*Convert the checkpoint"):
            label_space_of(None, **hparams)
