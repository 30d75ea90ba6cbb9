#!/usr/bin/env python
"""Average the per-clip logits of several runs and write the benchmark's submission CSV (and metrics).

    python scripts/ensemble.py logs/train/runs/<run1> logs/train/runs/<run2> --split test --out ensembles/two
    python scripts/ensemble.py RUN1 RUN2 RUN3 --weights 2 1 1 --average logits --split val --out ensembles/val

Each argument is a run folder holding logits_<split>.npz (every train.py or eval.py evaluation writes one)
or such a file itself. The runs must cover the same clips and classes; the error names the file that does
not. Writes into --out: submission_<split>.csv (the benchmark server's format), logits_<split>.npz (the
ensemble, to combine further) and, when the split's labels are known, metrics_<split>.json with each run's
metrics and the ensemble's, also printed as a table. Exit status: 0 done, 2 stopped (the reason on stderr).
See docs/recipes.md ("Ensembles").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from microaction import reports
    from microaction.ensemble import MODES, EnsembleError, run_ensemble
except ImportError:
    # Lets the script run from a plain checkout without installing the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from microaction import reports
    from microaction.ensemble import MODES, EnsembleError, run_ensemble


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ensemble", description="Average the per-clip logits of several runs.")
    p.add_argument("runs", nargs="+", help="run folders (holding logits_<split>.npz) or logits files")
    p.add_argument("--split", default="test", choices=("val", "test"), help="the split to ensemble (default test)")
    p.add_argument("--out", required=True, help="the folder to write into (made if missing)")
    p.add_argument("--weights", type=float, nargs="+", default=None,
                   help="one weight per run (normalised to sum 1; default: equal)")
    p.add_argument("--average", default="softmax", choices=MODES,
                   help="softmax: average the runs' class probabilities (default); logits: their raw logits")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run_ensemble(args.runs, args.split, args.out, args.weights, args.average)
    except EnsembleError as err:
        print(f"ensemble: stopped: {err}", file=sys.stderr)
        return 2
    if result["metrics"]:
        reports.print_metric_table(result["metrics"], title=f"{args.split}: runs and their ensemble (%)")
        for i, run in enumerate(result["runs"], start=1):
            print(f"  run{i}: {run}")
    print(f"ensemble of {len(result['runs'])} runs over {result['clips']} {args.split} clips "
          f"({args.average} average, weights {', '.join(f'{w:g}' for w in result['weights'])})")
    for name, path in result["files"].items():
        print(f"  {name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
