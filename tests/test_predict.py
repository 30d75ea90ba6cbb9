"""predict.py: the commands docs/predict.md prints, run from the repository root on a copy of a tiny train.py
checkpoint and on an emotion checkpoint built here, over real H.264 files written here (a short clip, a 20 s
recording, a text file named .mp4, an audio-only file, a list file). Windows are checked against the plan,
probabilities against the network run here on frames decoded, cropped and normalised by hand; timelines,
overlays, failures, resuming and the refusals of bad input."""

from __future__ import annotations

import csv
import json
import math
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
import torch.nn.functional as F
from helpers import REPO, compose_job, user_env

from microaction.data.faces import crop_faces, read_track, write_track
from microaction.data.video import probe, read_frames, write_clip
from microaction.labels import LabelSpace
from microaction.predict import PredictError, exit_message, predict
from microaction.tasks import EmotionRecognition, MicroActionRecognition
from microaction.timeline import (
    DEFAULT_STRIDE_S,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_S,
    figure_width,
    merge_segments,
    plan_windows,
    read_timeline,
    read_timeline_csv,
)
from microaction.utils.checks import ConfigError

DOC = REPO / "docs" / "predict.md"
RUN = "logs/train/runs/<run>"
FILE_CMD = f"python predict.py ckpt_path={RUN}/checkpoints/last.ckpt input=interview.mp4"
FOLDER_CMD = f"python predict.py ckpt_path={RUN}/checkpoints/last.ckpt input=videos/ predict.overlay=true"
VIEWS_CMD = (f"python predict.py ckpt_path={RUN}/checkpoints/last.ckpt input=videos/ "
             "predict.test_views.clips=3 predict.test_views.crops=3")
RESUME_CMD = (f"python predict.py ckpt_path={RUN}/checkpoints/last.ckpt input=videos.txt "
              "hydra.run.dir=logs/predict/runs/<time>")
FPS = 10
W, H = 48, 40
# the evaluation transform, written out here rather than taken from the package
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
TOL = 1e-5
# the class the edited checkpoint favours, so that the timeline has segments to compare
FAVOURED = 7


# --- the files ------------------------------------------------------------------------------------------------------

def _frames(n: int, seed: int) -> np.ndarray:
    """A texture sliding sideways with a brightness that swings over a few seconds: windows see different
    pictures."""
    rng = np.random.default_rng(seed)
    tile = rng.integers(30, 226, size=(H, 4 * W, 3)).astype(np.float32)
    out = np.empty((n, H, W, 3), np.uint8)
    for t in range(n):
        gain = 0.6 + 0.4 * math.sin(t / 17.0)
        out[t] = np.clip(np.roll(tile, -3 * t, axis=1)[:, :W] * gain, 0, 255).astype(np.uint8)
    return out


def _audio_only(path: Path) -> Path:
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path


def _write_videos(root: Path) -> dict[str, Path]:
    videos = root / "videos"
    files = {
        "short.mp4": write_clip(videos / "short.mp4", _frames(15, 1), fps=FPS),  # 1.5 s: shorter than a window
        "sub/long.mp4": write_clip(videos / "sub" / "long.mp4", _frames(200, 2), fps=FPS, gop=20),  # 20 s
    }
    (videos / "broken.mp4").write_text("this is a text file, not a video\n")
    _audio_only(videos / "voice.mp4")
    (videos / "notes.txt").write_text("not listed: a folder is searched for video endings only\n")
    (videos / "videos.txt").write_text("# the two readable videos\nshort.mp4\n\nsub/long.mp4\n")
    write_clip(root / "interview.mp4", _frames(120, 3), fps=FPS, gop=30)  # 12 s, for the emotion model
    return files


def _emotion_checkpoint(path: Path) -> Path:
    """A tiny emotion model saved as train.py saves one: its hyperparameters, weights, the data settings and
    the registered names it was built from."""
    torch.manual_seed(0)
    task = EmotionRecognition(model={"name": "manet", "depth": 10, "num_segments": 2}, dim=16, encoder_heads=2,
                              label_space=LabelSpace.ma52pro().to_dict())
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "datamodule_hyper_parameters": {"root": "/nowhere", "num_segments": 2, "input_size": 32,
                                                "short_side": 32, "face_size": 16, "align_faces": True},
                "built_from": {"task": "emotion", "datamodule": "ma52pro"}}, path)
    return path


