"""scripts/eval_timeline.py: the command docs/predict.md prints, run from the repository root on a copy of a tiny
train.py checkpoint edited to favour one class, over two short procedural videos. The videos are checked against
the generator's plan and rendering (decoded with PyAV), the scores against a computation here from timeline.json,
the per-video window probabilities and the known sequences (per-frame loops and a greedy matcher written out
here), and the refusals of bad input."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import av
import matplotlib.image
import numpy as np
import pytest
import torch
import yaml
from helpers import REPO, user_env

from microaction.data.synthetic.procedural_pro import plan_pro, render_pro

DOC = REPO / "docs" / "predict.md"
RUN = "logs/train/runs/<run>"
COMMAND = f"python scripts/eval_timeline.py ckpt_path={RUN}/checkpoints/last.ckpt"
SECONDS, FPS, VIDEOS = 3, 30, 2
THRESHOLDS = (0.0, 0.3, 0.99)
NUM_CLASSES = 52
# the edited checkpoint gives its favoured class about 0.9 in every window: above 0.3, below 0.99
BIAS = 6.0


def _recipe() -> dict:
    """The generator settings of conf/experiment/procedural_manet.yaml, read here as plain YAML."""
    return yaml.safe_load((REPO / "conf" / "experiment" / "procedural_manet.yaml").read_text())["data"]["generate_kwargs"]


def _plan(seed: int, recipe: dict):
    return [s for s in plan_pro(1, 1, VIDEOS, seed=seed, fps=FPS, min_seconds=SECONDS, max_seconds=SECONDS,
                                num_subjects=recipe["num_subjects"]) if s.split == "test"]


def _seed_with_a_long_first_action(recipe: dict) -> tuple[int, int]:
    """A seed whose first video has a performance over at least 60% of it (a prediction of its class over the
    whole video then matches it at IoU >= 0.5), and that performance's class."""
    for seed in range(200):
        first = _plan(seed, recipe)[0]
        fine, a, b = max(first.performances, key=lambda p: p[2] - p[1])
        if b - a >= 0.6 * first.frames:
            return seed, fine
    raise AssertionError("no seed in 0..199 gives a long first performance")


