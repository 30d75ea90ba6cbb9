#!/usr/bin/env python
"""Measure the recipe switches of docs/recipes.md on the MA-52 stand-in, the long tail in particular.

    python scripts/compare_recipes.py                               # seeds 0 and 1, the default rows
    python scripts/compare_recipes.py --rows baseline balanced hierarchical reweight views --seeds 0 1 2
    # two runs at a time, each with half the CPU cores as torch threads (OMP_NUM_THREADS)
    python scripts/compare_recipes.py --rows baseline balanced hierarchical reweight views --seeds 0 1 2 --jobs 2
    # other data need their own root: a dataset made with other arguments is refused, not reused
    python scripts/compare_recipes.py -- data.root='${paths.data_dir}/proc_crf23' data.generate_kwargs.crf=23

Every training row is an ordinary `train.py experiment=procedural_manet <switch>` run (MANet-R10 on the
procedural dataset, docs/procedural_dataset.md), once per training seed, into <out>/seed<N>/<row>:

- baseline: the recipe as it is;
- balanced: `data.sampler=class_balanced` (clips drawn with probability ~ n_c^-0.5: `data.balance_power`);
- hierarchical: `model.head=hierarchical` (a body-part head fused with the fine one, body loss weight 1);
- reweight (only when asked for): `loss.reweight=body_inverse_freq` (class weights balanced within each
  body part);
- views: no training: `eval.py` of the baseline's best checkpoint (the one its figures come from) on the
  test split with `data.test_views.clips=3 data.test_views.crops=3` (--test-clips, --test-crops), the
  logits of the 9 views averaged. At the recipe's size (48 x 40 clips decoded to 32 x 38, 32 x 32 input)
  the three crops are the centre crop and the crops 3 px above and below it: the vertical positions the
  training crops already take (0 to 6 px from the top), so they add little; the temporal clips take 3
  frames of each of the 8 segments (the centre one and one on either side).

The table gives the test split's F1_mean, F1_tail and F1_head (fine-class macro F1 over the 17 classes with
the fewest / most MA-52 training clips: microaction.results.head_tail_f1, as in compare_temporal.py),
action_F1_macro and body_F1_macro (%), and the seconds a run took, each cell the mean ± sample standard
deviation over the seeds. The data are the same for every run (their seed is data.generate_kwargs.seed).
The table is also written as comparison.md, comparison.csv and comparison.tex, the figures of every run
as comparison.json; the last line of output is a JSON object with the same figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from microaction.labels import LabelSpace
from microaction.results import Column, Table, best_checkpoint, head_tail_f1, parse_override
from microaction.utils.comparison import (compose_train, eval_run, over_seeds, prepare_data, run_parallel, seeds_text,
                                          table_over_seeds, threads_per_job, train_run, with_data_dir,
                                          write_comparison)

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "procedural_manet"
# training rows: the switch each adds to the recipe
SWITCHES = {
    "baseline": [],
    "balanced": ["data.sampler=class_balanced"],
    "hierarchical": ["model.head=hierarchical"],
    "reweight": ["loss.reweight=body_inverse_freq"],
}
VIEWS = "views"
ROWS = (*SWITCHES, VIEWS)
DEFAULT_ROWS = ("baseline", "balanced", "hierarchical", VIEWS)
METRICS = ("F1_mean", "action_F1_macro", "body_F1_macro")
COLUMNS = ("F1_mean", "F1_tail", "F1_head", "action_F1_macro", "body_F1_macro")
# the keys each row decides: given after `--` they would undo the comparison
ROW_KEYS = ("data.sampler", "model.head", "loss.reweight", "data.test_views")
# what of the `--` overrides eval.py takes: its data settings are the checkpoint's
EVAL_KEYS = ("trainer.", "paths.")
TITLE = "procedural MA-52 stand-in, MANet-R10 with the recipe switches, test split (%)"


def row_switch(row: str, clips: int, crops: int) -> str:
    """What a row changes, as its table shows it."""
    if row == VIEWS:
        return f"baseline's checkpoint, data.test_views.clips={clips} data.test_views.crops={crops}"
    return " ".join(SWITCHES[row]) or "-"


def figures(run_dir: Path, metrics: dict, seconds: float) -> dict:
    """A run's test figures (fractions) from its metrics.json and its predictions, and its seconds."""
    test = metrics["test"]
    return {**{k: float(test[k]) for k in METRICS},
            **head_tail_f1(run_dir / "predictions_test.csv", LabelSpace.ma52().train_counts),
            "seconds": seconds, "run": str(run_dir)}


def comparison_table(results: dict[str, dict], seeds: list[int], clips: int = 3, crops: int = 3) -> Table:
    """One row per recipe row (``results``: row -> ``over_seeds`` figures): the figures in %, the seconds of a
    run, mean ± sample std over the seeds."""
    rows = [([row, row_switch(row, clips, crops)], {int(s): run for s, run in r["runs"].items()})
            for row, r in results.items()]
    return table_over_seeds(f"{TITLE}, {seeds_text(seeds)}", ["row", "switch"], rows,
                            [*(Column(c) for c in COLUMNS), Column("seconds", "train or eval s", digits=0)],
                            percent=COLUMNS)


