"""Reports written after evaluation: metric table, prediction CSVs, confusion matrices."""

from __future__ import annotations

import contextlib
import csv
import json
import math
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from .labels import LabelSpace
from .metrics import METRIC_KEYS
from .utils.atomic import atomic_open, save_figure

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


# metrics that count things: printed as they are, not as percentages
COUNT_KEYS = ("actions_absent", "face_fallback_clips")


def metric_table(results: Mapping[str, Mapping[str, float]], title: str = "MA-52 metrics (%)",
                 clips: Mapping[str, Mapping] | None = None, keys: Sequence[str] | None = None):
    """A rich table: one row per metric (``keys``, default MA-52's), one column per result set (e.g. val,
    test); with ``clips`` (split -> ``clip_accounting``) also the clips listed, scored, skipped and partly
    decoded."""
    from rich.table import Table

    clips = clips or {}
    columns = list(dict.fromkeys([*results, *clips]))
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for key in keys or METRIC_KEYS:
        cells = []
        for name in columns:
            values = results.get(name) or {}
            if not isinstance(values, Mapping) or key not in values:
                cells.append("-")
            else:
                value = _as_float(values[key])
                cells.append(f"{value:.0f}" if key in COUNT_KEYS else f"{100 * value:.2f}")
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
                       clips: Mapping[str, Mapping] | None = None, keys: Sequence[str] | None = None) -> None:
    import rich
    from rich.markup import escape

    rich.print(metric_table(results, title, clips, keys))
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
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


@contextlib.contextmanager
def _atomic_csv(path: Path) -> Iterator:
    """A csv.writer on a temporary file beside ``path``, renamed to ``path`` when the block completes;
    a reader never sees half a file, and a failed write leaves no temporary file."""
    with atomic_open(path, newline="") as f:
        yield csv.writer(f)


# An action is in a clip's predicted set when its probability reaches this.
ACTION_THRESHOLD = 0.5


def predicted_actions(prob: Sequence[float], threshold: float = ACTION_THRESHOLD) -> list[int]:
    """The predicted action set of one clip, ascending ids: every action with probability >= ``threshold``,
    and the most probable action when none reaches it (every clip carries at least one micro-action,
    so the set is never empty). Ties for the top-1 go to the lowest id."""
    prob = np.asarray(prob, dtype=np.float64)
    chosen = set(np.flatnonzero(prob >= threshold).tolist())
    chosen.add(int(np.argmax(prob)))
    return sorted(chosen)


