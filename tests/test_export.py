"""scripts/export.py: a checkpoint train.py wrote, exported by the commands docs/export.md prints, the files run by
onnxruntime and torch.jit.load against the PyTorch model rebuilt from the checkpoint by hand (normalisation written
out here); real decoded clips as well as random ones; every registered model's ONNX export or its refusal; the
emotion task; bad input named before work; a failed check leaves nothing."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import REPO, user_env
from test_model_zoo import TINY

from microaction.data.datamodule import MA52DataModule
from microaction.export import ExportError, export_checkpoint, export_task
from microaction.labels import LabelSpace
from microaction.tasks import EmotionRecognition, MicroActionRecognition

DOC = REPO / "docs" / "export.md"
RUN = "logs/train/runs/<run>"
ONNX_CMD = f"python scripts/export.py ckpt_path={RUN}/checkpoints/last.ckpt format=onnx"
TS_CMD = f"python scripts/export.py ckpt_path={RUN}/checkpoints/last.ckpt format=torchscript out=exported/manet.torchscript.pt"
# the datamodules' normalisation, written out here rather than taken from the package
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
TOL = 1e-4


def _start(command: str, tmp: Path) -> subprocess.Popen:
    """A command as docs/export.md prints it, started from the repository root with the run folder and ``out=``
    pointing into ``tmp`` (and Hydra's record of the export in tmp/logs)."""
    printed = command.replace(RUN, str(tmp / "run")).replace("out=exported/", f"out={tmp}/exported/")
    argv = shlex.split(printed)
    assert argv[0] == "python"
    env = {**user_env(tmp), "MICROACTION_LOGS": str(tmp / "logs")}
    return subprocess.Popen([sys.executable, *argv[1:]], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> SimpleNamespace:
    out, err = proc.communicate(timeout=600)
    return SimpleNamespace(returncode=proc.returncode, stdout=out, stderr=err)


@pytest.fixture(scope="module")
def exported(tiny_trained_run, tmp_path_factory):
    """Both documented commands, run side by side on a copy of the tiny run's last checkpoint."""
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "run" / "checkpoints").mkdir(parents=True)
    ckpt = tmp / "run" / "checkpoints" / "last.ckpt"
    shutil.copy2(tiny_trained_run / "checkpoints" / "last.ckpt", ckpt)
    procs = {"onnx": _start(ONNX_CMD, tmp), "torchscript": _start(TS_CMD, tmp)}
    runs = {fmt: _finish(p) for fmt, p in procs.items()}
    for fmt, r in runs.items():
        assert r.returncode == 0, f"{fmt}:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    files = {"onnx": ckpt.with_name("last.onnx"), "torchscript": tmp / "exported" / "manet.torchscript.pt"}
    return SimpleNamespace(tmp=tmp, ckpt=ckpt, runs=runs, files=files)


@pytest.fixture(scope="module")
def reference(exported):
    """The PyTorch model of the checkpoint, rebuilt here from torch.load's dict (not through the package's loader),
    with the stored data settings."""
    ckpt = torch.load(exported.ckpt, map_location="cpu", weights_only=True)
    task = MicroActionRecognition(**ckpt["hyper_parameters"])
    task.load_state_dict(ckpt["state_dict"])
    return SimpleNamespace(task=task.eval(), data=ckpt["datamodule_hyper_parameters"],
                           classes=ckpt["hyper_parameters"]["label_space"]["classes"])


@pytest.fixture(scope="module")
def clips(reference):
    """uint8 [N, T, H, W, 3]: 5 random clips, and the first 4 val clips of the tiny dataset as the evaluation
    loader decodes and crops them (its [T, 3, H, W] moved to channels-last)."""
    t, size = reference.data["num_segments"], reference.data["input_size"]
    rng = np.random.default_rng(123)
    dm = MA52DataModule(**reference.data)
    dm.setup("validate")
    real = np.stack([dm.datasets["val"][i]["video"].permute(0, 2, 3, 1).numpy() for i in range(4)])
    assert real.dtype == np.uint8 and real.shape == (4, t, size, size, 3)
    return {"random": rng.integers(0, 256, (5, t, size, size, 3), dtype=np.uint8), "real": real}


def _by_hand(task: MicroActionRecognition, clip: np.ndarray) -> dict[str, np.ndarray]:
    x = (clip.astype(np.float32) / 255.0 - MEAN) / STD
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
    with torch.no_grad():
        out = task(x)
        per_frame = task.net.forward_features(x)
    return {"logits": out["logits"].numpy(), "embedding": out["embedding"].numpy(), "per_frame": per_frame.numpy()}


def _check_outputs(got: dict[str, np.ndarray], task: MicroActionRecognition, clip: np.ndarray) -> None:
    want = _by_hand(task, clip)
    n, t = clip.shape[:2]
    assert set(got) == {"logits", "embedding", "features"}
    for key in ("logits", "embedding"):
        assert got[key].dtype == np.float32 and got[key].shape == want[key].shape
        assert np.abs(got[key] - want[key]).max() <= TOL, key
    # features: the backbone's per-frame features averaged over the clip, which the head's classifier reads
    assert np.abs(got["features"] - want["per_frame"].reshape(n, t, -1).mean(1)).max() <= TOL
    fc = task.net.head.fc
    logits = got["features"] @ fc.weight.detach().numpy().T + fc.bias.detach().numpy()
    assert np.abs(logits - want["logits"]).max() <= TOL
    assert (got["logits"].argmax(1) == want["logits"].argmax(1)).all()


def test_the_documented_commands_write_and_report_parity(exported):
    text = DOC.read_text()
    assert ONNX_CMD in text and TS_CMD in text
    for fmt, run in exported.runs.items():
        path = exported.files[fmt]
        assert path.is_file() and f"wrote {path} ({fmt}, model=manet)" in run.stdout
        line = next(ln for ln in run.stdout.splitlines() if ln.startswith("parity on 3 random uint8 clips"))
        figures = dict(re.findall(r"(logits|embedding|features) ([0-9.e+-]+)", line))
        assert set(figures) == {"logits", "embedding", "features"}
        assert all(float(v) <= TOL for v in figures.values()), line
        assert not list(path.parent.glob(".*part-*")), "a temporary file stayed behind"
    # the default name: beside the checkpoint; Hydra's record of each export in the logs folder, none in the repo
    assert exported.files["onnx"] == exported.ckpt.with_suffix(".onnx")
    assert len(list((exported.tmp / "logs" / "export" / "runs").iterdir())) == 2


def test_the_onnx_file_is_the_checkpoints_model(exported, reference, clips):
    path = exported.files["onnx"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    t, size = reference.data["num_segments"], reference.data["input_size"]
    assert inp.name == "video" and inp.type == "tensor(uint8)" and inp.shape == ["N", t, size, size, 3]
    names = [o.name for o in session.get_outputs()]
    assert names == ["logits", "embedding", "features"]
    for clip in clips.values():
        _check_outputs(dict(zip(names, session.run(names, {"video": clip}))), reference.task, clip)
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["microaction"])
    assert meta["classes"] == reference.classes and meta["outputs"] == names
    np.testing.assert_allclose(meta["normalisation"]["mean"], MEAN, rtol=1e-6)
    np.testing.assert_allclose(meta["normalisation"]["std"], STD, rtol=1e-6)
    assert meta["inputs"]["video"]["shape"] == ["N", t, size, size, 3]


def test_the_torchscript_file_is_the_checkpoints_model(exported, reference, clips):
    files = {"microaction.json": ""}
    module = torch.jit.load(str(exported.files["torchscript"]), map_location="cpu", _extra_files=files)
    with torch.no_grad():
        for clip in clips.values():
            out = module(torch.from_numpy(clip))
            _check_outputs({k: v.numpy() for k, v in out.items()}, reference.task, clip)
        # the file checks what it is given
        with pytest.raises(Exception, match=r"input video: expected uint8 \[N, 2, 32, 32, 3\].*floating-point"):
            module(torch.from_numpy(clips["random"]).float())
        with pytest.raises(Exception, match=r"input video: expected uint8.*shape \[5, 2, 3, 32, 32\]"):
            module(torch.from_numpy(clips["random"]).permute(0, 1, 4, 2, 3))
    assert json.loads(files["microaction.json"])["classes"] == reference.classes


@pytest.mark.parametrize("args,message", [
    (["format=onnx"], "ckpt_path: missing"),
    (["ckpt_path={tmp}/missing.ckpt", "format=onnx"], "ckpt_path={tmp}/missing.ckpt: no such checkpoint file"),
    (["ckpt_path={ckpt}", "format=tflite"], "format='tflite': expected one of onnx, torchscript"),
    # a config file given by mistake: read with weights_only=True and refused, naming the key
    (["ckpt_path={tmp}/config.yaml", "format=onnx"], "ckpt_path={tmp}/config.yaml: not loaded: not a PyTorch file"),
])
def test_bad_input_is_named_on_one_line(exported, tmp_path, args, message):
    (tmp_path / "config.yaml").write_text("model:\n  name: manet\n  depth: 50\n")
    fill = {"tmp": tmp_path, "ckpt": exported.ckpt}
    command = "python scripts/export.py " + " ".join(a.format(**fill) for a in args)
    run = _finish(_start(command, tmp_path))
    assert run.returncode == 1
    assert f"error: {message.format(**fill)}" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not list(tmp_path.glob("*.onnx")) and not list(exported.ckpt.parent.glob("*.tflite*"))


def test_a_bare_state_dict_is_not_a_checkpoint(exported, tmp_path):
    weights = tmp_path / "weights.ckpt"
    torch.save(torch.load(exported.ckpt, map_location="cpu", weights_only=True)["state_dict"], weights)
    with pytest.raises(ValueError, match="not a checkpoint written by train.py"):
        export_checkpoint(weights, "onnx")
    assert sorted(tmp_path.iterdir()) == [weights]


def _tiny_task(name: str) -> MicroActionRecognition:
    torch.manual_seed(0)
    return MicroActionRecognition(model={"name": name, **TINY[name]}, loss={"alpha": 5.0}).eval()


# manet: the commands above; temporal_resnet: the same class as tsn/tsm/manet, no model= option of its own
@pytest.mark.parametrize("name", sorted(set(TINY) - {"manet", "temporal_resnet", "c3d"}))
def test_each_model_exports_to_onnx(name, tmp_path):
    result = export_task(_tiny_task(name), {"input_size": 32}, "onnx", tmp_path / f"{name}.onnx")
    assert result.outputs == ("logits", "embedding", "features")
    assert all(v <= TOL for v in result.max_abs_diff.values()), result.max_abs_diff
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["N", TINY[name]["num_segments"], 32, 32, 3]


def test_c3d_is_refused_by_onnx_below_its_pooled_size_and_exports_to_torchscript(tmp_path):
    task = _tiny_task("c3d")
    with pytest.raises(ExportError) as err:
        export_task(task, {"input_size": 32}, "onnx", tmp_path / "c3d.onnx")
    text = str(err.value)
    for part in ("model=c3d cannot be exported to ONNX at video 16x32x32",
                 "net.fit (AdaptiveAvgPool3d) pools a 1x2x2 grid to 1x4x4", "16 frames of 112x112", "format=torchscript"):
        assert part in text, text
    assert not list(tmp_path.iterdir())
    result = export_task(task, {"input_size": 32}, "torchscript", tmp_path / "c3d.pt")
    clip = np.random.default_rng(0).integers(0, 256, (3, 16, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        got = torch.jit.load(str(result.path))(torch.from_numpy(clip))
    want = _by_hand(task, clip)
    assert np.abs(got["logits"].numpy() - want["logits"]).max() <= TOL


def test_the_emotion_task_exports_with_both_inputs(tmp_path):
    torch.manual_seed(0)
    task = EmotionRecognition(model={"name": "manet", "depth": 10, "num_segments": 2}, dim=16, encoder_heads=2,
                              loss={"drop_body_parts": ["lower limb"]}, label_space=LabelSpace.ma52pro().to_dict()).eval()
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, (3, 2, 32, 32, 3), dtype=np.uint8)
    face = rng.integers(0, 256, (3, 2, 16, 16, 3), dtype=np.uint8)

    def norm(c):
        return torch.from_numpy(np.ascontiguousarray(((c / np.float32(255) - MEAN) / STD).transpose(0, 1, 4, 2, 3)))

    with torch.no_grad():
        want = {k: v.numpy() for k, v in task(norm(video), norm(face)).items()}
    space = task.label_space
    kept = [c for c in range(52) if space.coarse_classes[space.fine_to_coarse[c]] != "lower limb"]
    assert want["actions"].shape == (3, len(kept)) and len(kept) < 52
    for fmt in ("onnx", "torchscript"):
        result = export_task(task, {"input_size": 32, "face_size": 16}, fmt, tmp_path / f"emotion.{fmt}")
        assert result.inputs == {"video": (2, 32, 32, 3), "face": (2, 16, 16, 3)}
        if fmt == "onnx":
            session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
            got = dict(zip(["emotion", "actions"], session.run(["emotion", "actions"], {"video": video, "face": face})))
            meta = json.loads({p.key: p.value for p in onnx.load(str(result.path)).metadata_props}["microaction"])
            assert meta["emotions"] == list(task.emotions) and meta["actions"] == [space.classes[c] for c in kept]
        else:
            with torch.no_grad():
                got = {k: v.numpy() for k, v in torch.jit.load(str(result.path))(
                    torch.from_numpy(video), torch.from_numpy(face)).items()}
        for key in ("emotion", "actions"):
            assert np.abs(got[key] - want[key]).max() <= TOL, (fmt, key)


def test_a_failed_parity_check_keeps_the_previous_file(tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous export")
    with pytest.raises(ExportError, match=r"model=uniformer: the exported onnx file's outputs differ .* tolerance=1e-12"):
        export_task(_tiny_task("uniformer"), {"input_size": 32}, "onnx", out, tolerance=1e-12)
    assert out.read_bytes() == b"the previous export" and sorted(tmp_path.iterdir()) == [out]
