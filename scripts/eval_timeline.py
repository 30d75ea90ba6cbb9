#!/usr/bin/env python
"""How good is predict.py's timeline? Long videos of the procedural figure performing known sequences of
micro-actions, predicted with a recognition checkpoint and scored against the truth.

    python scripts/eval_timeline.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt
    python scripts/eval_timeline.py ckpt_path=PATH --videos 20 --seconds 60 --seed 1 --out /tmp/timeline
    python scripts/eval_timeline.py ckpt_path=PATH predict.window_s=3 predict.stride_s=1.5

1. Writes --videos videos of --seconds each (default 10 x 30 s at 30 fps) to <out>/videos/: the seated
   figure of the MA-52 stand-in performing 1-15 micro-actions one after another with rest between them, as
   the MA-52-Pro stand-in plans and renders them (``procedural_pro.plan_pro``, its test split, and
   ``render_pro``), with <out>/truth.json holding each video's sequence [fine id, first frame, end frame],
   and each performance's frames on their own to <out>/performances/<video>/pNN.mp4.
   Size, movements, people and compression are those the checkpoint was trained on when train.py wrote it
   on the procedural dataset (its stored ``data.generate_kwargs``: size, amplitude, noise, jitter, crf,
   people and seed, so the figures are the training people, as MA-52's test split shares people with
   training); otherwise those of conf/experiment/procedural_manet.yaml. Options override each. 30 fps is
   the frame rate of the MA-52 stand-in's clips.
2. Runs ``python predict.py ckpt_path=... input=<out>/videos hydra.run.dir=<out>/predict`` (predict.py's
   default windows and threshold; further ``key=value`` arguments are handed to it), its output kept in
   <out>/predict_output.log; and once more on <out>/performances with one window over each whole
   performance (<out>/predict_performances): the classifier alone, where the timeline's windows do not
   matter.
3. Scores predict.py's timeline.json against the truth. A frame's true label is the performance covering
   it, or none (-1) during rest; a frame's predicted label is the timeline segment covering it, or none.
   - frame accuracy, all frames: predicted label == true label, none counting as a label (rest predicted
     as none is right; an action frame predicted as none is wrong);
   - frame accuracy, action frames: over the frames inside a performance only (none is wrong there);
   - rest kept none: the share of rest frames predicted as none;
   - segment precision, recall and F1 at IoU 0.5 (a predicted segment matches a true one of its class,
     one to one), summed over the videos; and the same with the classes ignored (where actions are);
   - the classifier alone: top-1 and top-5 accuracy on the performances cut out on their own;
   - chance levels: none everywhere; the most frequent true action everywhere; the model's own segments
     with uniformly random classes (its expectation: exact for the frames, the class-agnostic matches
     divided by the classes for the segments).
   The same scores for a grid of thresholds (--thresholds), re-merged from the full window probabilities
   predict.py keeps in per_video/<video>.json (the windows stay as predicted; chosen on these videos, so
   the best row is optimistic).
4. Writes <out>/eval_timeline.json and <out>/eval_timeline.md, and compare/<video>.png per video: the true
   sequence drawn above the predicted timeline (``timeline.plot_timeline`` for both).

The generator's rules: a clip of s seconds holds k performances, k uniform in 1..min(15, s / 1.25), each
given 1.2-3 s (shrunk to fit 90% of the clip), the rest of the time rest. Long clips are therefore mostly
rest (60 s: 28% of the frames inside a performance on average, 30 s: 53%, 20 s: 64%), hence the default
of several 30 s videos. The markdown tables are printed; the last line of output is a JSON object with
the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import microaction  # noqa: F401
except ImportError:
    # Lets the script run from a plain checkout without installing the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from microaction.timeline import (  # noqa: E402
    NONE,
    Segment,
    Window,
    frame_accuracy,
    frame_labels,
    labels_of,
    merge_segments,
    plot_timeline,
    read_timeline,
    segment_f1,
)
from microaction.utils.atomic import write_text_atomic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "conf" / "experiment" / "procedural_manet.yaml"
TRUTH_FILE = "truth.json"
TRUTH_FORMAT = "microaction-timeline-truth"
# what the videos take from the checkpoint's generator settings (or the recipe's)
GENERATOR_KEYS = ("size", "amplitude", "noise", "jitter", "crf", "num_subjects", "seed")
IOU = 0.5
DEFAULT_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# predict.py's own arguments that this script sets
RESERVED = ("input", "hydra.run.dir", "predict.resume")
METRICS = ("acc_all", "acc_action", "rest_none", "seg_precision", "seg_recall", "seg_f1", "seg_f1_agnostic")
HEADERS = ("frame acc, all", "frame acc, action frames", "rest kept none", "seg P", "seg R",
           f"seg F1 @{IOU:g}", "seg F1, classes ignored")


class EvalError(ValueError):
    """Input this script cannot use; the message names the argument or file."""


# --- the settings --------------------------------------------------------------------------------------------

def _split_overrides(overrides: Sequence[str]) -> tuple[str, list[str]]:
    """(ckpt_path, the other predict.py overrides); refuses a missing ckpt_path, an argument that is not
    key=value and the keys this script sets itself."""
    ckpt, rest = None, []
    for arg in overrides:
        key, eq, value = arg.partition("=")
        if not eq or not key:
            raise EvalError(f"argument {arg!r}: expected key=value (ckpt_path=PATH, or a predict.py setting such "
                            f"as predict.window_s=3)")
        if key.lstrip("+~") in RESERVED:
            raise EvalError(f"{arg}: this script sets {key.lstrip('+~')} itself (the videos go to <out>/videos, "
                            f"predict.py's run folder is <out>/predict)")
        if key == "ckpt_path":
            ckpt = value
        else:
            rest.append(arg)
    if ckpt in (None, ""):
        raise EvalError("ckpt_path: missing; give the recognition checkpoint to score, "
                        "e.g. ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt")
    return ckpt, rest


def _ma52():
    """MA-52's label space (imported when needed: the package's labels bring torch, which the refusals of the
    command line do not wait for)."""
    from microaction.labels import LabelSpace

    return LabelSpace.ma52()


def recipe_generator() -> dict[str, Any]:
    """``data.generate_kwargs`` of conf/experiment/procedural_manet.yaml: what the videos take when the
    checkpoint was not trained on the procedural dataset."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(OmegaConf.load(RECIPE).data.generate_kwargs)
    values.setdefault("seed", 0)
    return values


