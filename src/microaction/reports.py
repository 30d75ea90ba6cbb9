"""Reports written after evaluation: metric table, prediction CSVs, confusion matrices."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .labels import LabelSpace
from .metrics import METRIC_KEYS

def _as_float(value) -> float:
    return float(value.item() if hasattr(value, "item") else value)


# Rows of the clip accounting (see ``clip_accounting``) in the printed table.
CLIP_ROWS = (("listed", "clips listed"), ("scored", "clips scored"), ("skipped", "clips skipped"),
             ("partial", "clips partly decoded"), ("not_run", "clips not run (limit_*_batches)"))


def clip_accounting(listed: Sequence[tuple[str, int]], scored: int, issues: Sequence[dict]) -> dict:
    """What happened to the clips of one split: counts, and the skipped and partly decoded clips by name.

    ``listed`` is (name, list line) per list entry, ``scored`` the clips that went through the model,
    ``issues`` rows ``{"name", "status": "skipped"|"partial", "detail"}``. ``not_run`` counts listed clips
    neither scored nor skipped (a run limited by ``trainer.limit_*_batches`` or ``fast_dev_run``).
    """
    lines = dict(listed)
    skipped = sorted((i for i in issues if i["status"] == "skipped"), key=lambda i: lines.get(i["name"], 0))
    partial = sorted((i for i in issues if i["status"] == "partial"), key=lambda i: lines.get(i["name"], 0))
    return {
        "listed": len(lines),
        "scored": int(scored),
        "skipped": len(skipped),
        "partial": len(partial),
        "not_run": len(lines) - int(scored) - len(skipped),
        "skipped_clips": [{"video": i["name"], "line": lines.get(i["name"]), "reason": i["detail"]} for i in skipped],
        "partial_clips": [{"video": i["name"], "line": lines.get(i["name"]), "detail": i["detail"]} for i in partial],
    }


def metric_table(results: Mapping[str, Mapping[str, float]], title: str = "MA-52 metrics (%)",
                 clips: Mapping[str, Mapping] | None = None):
    """A rich table: one row per metric, one column per result set (e.g. val, test); with ``clips``
    (split -> ``clip_accounting``) also the clips listed, scored, skipped and partly decoded."""
    from rich.table import Table

    clips = clips or {}
    columns = list(dict.fromkeys([*results, *clips]))
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for key in METRIC_KEYS:
        cells = []
        for name in columns:
            values = results.get(name) or {}
            cells.append(f"{100 * _as_float(values[key]):.2f}" if isinstance(values, Mapping) and key in values else "-")
        table.add_row(key, *cells)
    if clips:
        table.add_section()
        for key, label in CLIP_ROWS:
            if key == "not_run" and not any(c.get(key) for c in clips.values()):
                continue
            table.add_row(label, *[str(clips[n][key]) if key in clips.get(n, {}) else "-" for n in columns])
    return table


def clip_notes(clips: Mapping[str, Mapping]) -> list[str]:
    """One line per skipped or partly decoded clip, for printing under the table."""
    out = []
    for split, acc in clips.items():
        for c in acc.get("skipped_clips", []):
            out.append(f"{split}: skipped {c['video']} (list line {c['line']}): {c['reason']}")
        for c in acc.get("partial_clips", []):
            out.append(f"{split}: partly decoded {c['video']} (list line {c['line']}): {c['detail']}")
        if acc.get("skipped_fill"):
            out.append(f"{split}: submission rows of skipped clips: {acc['skipped_fill']}")
    return out


def print_metric_table(results: Mapping[str, Mapping[str, float]], title: str = "MA-52 metrics (%)",
                       clips: Mapping[str, Mapping] | None = None) -> None:
    import rich
    from rich.markup import escape

    rich.print(metric_table(results, title, clips))
    for line in clip_notes(clips or {}):
        rich.print(escape(line))


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


PREDICTION_COLUMNS = ["video", "label", "label_name", "body", "pred", "pred_name", "pred_body", "prob", "top5",
                      "top5_prob", "correct"]


def write_predictions_csv(path: Path, predictions: Sequence[dict], label_space: LabelSpace) -> Path:
    """One row per video: target (if known), top-5 fine ids with probabilities, coarse groups (body parts);
    names and the fine -> coarse mapping from ``label_space``."""
    names = label_space.classes
    f2c = label_space.fine_to_coarse
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PREDICTION_COLUMNS)
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


def write_decode_report(path: Path, accounting: Mapping) -> Path:
    """The skipped and partly decodable clips of a split (``clip_accounting``), one CSV row each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "list_line", "status", "detail"])
        for c in accounting.get("skipped_clips", []):
            w.writerow([c["video"], c["line"], "skipped", c["reason"]])
        for c in accounting.get("partial_clips", []):
            w.writerow([c["video"], c["line"], "partial", c["detail"]])
    return path


def write_submission_csv(path: Path, predictions: Sequence[dict], label_space: LabelSpace) -> Path:
    """The benchmark server's format: vid, top-5 fine ids, then the body part (coarse id) of each."""
    f2c = label_space.fine_to_coarse
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
