#!/usr/bin/env python
"""Train TSN, TSM and MANet on the procedural dataset and compare them, order-only pairs included.

    python scripts/compare_temporal.py                      # the CPU recipe (conf/experiment/procedural_*.yaml)
    python scripts/compare_temporal.py --models tsn tsm --seed 1
    # the paper's two ablations too, each row over three training seeds (mean ± sample std)
    python scripts/compare_temporal.py --models tsn tsm manet wo_se wo_emb --seeds 0 1 2
    # two runs at a time, each with half the CPU cores as torch threads (OMP_NUM_THREADS)
    python scripts/compare_temporal.py --models tsn tsm manet wo_se wo_emb --seeds 0 1 2 --jobs 2
    # other data need their own root: a dataset made with other arguments is refused, not reused
    python scripts/compare_temporal.py -- data.root='${paths.data_dir}/proc_crf23' data.generate_kwargs.crf=23

Each model is an ordinary `train.py experiment=procedural_<model>` run (its folder under
--out holds metrics.json, checkpoints, predictions; `<model>_seed<N>` with several seeds). The
dataset is generated once first. `wo_se` (TSM with the label-embedding loss) and `wo_emb` (MANet
with alpha 0) are the paper's ablations of MANet (its Table V), derived from procedural_manet as
ma52_wo_se / ma52_wo_emb are from ma52_manet.
The table is printed in the benchmark's metrics (%, test split) plus two figures on the
order-only pairs (classes whose clips are each other's frames reversed):

- pair acc: for test clips of a pair class, how often the true class ranks above its reversed
  twin in the model's top 5 (a clip whose top 5 holds neither counts half), averaged per class
  so that 50 = order-blind whatever the class frequencies.
- pair top-1: action top-1 on those clips, averaged per class.

and, for the long tail, the fine-class macro F1 over the 17 classes with the most MA-52 training
clips (F1_head) and over the 17 with the fewest (F1_tail; microaction.results.head_tail_f1). With
several --seeds each cell is the mean ± sample standard deviation over the seeds (the data stay the
same: their seed is data.generate_kwargs.seed). The table is also written as comparison.md,
comparison.csv (means and spreads) and comparison.tex (microaction.results).

The last line of output is a JSON object with the same figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from microaction.labels import LabelSpace
from microaction.results import Column, Table, head_tail_f1, load_job
from microaction.utils.comparison import (over_seeds, prepare_data, run_parallel, seeds_text, table_over_seeds,
                                          threads_per_job, train_run, with_data_dir, write_comparison)

REPO = Path(__file__).resolve().parents[1]
# the default rows; the ablations on request (conf/experiment/procedural_<model>.yaml each)
MODELS = ("tsn", "tsm", "manet")
ABLATIONS = ("wo_se", "wo_emb")
COLUMNS = ("F1_mean", "body_top1", "action_top1", "action_top5", "action_F1_macro", "F1_head", "F1_tail",
           "pair_acc", "pair_top1")


def pair_scores(predictions_csv: Path, pairs) -> dict[str, float]:
    """Order-only pair figures from a predictions CSV, averaged over the pair classes.

    Per class, then averaged: the two classes of a pair have different numbers of clips, so a
    plain average over clips would reward an order-blind model for always naming the more
    frequent twin. With the class average, an order-blind model scores 50.
    """
    twin = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    wins: dict[int, list[float]] = {}
    hits: dict[int, list[float]] = {}
    with predictions_csv.open() as f:
        for row in csv.DictReader(f):
            if row["label"] == "":
                raise ValueError(f"{predictions_csv}: the test split has no labels (data.test_has_labels=false?)")
            label = int(row["label"])
            if label not in twin:
                continue
            ranked = [int(x) for x in row["top5"].split()]
            rank = {c: ranked.index(c) for c in (label, twin[label]) if c in ranked}
            if not rank:
                win = 0.5
            else:
                win = float(label in rank and (twin[label] not in rank or rank[label] < rank[twin[label]]))
            wins.setdefault(label, []).append(win)
            hits.setdefault(label, []).append(float(ranked[0] == label))
    if not wins:
        raise ValueError(f"{predictions_csv}: no clip of an order-only pair class")

    def mean(per_class: dict[int, list[float]]) -> float:
        return sum(sum(v) / len(v) for v in per_class.values()) / len(per_class)

    return {"pair_acc": mean(wins), "pair_top1": mean(hits), "pair_clips": sum(len(v) for v in wins.values()),
            "pair_classes": len(wins)}


TITLE = "procedural MA-52 stand-in, test split (%)"


def comparison_table(results: dict[str, dict], seeds: list[int] | None = None) -> Table:
    """One row per model (``results``: model -> ``over_seeds`` figures, each run under ``"runs"``): the figures
    in % (two decimals) and the seconds a run took, mean ± sample std over the seeds."""
    seeds = seeds or sorted({int(s) for r in results.values() for s in r["runs"]})
    rows = [([model], {int(s): run for s, run in r["runs"].items()}) for model, r in results.items()]
    return table_over_seeds(f"{TITLE}, {seeds_text(seeds)}", ["model"],
                            rows, [*(Column(c) for c in COLUMNS), Column("seconds", "train+eval s", digits=0)],
                            percent=COLUMNS)


def markdown_table(results: dict[str, dict]) -> str:
    return comparison_table(results).to_markdown()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS + ABLATIONS,
                   help="rows, in this order (default: %(default)s); wo_se and wo_emb are the paper's ablations")
    p.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (default: the experiment's)")
    seed_group = p.add_mutually_exclusive_group()
    seed_group.add_argument("--seed", type=int, default=None,
                            help="training seed (default 0; the dataset's seed is data.generate_kwargs.seed)")
    seed_group.add_argument("--seeds", type=int, nargs="+", default=None,
                            help="several training seeds: every model is trained once per seed, each cell their "
                                 "mean ± sample std")
    p.add_argument("--out", type=Path, default=None, help="run folders go here (default: logs/compare_temporal/<time>)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, the CPU cores shared out among them "
                   "(default 1)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run (after --)")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs {args.epochs}: expected at least 1")
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: expected at least 1")
    for flag, values in (("--models", args.models), ("--seeds", args.seeds or [])):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            p.error(f"{flag}: {', '.join(repeated)} given more than once")
    seed_list = args.seeds or [0 if args.seed is None else args.seed]

    overrides = with_data_dir(REPO, args.overrides)
    out = (args.out or REPO / "logs" / "compare_temporal" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    start = time.time()
    root = prepare_data(REPO, "procedural_manet", overrides)
    print(f"data: {root} ({time.time() - start:.0f} s)", flush=True)
    with (root / "procedural.json").open() as f:
        meta = json.load(f)
    pairs = [tuple(x) for x in meta["order_pairs"]]

    threads = threads_per_job(args.jobs)

    def run_one(model: str, seed: int) -> dict:
        # one seed: <out>/<model> as always; several: <out>/<model>_seed<N>
        name = model if len(seed_list) == 1 else f"{model}_seed{seed}"
        run_dir = out / name
        _, seconds = train_run(REPO, name, f"procedural_{model}", run_dir, overrides, seed, args.epochs, threads)
        job = load_job(run_dir)
        test, val = job.split_metrics("test"), job.split_metrics("val") or {}
        run = {**{k: float(test[k]) for k in COLUMNS[:5]},
               **head_tail_f1(run_dir / "predictions_test.csv", LabelSpace.ma52().train_counts),
               **pair_scores(run_dir / "predictions_test.csv", pairs),
               "val_F1_mean": float(val["F1_mean"]) if "F1_mean" in val else None, "seconds": seconds,
               "run": str(run_dir)}
        print(f"{name}: test F1_mean {100 * run['F1_mean']:.2f}, pair acc {100 * run['pair_acc']:.2f} "
              f"({seconds:.0f} s)", flush=True)
        return run

    order = [(model, seed) for seed in seed_list for model in args.models]
    done = run_parallel([lambda m=model, s=seed: run_one(m, s) for model, seed in order], args.jobs)
    runs: dict[str, dict[int, dict]] = {model: {} for model in args.models}
    for (model, seed), run in zip(order, done):
        runs[model][seed] = run
    results = {model: over_seeds(by_seed) for model, by_seed in runs.items()}

    table = comparison_table(results, seed_list)
    print(f"\n{table.title}\n" + table.to_markdown())
    summary = {"data": str(root), "data_arguments": meta["arguments"], "order_pairs": pairs,
               "seed": seed_list[0] if len(seed_list) == 1 else None, "seeds": seed_list,
               "epochs": args.epochs, "overrides": overrides, "runs": str(out),
               "wall_s": round(time.time() - start, 1), "results": results}
    write_comparison(out, summary, table)
    return summary


if __name__ == "__main__":
    main()
