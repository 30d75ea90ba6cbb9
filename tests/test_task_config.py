"""The task group: train.py builds the LightningModule named by `task._target_` (a registered task), with the
`model` and `loss` groups nested in it and the datamodule's label space; the frames per clip are decided once."""

from __future__ import annotations

import pytest
import torch
from helpers import FAST, compose_train
from omegaconf import OmegaConf

from microaction.labels import LabelSpace


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("MICROACTION_OFFLINE", "1")


def test_model_and_loss_groups_reach_the_task(tiny_root, tmp_path):
    from microaction.pipeline import _build_task
    from microaction.registry import TASKS

    cfg = compose_train([*FAST, f"data.root={tiny_root}", "model=tsm", "model.depth=10", "loss.alpha=0.5",
                         "task.no_decay_norm_bias=false"], tmp_path)
    assert TASKS.by_target(cfg.task._target_) is TASKS.get("recognition")
    # the users' keys stay where they were; the task sees them by interpolation
    assert OmegaConf.to_container(cfg.task.model, resolve=True) == OmegaConf.to_container(cfg.model, resolve=True)
    assert cfg.task.loss.alpha == 0.5 and cfg.task.model.num_segments == cfg.data.num_segments == 4

    task = _build_task(cfg, LabelSpace.ma52())
    assert type(task) is TASKS.get("recognition")
    assert task.hparams["model"]["name"] == "tsm" and task.criterion.alpha == 0.5
    assert task.hparams["no_decay_norm_bias"] is False and len(task.parameter_groups(0.1)) == 1
    assert task.num_segments == 4
    assert task.optimizer_factory.func is torch.optim.AdamW  # experiment=quickstart's optimizer group
    # everything saved with the task is plain data
    path = tmp_path / "hp.pt"
    torch.save(dict(task.hparams), path)
    stored = torch.load(path, weights_only=True)
    assert stored["label_space"] == LabelSpace.ma52().to_dict() and stored["model"]["name"] == "tsm"


def test_an_unregistered_task_is_refused_before_the_model(tiny_root, tmp_path):
    from microaction.pipeline import train

    cfg = compose_train([*FAST, f"data.root={tiny_root}", "task._target_=torch.nn.Identity"], tmp_path)
    with pytest.raises(ValueError, match=r"task._target_='torch.nn.Identity' is not a registered task"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_network_frames_other_than_the_data_are_refused_before_training(tiny_root, tmp_path):
    from microaction.pipeline import train

    cfg = compose_train([*FAST, f"data.root={tiny_root}", "model.num_segments=3"], tmp_path)
    with pytest.raises(ValueError, match=r"data.num_segments=4 but model.num_segments=3"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_num_classes_is_a_checked_read_only_alias(tiny_root, tmp_path):
    from microaction.data.datamodule import MA52DataModule
    from microaction.pipeline import train
    from microaction.utils.checks import ConfigError

    assert MA52DataModule(root=str(tiny_root), num_classes=52).label_space.num_classes == 52
    cfg = compose_train([*FAST, f"data.root={tiny_root}", "+data.num_classes=40"], tmp_path)
    with pytest.raises(ConfigError, match=r"data.num_classes=40: read-only, it follows from the label space"):
        train(cfg)
    # not a key users set any more
    assert "num_classes" not in compose_train([*FAST], tmp_path).data


def test_a_task_registers_with_one_line_or_a_decorator():
    from microaction.registry import TASKS, Registry

    tasks = Registry("task")

    @tasks.register("mine")
    class Mine:
        pass

    class Other:
        pass

    assert tasks.register("other", Other) is Other
    assert tasks.get("mine") is Mine and tasks.name_of(Other) == "other" and tasks.name_of(int) is None
    assert tasks.by_target(f"{Mine.__module__}.{Mine.__qualname__}") is Mine
    assert TASKS.name_of(TASKS.get("recognition")) == "recognition"
    with pytest.raises(KeyError, match="registered twice"):
        tasks.register("mine", Other)
