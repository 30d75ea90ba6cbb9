#!/usr/bin/env python
"""Turn sweeps into the paper's tables: markdown, CSV, LaTeX and a plot with error bars over seeds.

    python scripts/collect_results.py logs/train/multiruns/<time>                  # rows: the swept keys
    python scripts/collect_results.py logs/train/multiruns/<time> --layout table4  # Table IV (alpha)
    python scripts/collect_results.py logs/train/multiruns/<a> logs/train/multiruns/<b> --split val
    python scripts/collect_results.py --wandb my-team/microaction --group <time> --layout table4

Each argument is a sweep folder (``multirun.yaml`` and its job folders) or a run folder. Rows are the
combinations of the overrides that differ between the jobs (the seed folded into mean ± sample standard
deviation, n runs); with ``--layout table2|table3|table4|table5`` the rows of the paper's table (methods,
frames T, loss weight alpha, MANet's components) with the paper's F1_mean beside them. Columns are the
benchmark's metrics in %. A job without metrics is named under the table with its state: failed (with
the error its log ends with), running, stopped or missing (not started yet).

Writes ``<layout or table>_<split>.{md,csv,tex}``, ``jobs.csv`` and ``<metric>_vs_<key>_<split>.png`` into
--out (default: ``results/`` in the first folder given). The last line of output is a JSON object naming
them. Exit status 1 when no job has metrics of the split yet.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from microaction import results
from microaction.utils.atomic import write_text_atomic


def _file_part(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, help="sweep folders (logs/train/multiruns/<time>) or run folders")
    p.add_argument("--layout", choices=sorted(results.LAYOUTS), help="the rows of one of the paper's tables")
    p.add_argument("--split", default="auto", choices=("auto", "val", "test"),
                   help="auto: test when every finished job has test metrics, else val")
    p.add_argument("--metrics", nargs="+", default=None, metavar="NAME",
                   help="columns (default: the benchmark's metrics; a layout: in the paper's order)")
    p.add_argument("--metric", default="F1_mean", help="the metric plotted (default F1_mean)")
    p.add_argument("--plot", default=None, metavar="KEY",
                   help="the numeric key to plot against (default: the layout's, or the only numeric swept key)")
    p.add_argument("--no-plot", action="store_true", help="write no plot")
    p.add_argument("--out", type=Path, default=None, help="where the files go (default: <first folder>/results)")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", default=None,
                   help="read the runs of this W&B project through its API (needs an account and the network)")
    p.add_argument("--group", default=None, help="with --wandb: only this group (a sweep's folder name)")
    p.add_argument("--stale-minutes", type=float, default=results.STALE_AFTER_S / 60,
                   help="a job without metrics.json and no write for this long is 'stopped', not 'running'")
    args = p.parse_args(argv)
    if not args.paths and not args.wandb:
        p.error("give sweep or run folders, or --wandb ENTITY/PROJECT")
    if args.group and not args.wandb:
        p.error("--group needs --wandb")

    try:
        jobs = results.collect(args.paths, stale_after=60 * args.stale_minutes)
        if args.wandb:
            jobs += results.load_wandb_jobs(args.wandb, args.group)
    except (OSError, ValueError, results.WandbUnavailable) as err:
        p.exit(2, f"collect_results.py: {err}\n")
    if not jobs:
        p.exit(1, "collect_results.py: the folders hold no job yet\n")

    if args.out is not None:
        out = args.out
    elif args.paths:
        out = args.paths[0] / "results"
    else:
        name = _file_part(f"wandb_{args.wandb}" + (f"_{args.group}" if args.group else ""))
        out = results.logs_dir() / "results" / name
    split = results.choose_split(jobs, args.split)
    try:
        table = results.build_table(jobs, split, args.layout, args.metrics)
    except ValueError as err:
        p.exit(2, f"collect_results.py: {err}\n")
    print(table.to_markdown(title=True, notes=True))
    counts = Counter(j.status for j in jobs)
    print("\njobs: " + ", ".join(f"{n} {s}" for s, n in counts.most_common()))

    files = {k: str(v) for k, v in results.write_table(table, out, f"{args.layout or 'table'}_{split}").items()}
    files["job_list"] = str(write_text_atomic(out / "jobs.csv", results.jobs_csv(jobs), newline=""))
    key = args.plot
    if key is None and not args.no_plot:
        layout = results.LAYOUTS.get(args.layout) if args.layout else None
        numeric = results.numeric_keys(jobs, results.swept_keys(jobs))
        key = layout.plot_key if layout else (numeric[0] if len(numeric) == 1 else None)
        if key is None and not layout:
            print(f"no plot: {'no' if not numeric else 'more than one'} numeric swept key "
                  f"({', '.join(numeric) or 'none'}); --plot KEY chooses one")
    if key and not args.no_plot:
        target = out / f"{args.metric}_vs_{_file_part(key)}_{split}.png"
        try:
            files["plot"] = str(results.plot_metric(jobs, key, target, args.metric, split, args.layout))
        except ValueError as err:
            print(f"no plot: {err}")
    for kind, path in files.items():
        print(f"{kind}: {path}")

    summary = {"split": split, "layout": args.layout, "rows": len(table.rows),
               "runs": sum(r.n for r in table.rows), "jobs": dict(counts),
               "without_metrics": [j.label for j in jobs if not j.split_metrics(split)], "files": files}
    print(json.dumps(summary))
    if not summary["runs"]:
        print(f"collect_results.py: no job has {split} metrics yet", file=sys.stderr)
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