def _check_probs(video: str, what: str, prob: Sequence[float], n: int) -> np.ndarray:
    arr = np.asarray(prob, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{video}: {what} must hold {n} probabilities, got shape {arr.shape}")
    if not np.all((arr >= 0) & (arr <= 1)):
        raise ValueError(f"{video}: {what} must be probabilities in [0, 1] (softmax / sigmoid outputs), "
                         f"got values in [{arr.min()}, {arr.max()}]")
    return arr


def _check_ids(video: str, what: str, ids: Sequence[int], n: int) -> list[int]:
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
        raise ValueError(f"{video}: {what} must be ids in [0, {n}), got {bad}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{video}: {what} repeat an id: {ids}")
    return sorted(ids)


def emotion_prediction_columns(emotion_names: Sequence[str]) -> list[str]:
    """The header of ``write_emotion_predictions_csv``: one probability column per emotion, by name."""
    return ["video", "emotion", "emotion_name", "pred_emotion", "pred_emotion_name", "emotion_correct",
            *[f"prob_{name}" for name in emotion_names],
            "actions", "action_names", "pred_actions", "pred_action_names", "pred_action_probs", "actions_found"]


def write_emotion_predictions_csv(path: Path, rows: Sequence[Mapping], emotion_names: Sequence[str],
                                  action_names: Sequence[str], threshold: float = ACTION_THRESHOLD) -> Path:
    """One row per MA-52-Pro clip: the true and predicted emotion with every emotion's probability, and
    the true action set beside the predicted one.

    Each of ``rows`` holds ``name``, ``emotion`` (true id, or None when unknown), ``emotion_prob`` (E
    probabilities), ``actions`` (true action ids, or None) and ``action_prob`` (C probabilities, one
    sigmoid per action; None for a model without an action head, whose predicted-action columns stay
    empty). The predicted emotion is the most probable; the predicted action set is
    ``predicted_actions`` (probability >= ``threshold``, at least the top-1). Id sets are written
    ascending, space-separated, their names joined by "; "; ``pred_action_probs`` follows
    ``pred_actions``; ``actions_found`` is "<true actions predicted>/<true actions>". Columns that need
    the truth are empty for a clip without it. Refuses (naming the clip) a row whose probabilities
    do not match the name lists or ids out of range, before writing anything.
    """
    emotion_names, action_names = list(emotion_names), list(action_names)
    if len(set(emotion_names)) != len(emotion_names):
        raise ValueError(f"emotion names must be distinct (they name the probability columns): {emotion_names}")
    e, c = len(emotion_names), len(action_names)
    lines = []
    for row in rows:
        video = row["name"]
        eprob = _check_probs(video, "emotion_prob", row["emotion_prob"], e)
        aprob = None if row.get("action_prob") is None else _check_probs(video, "action_prob", row["action_prob"], c)
        pred_e = int(np.argmax(eprob))
        label = row.get("emotion")
        if label is not None and not 0 <= int(label) < e:
            raise ValueError(f"{video}: emotion must be an id in [0, {e}), got {label}")
        truth = row.get("actions")
        true_set = None if truth is None else _check_ids(video, "actions", truth, c)
        pred_set = [] if aprob is None else predicted_actions(aprob, threshold)
        lines.append([
            video,
            "" if label is None else int(label),
            "" if label is None else emotion_names[int(label)],
            pred_e, emotion_names[pred_e],
            "" if label is None else int(pred_e == int(label)),
            *[f"{p:.6f}" for p in eprob],
            "" if true_set is None else " ".join(map(str, true_set)),
            "" if true_set is None else "; ".join(action_names[i] for i in true_set),
            " ".join(map(str, pred_set)),
            "; ".join(action_names[i] for i in pred_set),
            " ".join(f"{aprob[i]:.6f}" for i in pred_set),
            "" if true_set is None or aprob is None else f"{len(set(true_set) & set(pred_set))}/{len(true_set)}",
        ])
    with _atomic_csv(path) as w:
        w.writerow(emotion_prediction_columns(emotion_names))
        w.writerows(lines)
    return Path(path)


def write_per_class_ap_csv(path: Path, ap: Sequence[float], action_names: Sequence[str],
                           counts: Sequence[int]) -> Path:
    """One row per action class: id, name, clips carrying it (``counts``, e.g. ``MultiLabelAP.positives()``)
    and its AP (``MultiLabelAP.per_class_ap()``), the AP empty for a class no clip carries (left out of
    the mAP). Refuses lists of different lengths, and an AP that is NaN exactly when its count is not 0
    (AP and counts from different data)."""
    ap = [float(a) for a in ap]
    counts = [int(n) for n in counts]
    names = list(action_names)
    if not len(ap) == len(names) == len(counts):
        raise ValueError(f"per-class AP needs one AP, name and count per class; got {len(ap)} APs, "
                         f"{len(names)} names, {len(counts)} counts")
    for i, (a, n) in enumerate(zip(ap, counts)):
        if math.isnan(a) != (n == 0):
            raise ValueError(f"class {i} ({names[i]}): AP {a} with {n} positive clips; an AP is NaN exactly "
                             f"when the class has no positive clip")
    with _atomic_csv(path) as w:
        w.writerow(["class", "name", "positives", "ap"])
        for i, (a, n) in enumerate(zip(ap, counts)):
            w.writerow([i, names[i], n, "" if math.isnan(a) else f"{a:.6f}"])
    return Path(path)