def checkpoint_generator(stored: Mapping[str, Any]) -> dict[str, Any] | None:
    """The generator settings of a checkpoint trained on ``data.generate=procedural`` (people as the
    training data had them: a null ``num_subjects`` is the generator's default for its size), else None."""
    if stored.get("generate") != "procedural" or not isinstance(stored.get("generate_kwargs"), Mapping):
        return None
    from microaction.data.synthetic.procedural.writer import class_counts, default_num_subjects

    kwargs = dict(stored["generate_kwargs"])
    if kwargs.get("num_subjects") is None:
        counts = class_counts(float(kwargs.get("scale", 0.1)), int(kwargs.get("min_train", 2)))
        kwargs["num_subjects"] = default_num_subjects(sum(sum(c) for c in counts))
    return kwargs


def check_checkpoint(ckpt: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the checkpoint as predict.py will: it must be a recognition task over MA-52's 52 classes (the
    procedural figure performs those). Returns (its data settings, facts for the report)."""
    from microaction.pipeline import load_task
    from microaction.tasks import MicroActionRecognition

    task, _, stored = load_task(str(ckpt))
    if not isinstance(task, MicroActionRecognition):
        raise EvalError(f"ckpt_path={ckpt}: a {type(task).__name__} checkpoint; the timeline needs a recognition "
                        "checkpoint (train.py's default task, one micro-action a clip)")
    space = task.label_space
    if tuple(space.classes) != tuple(_ma52().classes):
        raise EvalError(f"ckpt_path={ckpt}: its {space.num_classes} classes ({space.name}) are not MA-52's 52 "
                        "micro-actions, which the procedural figure performs")
    facts = {"num_segments": stored.get("num_segments"), "input_size": stored.get("input_size"),
             "short_side": stored.get("short_side"), "trained_on": stored.get("generate") or stored.get("root")}
    return dict(stored), facts


def check_generator(values: Mapping[str, Any], where: str) -> None:
    """Refuse generator settings the renderer cannot use, naming the option and ``where`` they came from."""
    if values.get("size") is not None:
        size = list(values["size"])
        if len(size) != 2 or not all(isinstance(v, int) for v in size) or size[0] % 2 or size[1] % 2 \
                or size[1] < 16 or size[0] < size[1]:
            raise EvalError(f"--size {' '.join(map(str, size))} ({where}): expected HEIGHT WIDTH, even, portrait "
                            "(height >= width >= 16)")
    for key in ("amplitude", "noise", "jitter"):
        value = values.get(key)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value) and value >= 0):
            raise EvalError(f"--{key} {value!r} ({where}): expected a number >= 0")
    crf = values.get("crf")
    if crf is not None and (isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51):
        raise EvalError(f"--crf {crf!r} ({where}): expected an integer H.264 quality from 0 (lossless) to 51")
    for key in ("num_subjects", "seed"):
        value = values.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < (key != "seed")):
            raise EvalError(f"--{key.replace('_', '-')} {value!r} ({where}): expected a whole number "
                            f">= {int(key != 'seed')}")


def generator_settings(args: argparse.Namespace, stored: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The settings the videos are rendered with, and where they came from; each option given overrides."""
    from_ckpt = checkpoint_generator(stored)
    base, source = (from_ckpt, "the checkpoint's data.generate_kwargs") if from_ckpt is not None else (
        recipe_generator(), RECIPE.relative_to(REPO).as_posix())
    out = {k: base.get(k) for k in GENERATOR_KEYS}
    if out["size"] is not None:
        out["size"] = list(out["size"])
    check_generator(out, source)
    missing = [k for k in GENERATOR_KEYS if out[k] is None]
    given = {k: getattr(args, k) for k in GENERATOR_KEYS if getattr(args, k) is not None}
    out.update(given)
    still = [k for k in missing if out[k] is None]
    if still:
        raise EvalError(f"{source} gives no {', '.join(still)}: give them as options "
                        f"({' '.join('--' + k.replace('_', '-') for k in still)})")
    if given:
        source += " (" + ", ".join(f"{k} from the command line" for k in given) + ")"
    return out, source


