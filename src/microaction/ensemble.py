"""Per-clip logits of an evaluation, and ensembles of several runs built from them.

Every recognition run's final evaluation (train.py's val and test, eval.py's split) writes
``logits_<split>.npz`` beside ``predictions_<split>.csv`` (``write_logits``, called by the prediction
writer): ``names`` (the clip names, [N] strings), ``logits`` ([N, K] float32: every class's score as the
task ranked them; with several test-time views their average), ``labels`` ([N], -1 where the split's labels
are hidden) and ``label_space`` (the task's label space as JSON). Clips skipped as undecodable have no row.

``ensemble`` averages several such files (optionally weighted; after a softmax or on the raw logits), after
checking that they cover the same clips and the same classes; ``run_ensemble`` (``scripts/ensemble.py``)
also scores the result with the benchmark's metrics when the labels are known and writes the benchmark's
submission CSV.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import reports
from .labels import LabelSpace
from .metrics import MA52Metrics

MODES = ("softmax", "logits")


class EnsembleError(ValueError):
    """Logit files that cannot be combined (other clips, other classes) or bad arguments; names the file."""


def write_logits(path: str | Path, rows: Sequence[dict], label_space: LabelSpace | None = None) -> Path:
    """``rows`` (predict_step's, each with ``name``, ``logits`` and ``label``) as a logits file, written whole or
    not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = np.array([str(r["name"]) for r in rows], dtype=np.str_)
    logits = np.asarray([r["logits"] for r in rows], dtype=np.float32).reshape(len(rows), -1)
    labels = np.array([-1 if r.get("label") is None else int(r["label"]) for r in rows], dtype=np.int64)
    space = json.dumps(label_space.to_dict() if label_space is not None else None, sort_keys=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, names=names, logits=logits, labels=labels, label_space=np.array(space))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


@dataclass
class Logits:
    path: Path
    names: list[str]
    logits: np.ndarray  # [N, K] float32
    labels: np.ndarray  # [N] int64, -1: hidden
    label_space: dict | None


def read_logits(path: str | Path) -> Logits:
    """A file ``write_logits`` wrote, checked (read without unpickling anything)."""
    path = Path(path)
    if not path.is_file():
        raise EnsembleError(f"{path}: no such logits file (every evaluation writes logits_<split>.npz into its run "
                            "folder)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"names", "logits", "labels", "label_space"} - set(data.files)
            if missing:
                raise EnsembleError(f"{path}: not a logits file: it lacks {sorted(missing)}")
            names = [str(n) for n in data["names"]]
            logits = np.asarray(data["logits"], dtype=np.float32)
            labels = np.asarray(data["labels"], dtype=np.int64)
            space = json.loads(str(data["label_space"]))
    except (OSError, ValueError) as err:
        if isinstance(err, EnsembleError):
            raise
        raise EnsembleError(f"{path}: cannot be read as a logits file ({err})") from None
    if logits.ndim != 2 or logits.shape[0] != len(names) or labels.shape != (len(names),):
        raise EnsembleError(f"{path}: {len(names)} names but logits of shape {logits.shape} and labels of shape "
                            f"{labels.shape}")
    if len(set(names)) != len(names):
        raise EnsembleError(f"{path}: clip names repeat")
    if not np.isfinite(logits).all():
        raise EnsembleError(f"{path}: logits hold NaN or infinite values")
    return Logits(path, names, logits, labels, space)


def find_logits(source: str | Path, split: str) -> Path:
    """A logits file given directly, or ``<run folder>/logits_<split>.npz``."""
    source = Path(source)
    if source.is_dir():
        path = source / f"logits_{split}.npz"
        if not path.is_file():
            found = sorted(p.name for p in source.glob("logits_*.npz"))
            raise EnsembleError(f"{source}: no logits_{split}.npz in this run folder"
                                + (f" (it has {', '.join(found)})" if found else
                                   " (runs of this version write it at their final evaluation; rerun eval.py on the "
                                   "run's checkpoint)"))
        return path
    return source


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Ensemble:
    names: list[str]
    scores: np.ndarray  # [N, K]: the weighted mean of the members' probabilities (softmax) or logits
    labels: np.ndarray | None  # [N], None when hidden
    label_space: LabelSpace
    members: list[Logits]
    weights: list[float]


def ensemble(members: Sequence[Logits], weights: Sequence[float] | None = None, mode: str = "softmax") -> Ensemble:
    """The weighted mean (weights normalised to sum 1; default equal) of the members' softmax probabilities
    (``mode="softmax"``) or raw logits (``"logits"``), per clip in the first member's order."""
    if not members:
        raise EnsembleError("no logits files given")
    if mode not in MODES:
        raise EnsembleError(f"--average {mode!r}: expected one of {MODES}")
    weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
    if len(weights) != len(members):
        raise EnsembleError(f"{len(weights)} weights for {len(members)} runs: give one weight per run")
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise EnsembleError(f"weights {weights}: expected numbers >= 0 with a positive sum")
    first = members[0]
    if first.label_space is None:
        raise EnsembleError(f"{first.path}: holds no label space")
    order = {n: i for i, n in enumerate(first.names)}
    total = np.zeros_like(first.logits, dtype=np.float64)
    for member, weight in zip(members, weights):
        if member.label_space != first.label_space:
            raise EnsembleError(f"{member.path}: its classes differ from those of {first.path} "
                                f"({_space_difference(member.label_space, first.label_space)}): only runs over the "
                                "same label space can be averaged")
        names = set(member.names)
        if names != set(order):
            extra, missing = sorted(names - set(order)), sorted(set(order) - names)
            raise EnsembleError(
                f"{member.path}: its clips differ from those of {first.path}: {len(missing)} missing"
                + (f" (e.g. {', '.join(missing[:3])})" if missing else "") + f", {len(extra)} not in it"
                + (f" (e.g. {', '.join(extra[:3])})" if extra else "")
                + ". Ensemble evaluations of the same split with every clip decoded")
        position = {n: i for i, n in enumerate(member.names)}
        index = np.array([position[n] for n in first.names], dtype=np.int64)
        logits = member.logits[index].astype(np.float64)
        labels = member.labels[index]
        known = (labels >= 0) & (first.labels >= 0)
        if (labels[known] != first.labels[known]).any():
            bad = first.names[int(np.flatnonzero(known & (labels != first.labels))[0])]
            raise EnsembleError(f"{member.path}: the label of {bad} differs from that in {first.path}")
        total += weight * (_softmax(logits) if mode == "softmax" else logits)
    scores = (total / sum(weights)).astype(np.float32)
    labels = first.labels if (first.labels >= 0).all() else None
    return Ensemble(list(first.names), scores, labels, LabelSpace.from_dict(first.label_space, str(first.path)),
                    list(members), weights)


def _space_difference(a: dict | None, b: dict | None) -> str:
    if a is None or b is None:
        return "one holds no label space"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "differing " + ", ".join(keys)


def score(scores: np.ndarray, labels: np.ndarray, label_space: LabelSpace) -> dict[str, float]:
    """The benchmark's metrics (``metrics.MA52Metrics``) of scores [N, K] against labels [N]."""
    metric = MA52Metrics(label_space)
    metric.update(torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)), torch.from_numpy(labels))
    return {k: float(v) for k, v in metric.compute().items()}


