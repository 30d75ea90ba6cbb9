"""Shared helpers for the data tests: tiny real H.264 clips whose frames carry a
per-frame brightness marker, so a test can tell exactly which frame it got back; one tiny trained run shared by
the tests that need a checkpoint; and what an in-process run changes in this process, put back after each test."""

from __future__ import annotations

import contextlib
import os
from types import SimpleNamespace

import numpy as np
import pytest

MARKER_BASE = 20


def _marker_step(num_frames: int) -> int:
    # 7 grey levels per frame while that fits in 8 bits, 5 for longer clips (<= 46 frames).
    if MARKER_BASE + 7 * (num_frames - 1) <= 245:
        return 7
    if MARKER_BASE + 5 * (num_frames - 1) <= 245:
        return 5
    raise ValueError(f"too many frames for a brightness marker: {num_frames}")


def _marker_frames(num_frames: int, height: int = 32, width: int = 48, noise: int = 0, seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3]; frame i is flat grey ``20 + step * i`` (plus optional zero-mean noise)."""
    step = _marker_step(num_frames)
    values = MARKER_BASE + step * np.arange(num_frames, dtype=np.int16)
    frames = np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).astype(np.int16)
    if noise:
        rng = np.random.default_rng(seed)
        frames = frames + rng.integers(-noise, noise + 1, size=frames.shape, dtype=np.int16)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _read_markers(frames, num_frames: int, tol: float = 3.0) -> list[int]:
    """Frame ids from decoded frames ([T, H, W, 3] or [T, 3, H, W], array or tensor).

    Fails if a frame's mean brightness is not within ``tol`` of a marker level,
    i.e. if it is not one of the frames that were written.
    """
    arr = np.asarray(frames, dtype=np.float64)
    means = arr.reshape(arr.shape[0], -1).mean(axis=1)
    step = _marker_step(num_frames)
    ids = np.rint((means - MARKER_BASE) / step).astype(int)
    for m, k in zip(means, ids):
        assert 0 <= k < num_frames, f"mean brightness {m:.1f} is no frame of a {num_frames}-frame clip"
        assert abs(m - (MARKER_BASE + step * k)) <= tol, f"mean brightness {m:.1f} is not a marker level"
    return ids.tolist()


@pytest.fixture
def markers():
    """``markers.frames(n, h, w)`` makes marked frames, ``markers.read(frames, n)`` reads their ids."""
    return SimpleNamespace(frames=_marker_frames, read=_read_markers, step=_marker_step, base=MARKER_BASE)


@pytest.fixture
def marker_clip(tmp_path, markers):
    """Factory: write a marked clip with ``write_clip`` and return its path."""
    from microaction.data.video import write_clip

    def make(name: str = "clip.mp4", num_frames: int = 12, height: int = 32, width: int = 48, crf: int = 12, **kw):
        frames = markers.frames(num_frames, height, width)
        return write_clip(tmp_path / name, frames, crf=crf, **kw)

    return make


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A complete 52-class dataset in the official layout, one clip per class and split."""
    from microaction.data.synthetic.quickstart import write_quickstart

    return write_quickstart(tmp_path_factory.mktemp("data") / "tiny", per_class=(1, 1, 1), seed=1, audio=False)


@pytest.fixture(scope="session")
def checkout(tmp_path_factory):
    """A fresh copy of the repository (as a clone has it), shared by the tests that run documented commands
    from its root; each writes its own timestamped run folder under its logs/."""
    from helpers import copy_checkout

    return copy_checkout(tmp_path_factory.mktemp("checkout"))


# exported by Lightning's seed_everything (pipeline.train/evaluate seed the run): they would reach the commands
# later tests start, which are to run in the environment of a user who set nothing
_RUN_ENV = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


@contextlib.contextmanager
def _process_state_kept():
    """Put back what a run in this process changes beyond its own objects: the seed variables it exports and
    torch's intra-op thread count."""
    import torch

    env = {k: os.environ.get(k) for k in _RUN_ENV}
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _keep_process_state():
    with _process_state_kept():
        yield


@pytest.fixture(scope="session")
def tiny_trained_run(tiny_root, tmp_path_factory):
    """One tiny real training run on ``tiny_root``: train.py's configuration as Hydra composes it (``helpers.FAST``
    made ``helpers.TINY``: MANet-R10, 2 frames of 32 x 32, one batch per stage; AdamW with the step schedule, the
    default callbacks incl. the RNG state; no logger, no final evaluation), run by ``pipeline.train`` in this
    process. Returns its run folder, which holds ``checkpoints/{best_epoch000,last}.ckpt``.

    Shared by the tests that only need a checkpoint train.py wrote: they read it and edit copies, never the files."""
    from helpers import BASE_TINY, compose_train

    from microaction.pipeline import train

    run_dir = tmp_path_factory.mktemp("tiny_trained") / "run"
    with pytest.MonkeyPatch.context() as mp, _process_state_kept():
        mp.setenv("MICROACTION_OFFLINE", "1")
        mp.setenv("TORCH_HOME", str(run_dir.parent / "torch_home"))
        train(compose_train([*BASE_TINY, f"data.root={tiny_root}", "test=false"], run_dir))
    return run_dir


# the sweep as the docs print it (docs/results.md)
SWEEP_COMMAND = "python train.py -m experiment=quickstart seed=0,1 loss.alpha=0,5"


@pytest.fixture(scope="session")
def tiny_sweep(tiny_root, tmp_path_factory):
    """``python train.py -m experiment=quickstart seed=0,1 loss.alpha=0,5`` (4 jobs) run as a user types it from
    the repository's root, into a logs folder of its own (``MICROACTION_LOGS``), on ``tiny_root``, with
    ``helpers.TINY``'s sizes with val and test batches of 16 clips (non-trivial metrics), logging to the
    CSV logger, TensorBoard and W&B (offline: no key) at once, so that every reader of a run's history has real
    files. Returns ``SimpleNamespace(logs=..., sweep=..., jobs=[job folders by number])``.

    Shared by tests/test_results.py and tests/test_notebooks.py; they read it and edit copies, never the jobs' files
    (sweep_results.ipynb adds the sweep's results/ folder, as it does for a user)."""
    import shlex
    import subprocess
    import sys

    from helpers import REPO, TINY, user_env

    logs = tmp_path_factory.mktemp("sweep_logs")
    env = user_env(logs)
    env["MICROACTION_LOGS"] = str(logs)
    # TINY scores one batch of val and test: a batch of 16 clips instead of 4
    extra = [f"data.root={tiny_root}", "data.generate=null", *TINY, "data.eval_batch_size=16",
             "logger=[csv,tensorboard,wandb]", "callbacks.rich_progress_bar=null", "extras.print_config=false"]
    argv = shlex.split(SWEEP_COMMAND)
    proc = subprocess.run([sys.executable, *argv[1:], *extra], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{SWEEP_COMMAND} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()), key=lambda p: int(p.name.split("_")[0]))
    return SimpleNamespace(logs=logs, sweep=sweep, jobs=jobs, command=SWEEP_COMMAND, extra=extra)
