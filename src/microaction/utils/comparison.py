"""What the comparison scripts (scripts/compare_*.py) share: one data folder for every run, the dataset
generated once before any timing, and each row an ordinary ``train.py experiment=...`` run in its own
folder whose metrics are read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def with_data_dir(repo: Path, overrides: list[str]) -> list[str]:
    """``overrides`` plus ``paths.data_dir`` (``MICROACTION_DATA``, else ``repo``'s data/) unless given, so
    that every run and the generation see the same data folder whatever the working directory. ``repo`` is
    the checkout whose train.py and conf/ the script runs (the script's own)."""
    if any(o.startswith("paths.data_dir=") for o in overrides):
        return list(overrides)
    data_dir = Path(os.environ.get("MICROACTION_DATA", repo / "data")).resolve()
    return [*overrides, f"paths.data_dir={data_dir}"]


def prepare_data(repo: Path, experiment: str, overrides: list[str]) -> Path:
    """Generate ``experiment``'s dataset once (nothing with ``data.generate=null``), from the same composed
    config as its runs; returns the data root."""
    from hydra import compose, initialize_config_dir

    from ..data.synthetic import get_generator

    with initialize_config_dir(str(repo / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", *overrides])
    root = Path(cfg.data.root)
    if cfg.data.generate:
        get_generator(cfg.data.generate)(root, **dict(cfg.data.generate_kwargs))
    return root


def train_run(repo: Path, name: str, experiment: str, run_dir: Path, overrides: list[str], seed: int,
              epochs: int | None = None) -> tuple[dict, float]:
    """Run ``repo``'s ``train.py experiment=<experiment>`` into ``run_dir`` (its output kept in ``<run_dir>.log``);
    returns its metrics.json and the seconds it took. A failed run stops the comparison, naming its log."""
    cmd = [sys.executable, str(repo / "train.py"), f"experiment={experiment}", f"seed={seed}",
           f"hydra.run.dir={run_dir}", "callbacks.rich_progress_bar=null", "extras.print_config=false", *overrides]
    if epochs is not None:
        cmd.append(f"trainer.max_epochs={epochs}")
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.time() - t0
    log_file = run_dir.parent / f"{run_dir.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(proc.stdout)
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        raise SystemExit(f"{name}: train.py failed (exit {proc.returncode}), log in {log_file}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if not isinstance(metrics.get("test"), dict):
        raise SystemExit(f"{name}: no test metrics ({metrics.get('test')!r}); the comparison needs test labels")
    return metrics, seconds