def submission_rows(names: Sequence[str], scores: np.ndarray) -> list[dict]:
    """Per clip the five best classes (highest score first), as ``reports.write_submission_csv`` takes them."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    return [{"name": n, "topk": [int(c) for c in t]} for n, t in zip(names, top)]


def run_ensemble(sources: Sequence[str | Path], split: str, out: str | Path, weights: Sequence[float] | None = None,
                 mode: str = "softmax") -> dict:
    """Average the logits of ``sources`` (run folders or logits files) for ``split`` and write into ``out``:
    ``submission_<split>.csv`` (the benchmark's format), ``logits_<split>.npz`` (the ensemble's scores, to
    ensemble further), and, when the labels are known, ``metrics_<split>.json`` with every member's metrics
    and the ensemble's. Returns what it wrote and the metrics."""
    members = [read_logits(find_logits(s, split)) for s in sources]
    result = ensemble(members, weights, mode)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"submission": str(reports.write_submission_csv(out / f"submission_{split}.csv",
                                                            submission_rows(result.names, result.scores),
                                                            result.label_space))}
    # the ensemble as a logits file: its scores (log-probabilities after a softmax average, so a softmax
    # of them gives the averaged probabilities back)
    stored = np.log(np.clip(result.scores, 1e-12, None)) if mode == "softmax" else result.scores
    rows = [{"name": n, "logits": s, "label": None if result.labels is None else int(y)}
            for n, s, y in zip(result.names, stored, result.labels if result.labels is not None
                               else [None] * len(result.names))]
    files["logits"] = str(write_logits(out / f"logits_{split}.npz", rows, result.label_space))
    metrics: dict[str, dict[str, float]] = {}
    if result.labels is not None:
        for i, member in enumerate(members):
            position = {n: j for j, n in enumerate(member.names)}
            index = np.array([position[n] for n in result.names], dtype=np.int64)
            metrics[f"run{i + 1}"] = score(member.logits[index], result.labels, result.label_space)
        metrics["ensemble"] = score(result.scores, result.labels, result.label_space)
        files["metrics"] = str(reports.write_json(out / f"metrics_{split}.json", {
            "split": split, "average": mode, "weights": result.weights,
            "runs": {f"run{i + 1}": str(m.path) for i, m in enumerate(members)}, "metrics": metrics}))
    return {"files": files, "metrics": metrics, "clips": len(result.names), "runs": [str(m.path) for m in members],
            "weights": result.weights, "average": mode, "split": split}
