#!/usr/bin/env python
"""Training runs side by side on the CPU: how much more work N runs at a time get done, each with its share of
the cores as torch threads, than one run at a time with all of them (the --jobs of compare_temporal.py,
compare_recipes.py and compare_emotion.py).

    python scripts/bench_jobs.py                   # procedural_manet, 60 training steps, 1 then 2 runs at a time
    python scripts/bench_jobs.py --jobs 2 4 --steps 100 -- data.batch_size=8

Every run is `train.py experiment=<experiment> +trainer.max_steps=<steps>` without validation, test or loggers,
started as the comparison scripts start theirs (a process each, OMP_NUM_THREADS / MKL_NUM_THREADS set to the
cores / N when N > 1). The experiment's data are written first, outside the timing. For each N the N runs
start together; the figure is the work done per second (N x steps over the wall time until the last one
ends), as a multiple of one run at a time with every core. The wall times include each process's start
(imports, building the model and the loaders), as a comparison's runs pay it. The last line of output is a
JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from microaction.utils.comparison import prepare_data, run_parallel, threads_per_job, with_data_dir
from microaction.utils.cpus import usable_cpus

REPO = Path(__file__).resolve().parents[1]


def one_run(run_dir: Path, experiment: str, steps: int, overrides: list[str], threads: int | None) -> float:
    """One training run of ``steps`` steps; returns its wall seconds. A failed run stops the benchmark."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, str(REPO / "train.py"), f"experiment={experiment}", f"+trainer.max_steps={steps}",
           "trainer.limit_val_batches=0", "test=false", "logger=none", "callbacks.rich_progress_bar=null",
           "extras.print_config=false", f"hydra.run.dir={run_dir}", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        raise SystemExit(f"bench_jobs: the run in {run_dir} failed (exit {proc.returncode}): {' '.join(cmd)}")
    return seconds


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default="procedural_manet", help="the experiment each run trains")
    p.add_argument("--steps", type=int, default=60, help="training steps per run (default 60)")
    p.add_argument("--jobs", type=int, nargs="+", default=[2],
                   help="runs at a time to compare with one (default 2); each with the cores / N as threads")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps {args.steps}: expected at least 1")
    if any(j < 2 for j in args.jobs):
        given = " ".join(map(str, args.jobs))
        p.error(f"--jobs {given}: expected counts of at least 2 (one at a time is the baseline)")
    overrides = with_data_dir(REPO, args.overrides)
    root = prepare_data(REPO, args.experiment, overrides)
    cpus = usable_cpus()
    print(f"data: {root}; {cpus} cores; {args.steps} steps per run of experiment={args.experiment}", flush=True)

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_jobs_") as tmp:
        for n in [1, *args.jobs]:
            threads = threads_per_job(n)
            t0 = time.perf_counter()
            walls = run_parallel([lambda i=i: one_run(Path(tmp) / f"n{n}_{i}", args.experiment, args.steps,
                                                      overrides, threads) for i in range(n)], n)
            wall = time.perf_counter() - t0
            results[n] = {"threads_per_run": threads or cpus, "wall_s": wall, "run_s": walls,
                          "steps_per_s": n * args.steps / wall}
            print(f"{n} at a time ({threads or cpus} thread(s) each): {wall:.1f} s, "
                  f"{results[n]['steps_per_s']:.2f} steps/s", flush=True)
    base = results[1]["steps_per_s"]
    print("\n| runs at a time | threads each | wall (s) | steps/s | work per second vs one at a time |")
    print("|---|---|---|---|---|")
    for n, r in results.items():
        r["ratio"] = r["steps_per_s"] / base
        print(f"| {n} | {r['threads_per_run']} | {r['wall_s']:.1f} | {r['steps_per_s']:.2f} | {r['ratio']:.2f}x |")
    summary = {"experiment": args.experiment, "steps": args.steps, "cores": cpus, "machine": platform.processor()
               or platform.machine(), "overrides": args.overrides, "results": {str(n): r for n, r in results.items()}}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