def _start(command: str, tmp: Path, logs: Path, replace: dict[str, str]) -> subprocess.Popen:
    """A command as docs/predict.md prints it, started from the repository root with its placeholders pointing
    into ``tmp`` (and its run folder under ``logs``)."""
    for old, new in replace.items():
        command = command.replace(old, new)
    argv = shlex.split(command)
    assert argv[0] == "python"
    env = {**user_env(tmp), "MICROACTION_LOGS": str(logs)}
    return subprocess.Popen([sys.executable, *argv[1:]], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> SimpleNamespace:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{proc.args}\n{out[-3000:]}\n{err[-5000:]}"
    return SimpleNamespace(stdout=out, stderr=err)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _only_run(logs: Path) -> Path:
    (run,) = (logs / "predict" / "runs").iterdir()
    return run


@pytest.fixture(scope="module")
def runs(tiny_trained_run, tmp_path_factory):
    """The three documented commands: the folder with overlays and the single video (emotion checkpoint) side
    by side, then the list file in the folder run's folder after one of its videos' records was removed."""
    tmp = tmp_path_factory.mktemp("predict")
    ckpt = torch.load(tiny_trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["state_dict"]["net.head.fc.bias"][FAVOURED] += 4.0
    rec = tmp / "run" / "checkpoints" / "last.ckpt"
    rec.parent.mkdir(parents=True)
    torch.save(ckpt, rec)
    emo = _emotion_checkpoint(tmp / "emotion_run" / "checkpoints" / "last.ckpt")
    files = _write_videos(tmp)

    folder = _start(FOLDER_CMD, tmp, tmp / "logs_folder",
                    {RUN: str(tmp / "run"), "input=videos/": f"input={tmp}/videos/"})
    single = _start(FILE_CMD, tmp, tmp / "logs_file",
                    {RUN: str(tmp / "emotion_run"), "input=interview.mp4": f"input={tmp}/interview.mp4"})
    out = {"folder": _finish(folder), "file": _finish(single)}
    run = _only_run(tmp / "logs_folder")
    before = {
        "predictions": _rows(run / "predictions.csv"),
        "summary": json.loads((run / "summary.json").read_text()),
        "failed": _rows(run / "failed.csv"),
        "timeline": read_timeline(run / "timeline.json"),
        "timeline_csv": read_timeline_csv(run / "timeline.csv"),
        "log": (run / "predict.log").read_text(),
        "mtimes": {p: p.stat().st_mtime_ns for p in (run / "per_video").rglob("*.json")},
    }
    (run / "per_video" / "short.json").unlink()
    out["resume"] = _finish(_start(RESUME_CMD, tmp, tmp / "logs_resume", {
        RUN: str(tmp / "run"), "input=videos.txt": f"input={tmp}/videos/videos.txt",
        "logs/predict/runs/<time>": str(run)}))
    assert not (tmp / "logs_resume").exists(), "the resumed run wrote to a new folder"
    return SimpleNamespace(tmp=tmp, rec=rec, emo=emo, files=files, run=run, before=before, out=out,
                           emotion_run=_only_run(tmp / "logs_file"))


# --- the network, run here ------------------------------------------------------------------------------------------

def _load(path: Path):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cls = EmotionRecognition if ckpt["built_from"]["task"] == "emotion" else MicroActionRecognition
    task = cls(**ckpt["hyper_parameters"])
    task.load_state_dict(ckpt["state_dict"])
    return task.eval(), ckpt["datamodule_hyper_parameters"]


def _centres(first: int, end: int, t: int) -> np.ndarray:
    """The centre frame of each of t equal segments of frames first .. end - 1."""
    n = end - first
    return first + np.minimum(np.floor((np.arange(t) + 0.5) * n / t).astype(np.int64), n - 1)


def _network_input(frames: np.ndarray, size: int) -> torch.Tensor:
    """Decoded frames [T, h, w, 3] -> the centre size x size, ImageNet-normalised, [1, T, 3, size, size]."""
    h, w = frames.shape[1:3]
    top, left = round((h - size) / 2), round((w - size) / 2)
    x = (frames[:, top:top + size, left:left + size].astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))[None]


def _window_probs(task, data, path: Path, first: int, end: int) -> np.ndarray:
    t = task.num_segments
    idx = _centres(first, end, t)
    frames = read_frames(path, lambda n: idx, short_side=data["short_side"])
    with torch.no_grad():
        return task(_network_input(frames, data["input_size"]))["logits"].softmax(1)[0].double().numpy()


@pytest.fixture(scope="module")
def expected(runs):
    """Every window of every readable video of the folder, planned and classified here."""
    task, data = _load(runs.rec)
    out = {}
    for name, path in runs.files.items():
        info = probe(path)
        windows = plan_windows(info.frames, info.fps, DEFAULT_WINDOW_S, DEFAULT_STRIDE_S)
        probs = np.stack([_window_probs(task, data, path, w.first, w.end) for w in windows])
        out[name] = SimpleNamespace(windows=windows, probs=probs, duration=info.frames / info.fps)
    return SimpleNamespace(videos=out, task=task)


# --- the tests ------------------------------------------------------------------------------------------------------

def test_the_documented_commands_are_the_ones_run():
    text = DOC.read_text()
    for command in (FILE_CMD, FOLDER_CMD, RESUME_CMD, VIEWS_CMD):
        assert command in text
    # the window defaults and the statistic behind them are stated
    assert f"**{DEFAULT_WINDOW_S:g} s**" in text and f"**{DEFAULT_STRIDE_S:g} s**" in text
    assert "1 to 7 s, **1.9 s on average**" in text and f"| {DEFAULT_THRESHOLD:g} |" in text


def test_each_window_is_planned_and_classified_as_evaluation_would(runs, expected):
    rows = runs.before["predictions"]
    assert list(rows[0])[:7] == ["video", "window", "start_s", "end_s", "first_frame", "end_frame", "whole"]
    assert [r["video"] for r in rows] == [name for name, e in sorted(expected.videos.items()) for _ in e.windows]
    space = expected.task.label_space
    for name, e in expected.videos.items():
        mine = [r for r in rows if r["video"] == name]
        assert len(mine) == len(e.windows) == (1 if name == "short.mp4" else 19)
        for r, w, p in zip(mine, e.windows, e.probs):
            assert (int(r["window"]), int(r["first_frame"]), int(r["end_frame"])) == (w.index, w.first, w.end)
            assert abs(float(r["start_s"]) - w.start_s) < 1e-3 and abs(float(r["end_s"]) - w.end_s) < 1e-3
            assert r["whole"] == ("1" if w.whole else "0")
            top = np.argsort(-p, kind="stable")[:5]
            assert [int(r[f"top{i}_id"]) for i in range(1, 6)] == top.tolist()
            for i, c in enumerate(top, start=1):
                assert abs(float(r[f"top{i}_prob"]) - p[c]) <= TOL
                assert r[f"top{i}_name"] == space.classes[c]
                assert r[f"top{i}_body"] == space.coarse_classes[space.fine_to_coarse[c]]
    # a video shorter than one window: classified whole, and said so
    assert rows[0]["whole"] == "1" and expected.videos["short.mp4"].windows[0].whole
    assert "short.mp4: 1.50 s, shorter than one window (2 s): classified whole" in runs.before["log"]


def test_the_per_video_records_hold_every_probability(runs, expected):
    record = json.loads((runs.run / "per_video" / "sub" / "long.json").read_text())
    np.testing.assert_allclose(np.array(record["probs"]), expected.videos["sub/long.mp4"].probs, atol=TOL, rtol=0)
    assert record["frames"] == 200 and record["fps"] == FPS and record["whole"] is False


def test_the_timeline_files_agree_with_the_windows(runs, expected):
    space = expected.task.label_space
    names, bodies = list(space.classes), [space.coarse_classes[g] for g in space.fine_to_coarse]
    timeline = runs.before["timeline"]
    assert set(timeline) == set(expected.videos)
    for name, e in expected.videos.items():
        want = merge_segments(e.windows, e.probs, names, bodies, DEFAULT_THRESHOLD)
        got = timeline[name]
        assert [(s.first_frame, s.end_frame, s.class_id) for s in got] == \
               [(s.first_frame, s.end_frame, s.class_id) for s in want]
        assert all(abs(a.score - b.score) <= TOL for a, b in zip(got, want))
        assert got, "the edited checkpoint favours one class: every video has a segment"
        assert all(s.class_id == FAVOURED and s.body_part == bodies[FAVOURED] for s in got)
        assert runs.before["timeline_csv"][name] == got
        png = runs.run / "timelines" / f"{Path(name).with_suffix('')}.png"
        assert matplotlib.image.imread(png).shape[1] == round(figure_width(e.duration) * 100)
    assert (runs.run / "timelines" / "sub" / "long.png").is_file()


def test_the_overlay_is_the_video_with_its_top_actions_on_it(runs):
    path = runs.run / "overlays" / "sub" / "long.mp4"
    info = probe(path)
    assert (info.frames, info.width, info.height) == (200, W, H) and abs(info.fps - FPS) < 1e-6
    drawn = read_frames(path, lambda n: np.arange(n)).astype(np.int16)
    source = _frames(200, 2).astype(np.int16)
    # the band at the top: black with white text (at 40 px high the band reaches the frame's bottom);
    # the frame's own picture is gone there
    band = drawn[:, :30]
    assert np.median(band) < 40 and band.max() > 200
    assert np.abs(band - source[:, :30]).mean() > 40
    # the text changes with the windows: the time at least
    assert np.abs(drawn[0, :12] - drawn[150, :12]).mean() > 5


def test_unreadable_files_are_named_and_the_others_predicted(runs):
    failed = {r["video"]: r for r in runs.before["failed"]}
    assert set(failed) == {"broken.mp4", "voice.mp4"}
    assert failed["broken.mp4"]["reason"].startswith("not readable as a video")
    assert failed["voice.mp4"]["reason"] == "no video stream (streams: audio)"
    assert failed["broken.mp4"]["where"] == str(runs.tmp / "videos" / "broken.mp4")
    summary = runs.before["summary"]
    assert (summary["videos"], summary["predicted"], summary["resumed"], summary["failed"]) == (4, 2, 0, 2)
    assert [v["video"] for v in summary["failed_videos"]] == ["broken.mp4", "voice.mp4"]
    assert "2 video(s) could not be read (failed.csv)" in runs.before["log"]
    assert "notes.txt" not in json.dumps(summary)


def test_a_rerun_in_the_same_folder_skips_the_finished_videos(runs, expected):
    run = runs.run
    long_json = run / "per_video" / "sub" / "long.json"
    assert long_json.stat().st_mtime_ns == runs.before["mtimes"][long_json]  # skipped
    assert (run / "per_video" / "short.json").is_file()  # its record was removed: predicted again
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["videos"], summary["predicted"], summary["resumed"], summary["failed"]) == (2, 1, 1, 0)
    assert "1 of 2 videos already done" in runs.out["resume"].stdout
    assert _rows(run / "failed.csv") == []
    rows = _rows(run / "predictions.csv")
    assert len(rows) == len(runs.before["predictions"]) == 20
    for new, old in zip(rows, runs.before["predictions"]):
        assert new["video"] == old["video"] and new["top1_id"] == old["top1_id"]
        assert abs(float(new["top1_prob"]) - float(old["top1_prob"])) <= TOL


