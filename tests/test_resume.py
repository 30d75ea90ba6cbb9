"""A training process killed with SIGKILL resumes from its run folder's last checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import FAST, REPO, run_cli

BASE = [*FAST, "test=false", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger=none"]


def _load(path: Path) -> dict | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not written yet
        return None


def _train_and_kill(args: list[str], run_dir: Path, cwd: Path, ready) -> dict:
    """Start train.py, SIGKILL it as soon as ``ready(last.ckpt)`` holds; return that checkpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MA52_ROOT"))}
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args, f"hydra.run.dir={run_dir}"], cwd=cwd,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ckpt = _load(last) if last.is_file() else None
            if ckpt is not None and ready(ckpt):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate()[1]
    assert proc.returncode == -signal.SIGKILL, f"training ended on its own before the kill:\n{err[-3000:]}"
    ckpt = _load(last)
    assert ckpt is not None
    return ckpt


def test_killed_run_resumes_at_the_epoch_and_matches_an_uninterrupted_run(tiny_root, tmp_path):
    """Weights, optimizer, scheduler, loop progress and RNG streams come back: the resumed run ends
    exactly where a run never interrupted ends (without the RNG state, the next epoch's clip order
    and dropout masks would differ)."""
    args = [*BASE, f"data.root={tiny_root}", "trainer.max_epochs=2", "~callbacks.step_checkpoint",
            "optimizer=sgd", "optimizer.lr=0.05", "scheduler.milestones=[1]"]
    ref_dir = tmp_path / "uninterrupted"
    run_cli("train.py", [*args, f"hydra.run.dir={ref_dir}"], tmp_path)

    run_dir = tmp_path / "killed"
    killed = _train_and_kill(args, run_dir, tmp_path, ready=lambda c: True)
    assert killed["global_step"] == 2  # killed in its second epoch, after the first one's checkpoint

    # the same command in the same run folder: ckpt_path=auto picks up last.ckpt
    proc = run_cli("train.py", [*args, f"hydra.run.dir={run_dir}"], tmp_path)
    assert "resuming from" in proc.stderr + proc.stdout

    ref = torch.load(ref_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    got = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (got["epoch"], got["global_step"]) == (ref["epoch"], ref["global_step"]) == (1, 4)
    assert got["lr_schedulers"][0]["last_epoch"] == ref["lr_schedulers"][0]["last_epoch"]
    assert got["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.005)
    for key, value in ref["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][key], value, msg=key)
    for pid, state in ref["optimizer_states"][0]["state"].items():
        torch.testing.assert_close(got["optimizer_states"][0]["state"][pid]["momentum_buffer"],
                                   state["momentum_buffer"])


def test_run_killed_mid_epoch_resumes_from_the_step_checkpoint(tiny_root, tmp_path):
    args = [*BASE, f"data.root={tiny_root}", "trainer.max_epochs=2", "callbacks.step_checkpoint.every_n_train_steps=1"]
    run_dir = tmp_path / "run"
    killed = _train_and_kill(args, run_dir, tmp_path, ready=lambda c: c["global_step"] >= 1)
    step = killed["global_step"]
    assert 1 <= step < 4

    proc = run_cli("train.py", [*args, "ckpt_path=last", f"hydra.run.dir={run_dir}"], tmp_path)
    out = proc.stdout + proc.stderr
    assert "Restoring states from the checkpoint path" in out
    if step % 2:  # killed inside an epoch: Lightning continues that epoch rather than restarting it
        assert "resuming from a checkpoint that ended before the epoch ended" in out
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (1, 4)