def _start(argv: list[str], tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv[1:]], check=False, cwd=REPO, env=user_env(tmp), capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tiny_trained_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval_timeline")
    recipe = _recipe()
    seed, favoured = _seed_with_a_long_first_action(recipe)
    ckpt = torch.load(tiny_trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["state_dict"]["net.head.fc.bias"][favoured] += BIAS
    path = tmp / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(ckpt, path)
    out = tmp / "out"
    argv = shlex.split(COMMAND.replace(RUN, str(tmp / "run")))
    argv += ["--videos", str(VIDEOS), "--seconds", str(SECONDS), "--seed", str(seed), "--out", str(out),
             "--thresholds", *map(str, THRESHOLDS)]
    proc = _start(argv, tmp)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return SimpleNamespace(tmp=tmp, out=out, seed=seed, favoured=favoured, recipe=recipe, stdout=proc.stdout,
                           summary=summary, specs=_plan(seed, recipe))


# --- an independent scorer ------------------------------------------------------------------------------------------

def _labels(segments, frames: int) -> list[int]:
    """Per frame: the class of the (class, first, end) segment covering it, -1 where none does."""
    labels = [-1] * frames
    for c, first, end in segments:
        for k in range(first, end):
            assert labels[k] == -1, "overlapping segments"
            labels[k] = c
    return labels


def _matches(pred, true, agnostic: bool = False) -> int:
    """Greedy one-to-one matching at IoU >= 0.5, highest IoU first, same class unless ``agnostic``."""
    pairs = []
    for i, (pc, pa, pb) in enumerate(pred):
        for j, (tc, ta, tb) in enumerate(true):
            inter = max(0, min(pb, tb) - max(pa, ta))
            iou = inter / ((pb - pa) + (tb - ta) - inter)
            if iou >= 0.5 and (agnostic or pc == tc):
                pairs.append((-iou, i, j))
    used_p, used_t = set(), set()
    for _, i, j in sorted(pairs):
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    return len(used_p)


def _score(pred: dict, true: dict, frames: dict) -> dict:
    right = total = action_right = action = rest_right = rest = 0
    tp = tp_agnostic = n_pred = n_true = 0
    for name, n in frames.items():
        p, t = _labels(pred[name], n), _labels(true[name], n)
        for a, b in zip(p, t):
            total += 1
            right += a == b
            if b == -1:
                rest += 1
                rest_right += a == -1
            else:
                action += 1
                action_right += a == b
        tp += _matches(pred[name], true[name])
        tp_agnostic += _matches(pred[name], true[name], agnostic=True)
        n_pred += len(pred[name])
        n_true += len(true[name])
    return {"acc_all": right / total, "acc_action": action_right / action, "rest_none": rest_right / rest,
            "seg_precision": tp / n_pred if n_pred else 0.0, "seg_recall": tp / n_true,
            "seg_f1": 2 * tp / (n_pred + n_true), "seg_f1_agnostic": 2 * tp_agnostic / (n_pred + n_true),
            "tp": tp, "predicted_segments": n_pred, "true_segments": n_true}


def _merge_by_frame(record: dict, threshold: float) -> list[tuple[int, int, int]]:
    """Segments from a per-video record: each frame's probabilities averaged over the windows covering it, its
    top class kept at ``threshold`` or above, runs of one class made segments."""
    probs = np.asarray(record["probs"])
    labels = []
    for k in range(record["frames"]):
        rows = [probs[i] for i, w in enumerate(record["windows"]) if w["first"] <= k < w["end"]]
        mean = np.mean(rows, axis=0)
        labels.append(int(np.argmax(mean)) if rows and mean.max() >= threshold else -1)
    segments, start = [], 0
    for k in range(1, len(labels) + 1):
        if k == len(labels) or labels[k] != labels[start]:
            if labels[start] != -1:
                segments.append((labels[start], start, k))
            start = k
    return segments


@pytest.fixture(scope="module")
def known(run):
    """The known sequences, the timeline.json segments and the per-video records, read here."""
    truth = {s.name: list(s.performances) for s in run.specs}
    frames = {s.name: s.frames for s in run.specs}
    timeline = json.loads((run.out / "predict" / "timeline.json").read_text())
    pred = {name: [(s["class_id"], s["first_frame"], s["end_frame"]) for s in segs]
            for name, segs in timeline["videos"].items()}
    records = {}
    for path in (run.out / "predict" / "per_video").glob("*.json"):
        record = json.loads(path.read_text())
        records[record["video"]] = record
    return SimpleNamespace(truth=truth, frames=frames, pred=pred, records=records, info=timeline["info"])


# --- the tests ------------------------------------------------------------------------------------------------------

def test_the_documented_command_is_the_one_run():
    text = DOC.read_text()
    assert f"```bash\n{COMMAND}\n```" in text
    assert "How good is the timeline? (the procedural stand-in)" in text


def test_the_videos_are_the_planned_sequences_rendered_with_the_recipes_settings(run):
    summary = run.summary
    gen = summary["generator"]
    for key in ("amplitude", "noise", "jitter", "crf", "num_subjects", "size"):
        assert gen[key] == run.recipe[key], key
    assert gen["seed"] == run.seed and summary["fps"] == FPS and summary["videos"] == VIDEOS
    truth = json.loads((run.out / "truth.json").read_text())
    assert sorted(truth["videos"]) == sorted(s.name for s in run.specs)
    for spec in run.specs:
        entry = truth["videos"][spec.name]
        assert entry["timeline"] == [list(p) for p in spec.performances] and entry["frames"] == spec.frames
        with av.open(str(run.out / "videos" / spec.name)) as container:
            stream = container.streams.video[0]
            decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
            assert float(stream.average_rate) == FPS
        rendered, _ = render_pro(spec, run.seed, tuple(gen["size"]), gen["amplitude"], gen["noise"], gen["jitter"])
        assert decoded.shape == rendered.shape
        decoded, rendered = decoded.astype(float), rendered.astype(float)
        # H.264 at crf 12 keeps the pictures within a few grey levels, and most of the movement: the temporal part
        # of each pixel (its value less its mean over the clip) follows the rendering's
        assert np.abs(decoded - rendered).mean() < 6.0
        moving = [(v - v.mean(0)).ravel() for v in (decoded, rendered)]
        assert np.corrcoef(*moving)[0, 1] > 0.7
        # each performance on its own: exactly its frames
        stem = Path(spec.name).stem
        clips = sorted((run.out / "performances" / stem).iterdir())
        assert [c.name for c in clips] == [f"p{k:02d}.mp4" for k in range(len(spec.performances))]
        for clip, (_, first, end) in zip(clips, spec.performances):
            with av.open(str(clip)) as container:
                cut = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(float)
            assert len(cut) == end - first
            assert np.abs(cut - rendered[first:end]).mean() < 6.0


def test_the_model_scores_match_a_per_frame_count(run, known):
    model = run.summary["model"]
    mine = _score(known.pred, known.truth, known.frames)
    for key, value in mine.items():
        assert model[key] == pytest.approx(value, abs=1e-12), key
    # the favoured class is named over every frame at predict.py's threshold, and matches the long performance
    assert known.info["threshold"] == 0.3
    assert all(p == [(run.favoured, 0, known.frames[n])] for n, p in known.pred.items())
    assert model["tp"] >= 1 and 0 < model["acc_action"] < 1 and model["rest_none"] == 0.0


def test_the_chance_levels_match_a_count_here(run, known):
    chance = run.summary["chance"]
    frames = known.frames
    none = _score({n: [] for n in frames}, known.truth, frames)
    assert chance["none"]["acc_all"] == pytest.approx(none["acc_all"]) and chance["none"]["seg_f1"] == 0.0
    assert chance["none"]["acc_action"] == 0.0 and chance["none"]["rest_none"] == 1.0
    # the action with the most true frames, everywhere
    counts = np.zeros(NUM_CLASSES, int)
    for name, n in frames.items():
        for c in _labels(known.truth[name], n):
            if c >= 0:
                counts[c] += 1
    majority = int(np.argmax(counts))
    assert chance["majority_action"]["class_id"] == majority
    mine = _score({n: [(majority, 0, k)] for n, k in frames.items()}, known.truth, frames)
    for key in ("acc_all", "acc_action", "seg_f1"):
        assert chance["majority_action"][key] == pytest.approx(mine[key]), key
    # the model's segments with a uniformly random class: frames in a segment and a performance are right 1 in 52
    both = rest_none = total = action = 0
    for name, n in frames.items():
        for p, t in zip(_labels(known.pred[name], n), _labels(known.truth[name], n)):
            total += 1
            action += t != -1
            both += p != -1 and t != -1
            rest_none += p == -1 and t == -1
    random = chance["random_classes"]
    assert random["acc_all"] == pytest.approx((rest_none + both / NUM_CLASSES) / total)
    assert random["acc_action"] == pytest.approx(both / NUM_CLASSES / action)
    agnostic = sum(_matches(known.pred[n], known.truth[n], agnostic=True) for n in frames)
    n_seg = sum(len(known.pred[n]) + len(known.truth[n]) for n in frames)
    assert random["seg_f1"] == pytest.approx(2 * agnostic / NUM_CLASSES / n_seg) and random["seg_f1"] > 0


def test_the_classifier_alone_is_scored_on_each_whole_performance(run, known):
    top1 = top5 = total = 0
    for spec in run.specs:
        for k, (fine, first, end) in enumerate(spec.performances):
            rel = f"{Path(spec.name).stem}/p{k:02d}.mp4"
            record = json.loads((run.out / "predict_performances" / "per_video" / f"{rel[:-4]}.json").read_text())
            assert record["video"] == rel and record["frames"] == end - first
            # one window over all of the performance
            assert [(w["first"], w["end"]) for w in record["windows"]] == [(0, end - first)]
            probs = record["probs"][0]
            order = sorted(range(len(probs)), key=lambda c: -probs[c])
            top1 += order[0] == fine
            top5 += fine in order[:5]
            total += 1
    got = run.summary["performances"]
    assert got == {"performances": total, "top1": top1 / total, "top5": top5 / total}
    assert f"top-1 {100 * top1 / total:.1f}, top-5 {100 * top5 / total:.1f}" in (run.out / "eval_timeline.md").read_text()


def test_the_threshold_grid_is_rescored_from_the_window_probabilities(run, known):
    rows = {r["threshold"]: r for r in run.summary["thresholds"]}
    assert sorted(rows) == sorted(THRESHOLDS)
    for threshold in THRESHOLDS:
        merged = {n: _merge_by_frame(known.records[n], threshold) for n in known.frames}
        mine = _score(merged, known.truth, known.frames)
        for key, value in mine.items():
            assert rows[threshold][key] == pytest.approx(value, abs=1e-12), (threshold, key)
    # predict.py's own threshold reproduces timeline.json; above every probability nothing is named
    assert all(_merge_by_frame(known.records[n], 0.3) == known.pred[n] for n in known.frames)
    assert rows[0.99]["predicted_segments"] == 0 and rows[0.99]["rest_none"] == 1.0
    assert run.summary["best_threshold_seg_f1"] == 0.0  # ties go to the better frame accuracy, then the first


def test_the_report_files_and_the_pictures(run, known):
    on_disk = json.loads((run.out / "eval_timeline.json").read_text())
    assert on_disk == run.summary
    md = (run.out / "eval_timeline.md").read_text()
    assert md.strip() in run.stdout
    model = run.summary["model"]
    assert f"| model (threshold 0.3) | {100 * model['acc_all']:.1f} | {100 * model['acc_action']:.1f} |" in md
    for name in known.frames:
        stem = Path(name).stem
        pictures = [matplotlib.image.imread(str(run.out / d / f"{stem}.png"))
                    for d in ("timelines_truth", "timelines_predicted", "compare")]
        truth_png, pred_png, both = pictures
        assert both.shape[0] == truth_png.shape[0] + pred_png.shape[0]
        assert np.allclose(both[:truth_png.shape[0], :, :3], truth_png[..., :3], atol=1 / 255)
        assert run.summary["files"]["pictures"][name] == f"compare/{stem}.png"
    assert f"]({run.summary['files']['picture']})" in md


def test_bad_input_is_named_before_anything_is_written(run, tmp_path):
    ckpt = run.tmp / "run" / "checkpoints" / "last.ckpt"
    base = ["python", "scripts/eval_timeline.py"]
    cases = [
        ([], "ckpt_path: missing"),
        ([f"ckpt_path={tmp_path / 'none.ckpt'}"], "no such checkpoint file"),
        ([f"ckpt_path={ckpt}", "input=videos/"], "input"),
        ([f"ckpt_path={ckpt}", "--out", str(run.out)], "not an empty folder"),
        ([f"ckpt_path={ckpt}", "--size", "40", "48"], "portrait"),
    ]
    for args, message in cases:
        out = tmp_path / "fresh"
        extra = [] if "--out" in args else ["--out", str(out)]
        proc = _start([*base, *args, *extra], tmp_path)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr[-2000:])
        assert not out.exists()
