"""The real configs, composed by Hydra, driving real training and evaluation on a tiny generated dataset."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from microaction.classes import class_table
from microaction.data.quickstart import write_quickstart
from microaction.utils.config import register_resolvers

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# a few batches of tiny clips: enough to exercise every stage, fast on 2 CPU cores
FAST = [
    "experiment=quickstart",
    "data.generate=null",
    "data.num_workers=0",
    "data.batch_size=8",
    "data.num_segments=4",
    "model.depth=18",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1.0",
    "trainer.num_sanity_val_steps=0",
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "extras.print_config=false",
]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return write_quickstart(tmp_path_factory.mktemp("data") / "tiny", per_class=(1, 1, 1), seed=1, audio=False)


def compose_train(overrides: list[str], out: Path):
    register_resolvers()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.log_dir = str(out)
        del cfg.hydra  # as in a real job: the app config only
    return cfg


def run_cli(script: str, args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MA52_ROOT"))}
    env["HYDRA_FULL_ERROR"] = "0"
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


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
    assert (tmp_path / "submission_test.csv").is_file()


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
    run_cli("train.py", ["-m", *FAST, f"data.root={tiny_root}", "loss.alpha=0,1", f"paths.log_dir={tmp_path}"], tmp_path)
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
    assert alphas == [0.0, 1.0]


def test_train_resume_and_eval_on_the_checkpoint(tiny_root, tmp_path):
    run_dir = tmp_path / "run"
    run_cli("train.py", [*FAST, f"data.root={tiny_root}", f"hydra.run.dir={run_dir}"], tmp_path)
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
    run_cli("eval.py", [f"ckpt_path={best}", "split=test", "data.test_has_labels=false", "data.num_workers=0",
                        f"hydra.run.dir={sub_dir}", "extras.print_config=false"], tmp_path)
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

    # resume: continue the same run for a second epoch from last.ckpt
    run_cli("train.py", [*FAST, f"data.root={tiny_root}", f"hydra.run.dir={run_dir}", "ckpt_path=last",
                         "trainer.max_epochs=2"], tmp_path)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 1 and last["global_step"] == 4


def test_bad_input_is_named_before_training(tmp_path):
    proc = run_cli("train.py", ["experiment=quickstart", "data.generate=null", f"data.root={tmp_path / 'absent'}"],
                   tmp_path, check=False)
    assert proc.returncode != 0
    assert f"data.root does not exist: {tmp_path / 'absent'}" in proc.stderr
    assert "Epoch" not in proc.stdout

    proc = run_cli("train.py", ["data=ma52"], tmp_path, check=False)
    assert proc.returncode != 0 and "data.root is not set" in proc.stderr


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