# --- the videos ----------------------------------------------------------------------------------------------

def plan_videos(count: int, seconds: float, fps: int, gen: Mapping[str, Any]):
    """The test split of ``plan_pro`` with ``count`` clips of exactly ``seconds`` (its clips do not depend on
    the other splits' sizes)."""
    from microaction.data.synthetic.procedural_pro import plan_pro

    specs = plan_pro(num_train=1, num_val=1, num_test=count, seed=int(gen["seed"]), fps=fps, min_seconds=seconds,
                     max_seconds=seconds, num_subjects=int(gen["num_subjects"]))
    return [s for s in specs if s.split == "test"]


def performance_clip(name: str, k: int) -> str:
    """The name (relative to <out>/performances) of performance ``k`` of video ``name`` cut out on its own."""
    return f"{Path(name).with_suffix('').as_posix()}/p{k:02d}.mp4"


def write_videos(out: Path, specs, gen: Mapping[str, Any], progress: bool = True) -> dict[str, Any]:
    """Render and encode every planned video to ``out``/videos/, and each of its performances on its own (its
    frames, first .. end - 1) to ``out``/performances/; write the truth file and return its content."""
    from microaction.data.synthetic.procedural_pro import render_pro
    from microaction.data.video import write_clip

    videos: dict[str, Any] = {}
    for n, spec in enumerate(specs):
        frames, _ = render_pro(spec, int(gen["seed"]), tuple(gen["size"]), gen["amplitude"], gen["noise"],
                               gen["jitter"])
        write_clip(out / "videos" / spec.name, frames, fps=spec.fps, crf=int(gen["crf"]))
        for k, (_, first, end) in enumerate(spec.performances):
            write_clip(out / "performances" / performance_clip(spec.name, k), frames[first:end], fps=spec.fps,
                       crf=int(gen["crf"]))
        videos[spec.name] = {"frames": spec.frames, "fps": spec.fps, "emotion": spec.emotion, "subject": spec.subject,
                             "timeline": [list(p) for p in spec.performances]}
        if progress:
            print(f"  {n + 1}/{len(specs)} {spec.name}: {len(spec.performances)} actions, {spec.frames} frames",
                  flush=True)
    truth = {"format": TRUTH_FORMAT, "generator": "microaction.data.synthetic.procedural_pro",
             "settings": dict(gen), "videos": videos}
    write_text_atomic(out / TRUTH_FILE, json.dumps(truth, indent=1) + "\n")
    return truth


