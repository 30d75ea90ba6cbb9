"""Configuration values are checked before any work: an error names the key and the range expected, and
comes before the model is built, never as one "undecodable clip" per clip."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers import FAST, compose_job, compose_train, run_cli

from microaction.data.datamodule import MA52DataModule
from microaction.data.dataset import MA52Dataset
from microaction.utils.checks import ConfigError, batches_per_process

# (override, the message's key=value, what it says is expected)
BAD_DATA = [
    ("data.num_segments=0", "data.num_segments=0", "an integer >= 1"),
    ("data.num_segments=-3", "data.num_segments=-3", "an integer >= 1"),
    ("data.input_size=0", "data.input_size=0", "an integer >= 1 or [height, width]"),
    ("data.input_size=-32", "data.input_size=-32", "an integer >= 1 or [height, width]"),
    ("data.input_size=[32,0]", "data.input_size=[32, 0]", "an integer >= 1 or [height, width]"),
    ("data.short_side=0", "data.short_side=0", "an integer >= 1 (or null)"),
    ("data.short_side=-1", "data.short_side=-1", "an integer >= 1 (or null)"),
    ("data.batch_size=0", "data.batch_size=0", "an integer >= 1"),
    ("data.eval_batch_size=0", "data.eval_batch_size=0", "an integer >= 1 (or null)"),
    ("data.num_workers=-1", "data.num_workers=-1", "an integer >= 0"),
    ("data.decode_threads=0", "data.decode_threads=0", "an integer >= 1"),
    ("data.scales=[1.0,1.5]", "data.scales=[1.0, 1.5]", "a non-empty list of numbers in (0, 1]"),
    ("data.scales=[0.0]", "data.scales=[0.0]", "a non-empty list of numbers in (0, 1]"),
    ("data.scales=[]", "data.scales=[]", "a non-empty list"),
    ("data.flip_p=1.5", "data.flip_p=1.5", "a probability in [0, 1]"),
    ("data.flip_p=-0.1", "data.flip_p=-0.1", "a probability in [0, 1]"),
    ("data.max_skipped_fraction=1.5", "data.max_skipped_fraction=1.5", "a fraction in [0, 1]"),
    ("data.max_skipped_fraction=-0.01", "data.max_skipped_fraction=-0.01", "a fraction in [0, 1]"),
    ("data.on_decode_error=ignore", "data.on_decode_error='ignore'", "one of auto, skip, raise"),
]


@pytest.fixture
def no_model(monkeypatch):
    """Building the task (and its model) fails the test: every check must come before it."""
    from microaction.tasks.recognition import MicroActionRecognition

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the configuration was checked")

    monkeypatch.setattr(MicroActionRecognition, "__init__", refuse)


@pytest.mark.parametrize("override,named,expected", BAD_DATA, ids=[b[0] for b in BAD_DATA])
def test_bad_data_value_is_named_before_the_model(tiny_root, tmp_path, no_model, override, named, expected):
    from microaction.pipeline import train

    cfg = compose_train([*FAST, f"data.root={tiny_root}", override], tmp_path)
    with pytest.raises(ConfigError) as exc:
        train(cfg)
    msg = str(exc.value)
    assert f"{named}: expected {expected}" in msg
    assert len(exc.value.problems) == 1  # the good values are not reported
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("override,named,expected", BAD_DATA[:8:2], ids=[b[0] for b in BAD_DATA[:8:2]])
def test_bad_data_value_is_refused_by_eval_before_the_checkpoint_is_read(tmp_path, override, named, expected):
    from microaction.pipeline import evaluate

    # the checkpoint does not exist: the configuration error comes first
    cfg = compose_job("eval", [f"ckpt_path={tmp_path / 'none.ckpt'}", override], tmp_path)
    with pytest.raises(ConfigError) as exc:
        evaluate(cfg)
    assert f"{named}: expected {expected}" in str(exc.value)


def test_bad_global_batch_is_named_by_its_own_key(tiny_root, tmp_path, no_model):
    from microaction.pipeline import train

    cfg = compose_train([*FAST, f"data.root={tiny_root}", "accel.global_batch_size=-16"], tmp_path)
    with pytest.raises(ConfigError) as exc:
        train(cfg)
    assert exc.value.problems == ["accel.global_batch_size=-16: expected an integer >= 1 (or null: data.batch_size "
                                  "per process)"]


def test_every_bad_value_is_listed_at_once(tiny_root, tmp_path, no_model):
    from microaction.pipeline import train

    cfg = compose_train([*FAST, f"data.root={tiny_root}", "data.num_segments=0", "data.flip_p=2",
                         "trainer.limit_val_batches=1.5", "trainer.limit_test_batches=-1"], tmp_path)
    with pytest.raises(ConfigError) as exc:
        train(cfg)
    assert [p.split(":")[0] for p in exc.value.problems] == [
        "data.num_segments=0", "data.flip_p=2", "trainer.limit_val_batches=1.5", "trainer.limit_test_batches=-1"]
    assert "expected a fraction in [0.0, 1.0] or a number of batches >= 0" in exc.value.problems[2]


@pytest.mark.parametrize("kwargs,named", [({"num_segments": 0}, "data.num_segments=0"),
                                          ({"short_side": -2}, "data.short_side=-2"),
                                          ({"input_size": [0, 4]}, "data.input_size=[0, 4]"),
                                          ({"scales": (1.0, 0.0)}, "data.scales=(1.0, 0.0)"),
                                          ({"batch_size": True}, "data.batch_size=True")])
def test_datamodule_refuses_bad_values_whoever_builds_it(kwargs, named):
    # eval.py builds it from a checkpoint's stored settings: the same checks apply
    with pytest.raises(ConfigError) as exc:
        MA52DataModule(root="unused", num_workers=0, **kwargs)
    assert f"{named}: expected" in str(exc.value)


@pytest.mark.parametrize("kwargs", [{"num_segments": 0}, {"short_side": -8}])
def test_bad_value_never_becomes_undecodable_clips(tiny_root, caplog, kwargs):
    """These values used to reach the decoder, which failed, and each clip was skipped with a warning."""
    with pytest.raises(ConfigError):
        MA52Dataset(tiny_root, "train", on_decode_error="skip", **kwargs)
    assert "undecodable" not in caplog.text


def test_good_values_pass(tiny_root):
    MA52DataModule(root=str(tiny_root), num_workers=0, input_size=[32, 24], scales=[1.0, 0.5], flip_p=0.0,
                   short_side=None, max_skipped_fraction=0.0, eval_batch_size=None)
    MA52DataModule(root=str(tiny_root), num_workers=0, flip_p=1, max_skipped_fraction=1, on_decode_error="skip")


@pytest.mark.parametrize("kwargs,warned", [
    ({"input_size": 48, "short_side": 80, "scales": [1.0]}, "evaluation centre-crops 48 of the 80-pixel short side (60%)"),
    ({"input_size": [40, 24], "short_side": 64, "scales": [1.0, 0.875]}, "centre-crops 24 of the 64-pixel"),
    ({"input_size": 224, "short_side": 256}, None),  # MA-52's convention: 87.5% against scales down to 0.66
    ({"input_size": 112, "short_side": 128}, None),
    ({"input_size": 32, "short_side": 32, "scales": [1.0]}, None),
    ({"input_size": 32, "short_side": None, "scales": [1.0]}, None),  # frames as stored: not comparable
])
def test_an_evaluation_crop_narrower_than_training_is_warned(caplog, kwargs, warned):
    """Training crops scales x the short side and resizes, evaluation centre-crops input_size of it: 48 of 80
    pixels against whole-frame training crops shows the model the middle of the picture only at evaluation."""
    with caplog.at_level("WARNING", logger="microaction.utils.checks"):
        MA52DataModule(root="unused", num_workers=0, **kwargs)
    warnings = [r.getMessage() for r in caplog.records if r.name == "microaction.utils.checks"]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warned in warnings[0] and "data.short_side" in warnings[0]


# --- trainer.limit_*_batches that leave a split without a batch -----------------------------------


@pytest.mark.parametrize("clips,batch,world,split,expect", [
    (52, 8, 1, "val", 7), (52, 8, 2, "val", 4), (51, 8, 2, "test", 4), (51, 8, 2, "train", 4), (9, 4, 2, "val", 1),
])
def test_batches_per_process(clips, batch, world, split, expect):
    assert batches_per_process(clips, batch, world, split) == expect


def test_debug_limit_with_zero_batches_is_refused_before_the_model(tiny_root, tmp_path, no_model):
    from microaction.pipeline import train

    # tiny data: 52 clips per split in batches of 8 = 7 batches, and debug=limit keeps 0.1 of them
    overrides = [o for o in FAST if not o.startswith("trainer.limit_")]
    cfg = compose_train([*overrides, f"data.root={tiny_root}", "debug=limit"], tmp_path)
    with pytest.raises(ConfigError) as exc:
        train(cfg)
    problems = exc.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "trainer.limit_train_batches=0.1", "trainer.limit_val_batches=0.1", "trainer.limit_test_batches=0.1"]
    for split, p in zip(("train", "val", "test"), problems):
        assert f"{split} has 52 clips ({tiny_root / f'{split}_list_videos.txt'}) = 7 batch(es) of 8" in p
        assert "int(7 x 0.1) = 0 batches; expected a fraction in [0.1429, 1.0] or a whole number of batches >= 1" in p

    # a fraction that keeps one batch passes; so do whole numbers and test=false leaves the test limit alone
    cfg = compose_train([*overrides, f"data.root={tiny_root}", "debug=limit", "trainer.limit_train_batches=0.15",
                         "trainer.limit_val_batches=1", "test=false"], tmp_path)
    with pytest.raises(AssertionError, match="the model was built"):
        train(cfg)


def test_an_evaluated_split_turned_off_is_refused_before_the_model(tiny_root, tmp_path, no_model):
    """trainer.limit_<split>_batches=0 is Lightning's "stage off"; train.py evaluates val and test after the fit,
    so a 0 for either is named with the way to leave the evaluation out, before the model is built."""
    from microaction.pipeline import train

    overrides = [o for o in FAST if not o.startswith("trainer.limit_")]
    cfg = compose_train([*overrides, f"data.root={tiny_root}", "trainer.limit_test_batches=0"], tmp_path)
    with pytest.raises(ConfigError) as exc:
        train(cfg)
    assert exc.value.problems == ["trainer.limit_test_batches=0 turns the test split off, but this job evaluates it",
                                  "test=false leaves out the evaluation of val and test after training"]
    cfg = compose_train([*overrides, f"data.root={tiny_root}", "trainer.limit_test_batches=0", "test=false"], tmp_path)
    with pytest.raises(AssertionError, match="the model was built"):
        train(cfg)


def test_debug_limit_as_a_user_types_it(tiny_root, tmp_path):
    proc = run_cli("train.py", ["experiment=quickstart", "data.generate=null", f"data.root={tiny_root}", "debug=limit",
                                "trainer.accelerator=cpu", "extras.print_config=false"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "trainer.limit_val_batches=0.1: val has 52 clips" in proc.stderr
    assert "Epoch" not in proc.stdout and not list(tmp_path.rglob("*.ckpt"))


def test_limits_are_checked_in_setup_when_lists_appear_late(tiny_root):
    """Generated data has no lists before prepare_data: the datamodule's setup checks the limits then."""
    dm = MA52DataModule(root=str(tiny_root), num_workers=0, batch_size=8)
    dm.limit_check_splits = ("train", "val", "test")
    dm.trainer = SimpleNamespace(limit_train_batches=1.0, limit_val_batches=1.0, limit_test_batches=0.1,
                                 fast_dev_run=False, overfit_batches=0.0, world_size=1)
    with pytest.raises(ConfigError, match=r"trainer\.limit_test_batches=0\.1: test has 52 clips"):
        dm.setup("fit")
    dm.trainer.limit_test_batches = 0.2  # int(7 x 0.2) = 1 batch
    dm.setup("fit")
    dm.trainer.fast_dev_run = True  # Lightning ignores the limits then
    dm.trainer.limit_val_batches = 0.01
    dm.setup("validate")