def _views_by_hand(task, data, path: Path, first: int, end: int, clips: int, crops: int, average: str) -> np.ndarray:
    """One window's probabilities over its test-time views, written out: clip k takes the frame at (k + 0.5) /
    clips of each of T segments; three crops of the short side's size at the start, middle and end of the long
    side (these frames are landscape), centred on the short side; the views' logits (or probabilities) averaged."""
    t, size = task.num_segments, data["input_size"]
    n = end - first
    logits = []
    for k in range(clips):
        idx = first + np.minimum(np.floor((np.arange(t) + (k + 0.5) / clips) * n / t).astype(np.int64), n - 1)
        frames = read_frames(path, lambda _: idx, short_side=data["short_side"])
        h, w = frames.shape[1:3]
        assert w > h
        lefts = [0, (w - size) // 2, w - size] if crops == 3 else [round((w - size) / 2)]
        top = round(h / 2 - size / 2) if crops == 3 else round((h - size) / 2)
        for left in lefts:
            x = (frames[:, top:top + size, left:left + size].astype(np.float32) / 255.0 - MEAN) / STD
            with torch.no_grad():
                logits.append(task(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))[None])["logits"][0])
    views = torch.stack(logits).double()
    if average == "logits":
        return views.mean(0).softmax(0).numpy()
    return views.softmax(1).mean(0).numpy()