def run_predict(ckpt: Path, out: Path, jobs: Mapping[str, Sequence[str]]) -> dict[str, Path]:
    """predict.py on each <out>/<source> of ``jobs`` (source -> its overrides), side by side, as a user runs it:
    into <out>/predict for the videos, <out>/predict_<source> otherwise, its output kept in <out>/<run folder
    name>_output.log. Returns the run folders by source; a failed run stops here, naming its log."""
    started = {}
    for source, overrides in jobs.items():
        run_dir = out / ("predict" if source == "videos" else f"predict_{source}")
        cmd = [sys.executable, str(REPO / "predict.py"), f"ckpt_path={_hydra_value(ckpt)}",
               f"input={_hydra_value(out / source)}", f"hydra.run.dir={_hydra_value(run_dir)}", *overrides]
        print("$ " + " ".join(cmd), flush=True)
        log = out / f"{run_dir.name}_output.log"
        with open(log, "w", encoding="utf-8") as f:
            started[source] = (subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT), run_dir, log)
    failed = []
    for proc, _, log in started.values():
        if proc.wait() != 0:
            failed.append(f"predict.py failed (exit {proc.returncode}); its output is in {log}")
    if failed:
        raise SystemExit("error: " + "; ".join(failed))
    return {source: run_dir for source, (_, run_dir, _) in started.items()}


def _hydra_value(path: Path) -> str:
    """A path as a Hydra override value: quoted when it holds characters the override grammar reads."""
    text = str(path)
    if re.fullmatch(r"[\w/.\-+@:~]+", text):
        return text
    if "'" in text or "\\" in text:
        raise EvalError(f"{text}: a path with a quote or backslash cannot be handed to predict.py")
    return f"'{text}'"


# --- scoring -------------------------------------------------------------------------------------------------

def scores(predicted: Mapping[str, Sequence[Any]], truth: Mapping[str, Sequence[Any]],
           frames: Mapping[str, int]) -> dict[str, Any]:
    """Frame and segment scores of ``predicted`` against ``truth`` (per video: Segments or (class, first, end)),
    pooled over the videos of ``frames`` (name -> frame count)."""
    pred_all, true_all = [], []
    tp = fp = fn = tp_agnostic = 0
    for name, n in frames.items():
        pred_all.append(frame_labels(predicted[name], n))
        true_all.append(frame_labels(truth[name], n))
        seg = segment_f1(predicted[name], truth[name], IOU)
        tp, fp, fn = tp + seg.tp, fp + seg.fp, fn + seg.fn
        tp_agnostic += segment_f1(_agnostic(predicted[name]), _agnostic(truth[name]), IOU).tp
    pred, true = np.concatenate(pred_all), np.concatenate(true_all)
    action, rest = true != NONE, true == NONE
    n_pred, n_true = tp + fp, tp + fn
    return {
        "acc_all": frame_accuracy(pred, true),
        "acc_action": float(np.mean(pred[action] == true[action])) if action.any() else None,
        "rest_none": float(np.mean(pred[rest] == NONE)) if rest.any() else None,
        "seg_precision": tp / n_pred if n_pred else 0.0,
        "seg_recall": tp / n_true if n_true else 0.0,
        "seg_f1": 2 * tp / (n_pred + n_true) if n_pred + n_true else 1.0,
        "seg_f1_agnostic": 2 * tp_agnostic / (n_pred + n_true) if n_pred + n_true else 1.0,
        "tp": tp, "fp": fp, "fn": fn, "tp_agnostic": tp_agnostic, "predicted_segments": n_pred,
        "true_segments": n_true,
        "predicted_action_frames": int(np.sum(pred != NONE)),
    }


