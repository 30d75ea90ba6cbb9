"""The real configs, composed by Hydra, driving real training and evaluation on a tiny generated dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import BASE_TINY, CONF, FAST, compose_job, compose_train, run_cli
from omegaconf import OmegaConf, open_dict

from microaction.classes import class_table

def test_fast_dev_run_composed_config(tiny_root, tmp_path):
    from microaction.pipeline import train

    cfg = compose_train([*FAST, f"data.root={tiny_root}", "debug=fdr"], tmp_path)
    results = train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for split in ("val", "test"):
        assert 0.0 <= saved[split]["F1_mean"] <= 1.0
        assert saved[split]["num_clips"] == 8  # fast_dev_run: one batch
    assert results["val"]["F1_mean"] == pytest.approx(saved["val"]["F1_mean"])
    assert (tmp_path / "config_resolved.yaml").is_file()
    # one batch of the 52 listed test clips: a submission with 8 rows would be wrong, so none is written
    test = saved["clips"]["test"]
    assert (test["listed"], test["scored"], test["skipped"], test["not_run"]) == (52, 8, 0, 44)
    assert test["submission"].startswith("not written: 44 of 52 listed test clips were not run")
    assert not (tmp_path / "submission_test.csv").exists()
    assert (tmp_path / "predictions_test.csv").is_file()


def test_seed_zero_is_honoured(tiny_root, tmp_path):
    from microaction.pipeline import _seed

    cfg = compose_train([*FAST, f"data.root={tiny_root}", "seed=0"], tmp_path)
    _seed(cfg)
    a = torch.rand(3)
    _seed(cfg)
    assert torch.equal(a, torch.rand(3))
    with open_dict(cfg):
        cfg.seed = None
    _seed(cfg)
    assert not torch.equal(a, torch.rand(3))


def test_alpha_multirun_gives_one_readable_folder_per_job(tiny_root, tmp_path):
    # the smallest run (helpers.TINY) whose final validation scores the whole val split
    sizes = [a for a in BASE_TINY if not a.startswith(("logger=", "trainer.limit_val_batches="))]
    run_cli("train.py", ["-m", *sizes, "trainer.limit_val_batches=1.0", f"data.root={tiny_root}", "loss.alpha=0,1",
                         f"paths.log_dir={tmp_path}", "logger=[csv,wandb]"], tmp_path)
    sweeps = list((tmp_path / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    alphas = []
    for job, alpha in zip(jobs, ("0", "1")):
        assert f"loss.alpha={alpha}" in job.name
        assert json.loads((job / "metrics.json").read_text())["val"]["num_clips"] == 52
        alphas.append(float(OmegaConf.load(job / "config_resolved.yaml").loss.alpha))
        assert (job / "checkpoints" / "last.ckpt").is_file()
        # one offline W&B run per job: the first job's run was closed before the second began
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
    assert alphas == [0.0, 1.0]


def test_train_and_eval_on_the_checkpoint(tiny_root, tmp_path):
    """Train (train.py's job, in this process), then evaluate the best checkpoint with eval.py as a command (a
    fresh process: nothing but the file carries over) and with eval.py's job on the test split."""
    from microaction.pipeline import evaluate, train

    run_dir = tmp_path / "run"
    # the whole val split (compared below); one test batch (the test split is evaluated by eval.py below)
    train(compose_train([*FAST, f"data.root={tiny_root}", "trainer.limit_test_batches=1"], run_dir))
    trained = json.loads((run_dir / "metrics.json").read_text())
    best = Path(trained["best_checkpoint"])
    assert best.is_file() and best.parent == run_dir / "checkpoints"

    # evaluation of the saved checkpoint reproduces the run's own val metrics
    ev_dir = tmp_path / "eval_val"
    run_cli("eval.py", [f"ckpt_path={best}", "data.num_workers=0", f"hydra.run.dir={ev_dir}", "extras.print_config=false"], tmp_path)
    ev = json.loads((ev_dir / "metrics.json").read_text())
    for key, value in trained["val"].items():
        assert ev["val"][key] == pytest.approx(value, abs=1e-6), key
    with (ev_dir / "predictions_val.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 52
    correct = sum(int(r["correct"]) for r in rows) / len(rows)
    assert correct == pytest.approx(ev["val"]["action_top1"], abs=1e-6)
    for png in ("confusion_fine_val.png", "confusion_body_val.png"):
        assert (ev_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the test split with hidden labels: a submission file, no scores
    sub_dir = tmp_path / "eval_test"
    evaluate(compose_job("eval", [f"ckpt_path={best}", "split=test", "data.test_has_labels=false",
                                  "data.num_workers=0", "extras.print_config=false"], sub_dir))
    assert json.loads((sub_dir / "metrics.json").read_text())["test"] == {}
    with (sub_dir / "submission_test.csv").open() as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header == ["vid"] + [f"action_pred_{i}" for i in range(1, 6)] + [f"body_pred_{i}" for i in range(1, 6)]
    assert len(rows) == 52
    f2c = class_table().fine_to_coarse
    for row in rows:
        actions = [int(x) for x in row[1:6]]
        assert len(set(actions)) == 5
        assert [int(x) for x in row[6:]] == [f2c[a] for a in actions]

    # resuming (ckpt_path=last/auto) is tested in test_resume.py


def test_bad_input_is_named_before_training(tmp_path, monkeypatch):
    """train.py's job on the real configs, in this process (a refusal as a command: test_config_checks.py's
    test_debug_limit_as_a_user_types_it)."""
    from microaction.pipeline import train
    from microaction.tasks.recognition import MicroActionRecognition

    monkeypatch.setattr(MicroActionRecognition, "__init__", lambda *a, **k: pytest.fail("the model was built"))
    monkeypatch.delenv("MA52_ROOT", raising=False)  # the user who set nothing
    cfg = compose_train(["experiment=quickstart", "data.generate=null", f"data.root={tmp_path / 'absent'}"],
                        tmp_path / "run")
    with pytest.raises(FileNotFoundError) as exc:
        train(cfg)
    assert str(exc.value).startswith(f"data.root does not exist: {tmp_path / 'absent'}\n")

    cfg = compose_train(["data=ma52"], tmp_path / "run2")
    with pytest.raises(ValueError, match="^data.root is not set"):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize(
    "override,message",
    [("model=nope", "Could not find 'model/nope'"), ("nosuchkey.x=1", "Could not override 'nosuchkey.x'"),
     ("loss.alhpa=2", "Could not override 'loss.alhpa'")],
)
def test_unknown_config_is_a_hydra_error(tmp_path, override, message):
    proc = run_cli("train.py", ["experiment=quickstart", override], tmp_path, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wandb_runs_are_grouped_by_sweep_and_named_by_job(monkeypatch, tmp_path):
    from omegaconf import OmegaConf

    from microaction.utils import config as config_utils

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setattr(config_utils, "sweep_identity", lambda: ("2026-01-01_00-00-00-000000", "3_loss.alpha=5"))
    section = OmegaConf.load(CONF / "logger" / "wandb.yaml")
    section.wandb.tags = ["t"]
    section.wandb.job_type = "train"
    section.wandb.save_dir = str(tmp_path)
    (logger,) = config_utils.instantiate_loggers(section)
    assert logger._wandb_init["group"] == "2026-01-01_00-00-00-000000"
    assert logger._wandb_init["name"] == "3_loss.alpha=5"
    assert logger._offline is True


@pytest.fixture(scope="module")
def broken_train_root(tiny_root, tmp_path_factory):
    """tiny_root whose first listed training clip is not a video (1 of 52: 1.9%) and whose third decodes
    only in part (16 of 30 frames: every draw from the last of 4 segments lies past them)."""
    import shutil

    from test_evaluation_accounting import _write_partial_clip

    root = tmp_path_factory.mktemp("broken_train") / "data"
    shutil.copytree(tiny_root, root)
    names = [line.split()[0] for line in (root / "train_list_videos.txt").read_text().splitlines()]
    (root / "videos_train" / names[0]).write_bytes(b"not a video")
    packets, real = _write_partial_clip(root / "videos_train" / names[2])
    assert real <= 3 * packets // 4
    return root, names[0], names[2]


def test_undecodable_training_clip_is_skipped_and_counted(broken_train_root, tmp_path):
    from microaction.pipeline import train

    root, name, partial = broken_train_root
    # training skips by default (data.on_decode_error=auto); 1.9% needs a cap above the default 1%
    cfg = compose_train([*FAST, f"data.root={root}", "trainer.limit_train_batches=1.0", "test=false",
                         "data.max_skipped_fraction=0.05", "trainer.limit_val_batches=1"], tmp_path)
    train(cfg)
    with (tmp_path / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    skipped = [float(r["train/skipped_clips"]) for r in rows if r.get("train/skipped_clips")]
    assert skipped == [1.0]
    assert [float(r["train/partial_clips"]) for r in rows if r.get("train/partial_clips")] == [1.0]
    clips = json.loads((tmp_path / "metrics.json").read_text())["clips"]["train"]
    assert (clips["listed"], clips["skipped"], clips["partial"]) == (52, 1, 1)
    assert [(c["video"], c["line"]) for c in clips["skipped_clips"]] == [(name, 1)]
    assert [(c["video"], c["line"]) for c in clips["partial_clips"]] == [(partial, 3)]


def test_training_skips_past_the_cap_stop_the_run(broken_train_root, tmp_path):
    from microaction.pipeline import train
    from microaction.tasks.recognition import SkippedClipsError

    root, name, _ = broken_train_root
    cfg = compose_train([*FAST, f"data.root={root}", "trainer.limit_train_batches=1.0", "test=false"], tmp_path)
    with pytest.raises(SkippedClipsError) as exc:
        train(cfg)
    msg = str(exc.value)
    assert "split train: 1 of 52 clips were skipped" in msg and "data.max_skipped_fraction=0.01" in msg
    assert name in msg


def test_undecodable_val_clip_stops_training_by_default(tiny_root, tmp_path):
    import shutil

    from microaction.data.dataset import UndecodableClipError
    from microaction.pipeline import train

    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    name = (root / "val_list_videos.txt").read_text().splitlines()[1].split()[0]
    (root / "videos_val" / name).write_bytes(b"not a video")
    cfg = compose_train([*FAST, f"data.root={root}", "trainer.limit_train_batches=1", "test=false"], tmp_path / "run")
    with pytest.raises(UndecodableClipError) as exc:
        train(cfg)
    assert f"{root / 'val_list_videos.txt'}:2: {root / 'videos_val' / name}" in str(exc.value)