def test_test_time_views_are_the_checkpoints_or_the_command_lines(runs, tmp_path, caplog):
    """A checkpoint trained with data.test_views predicts with its views; predict.test_views.* replaces them;
    either way each window's probabilities are its views' average, computed here."""
    ckpt = torch.load(runs.rec, map_location="cpu", weights_only=True)
    ckpt["datamodule_hyper_parameters"]["test_views"] = {"clips": 2, "crops": 3, "average": "logits"}
    viewed = tmp_path / "viewed.ckpt"
    torch.save(ckpt, viewed)
    task, data = _load(viewed)
    path = runs.files["sub/long.mp4"]
    windows = plan_windows(200, FPS, DEFAULT_WINDOW_S, DEFAULT_STRIDE_S)
    # the documented command, as typed, on the training run's checkpoint (no views stored)
    typed = _start(VIEWS_CMD, runs.tmp, tmp_path / "logs", {RUN: str(runs.rec.parents[1]),
                                                             "input=videos/": f"input={runs.tmp}/videos/"})
    cases = [(viewed, [], (2, 3, "logits")),
             (viewed, ["predict.test_views.clips=3", "predict.test_views.average=softmax"], (3, 1, "softmax")),
             (runs.rec, ["predict.test_views.crops=3"], (1, 3, "logits")),
             (runs.rec, None, (3, 3, "logits"))]
    for i, (ckpt_path, extra, (clips, crops, average)) in enumerate(cases):
        if extra is None:
            out = _only_run(tmp_path / "logs")
            log, record_path = _finish(typed).stdout + (out / "predict.log").read_text(), out / "per_video" / "sub"
        else:
            out = tmp_path / f"out{i}"
            record_path = out / "per_video"
            caplog.clear()
            with caplog.at_level("INFO", logger="microaction.predict"):
                predict(compose_job("predict", [f"ckpt_path={ckpt_path}", f"input={path}",
                                                "extras.print_config=false", *extra], out))
            log = caplog.text
        record = json.loads((record_path / "long.json").read_text())
        assert record["settings"]["test_views"] == {"clips": clips, "crops": crops, "average": average}
        assert f"{clips} temporal clip(s) x {crops} crop(s) per window, {average} averaged" in log
        task_i, _ = _load(ckpt_path)
        by_hand = np.stack([_views_by_hand(task_i, data, path, w.first, w.end, clips, crops, average)
                            for w in windows[:4]])
        np.testing.assert_allclose(np.array(record["probs"])[:4], by_hand, atol=TOL, rtol=0)
    # without views the same checkpoint gives other figures: the views were used
    first, end = windows[0].first, windows[0].end
    plain = _window_probs(task, data, path, first, end)
    assert np.abs(plain - _views_by_hand(task, data, path, first, end, 2, 3, "logits")).max() > 1e-4