def report(row: str, seed: int, run: dict) -> dict:
    print(f"{row} seed {seed}: test F1_mean {100 * run['F1_mean']:.2f}, F1_tail {100 * run['F1_tail']:.2f} "
          f"({run['seconds']:.0f} s)", flush=True)
    return run


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), choices=ROWS,
                   help="rows, in this order (default: %(default)s); views evaluates the baseline's checkpoints")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds (default: %(default)s)")
    p.add_argument("--test-clips", type=int, default=3, help="views row: data.test_views.clips (default 3)")
    p.add_argument("--test-crops", type=int, default=3, choices=(1, 3), help="views row: data.test_views.crops "
                   "(default 3)")
    p.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (default: the experiment's)")
    p.add_argument("--out", type=Path, default=None, help="run folders go here (default: logs/compare_recipes/<time>)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, the CPU cores shared out among them "
                   "(default 1)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides passed to every training run (after --); eval.py "
                   "takes their trainer.* and paths.*")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs {args.epochs}: expected at least 1")
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: expected at least 1")
    if not 1 <= args.test_clips <= 32:
        p.error(f"--test-clips {args.test_clips}: expected 1 to 32 (data.test_views.clips)")
    for flag, values in (("--rows", args.rows), ("--seeds", args.seeds)):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            p.error(f"{flag}: {', '.join(repeated)} given more than once")
    if VIEWS in args.rows and "baseline" not in args.rows:
        p.error("--rows views evaluates the baseline's checkpoints: add baseline to --rows")
    for override in args.overrides:
        key = parse_override(override)[0]
        if any(key == k or key.startswith(k + ".") for k in ROW_KEYS):
            p.error(f"override {override!r}: {key} is what the rows compare ({', '.join(ROW_KEYS)}); it cannot be "
                    "set for every run")

    overrides = with_data_dir(REPO, args.overrides)
    if VIEWS in args.rows:
        # the views row evaluates the baseline's best checkpoint, which a run writes when it validates
        trainer = compose_train(REPO, EXPERIMENT, [*overrides, *([f"trainer.max_epochs={args.epochs}"]
                                                                  if args.epochs else [])]).trainer
        every, epochs = trainer.get("check_val_every_n_epoch") or 1, trainer.max_epochs
        if isinstance(every, int) and isinstance(epochs, int) and every > epochs:
            p.error(f"--rows views evaluates the baseline's best checkpoint, but trainer.check_val_every_n_epoch="
                    f"{every} > trainer.max_epochs={epochs}: the run never validates and writes none")
    eval_overrides = [o for o in overrides if parse_override(o)[0].startswith(EVAL_KEYS)]
    views = [f"data.test_views.clips={args.test_clips}", f"data.test_views.crops={args.test_crops}"]
    out = (args.out or REPO / "logs" / "compare_recipes" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    start = time.time()
    root = prepare_data(REPO, EXPERIMENT, overrides)
    print(f"data: {root} ({time.time() - start:.0f} s)", flush=True)
    with (root / "procedural.json").open() as f:
        meta = json.load(f)

    threads = threads_per_job(args.jobs)
    runs: dict[str, dict[int, dict]] = {row: {} for row in args.rows}

    def train_one(row: str, seed: int) -> dict:
        run_dir = out / f"seed{seed}" / row
        metrics, seconds = train_run(REPO, f"{row} (seed {seed})", EXPERIMENT, run_dir,
                                     [*overrides, *SWITCHES[row]], seed, args.epochs, threads)
        return report(row, seed, figures(run_dir, metrics, seconds))

    def views_of_baseline(seed: int) -> dict:
        baseline = out / f"seed{seed}" / "baseline"
        try:
            ckpt = best_checkpoint(baseline)
        except FileNotFoundError as err:
            raise SystemExit(f"{VIEWS} (seed {seed}): {err}; did the baseline validate?") from None
        run_dir = out / f"seed{seed}" / VIEWS
        metrics, seconds = eval_run(REPO, f"{VIEWS} (seed {seed})", ckpt, run_dir, [*eval_overrides, *views],
                                    "test", seed, threads)
        return report(VIEWS, seed, {**figures(run_dir, metrics, seconds), "checkpoint": str(ckpt)})

    # the trained rows first (any order, --jobs at a time), then views, which needs the baselines' checkpoints
    trained = [(row, seed) for seed in args.seeds for row in args.rows if row != VIEWS]
    for (row, seed), run in zip(trained, run_parallel([lambda r=row, s=seed: train_one(r, s) for row, seed in trained],
                                                      args.jobs)):
        runs[row][seed] = run
    if VIEWS in args.rows:
        for seed, run in zip(args.seeds, run_parallel([lambda s=seed: views_of_baseline(s) for seed in args.seeds],
                                                      args.jobs)):
            runs[VIEWS][seed] = run
    results = {row: over_seeds(runs[row]) for row in args.rows}

    table = comparison_table(results, args.seeds, args.test_clips, args.test_crops)
    print(f"\n{table.title}\n" + table.to_markdown())
    summary = {"data": str(root), "data_arguments": meta["arguments"], "experiment": EXPERIMENT,
               "seeds": args.seeds, "rows": {row: row_switch(row, args.test_clips, args.test_crops) for row in args.rows},
               "views": {"clips": args.test_clips, "crops": args.test_crops}, "epochs": args.epochs,
               "overrides": overrides, "runs": str(out), "wall_s": round(time.time() - start, 1), "results": results}
    write_comparison(out, summary, table)
    return summary


if __name__ == "__main__":
    main()
