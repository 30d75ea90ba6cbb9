"""What a checkpoint carries (label space, registered names) and what eval.py does with checkpoints of
earlier versions and with settings that do not fit them. One tiny real training run (conftest's
``tiny_trained_run``: 2 frames per clip); evaluations run through `evaluate` on the real eval config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import compose_job

from microaction.labels import LabelSpace

PREDICTION_HEADER = ["video", "label", "label_name", "body", "pred", "pred_name", "pred_body", "prob", "top5",
                     "top5_prob", "correct"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("MICROACTION_OFFLINE", "1")


@pytest.fixture
def checkpoint(tiny_trained_run) -> Path:
    (best,) = (tiny_trained_run / "checkpoints").glob("best_epoch*.ckpt")
    return best


def _evaluate(ckpt: Path, root: Path, out: Path, *overrides: str) -> dict:
    from microaction.pipeline import evaluate

    evaluate(compose_job("eval", [f"ckpt_path={ckpt}", f"data.root={root}", "trainer=cpu", "data.num_workers=0",
                                  "extras.print_config=false", "logger=none", *overrides], out))
    return json.loads((out / "metrics.json").read_text())


def _rows(path: Path) -> list[list[str]]:
    with path.open() as f:
        return list(csv.reader(f))


def _old_layout(ckpt: dict, num_classes: int = 52) -> dict:
    """The checkpoint as train.py wrote it before label spaces: hyper_parameters {model, loss,
    no_decay_norm_bias, num_classes}, data settings with num_classes, no built_from."""
    old = dict(ckpt)
    hp = old["hyper_parameters"]
    old["hyper_parameters"] = {"model": hp["model"], "loss": hp["loss"], "no_decay_norm_bias": hp["no_decay_norm_bias"],
                               "num_classes": num_classes}
    old["datamodule_hyper_parameters"] = {**old["datamodule_hyper_parameters"], "num_classes": num_classes}
    old.pop("built_from")
    return old


def test_checkpoint_carries_its_label_space_and_registered_names(checkpoint):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["label_space"] == LabelSpace.ma52().to_dict()
    assert ckpt["built_from"] == {"task": "recognition", "datamodule": "ma52"}
    assert "num_classes" not in ckpt["hyper_parameters"] and "num_classes" not in ckpt["datamodule_hyper_parameters"]


def test_eval_names_classes_from_the_checkpoint_not_the_data(checkpoint, tiny_root, tmp_path):
    """The label space travels in the checkpoint: the predictions CSV names classes as stored, whatever the
    data's label_name.txt says (its class count and grouping must match, which they do)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["label_space"]["classes"] = [f"stored {i}" for i in range(52)]
    path = tmp_path / "renamed.ckpt"
    torch.save(ckpt, path)
    _evaluate(path, tiny_root, tmp_path / "ev")
    header, *rows = _rows(tmp_path / "ev" / "predictions_val.csv")
    assert header == PREDICTION_HEADER and len(rows) == 52
    assert all(r[2] == f"stored {r[1]}" and r[5] == f"stored {r[4]}" for r in rows)


def test_a_checkpoint_from_before_label_spaces_converts_to_ma52(checkpoint, tiny_root, tmp_path):
    new = _evaluate(checkpoint, tiny_root, tmp_path / "new")
    path = tmp_path / "old.ckpt"
    torch.save(_old_layout(torch.load(checkpoint, map_location="cpu", weights_only=True)), path)
    old = _evaluate(path, tiny_root, tmp_path / "old")
    assert old["val"] == new["val"] and old["val"]["num_clips"] == 52
    # and through Lightning's own loader
    from microaction.tasks import MicroActionRecognition

    assert MicroActionRecognition.load_from_checkpoint(path, map_location="cpu").label_space == LabelSpace.ma52()
    assert _rows(tmp_path / "old" / "predictions_val.csv") == _rows(tmp_path / "new" / "predictions_val.csv")


def test_a_checkpoint_from_before_label_spaces_with_other_classes_is_refused(checkpoint, tiny_root, tmp_path):
    path = tmp_path / "old40.ckpt"
    torch.save(_old_layout(torch.load(checkpoint, map_location="cpu", weights_only=True), num_classes=40), path)
    with pytest.raises(ValueError, match=r"num_classes=40 and no label_space .*Convert the checkpoint by giving it "
                                         r"its label space: .*LabelSpace\("):
        _evaluate(path, tiny_root, tmp_path / "ev")
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_eval_with_other_frames_is_refused_before_any_work(checkpoint, tiny_root, tmp_path, monkeypatch):
    import lightning as L

    monkeypatch.setattr(L.Trainer, "__init__", lambda *a, **k: pytest.fail("a trainer was built"))
    with pytest.raises(ValueError) as exc:
        _evaluate(checkpoint, tiny_root, tmp_path / "ev", "data.num_segments=4")
    msg = str(exc.value)
    assert "data.num_segments=4 but the network of" in msg and "takes 2 frames per clip" in msg
    assert "evaluate with data.num_segments=2" in msg
    assert not list((tmp_path / "ev").glob("*.csv")) and not (tmp_path / "ev" / "metrics.json").exists()


@pytest.mark.parametrize("key,value", [("task", "builtins.exec"), ("datamodule", "os.system")])
def test_built_from_outside_the_registry_is_refused(checkpoint, key, value):
    from microaction.pipeline import _checkpoint_classes

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["built_from"][key] = value
    with pytest.raises(ValueError, match=rf"^x.ckpt: refused: built_from.{key} = '{value}'"):
        _checkpoint_classes(ckpt, "x.ckpt")


def test_data_of_another_label_space_is_refused():
    from types import SimpleNamespace

    from microaction.pipeline import _check_label_space

    small = LabelSpace(name="small", classes=("a", "b"), coarse_classes=("x",), fine_to_coarse=(0, 0))
    with pytest.raises(ValueError, match=r"the data's label space \(small: 2 classes\) does not fit x.ckpt's "
                                         r"\(ma52: 52 classes\): 2 fine classes, not 52"):
        _check_label_space(SimpleNamespace(label_space=LabelSpace.ma52()), SimpleNamespace(label_space=small), "x.ckpt")