def test_bad_test_time_views_are_named(runs, tmp_path):
    with pytest.raises(ConfigError) as err:
        predict(_config(tmp_path, runs.rec, runs.files["short.mp4"], "predict.test_views.crops=2",
                        "predict.test_views.average=median"))
    assert "predict.test_views.crops=2: expected 1 (centre crop) or 3" in str(err.value)
    assert "predict.test_views.average='median': expected one of logits, softmax" in str(err.value)
    with pytest.raises(ConfigError, match=r"predict.test_views=.*the emotion task has no test-time views"):
        predict(_config(tmp_path, runs.emo, runs.tmp / "interview.mp4", "predict.test_views.clips=2"))
    assert not (tmp_path / "out" / "per_video").exists()


def _face_by_hand(frames: np.ndarray, size: int) -> torch.Tensor:
    """The whole frame resized to size x size (bilinear, antialiased), as the dataset's no-face fallback."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    y = y.round().clamp(0, 255) / 255.0
    return ((y - torch.from_numpy(MEAN).view(3, 1, 1)) / torch.from_numpy(STD).view(3, 1, 1))[None]


def _emotion_by_hand(task, data, path: Path, face: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    n = probe(path).frames
    idx = _centres(0, n, task.num_segments)
    frames = read_frames(path, lambda _: idx, short_side=data["short_side"])
    face = _face_by_hand(frames, data["face_size"]) if face is None else face
    with torch.no_grad():
        out = task(_network_input(frames, data["input_size"]), face)
    return out["emotion"].softmax(1)[0].double().numpy(), out["actions"].sigmoid()[0].double().numpy()


def test_an_emotion_checkpoint_gives_each_videos_emotions_and_actions(runs):
    task, data = _load(runs.emo)
    (row,) = _rows(runs.emotion_run / "emotions.csv")
    emotions = list(task.emotions)
    probs = np.array([float(row[f"prob_{e}"]) for e in emotions])
    assert abs(probs.sum() - 1) <= 5 * TOL
    emotion, actions = _emotion_by_hand(task, data, runs.tmp / "interview.mp4")
    np.testing.assert_allclose(probs, emotion, atol=TOL, rtol=0)
    assert row["pred_emotion_name"] == emotions[int(np.argmax(emotion))]
    chosen = sorted(set(np.flatnonzero(actions >= 0.5).tolist()) | {int(np.argmax(actions))})
    assert row["pred_actions"] == " ".join(map(str, chosen))
    assert [float(p) for p in row["pred_action_probs"].split()] == pytest.approx(actions[chosen], abs=TOL)
    # no face track given: the detector (when OpenCV is installed) finds none in a texture, or there is none
    assert row["face_source"] == "whole_frame" and ("found no face" in row["face_detail"]
                                                    or "no face detector" in row["face_detail"])
    assert row["video"] == "interview.mp4" and int(row["frames"]) == 120
    assert (runs.emotion_run / "emotions" / "interview.png").is_file()
    assert "interview.mp4: face clip: whole_frame" in runs.out["file"].stdout


def _config(tmp: Path, ckpt: Path, source, *extra: str):
    return compose_job("predict", [f"ckpt_path={ckpt}", f"input={source}", "extras.print_config=false", *extra],
                       tmp / "out")


def test_face_tracks_given_as_a_folder_are_used_and_a_missing_one_named(runs, tmp_path):
    videos = tmp_path / "clips"
    write_clip(videos / "a.mp4", _frames(30, 4), fps=FPS)
    write_clip(videos / "b.mp4", _frames(30, 5), fps=FPS)
    faces = tmp_path / "tracks"
    write_track(faces / "a.csv", [(0, 0.2, 0.1, 0.6, 0.6, 0.9), (29, 0.3, 0.2, 0.7, 0.7, 0.8)])
    summary = predict(_config(tmp_path, runs.emo, videos, f"predict.faces={faces}"))
    assert (summary["predicted"], summary["failed"]) == (1, 1)
    (failure,) = summary["failed_videos"]
    assert failure["video"] == "b.mp4" and f"{faces / 'b.csv'}: face track not found" in failure["reason"]
    (row,) = _rows(tmp_path / "out" / "emotions.csv")
    assert (row["video"], row["face_source"], row["face_detail"]) == ("a.mp4", "track", str(faces / "a.csv"))
    task, data = _load(runs.emo)
    idx = _centres(0, 30, task.num_segments)
    frames = read_frames(videos / "a.mp4", lambda _: idx, short_side=data["short_side"])
    crops = crop_faces(frames, read_track(faces / "a.csv", 30), idx, data["face_size"], align=True, margin=0.25)
    face = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    face = ((face - torch.from_numpy(MEAN).view(3, 1, 1)) / torch.from_numpy(STD).view(3, 1, 1))[None]
    emotion, _ = _emotion_by_hand(task, data, videos / "a.mp4", face)
    np.testing.assert_allclose([float(row[f"prob_{e}"]) for e in task.emotions], emotion, atol=TOL, rtol=0)


@pytest.mark.parametrize("name,reason", [("broken.mp4", "not readable as a video"),
                                         ("voice.mp4", "no video stream (streams: audio)")])
def test_a_single_unreadable_file_ends_the_command_naming_it(runs, tmp_path, name, reason):
    path = runs.tmp / "videos" / name
    summary = predict(_config(tmp_path, runs.rec, path))
    assert (summary["videos"], summary["failed"]) == (1, 1)
    message = exit_message(summary)
    assert message.startswith(f"no video could be predicted: {path}: {reason}")


def test_bad_input_is_named_before_any_video_is_read(runs, tmp_path):
    (tmp_path / "list.txt").write_text("# videos\n" + str(runs.files["short.mp4"]) + "\nmissing.mp4\n")
    (tmp_path / "twice.txt").write_text("a.mp4\n./a.mp4\n")
    write_clip(tmp_path / "a.mp4", _frames(4, 0), fps=FPS)
    (tmp_path / "empty").mkdir()
    odd = tmp_path / "odd.ckpt"
    ckpt = torch.load(runs.rec, map_location="cpu", weights_only=True)
    ckpt["built_from"]["task"] = "segmentation"
    torch.save(ckpt, odd)
    cases = [
        ([runs.rec, tmp_path / "nothing.mp4"], PredictError,
         f"input={tmp_path / 'nothing.mp4'}: no such file or folder"),
        ([runs.rec, tmp_path / "list.txt"], PredictError, f"{tmp_path / 'list.txt'}:3: missing.mp4: no such file"),
        ([runs.rec, tmp_path / "twice.txt"], PredictError, f"{tmp_path / 'twice.txt'}:2: ./a.mp4 is listed twice"),
        ([runs.rec, tmp_path / "empty"], PredictError, "no video files in this folder"),
        ([tmp_path / "none.ckpt", tmp_path / "a.mp4"], PredictError, "none.ckpt: no such checkpoint file"),
        ([odd, tmp_path / "a.mp4"], ValueError, f"{odd}: refused: built_from.task = 'segmentation'"),
    ]
    for (ckpt_path, source), error, message in cases:
        with pytest.raises(error) as err:
            predict(_config(tmp_path, ckpt_path, source))
        assert message in str(err.value)
    with pytest.raises(ConfigError) as err:
        predict(_config(tmp_path, runs.rec, tmp_path / "a.mp4", "predict.window_s=-1", "predict.top_k=0",
                        "predict.threshold=2", f"predict.faces={tmp_path / 'nowhere'}"))
    text = str(err.value)
    for key in ("predict.window_s must be a positive number", "predict.top_k=0", "predict.threshold=2",
                "predict.faces="):
        assert key in text
    with pytest.raises(ConfigError, match="predict.stride_s must be at most predict.window_s"):
        predict(_config(tmp_path, runs.rec, tmp_path / "a.mp4", "predict.stride_s=3"))
    assert not (tmp_path / "out" / "per_video").exists()


def test_the_command_line_names_a_missing_input_on_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "predict.py", f"ckpt_path={tmp_path}/x.ckpt", f"input={tmp_path}/no.mp4"],
                          cwd=REPO, env={**user_env(tmp_path), "MICROACTION_LOGS": str(tmp_path / "logs")},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1
    assert f"error: input={tmp_path}/no.mp4: no such file or folder" in proc.stderr and "Traceback" not in proc.stderr


def test_a_folder_is_searched_by_video_endings_and_names_stay_distinct(tmp_path):
    from microaction.predict import find_videos, output_names

    for rel in ("a.mp4", "E.MOV", "sub/deep/c.webm", ".hidden/b.mp4", ".c.mp4", "run/overlays/a.mp4", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = find_videos(tmp_path, exclude=tmp_path / "run")
    assert [v.id for v in found] == ["E.MOV", "a.mp4", "sub/deep/c.webm"]
    assert found[2].path == tmp_path / "sub" / "deep" / "c.webm"
    assert output_names(["clip.mp4", "clip.mov", "sub/x.mp4", "/abs/y.mp4", "../up/z.mp4"]) == {
        "clip.mp4": "clip.mp4", "clip.mov": "clip.mov", "sub/x.mp4": "sub/x", "/abs/y.mp4": "abs/y",
        "../up/z.mp4": "__/up/z"}
