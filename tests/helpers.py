"""Shared by the tests that run the real entry points: the repository, a fast training setting,
Hydra composition of the real configs, and subprocess runs of train.py / eval.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

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


def compose_job(config_name: str, overrides: list[str], out: Path):
    """A real config composed as Hydra composes it for a job writing to ``out``."""
    register_resolvers()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.log_dir = str(out)
        del cfg.hydra  # as in a real job: the app config only
    return cfg


def compose_train(overrides: list[str], out: Path):
    return compose_job("train", overrides, out)


def run_cli(script: str, args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MA52_ROOT"))}
    env["HYDRA_FULL_ERROR"] = "0"
    env["HOME"] = str(cwd)  # no ~/.netrc: W&B must go offline by itself
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc
