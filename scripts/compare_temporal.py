#!/usr/bin/env python
"""Train TSN, TSM and MANet on the procedural dataset and compare them, order-only pairs included.

    python scripts/compare_temporal.py                      # the CPU recipe (conf/experiment/procedural_*.yaml)
    python scripts/compare_temporal.py --models tsn tsm --seed 1
    # other data need their own root: a dataset made with other arguments is refused, not reused
    python scripts/compare_temporal.py -- data.root='${paths.data_dir}/proc_crf23' data.generate_kwargs.crf=23

Each model is an ordinary `train.py experiment=procedural_<model>` run (its folder under
--out holds metrics.json, checkpoints, predictions). The dataset is generated once first.
The table is printed in the benchmark's metrics (%, test split) plus two figures on the
order-only pairs (classes whose clips are each other's frames reversed):

- pair acc: for test clips of a pair class, how often the true class ranks above its reversed
  twin in the model's top 5 (a clip whose top 5 holds neither counts half), averaged per class
  so that 50 = order-blind whatever the class frequencies.
- pair top-1: action top-1 on those clips, averaged per class.

and, for the long tail, the fine-class macro F1 over the 17 classes with the most MA-52 training
clips (F1_head) and over the 17 with the fewest (F1_tail).

The last line of output is a JSON object with the same figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from microaction.labels import LabelSpace
from microaction.utils.comparison import prepare_data, train_run, with_data_dir

REPO = Path(__file__).resolve().parents[1]
MODELS = ("tsn", "tsm", "manet")
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


def head_tail_f1(predictions_csv: Path, train_counts, third: int | None = None) -> dict[str, float]:
    """Macro F1 over the classes with the most training clips (head) and the fewest (tail).

    Classes are ranked by MA-52's training counts; head and tail are the top and bottom
    ``third`` (default: a third of the classes). Per-class F1 is 2 TP / (2 TP + FP + FN),
    0 for a class with no clip and no prediction.
    """
    k = len(train_counts)
    third = third or k // 3
    order = sorted(range(k), key=lambda c: (-train_counts[c], c))
    tp, fp, fn = [0] * k, [0] * k, [0] * k
    with predictions_csv.open() as f:
        for row in csv.DictReader(f):
            label, pred = int(row["label"]), int(row["pred"])
            if label == pred:
                tp[label] += 1
            else:
                fp[pred] += 1
                fn[label] += 1

    def macro(classes) -> float:
        f1 = [2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else 0.0 for c in classes]
        return sum(f1) / len(f1)

    return {"F1_head": macro(order[:third]), "F1_tail": macro(order[-third:])}


def markdown_table(results: dict[str, dict]) -> str:
    head = "| model | " + " | ".join(COLUMNS) + " | train+eval s |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for model, r in results.items():
        cells = " | ".join(f"{100 * r[c]:.2f}" for c in COLUMNS)
        lines.append(f"| {model} | {cells} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (default: the experiment's)")
    p.add_argument("--seed", type=int, default=0, help="training seed (the dataset's seed is data.generate_kwargs.seed)")
    p.add_argument("--out", type=Path, default=None, help="run folders go here (default: logs/compare_temporal/<time>)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run (after --)")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs {args.epochs}: expected at least 1")

    overrides = with_data_dir(REPO, args.overrides)
    out = (args.out or REPO / "logs" / "compare_temporal" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    start = time.time()
    root = prepare_data(REPO, "procedural_manet", overrides)
    print(f"data: {root} ({time.time() - start:.0f} s)", flush=True)
    with (root / "procedural.json").open() as f:
        meta = json.load(f)
    pairs = [tuple(x) for x in meta["order_pairs"]]

    results: dict[str, dict] = {}
    for model in args.models:
        run_dir = out / model
        metrics, seconds = train_run(REPO, model, f"procedural_{model}", run_dir, overrides, args.seed, args.epochs)
        test = metrics["test"]
        results[model] = {**{k: float(test[k]) for k in COLUMNS[:5]},
                          **head_tail_f1(run_dir / "predictions_test.csv", LabelSpace.ma52().train_counts),
                          **pair_scores(run_dir / "predictions_test.csv", pairs),
                          "val_F1_mean": float(metrics["val"]["F1_mean"]), "seconds": seconds}
        print(f"{model}: test F1_mean {100 * results[model]['F1_mean']:.2f}, "
              f"pair acc {100 * results[model]['pair_acc']:.2f} ({seconds:.0f} s)", flush=True)

    table = markdown_table(results)
    print("\nprocedural MA-52 stand-in, test split (%)\n" + table)
    summary = {"data": str(root), "data_arguments": meta["arguments"], "order_pairs": pairs, "seed": args.seed,
               "epochs": args.epochs, "overrides": overrides, "runs": str(out),
               "wall_s": round(time.time() - start, 1), "results": results}
    (out / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "comparison.md").write_text(table + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
