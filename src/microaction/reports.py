"""Reports written after evaluation: metric table, prediction CSVs, confusion matrices."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .classes import class_table
from .metrics import METRIC_KEYS

def _as_float(value) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def metric_table(results: Mapping[str, Mapping[str, float]], title: str = "MA-52 metrics (%)"):
    """A rich table: one row per metric, one column per result set (e.g. val, test)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    for key in METRIC_KEYS:
        cells = []
        for values in results.values():
            cells.append(f"{100 * _as_float(values[key]):.2f}" if key in values else "-")
        table.add_row(key, *cells)
    return table


def print_metric_table(results: Mapping[str, Mapping[str, float]], title: str = "MA-52 metrics (%)") -> None:
    import rich

    rich.print(metric_table(results, title))


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def write_predictions_csv(path: Path, predictions: Sequence[dict], names: Sequence[str] | None = None) -> Path:
    """One row per video: target (if known), top-5 fine ids with probabilities, body parts."""
    table = class_table()
    names = list(names or table.fine_names)
    f2c = table.fine_to_coarse
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "label", "label_name", "body", "pred", "pred_name", "pred_body", "prob",
                    "top5", "top5_prob", "correct"])
        for p in predictions:
            label = p["label"]
            top = p["topk"]
            w.writerow([
                p["name"],
                "" if label is None else label,
                "" if label is None else names[label],
                "" if label is None else f2c[label],
                top[0], names[top[0]], f2c[top[0]], f"{p['topk_prob'][0]:.6f}",
                " ".join(map(str, top)), " ".join(f"{x:.6f}" for x in p["topk_prob"]),
                "" if label is None else int(top[0] == label),
            ])
    return path


def write_submission_csv(path: Path, predictions: Sequence[dict]) -> Path:
    """The benchmark server's format: vid, top-5 fine ids, then the body part of each."""
    f2c = class_table().fine_to_coarse
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["vid"] + [f"action_pred_{i}" for i in range(1, 6)] + [f"body_pred_{i}" for i in range(1, 6)])
        for p in sorted(predictions, key=lambda p: p["name"]):
            top = list(p["topk"])[:5]
            if len(top) != 5:
                raise ValueError(f"{p['name']}: a submission needs 5 predictions, got {len(top)}")
            w.writerow([p["name"]] + top + [f2c[c] for c in top])
    return path


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (rows: true class) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(labels)
    size = max(5.0, 0.22 * n + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7 if n > 10 else 9)
    ax.set_yticks(range(n), labels, fontsize=7 if n > 10 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 10:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
