"""A training process killed with SIGKILL resumes from its run folder's last checkpoint, keeping the
metrics it logged before the kill; a run folder moved before it is resumed keeps its best checkpoints."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import BASE_TINY, REPO, run_cli

# two training batches per epoch (a step checkpoint can fall inside an epoch), one validation batch, no logger
BASE = [*(a for a in BASE_TINY if not a.startswith("trainer.limit_train_batches=")), "test=false",
        "trainer.limit_train_batches=2"]


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


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """metrics.csv's rows, each without its empty cells (a new column adds empty cells to old rows)."""
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _scalars(event_file: Path) -> set[tuple[str, int]]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return {(v.tag, e.step) for e in EventFileLoader(str(event_file)).Load() for v in e.summary.value}


# one run killed after its first epoch and resumed by the same command, checked two ways below: it ends where an
# uninterrupted run ends, and its metric files keep what was logged before the kill
KILLED_ARGS = [*(a for a in BASE if not a.startswith("logger=")), "logger=many", "trainer.max_epochs=2",
               "trainer.log_every_n_steps=1", "~callbacks.step_checkpoint", "optimizer=sgd", "optimizer.lr=0.05",
               "scheduler.milestones=[1]"]


@pytest.fixture(scope="module")
def killed_at_the_epoch(tiny_root, tmp_path_factory) -> dict:
    """train.py SIGKILLed once its first epoch's checkpoint is written, its metric files as the kill left them,
    then the same command in the same run folder (ckpt_path=auto picks up last.ckpt)."""
    work = tmp_path_factory.mktemp("killed_at_the_epoch")
    args = [*KILLED_ARGS, f"data.root={tiny_root}"]
    run_dir = work / "killed"
    killed = _train_and_kill(args, run_dir, work, ready=lambda c: True)
    csv_before = _csv_rows(run_dir / "csv" / "metrics.csv")
    events_before = {p: _scalars(p) for p in (run_dir / "tensorboard").glob("events.out.tfevents.*")}
    proc = run_cli("train.py", [*args, f"hydra.run.dir={run_dir}"], work)
    return {"args": args, "run_dir": run_dir, "work": work, "killed": killed, "csv_before": csv_before,
            "events_before": events_before, "output": proc.stderr + proc.stdout}


