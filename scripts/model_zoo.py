"""Count parameters and FLOPs of every Table II model at its standard input and
write the table into docs/model_zoo.md (between the zoo:begin / zoo:end markers).
The models, their standard inputs and published sizes are the registry's
(``register_model`` beside each backbone), in the order they are registered.

    python scripts/model_zoo.py            # rewrite the table in docs/model_zoo.md
    python scripts/model_zoo.py --print    # print it only

Everything is built on the meta device: no memory, no weights, no download; a
run takes a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from microaction.embeddings import load_label_embeddings
from microaction.models import catalogue
from microaction.models.counting import build_standard, count_flops, count_params

DOC = Path(__file__).resolve().parents[1] / "docs" / "model_zoo.md"
BEGIN, END = "<!-- zoo:begin -->", "<!-- zoo:end -->"


def rows() -> list[dict]:
    embed_dim = load_label_embeddings(None, num_classes=52).shape[1]
    out = []
    for entry in catalogue():
        name = entry.name
        k400 = build_standard(name, num_classes=400)
        ours = build_standard(name, num_classes=52, embed_dim=embed_dim)
        flops = count_flops(k400, entry.frames, entry.size)
        params = count_params(k400)
        out.append(
            {
                "name": name,
                "method": entry.method,
                "family": entry.family,
                "input": f"{entry.frames} x {entry.size}^2",
                "backbone": count_params(k400, exclude_head=True) / 1e6,
                "k400": params / 1e6,
                "published": entry.published_params_m,
                "ours": count_params(ours) / 1e6,
                "gflops": flops / 1e9,
            }
        )
    return out


def table(data: list[dict]) -> str:
    lines = [
        "| `model=` | method | family | frames x size | backbone params (M) | + K400 fc (M) | published (M) "
        "| with the MA-52 head (M) | GFLOPs / clip | GMACs / clip |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data:
        pub = f"{r['published']:.1f}" if r["published"] is not None else "-"
        lines.append(
            f"| `{r['name']}` | {r['method']} | {r['family']} | {r['input']} | {r['backbone']:.2f} | {r['k400']:.2f} "
            f"| {pub} | {r['ours']:.2f} | {r['gflops']:.1f} | {r['gflops'] / 2:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the table, do not touch the docs")
    args = parser.parse_args()
    text = table(rows())
    if args.print:
        print(text)
        return
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
