"""The README's headline commands, run as a user types them from the root of a fresh copy of the repository.

Only sizes (``helpers.TINY``) and a data root are appended: a default or interpolation that breaks for the
user (a folder, an environment variable, a resolver) breaks here too.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import TINY, run_as_typed
from omegaconf import OmegaConf


def _new_dirs(parent: Path, before: set[Path]) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p not in before) if parent.is_dir() else []


def _jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: int(p.name.split("_")[0]))


def test_alpha_sweep_as_typed(checkout, tiny_root):
    """`python train.py -m loss.alpha=0,0.1,1,2,5,10`: the default sweep folder, one job per alpha."""
    multiruns = checkout / "logs" / "train" / "multiruns"
    before = set(multiruns.iterdir()) if multiruns.is_dir() else set()
    run_as_typed("python train.py -m loss.alpha=0,0.1,1,2,5,10", checkout, [f"data.root={tiny_root}", *TINY])
    (sweep,) = _new_dirs(multiruns, before)
    jobs = _jobs(sweep)
    assert [j.name for j in jobs] == [f"{i}_loss.alpha={a}" for i, a in enumerate(["0", "0.1", "1", "2", "5", "10"])]
    for job, alpha in zip(jobs, (0, 0.1, 1, 2, 5, 10)):
        assert OmegaConf.load(job / "config_resolved.yaml").loss.alpha == alpha
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["val"]["num_clips"] == 4  # one batch of 4: the appended sizes
        assert (job / "checkpoints" / "last.ckpt").is_file()
        # the run folder is where the documented default says: <repo>/logs/...
        assert Path(metrics["output_dir"]) == job


def test_quickstart_sweep_as_typed(checkout):
    """The quickstart as a sweep (the case that failed with `HydraConfig was not set`)."""
    multiruns = checkout / "logs" / "train" / "multiruns"
    before = set(multiruns.iterdir()) if multiruns.is_dir() else set()
    run_as_typed("python train.py -m experiment=quickstart loss.alpha=0,5", checkout,
                 ["data.generate_kwargs.per_class=[1,1,1]", *TINY])
    (sweep,) = _new_dirs(multiruns, before)
    assert [j.name for j in _jobs(sweep)] == ["0_loss.alpha=0", "1_loss.alpha=5"]
    # the generated data went to the documented default folder
    assert (checkout / "data" / "ma52_quickstart" / "train_list_videos.txt").is_file()
    for job in _jobs(sweep):
        assert json.loads((job / "metrics.json").read_text())["val"]["F1_mean"] >= 0


def test_quickstart_as_typed(checkout):
    """`python train.py experiment=quickstart`: one run under logs/train/runs/ with every promised file."""
    runs = checkout / "logs" / "train" / "runs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    proc = run_as_typed("python train.py experiment=quickstart", checkout,
                        ["data.generate_kwargs.per_class=[1,1,1]", *TINY])
    (run,) = _new_dirs(runs, before)
    for name in ("metrics.json", "config_resolved.yaml", "csv/metrics.csv", "predictions_val.csv",
                 "predictions_test.csv", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").glob("best_epoch*.ckpt"))
    assert "F1_mean" in proc.stdout