def test_killed_run_resumes_at_the_epoch_and_matches_an_uninterrupted_run(killed_at_the_epoch):
    """Weights, optimizer, scheduler, loop progress and RNG streams come back: the resumed run ends
    exactly where a run never interrupted ends (without the RNG state, the next epoch's clip order
    and dropout masks would differ)."""
    run = killed_at_the_epoch
    ref_dir = run["work"] / "uninterrupted"
    run_cli("train.py", [*run["args"], f"hydra.run.dir={ref_dir}"], run["work"])

    assert run["killed"]["global_step"] == 2  # killed in its second epoch, after the first one's checkpoint
    assert "resuming from" in run["output"]

    ref = torch.load(ref_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    got = torch.load(run["run_dir"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (got["epoch"], got["global_step"]) == (ref["epoch"], ref["global_step"]) == (1, 4)
    assert got["lr_schedulers"][0]["last_epoch"] == ref["lr_schedulers"][0]["last_epoch"]
    assert got["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.005)
    for key, value in ref["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][key], value, msg=key)
    for pid, state in ref["optimizer_states"][0]["state"].items():
        torch.testing.assert_close(got["optimizer_states"][0]["state"][pid]["momentum_buffer"],
                                   state["momentum_buffer"])


def test_resumed_run_keeps_the_metrics_logged_before_the_kill(killed_at_the_epoch):
    """csv/metrics.csv and the TensorBoard event files hold, after the resumed run, everything they held
    when the first process was killed, followed by the resumed run's metrics. (Lightning's CSVLogger by
    itself deletes metrics.csv when a run folder is reused.)"""
    run = killed_at_the_epoch
    assert run["killed"]["global_step"] == 2  # the first epoch's checkpoint

    before = run["csv_before"]
    # logged before that checkpoint was written, so on disk at the kill whatever its timing
    assert {"0", "1"} <= {r["step"] for r in before if "train/loss_step" in r}, before
    assert any(r.get("epoch") == "0" and "val/F1_mean" in r for r in before), before
    events_before = run["events_before"]
    assert len(events_before) == 1
    assert ("train/loss_step", 0) in next(iter(events_before.values()))

    assert "resuming from" in run["output"]
    after = _csv_rows(run["run_dir"] / "csv" / "metrics.csv")
    assert after[: len(before)] == before, "rows logged before the kill were changed or dropped"
    resumed = after[len(before):]
    assert any(r.get("epoch") == "1" and "val/F1_mean" in r for r in resumed), resumed
    assert any(r.get("epoch") == "1" and "train/loss_epoch" in r for r in resumed), resumed
    events_after = {p: _scalars(p) for p in (run["run_dir"] / "tensorboard").glob("events.out.tfevents.*")}
    assert len(events_after) == 2  # the killed process's file and the resumed one's
    for path, scalars in events_before.items():
        assert events_after[path] == scalars, f"{path.name} changed"
    (new,) = set(events_after) - set(events_before)
    assert ("val/F1_mean", 3) in events_after[new]


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


def test_csv_logger_continues_a_file_cut_in_the_middle_of_a_row(tmp_path):
    """The file a killed process left: its rows are kept (the cut one too, as written), the next row
    starts on a line of its own, and a new column is added without disturbing the old ones."""
    from microaction.utils.resume import AppendingCSVLogger

    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "metrics.csv").write_text("epoch,step,train/loss\r\n0,0,1.5\r\n0,1,1.")
    logger = AppendingCSVLogger(tmp_path, name="csv", version="")
    logger.log_metrics({"epoch": 0, "train/loss": 0.5}, step=2)
    logger.save()
    logger.log_metrics({"epoch": 1, "val/F1_mean": 0.25}, step=3)
    logger.save()
    assert _csv_rows(folder / "metrics.csv") == [
        {"epoch": "0", "step": "0", "train/loss": "1.5"},
        {"epoch": "0", "step": "1", "train/loss": "1."},
        {"epoch": "0", "step": "2", "train/loss": "0.5"},
        {"epoch": "1", "step": "3", "val/F1_mean": "0.25"},
    ]


def _best_record(ckpt_file: Path) -> tuple[str, dict]:
    """The state key and state of the checkpoint callback that tracks val/F1_mean in ``ckpt_file``."""
    callbacks = torch.load(ckpt_file, map_location="cpu", weights_only=True)["callbacks"]
    (key,) = [k for k, v in callbacks.items() if k.startswith("ModelCheckpoint") and v.get("monitor") == "val/F1_mean"]
    return key, callbacks[key]


def test_run_folder_moved_and_resumed_evaluates_its_own_best_checkpoint(killed_at_the_epoch, tmp_path):
    from microaction.utils.resume import RunCheckpoint

    old = killed_at_the_epoch["run_dir"]
    moved = tmp_path / "moved"
    shutil.copytree(old, moved)
    key, state = _best_record(moved / "checkpoints" / "last.ckpt")
    best_name = Path(state["best_model_path"]).name
    assert Path(state["dirpath"]) == (old / "checkpoints").resolve()

    # the record, read by the callback of the new folder: paths moved, scores kept
    callback = RunCheckpoint(dirpath=moved / "checkpoints", monitor="val/F1_mean", mode="max")
    assert callback.state_key == key
    callback.load_state_dict(dict(state))
    new_dir = (moved / "checkpoints").resolve()
    assert Path(callback.best_model_path) == new_dir / best_name
    assert callback.best_model_score == state["best_model_score"]
    assert {Path(p).name: v for p, v in callback.best_k_models.items()} == \
        {Path(p).name: v for p, v in state["best_k_models"].items()}
    assert all(Path(p).parent == new_dir for p in callback.best_k_models)

    # the finished run resumed in its new place evaluates the best checkpoint there, not the old folder's
    args = [a for a in killed_at_the_epoch["args"] if a != "test=false"]
    proc = run_cli("train.py", [*args, f"hydra.run.dir={moved}"], tmp_path)
    # said once, though three callbacks read the record and validate and test restore it again
    said = f"checkpoint records written in {old.resolve() / 'checkpoints'} continue in {new_dir}"
    assert (proc.stdout + proc.stderr).count(said) == 1
    metrics = json.loads((moved / "metrics.json").read_text())
    assert Path(metrics["best_checkpoint"]) == new_dir / best_name
    assert isinstance(metrics["test"], dict) and "F1_mean" in metrics["test"]


def _record_written_in(ckpt_file: Path, gone: Path) -> None:
    """Rewrites ``ckpt_file``'s checkpoint records as if they had been written in folder ``gone``."""
    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=True)
    for state in ckpt["callbacks"].values():
        if "dirpath" not in state:
            continue
        old = state["dirpath"]

        def there(path):
            return str(gone / Path(path).name) if path and Path(path).parent == Path(old) else path

        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            state[key] = there(state.get(key))
        state["best_k_models"] = {there(p): v for p, v in state["best_k_models"].items()}
        state["dirpath"] = str(gone)
    torch.save(ckpt, ckpt_file)


def test_moved_run_folder_without_its_best_checkpoint_is_refused_before_training(killed_at_the_epoch, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(killed_at_the_epoch["run_dir"], moved)
    _record_written_in(moved / "checkpoints" / "last.ckpt", tmp_path / "gone" / "checkpoints")  # old folder gone
    _, state = _best_record(moved / "checkpoints" / "last.ckpt")
    best_name = Path(state["best_model_path"]).name
    (moved / "checkpoints" / best_name).unlink()
    last_before = (moved / "checkpoints" / "last.ckpt").read_bytes()

    args = [*killed_at_the_epoch["args"], "trainer.max_epochs=3", f"hydra.run.dir={moved}"]
    proc = run_cli("train.py", args, tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "which neither that folder nor" in out and "start anew with ckpt_path=null" in out
    assert best_name in out
    # nothing trained, nothing rewritten
    assert (moved / "checkpoints" / "last.ckpt").read_bytes() == last_before


def test_run_continued_in_a_new_folder_keeps_its_best_where_it_is_and_leaves_the_old_folder_alone(
        killed_at_the_epoch, tmp_path):
    """``ckpt_path=<old run>/checkpoints/last.ckpt`` with a new run folder: the old folder still holds the best
    checkpoint, so the record keeps pointing there (score kept); the old folder loses and gains nothing."""
    from microaction.utils.resume import RunCheckpoint

    old = killed_at_the_epoch["run_dir"] / "checkpoints"
    key, state = _best_record(old / "last.ckpt")
    callback = RunCheckpoint(dirpath=tmp_path / "empty", monitor="val/F1_mean", mode="max")
    callback.load_state_dict(dict(state))
    assert callback.best_model_path == state["best_model_path"] and Path(callback.best_model_path).is_file()
    assert callback.best_model_score == state["best_model_score"]
    assert callback.best_k_models == state["best_k_models"]

    before = {p.name: p.read_bytes() for p in old.iterdir()}
    new = tmp_path / "continued"
    args = [a for a in killed_at_the_epoch["args"] if a != "test=false"]
    run_cli("train.py", [*args, f"ckpt_path={old / 'last.ckpt'}", "trainer.max_epochs=3", f"hydra.run.dir={new}"],
            tmp_path)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    ckpt = torch.load(new / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2
    record = ckpt["callbacks"][key]
    # the best so far is whichever scored higher: the old folder's, or one this run wrote into its own
    best_path = Path(record["best_model_path"])
    assert best_path.is_file() and best_path.parent in (old.resolve(), (new / "checkpoints").resolve())
    assert record["best_model_score"] >= state["best_model_score"]
    if best_path.parent == old.resolve():
        assert record["best_model_score"] == state["best_model_score"]
    metrics = json.loads((new / "metrics.json").read_text())
    assert Path(metrics["best_checkpoint"]) == best_path
