"""Shared by the tests that run the real entry points: the repository, a fast training setting,
Hydra composition of the real configs, and subprocess runs of train.py / eval.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


# --- the user's seat: a fresh copy of the repository, commands as the docs print them --------------------------

# Only sizes: appended to a documented command so it finishes in seconds on a CPU. Nothing here
# changes where things are read or written, or which recipe runs.
TINY = [
    "data.num_segments=2",
    "data.input_size=32",
    "data.short_side=32",
    "data.batch_size=4",
    "model.depth=10",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
]


# FAST with TINY's sizes and no logger: the smallest complete training run the real configs make
BASE_TINY = [a for a in FAST if a.split("=")[0] not in {t.split("=")[0] for t in TINY}] + TINY + ["logger=none"]

# Appended (after `--`) to the procedural comparison scripts (scripts/compare_temporal.py, compare_recipes.py):
# the smallest procedural dataset (one test clip per class) and two training batches. The data root is the
# recipe's and refuses a dataset made with other arguments, so every test running these scripts in the one
# `checkout` appends exactly these: the data are generated once and reused.
PROCEDURAL_TINY = ["data.generate_kwargs.scale=0.001", "data.generate_kwargs.size=[32,24]",
                   "data.generate_kwargs.num_subjects=6", "data.num_segments=4", "data.batch_size=8",
                   "trainer.limit_train_batches=2"]


def copy_checkout(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and not ignored), copied to ``dest``."""
    import shutil

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def user_env(home: Path) -> dict[str, str]:
    """The environment of a user who set nothing of ours: no MICROACTION_*/MA52_ROOT, no W&B key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MA52_ROOT", "MICROACTION_"))}
    env["HYDRA_FULL_ERROR"] = "0"
    env["HOME"] = str(home)  # no ~/.netrc: W&B must go offline by itself
    # a machine without network, as the documented MICROACTION_OFFLINE=1 declares it: tests never download
    env["MICROACTION_OFFLINE"] = "1"
    return env


def run_as_typed(command: str, checkout: Path, extra: list[str] = (), check: bool = True,
                 timeout: int = 600, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    """Run a documented command (``python train.py ...``) in ``checkout`` exactly as printed, with only
    ``extra`` (tiny sizes, a data root) appended. ``pythonpath``: import the package from there (a copy
    with files added) instead of the installed one."""
    import shlex

    argv = shlex.split(command)
    assert argv[0] == "python", command
    env = user_env(checkout)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, *argv[1:], *extra], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{command} {extra} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def decodable_frames(path) -> int:
    """Frames plain PyAV delivers for ``path`` (damaged packets passed over, the decoder drained): a ground
    truth independent of the package's read_frames."""
    import av

    count = 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for packet in c.demux(stream):
            try:
                count += len(stream.codec_context.decode(packet))
            except av.FFmpegError:
                pass
        try:
            count += len(stream.codec_context.decode(None))
        except av.FFmpegError:
            pass
    return count


# --- frames that carry their own index ------------------------------------------------------------------------
CODE_W, CODE_H, CODE_BITS = 64, 48, 8


def coded_frames(n: int, seed: int = 0, width: int = CODE_W, height: int = CODE_H) -> np.ndarray:
    """uint8 [n, height, width, 3]: a texture moving 2 px a frame (so P- and B-frames carry real motion) with
    the frame's index as an 8-bit code along the top edge (eight 8x8 blocks, dark = 0, light = 1)."""
    rng = np.random.default_rng(seed)
    tile = rng.integers(40, 216, size=(height, 3 * width, 3)).astype(np.uint8)
    out = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        out[t] = np.roll(tile, -2 * t, axis=1)[:, :width]
        for b in range(CODE_BITS):
            out[t, :8, 8 * b : 8 * b + 8] = 235 if (t >> b) & 1 else 20
    return out


def read_codes(frames: np.ndarray) -> list[int]:
    """Frame indices from the code blocks of ``coded_frames`` as written (no rotation, no scaling)."""
    blocks = frames[:, 2:6, :, :].astype(np.float64).mean(axis=(1, 3))  # [T, W]
    codes = []
    for row in blocks:
        levels = [row[8 * b + 2 : 8 * b + 6].mean() for b in range(CODE_BITS)]
        assert all(v < 60 or v > 195 for v in levels), levels  # clearly dark or light
        codes.append(sum(1 << b for b, v in enumerate(levels) if v > 128))
    return codes
