"""What the comparison scripts (scripts/compare_*.py) share: one data folder for every run, the dataset
generated once before any timing, each row an ordinary ``train.py experiment=...`` run (or an ``eval.py``
run of a trained checkpoint) in its own folder whose metrics are read back, and a row's runs over several
training seeds folded into mean ± sample standard deviation (``microaction.results.Stat``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from ..results import Column, Row, Stat, Table
from .cpus import usable_cpus

T = TypeVar("T")


def with_data_dir(repo: Path, overrides: list[str]) -> list[str]:
    """``overrides`` plus ``paths.data_dir`` (``MICROACTION_DATA``, else ``repo``'s data/) unless given, so
    that every run and the generation see the same data folder whatever the working directory. ``repo`` is
    the checkout whose train.py and conf/ the script runs (the script's own)."""
    if any(o.startswith("paths.data_dir=") for o in overrides):
        return list(overrides)
    data_dir = Path(os.environ.get("MICROACTION_DATA", repo / "data")).resolve()
    return [*overrides, f"paths.data_dir={data_dir}"]


def compose_train(repo: Path, experiment: str, overrides: list[str]):
    """``repo``'s train.py config for ``experiment=<experiment>`` and ``overrides``, as its runs compose it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(repo / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"experiment={experiment}", *overrides])


def prepare_data(repo: Path, experiment: str, overrides: list[str]) -> Path:
    """Generate ``experiment``'s dataset once (nothing with ``data.generate=null``), from the same composed
    config as its runs; returns the data root."""
    from ..data.synthetic import get_generator

    cfg = compose_train(repo, experiment, overrides)
    root = Path(cfg.data.root)
    if cfg.data.generate:
        get_generator(cfg.data.generate)(root, **dict(cfg.data.generate_kwargs))
    return root


def threads_per_job(jobs: int) -> int | None:
    """Torch's CPU threads for each of ``jobs`` runs at a time: the cores shared out (at least one); None for
    one job at a time (the runs choose, as a user's run does)."""
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: expected at least 1")
    return None if jobs == 1 else max(1, usable_cpus() // jobs)


def run_parallel(calls: Sequence[Callable[[], T]], jobs: int = 1) -> list[T]:
    """Call each of ``calls`` (no arguments), ``jobs`` at a time, and return their results in order. With one
    job they run one after another in this thread. When one fails, the calls not yet started are not started,
    the running ones finish (their folders stay complete), then the error is raised (the first in
    order when several failed)."""
    if jobs == 1:
        return [call() for call in calls]
    failed = threading.Event()

    def guarded(call: Callable[[], T]) -> T | None:
        if failed.is_set():
            return None
        try:
            return call()
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(guarded, call) for call in calls]
        wait(futures)
    for f in futures:
        if f.exception() is not None:
            raise f.exception()
    return [f.result() for f in futures]


def _run_job(repo: Path, name: str, script: str, args: list[str], run_dir: Path, split: str,
             threads: int | None = None) -> tuple[dict, float]:
    """Run ``repo``'s ``script`` (train.py, eval.py) with ``args`` into ``run_dir``, its output kept in
    ``<run_dir>.log``; returns its metrics.json and the seconds it took. ``threads``: its torch CPU threads
    (``OMP_NUM_THREADS``), when several runs share the machine. A failed run, or one without ``split``'s
    metrics, stops the comparison, naming its log."""
    cmd = [sys.executable, str(repo / script), *args]
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    print("$ " + ("" if threads is None else f"OMP_NUM_THREADS={threads} ") + " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.time() - t0
    log_file = run_dir.parent / f"{run_dir.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(proc.stdout)
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        raise SystemExit(f"{name}: {script} failed (exit {proc.returncode}), log in {log_file}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if not isinstance(metrics.get(split), dict):
        raise SystemExit(f"{name}: no {split} metrics ({metrics.get(split)!r}); the comparison needs {split} labels")
    return metrics, seconds


def train_run(repo: Path, name: str, experiment: str, run_dir: Path, overrides: list[str], seed: int,
              epochs: int | None = None, threads: int | None = None) -> tuple[dict, float]:
    """Run ``repo``'s ``train.py experiment=<experiment>`` into ``run_dir`` (its output kept in ``<run_dir>.log``);
    returns its metrics.json and the seconds it took. A failed run stops the comparison, naming its log."""
    args = [f"experiment={experiment}", f"seed={seed}", f"hydra.run.dir={run_dir}", "callbacks.rich_progress_bar=null",
            "extras.print_config=false", *overrides]
    if epochs is not None:
        args.append(f"trainer.max_epochs={epochs}")
    return _run_job(repo, name, "train.py", args, run_dir, "test", threads)


def eval_run(repo: Path, name: str, ckpt: Path, run_dir: Path, overrides: list[str], split: str = "test",
             seed: int = 0, threads: int | None = None) -> tuple[dict, float]:
    """Run ``repo``'s ``eval.py ckpt_path=<ckpt> split=<split>`` into ``run_dir`` (its output kept in
    ``<run_dir>.log``); returns its metrics.json and the seconds it took. The data settings are the
    checkpoint's, with the ``data.*`` of ``overrides`` on top (eval.py's rule). A failed run stops the
    comparison, naming its log."""
    args = [f"ckpt_path={ckpt}", f"split={split}", f"seed={seed}", f"hydra.run.dir={run_dir}",
            "extras.print_config=false", *overrides]
    return _run_job(repo, name, "eval.py", args, run_dir, split, threads)


def write_comparison(out: Path, summary: dict, table: Table) -> None:
    """A comparison's files in ``out``: comparison.json (``summary``), comparison.md (the table), .csv (values
    and the columns' spread) and .tex; then ``summary`` as the output's last line (JSON)."""
    from ..results import write_table

    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_table(table, out, "comparison", title=False)
    print(json.dumps(summary))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def over_seeds(runs: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """One row's figures from its runs (training seed -> figures): every numeric figure's mean over the runs
    that have it (``Stat.mean``; None when none has), its sample standard deviation under ``"std"`` (None for
    a single run) and the runs themselves under ``"runs"`` (by seed). With one seed the means are that run's
    figures."""
    if not runs:
        raise ValueError("no runs to fold over seeds")
    keys = list(dict.fromkeys(k for r in runs.values() for k, v in r.items() if _number(v)))
    stats = {k: Stat([float(r[k]) for r in runs.values() if _number(r.get(k))]) for k in keys}
    return {**{k: s.mean for k, s in stats.items()}, "std": {k: s.std for k, s in stats.items()},
            "runs": {str(seed): dict(r) for seed, r in runs.items()}}


def seeds_text(seeds: Sequence[int]) -> str:
    """How a table's title says what its cells are."""
    if len(seeds) == 1:
        return f"training seed {seeds[0]}"
    return f"mean ± sample std over training seeds {', '.join(map(str, seeds))}"


def table_over_seeds(title: str, label_columns: Sequence[str],
                     rows: Iterable[tuple[Sequence[str], Mapping[int, Mapping[str, Any]]]],
                     columns: Sequence[Column], percent: Iterable[str] = ()) -> Table:
    """A ``microaction.results.Table`` of comparison rows: each row (its labels, {seed: figures}) with one cell
    per column, the ``Stat`` of that figure over the row's runs, ``percent`` keys (fractions) shown in %. The
    count of runs (``n``) is a column when some row has more than one."""
    percent = set(percent)
    out = []
    for labels, runs in rows:
        cells = {c.key: Stat([(100.0 if c.key in percent else 1.0) * float(r[c.key]) for r in runs.values()
                              if _number(r.get(c.key))]) for c in columns}
        out.append(Row(labels=list(labels), cells=cells, count=len(runs)))
    return Table(title, list(label_columns), list(columns), out, show_n=any(r.n > 1 for r in out))