def _agnostic(items: Sequence[Any]) -> list[tuple[int, int, int]]:
    """The segments with every class made one."""
    return [(0, s.first_frame, s.end_frame) if isinstance(s, Segment) else (0, int(s[1]), int(s[2])) for s in items]


def chance_levels(model: Mapping[str, Any], truth: Mapping[str, Sequence[Any]], frames: Mapping[str, int],
                  num_classes: int, predicted: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Scores of three predictors that know nothing of the pictures.

    - ``none``: no action anywhere;
    - ``majority_action``: the action with the most true frames over all videos, over every frame (one
      segment per video; the class is chosen knowing the truth);
    - ``random_classes``: the model's own segments, each with a class drawn uniformly from ``num_classes``,
      in expectation. A frame in a predicted segment and in a performance is right with probability 1 /
      classes; rest frames keep the model's score. Segments: two non-overlapping lists meet at IoU >= 0.5
      one to one, so each class-agnostic match is a match with probability 1 / classes.
    """
    true_all = np.concatenate([frame_labels(truth[n], k) for n, k in frames.items()])
    action = true_all != NONE
    counts = np.bincount(true_all[action], minlength=num_classes) if action.any() else np.zeros(num_classes, int)
    majority = int(np.argmax(counts))
    out = {
        "none": scores({n: [] for n in frames}, truth, frames),
        "majority_action": scores({n: [(majority, 0, k)] for n, k in frames.items()}, truth, frames),
    }
    out["majority_action"]["class_id"] = majority
    pred_all = np.concatenate([frame_labels(predicted[n], k) for n, k in frames.items()])
    both = float(np.sum((pred_all != NONE) & action))
    rest_right = float(np.sum((pred_all == NONE) & ~action))
    n_seg = model["predicted_segments"] + model["true_segments"]
    tp = model["tp_agnostic"] / num_classes
    out["random_classes"] = {
        "acc_all": (rest_right + both / num_classes) / len(true_all),
        "acc_action": both / num_classes / action.sum() if action.any() else None,
        "rest_none": model["rest_none"],
        "seg_precision": tp / model["predicted_segments"] if model["predicted_segments"] else 0.0,
        "seg_recall": tp / model["true_segments"] if model["true_segments"] else 0.0,
        "seg_f1": 2 * tp / n_seg if n_seg else 1.0,
        "seg_f1_agnostic": model["seg_f1_agnostic"],
    }
    return out


def performance_scores(records: Mapping[str, dict], truth: Mapping[str, Any]) -> dict[str, Any]:
    """Top-1 and top-5 accuracy of the classifier on each true performance cut out on its own (one window
    over all of it: T frames spread over the performance, as evaluation samples a clip)."""
    top1 = top5 = total = 0
    for name, video in truth["videos"].items():
        for k, (fine, _, _) in enumerate(video["timeline"]):
            record = records[performance_clip(name, k)]
            if len(record["probs"]) != 1:
                raise ValueError(f"{performance_clip(name, k)}: classified in {len(record['probs'])} windows, "
                                 "expected one over the whole performance")
            ranked = np.argsort(-np.asarray(record["probs"][0]), kind="stable")
            top1 += int(ranked[0] == fine)
            top5 += int(fine in ranked[:5])
            total += 1
    return {"performances": total, "top1": top1 / total, "top5": top5 / total}


def read_records(run_dir: Path) -> dict[str, dict]:
    """predict.py's per_video/<video>.json records by video id."""
    records = {}
    for path in sorted((run_dir / "per_video").rglob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        records[record["video"]] = record
    return records


def remerge(records: Mapping[str, dict], threshold: float) -> dict[str, list[Segment]]:
    """Every video's segments at ``threshold``, merged from its windows' full probabilities."""
    classes, bodies = labels_of(_ma52())
    out = {}
    for name, record in records.items():
        windows = [Window(w["index"], w["first"], w["end"], w["start_s"], w["end_s"], w["whole"])
                   for w in record["windows"]]
        out[name] = merge_segments(windows, np.asarray(record["probs"], np.float64), classes, bodies, threshold)
    return out


def truth_segments(truth: Mapping[str, Any]) -> dict[str, list[Segment]]:
    """The true sequences as Segments (score 1), for the pictures."""
    space = _ma52()
    classes, bodies = labels_of(space)
    out = {}
    for name, video in truth["videos"].items():
        fps = video["fps"]
        out[name] = [Segment(first / fps, end / fps, first, end, c, classes[c], bodies[c], 1.0)
                     for c, first, end in video["timeline"]]
    return out


def comparison_picture(name: str, true_segs: Sequence[Segment], pred_segs: Sequence[Segment], duration_s: float,
                       threshold: float, out: Path) -> Path:
    """compare/<video>.png: the true sequence's timeline above the predicted one (both ``plot_timeline``)."""
    import matplotlib.image

    parts = list(_ma52().coarse_classes)
    stem = Path(name).with_suffix("").as_posix()
    top = plot_timeline(true_segs, duration_s, parts, out / "timelines_truth" / f"{stem}.png",
                        title=f"{name}: true sequence")
    bottom = plot_timeline(pred_segs, duration_s, parts, out / "timelines_predicted" / f"{stem}.png",
                           title=f"{name}: predicted (threshold {threshold:g})")
    images = [matplotlib.image.imread(str(p))[..., :3] for p in (top, bottom)]
    width = max(i.shape[1] for i in images)
    stacked = np.concatenate([np.pad(i, ((0, 0), (0, width - i.shape[1]), (0, 0)), constant_values=1.0)
                              for i in images])
    path = out / "compare" / f"{stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        matplotlib.image.imsave(str(tmp), stacked, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- the report ----------------------------------------------------------------------------------------------

def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def results_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| predictor | " + " | ".join(HEADERS) + " |", "|" + "---|" * (len(HEADERS) + 1)]
    for label, figures in rows.items():
        lines.append(f"| {label} | " + " | ".join(_pct(figures.get(k)) for k in METRICS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="ckpt_path=PATH (required), then any predict.py setting, e.g. predict.threshold=0.4")
    p.add_argument("--videos", type=int, default=10, help="videos to write (default 10)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each video (default 30 s)")
    p.add_argument("--fps", type=int, default=None, help="frame rate (default: the MA-52 stand-in's, 30)")
    p.add_argument("--seed", type=int, default=None, help="the generator's seed: people and sequences "
                   "(default: the training data's, else 0)")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                   help="frame size (default: the training data's, else 48 40)")
    p.add_argument("--amplitude", type=float, default=None, help="scales every movement (default: as trained)")
    p.add_argument("--noise", type=float, default=None, help="scales the pixel noise (default: as trained)")
    p.add_argument("--jitter", type=float, default=None, help="scales the camera shake (default: as trained)")
    p.add_argument("--crf", type=int, default=None, help="H.264 quality, 0-51 (default: as trained)")
    p.add_argument("--num-subjects", dest="num_subjects", type=int, default=None,
                   help="people drawn from (default: as trained)")
    p.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS),
                   help="thresholds to re-merge the windows with (default 0, 0.1, ..., 0.9)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder, new or empty (default: logs/eval_timeline/<time>)")
    args = p.parse_intermixed_args(argv)

    start = time.time()
    try:
        # the command line's own mistakes first, before the checkpoint (and torch) is loaded
        ckpt_text, overrides = _split_overrides(args.overrides)
        ckpt = Path(ckpt_text).expanduser().resolve()
        if not ckpt.is_file():
            raise EvalError(f"ckpt_path={ckpt_text}: no such checkpoint file")
        if args.videos < 1:
            raise EvalError(f"--videos {args.videos}: expected at least 1")
        if args.fps is not None and not 1 <= args.fps <= 60:
            raise EvalError(f"--fps {args.fps}: expected 1..60 frames per second")
        bad = [t for t in args.thresholds if not 0 <= t <= 1]
        if bad:
            raise EvalError(f"--thresholds {bad[0]}: expected probabilities in 0..1")
        check_generator({k: getattr(args, k) for k in GENERATOR_KEYS}, "the command line")
        out = (args.out or REPO / "logs" / "eval_timeline" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise EvalError(f"--out {out}: exists and is not an empty folder; give a new one")
        _hydra_value(ckpt), _hydra_value(out)  # both go to predict.py as override values

        from microaction.data.synthetic.procedural.motions import FPS

        fps = FPS if args.fps is None else args.fps
        if not (math.isfinite(args.seconds) and args.seconds * fps >= 8):
            raise EvalError(f"--seconds {args.seconds}: expected at least 8 frames at {fps} fps")
        stored, facts = check_checkpoint(ckpt)
        gen, source = generator_settings(args, stored)
        specs = plan_videos(args.videos, args.seconds, fps, gen)
    except (ValueError, OSError) as err:  # EvalError, and the package's refusals, each naming what is wrong
        raise SystemExit(f"error: {err}") from None
    print(f"{len(specs)} videos of {args.seconds:g} s at {fps} fps, {gen['size'][0]} x {gen['size'][1]} px "
          f"(settings from {source}) -> {out / 'videos'}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    truth = write_videos(out, specs, gen)
    rendered_s = time.time() - start

    # the classifier alone: each performance in one window over all of it (a window at least as long as the
    # longest performance, so that every one is classified whole)
    longest = max(e - b for v in truth["videos"].values() for _, b, e in v["timeline"])
    window = f"{(longest + 1) / fps:.6f}"
    kept = [o for o in overrides if o.partition("=")[0].lstrip("+~") not in ("predict.window_s", "predict.stride_s")]
    runs = run_predict(ckpt, out, {"videos": overrides, "performances": [
        *kept, f"predict.window_s={window}", f"predict.stride_s={window}"]})
    run_dir = runs["videos"]
    performances = performance_scores(read_records(runs["performances"]), truth)
    timeline_file = run_dir / "timeline.json"
    predicted = read_timeline(timeline_file)
    info = json.loads(timeline_file.read_text(encoding="utf-8"))["info"]
    records = read_records(run_dir)
    frames = {}
    for name, video in truth["videos"].items():
        if name not in predicted or name not in records:
            raise SystemExit(f"error: {timeline_file}: no timeline for {name} (see {run_dir / 'failed.csv'})")
        if records[name]["frames"] != video["frames"]:
            raise SystemExit(f"error: {name}: predict.py read {records[name]['frames']} frames, "
                             f"{video['frames']} were written")
        frames[name] = video["frames"]
    true = {n: [tuple(p) for p in v["timeline"]] for n, v in truth["videos"].items()}
    threshold = float(info["threshold"])
    model = scores(predicted, true, frames)
    chance = chance_levels(model, true, frames, len(_ma52().classes), predicted)

    grid = []
    for t in sorted(set(args.thresholds) | {threshold}):
        merged = remerge(records, t)
        if t == threshold and any(merged[n] != predicted[n] for n in frames):
            raise SystemExit(f"error: re-merging per_video/ at predict.py's threshold {t:g} does not give "
                             f"{timeline_file}")
        grid.append({"threshold": t, **scores(merged, true, frames)})
    best_f1 = max(grid, key=lambda r: (r["seg_f1"], r["acc_all"]))
    best_acc = max(grid, key=lambda r: (r["acc_all"], r["seg_f1"]))

    per_video, pictures = [], {}
    true_segs = truth_segments(truth)
    for name, n in frames.items():
        one = scores({name: predicted[name]}, {name: true[name]}, {name: n})
        video = truth["videos"][name]
        per_video.append({"video": name, "seconds": n / video["fps"], "emotion": video["emotion"],
                          "subject": video["subject"], "action_share": _action_share(true[name], n),
                          **{k: one[k] for k in (*METRICS, "true_segments", "predicted_segments", "tp")}})
        pictures[name] = comparison_picture(name, true_segs[name], predicted[name], n / video["fps"], threshold,
                                            out).relative_to(out).as_posix()
    shown = max(frames, key=lambda n: len(true[n]))  # the video with the most performances

    all_frames = sum(frames.values())
    action_frames = sum(sum(e - b for _, b, e in true[n]) for n in frames)
    label = f"model (threshold {threshold:g})"
    rows = {label: model, "none everywhere": chance["none"],
            f"most frequent action ({_ma52().classes[chance['majority_action']['class_id']]}) everywhere":
                chance["majority_action"],
            "model's segments, random classes (expected)": chance["random_classes"]}
    grid_rows = {f"threshold {r['threshold']:g}" + (" (predict.py)" if r["threshold"] == threshold else ""): r
                 for r in grid}
    header = (f"{len(frames)} videos x {args.seconds:g} s at {fps} fps, {gen['size'][0]} x {gen['size'][1]} px "
              f"({all_frames} frames, {100 * action_frames / all_frames:.1f}% inside a performance; "
              f"{model['true_segments']} performances); windows of {info['window_s']:g} s every "
              f"{info['stride_s']:g} s; checkpoint {ckpt}")
    video_lines = ["| video | s | performances | predicted segments | action share | " + " | ".join(HEADERS[:3])
                   + f" | seg F1 @{IOU:g} |", "|" + "---|" * 9]
    for r in per_video:
        video_lines.append(f"| {r['video']} | {r['seconds']:.1f} | {r['true_segments']} | {r['predicted_segments']} | "
                           f"{_pct(r['action_share'])} | {_pct(r['acc_all'])} | {_pct(r['acc_action'])} | "
                           f"{_pct(r['rest_none'])} | {_pct(r['seg_f1'])} |")
    md = "\n\n".join([
        "# The timeline against the known sequences (procedural stand-in)",
        header,
        ("Scores in %. A frame's true label is the performance covering it, or none during rest; 'frame acc, all' "
         "counts none as a label, 'action frames' scores only frames inside a performance (none is wrong there), "
         "'rest kept none' is the share of rest frames predicted as none."),
        results_table(rows),
        (f"For reference, the classifier alone on each true performance cut out on its own (T frames over all of "
         f"it, as evaluation samples a clip): top-1 {_pct(performances['top1'])}, top-5 "
         f"{_pct(performances['top5'])} ({performances['performances']} performances)."),
        "Re-merged from the windows' probabilities at other thresholds (chosen on these videos: optimistic):",
        results_table(grid_rows),
        f"Best segment F1 at threshold {best_f1['threshold']:g}, best frame accuracy at {best_acc['threshold']:g}.",
        "\n".join(video_lines),
        f"True sequence (top) and predicted timeline (bottom) of {shown}:\n\n![{shown}]({pictures[shown]})",
    ]) + "\n"
    summary = {
        "checkpoint": str(ckpt), "checkpoint_data": facts, "out": str(out), "videos": len(frames),
        "seconds": args.seconds, "fps": fps, "generator": gen, "generator_source": source,
        "predict": {"window_s": info["window_s"], "stride_s": info["stride_s"], "threshold": threshold,
                    "overrides": overrides},
        "frames": all_frames, "action_frames": action_frames, "iou": IOU, "model": model, "chance": chance,
        "performances": performances,
        "thresholds": grid, "best_threshold_seg_f1": best_f1["threshold"],
        "best_threshold_acc_all": best_acc["threshold"], "per_video": per_video,
        "files": {"truth": TRUTH_FILE, "videos": "videos", "predict": "predict", "timeline": "predict/timeline.json",
                  "performance_clips": "performances", "predict_performances": "predict_performances",
                  "pictures": pictures, "picture": pictures[shown], "markdown": "eval_timeline.md"},
        "render_s": round(rendered_s, 1), "wall_s": round(time.time() - start, 1),
    }
    write_text_atomic(out / "eval_timeline.md", md)
    write_text_atomic(out / "eval_timeline.json", json.dumps(summary, indent=2) + "\n")
    print("\n" + md)
    print(json.dumps(summary))
    return summary


def _action_share(timeline: Sequence[tuple[int, int, int]], frames: int) -> float:
    return sum(e - b for _, b, e in timeline) / frames


if __name__ == "__main__":
    main()
