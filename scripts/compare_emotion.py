#!/usr/bin/env python
"""Train the face branch alone, the micro-action branch alone and the full model on the MA-52-Pro stand-in
and compare them in Table VI's columns.

    python scripts/compare_emotion.py                        # the CPU recipe (conf/experiment/procedural_pro_*.yaml)
    python scripts/compare_emotion.py --init logs/compare_emotion/<time>/ma52_manet/checkpoints/<best>.ckpt
    python scripts/compare_emotion.py --rows full wo_lower   # Table VII: without lower-limb labels
    python scripts/compare_emotion.py --seeds 0 1 2          # mean and spread over training seeds
    python scripts/compare_emotion.py --jobs 2               # two rows at a time, half the cores each
    # other data need their own root: a dataset made with other arguments is refused, not reused
    python scripts/compare_emotion.py -- data.root='${paths.data_dir}/pro_small' data.generate_kwargs.num_train=200

Each row is an ordinary `train.py experiment=procedural_pro_<row>` run (its folder under --out holds
metrics.json, checkpoints, predictions). The dataset is generated once first. Every row's branches start
from one MANet trained on the MA-52 stand-in (`train.py experiment=procedural_manet`, run first into
<out>/ma52_manet unless --init names a checkpoint of it; --init none: random initialisation). The table gives the test
split's emotion accuracy (Acc), weighted F1, UF1 (macro F1), UAR (macro recall), the mean per-emotion
accuracy (Acc avg) and the micro-action mAP (not for the face branch, which has no action head), in %;
with several seeds, mean ± standard deviation. The last line of output is a JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from microaction.utils.comparison import prepare_data, run_parallel, threads_per_job, train_run, with_data_dir

REPO = Path(__file__).resolve().parents[1]
ROWS = ("face", "action", "full", "wo_lower")
NAMES = {"face": "Only face", "action": "Only micro-action", "full": "Full model",
         "wo_lower": "Full, w/o lower-limb labels"}
COLUMNS = {"Acc": "emotion_acc", "F1_weighted": "emotion_f1_weighted", "UF1": "emotion_uf1", "UAR": "emotion_uar",
           "Acc_avg": "emotion_acc_avg", "mAP": "action_mAP"}


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Per column: mean and sample standard deviation (0 for one run) over the seeds' test figures;
    a column the runs do not report (mAP of the face branch) is left out."""
    out = {}
    for column, key in COLUMNS.items():
        values = [float(r[key]) for r in runs if key in r]
        if len(values) == len(runs) and values:
            out[column] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                           "values": values}
    return out


def markdown_table(results: dict[str, dict], seeds: list[int]) -> str:
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row, figures in results.items():
        cells = []
        for column in COLUMNS:
            f = figures.get(column)
            if f is None:
                cells.append("-")
            elif len(seeds) > 1:
                cells.append(f"{100 * f['mean']:.2f} ± {100 * f['std']:.2f}")
            else:
                cells.append(f"{100 * f['mean']:.2f}")
        lines.append(f"| {NAMES[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=["face", "action", "full"], choices=ROWS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (the data's: data.generate_kwargs.seed)")
    p.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (default: the experiment's)")
    p.add_argument("--out", type=Path, default=None, help="run folders go here (default: logs/compare_emotion/<time>)")
    p.add_argument("--jobs", type=int, default=1, help="rows trained at a time after the MANet they start from, "
                   "the CPU cores shared out among them (default 1)")
    p.add_argument("--init", default=None,
                   help="checkpoint of train.py experiment=procedural_manet that both branches start from "
                        "(default: train it first; 'none': random initialisation)")
    p.add_argument("--init-args", nargs="*", default=[], metavar="OVERRIDE",
                   help="Hydra overrides for that MANet's training run (the rows' overrides go after --)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run (after --)")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs {args.epochs}: expected at least 1")
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: expected at least 1")

    if args.init not in (None, "none") and not Path(args.init).is_file():
        p.error(f"--init {args.init}: no such file; expected a checkpoint that "
                "train.py experiment=procedural_manet wrote, or 'none'")
    overrides = with_data_dir(REPO, args.overrides)
    out = (args.out or REPO / "logs" / "compare_emotion" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    start = time.time()
    root = prepare_data(REPO, "procedural_pro_full", overrides)
    print(f"data: {root} ({time.time() - start:.0f} s)", flush=True)

    results: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    init = args.init
    if init is None:
        # the MA-52 stand-in's MANet: the same figure and movements, one micro-action a clip
        init_overrides = with_data_dir(REPO, args.init_args)
        prepare_data(REPO, "procedural_manet", init_overrides)
        metrics, seconds["ma52_manet"] = train_run(REPO, "MA-52 stand-in MANet", "procedural_manet",
                                                   out / "ma52_manet", init_overrides, 0)
        # the best by validation; a run too short to validate has only its last
        init = metrics.get("best_checkpoint") or str(out / "ma52_manet" / "checkpoints" / "last.ckpt")
        if not Path(init).is_file():
            raise SystemExit(f"MA-52 stand-in MANet: no checkpoint in {out / 'ma52_manet' / 'checkpoints'} (did it "
                             "validate? trainer.check_val_every_n_epoch above trainer.max_epochs writes none)")
        print(f"MA-52 stand-in MANet: test F1_mean {100 * metrics['test']['F1_mean']:.2f} "
              f"({seconds['ma52_manet']:.0f} s)", flush=True)
    row_overrides = overrides if init == "none" else [*overrides, f"model.pretrained={init}"]
    threads = threads_per_job(args.jobs)

    def run_row(row: str, seed: int) -> tuple[dict, float]:
        name = f"{row}_seed{seed}"
        metrics, took = train_run(REPO, f"{row} (seed {seed})", f"procedural_pro_{row}", out / name, row_overrides,
                                  seed, args.epochs, threads)
        test = metrics["test"]
        print(f"{row} seed {seed}: test Acc {100 * test['emotion_acc']:.2f}, UF1 {100 * test['emotion_uf1']:.2f} "
              f"({took:.0f} s)", flush=True)
        return test, took

    # the rows after the MANet they start from, --jobs at a time
    order = [(row, seed) for row in args.rows for seed in args.seeds]
    done = run_parallel([lambda r=row, s=seed: run_row(r, s) for row, seed in order], args.jobs)
    for (row, seed), (test, took) in zip(order, done):
        seconds[f"{row}_seed{seed}"] = took
        runs.setdefault(row, []).append(test)
    results = {row: summarise(runs[row]) for row in args.rows}

    table = markdown_table(results, args.seeds)
    print("\nMA-52-Pro stand-in, test split (%)\n" + table)
    meta_file = root / "procedural_pro.json"
    meta = json.loads(meta_file.read_text()).get("arguments") if meta_file.is_file() else None
    summary = {"data": str(root), "data_arguments": meta, "init": init, "seeds": args.seeds, "epochs": args.epochs,
               "overrides": overrides, "runs": str(out), "seconds": seconds, "wall_s": round(time.time() - start, 1),
               "results": results}
    (out / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "comparison.md").write_text(table + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
