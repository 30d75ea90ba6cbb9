"""Checkpoints as standalone models: an ONNX or TorchScript file that takes decoded uint8 clips.

The exported graph holds everything from decoded frames to outputs, so a runtime needs no part of this
package. It takes each clip as uint8 RGB frames ``[N, T, H, W, 3]``: the frames ``data.video.read_frames``
decodes, already scaled and centre-cropped to the run's ``data.input_size`` (what the evaluation loader
delivers, before its ``[T, 3, H, W]`` permute). Inside the graph: to float, ``/ 255``, the ImageNet mean
and std that the datamodules apply on the device (``transforms.normalize``), the permute to
``[N, T, 3, H, W]``, the network. T and H, W are fixed (the checkpoint's ``num_segments`` and
``data.input_size``); the batch axis N is free.

Outputs, by name:

- recognition task: ``logits`` [N, classes] (fine classes), ``embedding`` [N, D] (the label-embedding
  branch's output, only for networks trained with one) and ``features`` [N, C] (the backbone's clip
  features the head reads, averaged over frames for per-frame networks);
- emotion task: ``emotion`` [N, emotions] and ``actions`` [N, kept classes] (multi-label logits; not with
  ``branches=face``); inputs ``video`` and ``face`` (``[N, T, face_size, face_size, 3]``), those the
  task's branches use.

A JSON description (inputs, outputs, normalisation, class names) travels inside the file: the ONNX
model's metadata entry ``microaction``, the TorchScript archive's extra file ``microaction.json``.

ONNX uses torch's TorchScript-based exporter (``dynamo=False``): in torch 2.14 it exports every
registered network, C3D at its standard input included, where the torch.export-based one has no
translation of a non-global adaptive pooling. Each export is checked before it is put in place: the
written file, run by onnxruntime or ``torch.jit.load``, and the PyTorch task on the same random uint8
clips (a batch size other than the one traced) must agree to ``tolerance``.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from .models import model_info
from .tasks import EmotionRecognition, MicroActionRecognition

# format -> the file name's ending when ``out`` is not given
FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
OPSET = 17
TOLERANCE = 1e-4
METADATA_KEY = "microaction"
# the batch the graph is traced with; the parity check uses another, so a batch axis fixed by tracing shows
TRACE_BATCH = 2


class ExportError(RuntimeError):
    """A checkpoint that cannot be exported to a format (the model, the format and why), or an exported file
    whose outputs differ from the PyTorch model's."""


@dataclass
class ExportResult:
    """What ``export_checkpoint`` wrote: the file, its format, the inputs (name -> per-clip shape
    ``(T, H, W, 3)``), the outputs' names, and the largest absolute difference of each output between the
    written file and the PyTorch model on ``parity_batch`` random clips."""

    path: Path
    format: str
    model: str
    inputs: dict[str, tuple[int, int, int, int]]
    outputs: tuple[str, ...]
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    parity_batch: int = 0


# --- the graphs ------------------------------------------------------------------------------------------------

def _as_network_input(clip: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, T, H, W, 3]`` -> normalised float ``[N, T, 3, H, W]``, as the datamodules feed the network."""
    return (clip.permute(0, 1, 4, 2, 3).float() / 255.0 - mean) / std


class _Normalised(nn.Module):
    """Holds the normalisation's mean and std as buffers ``[1, 1, 3, 1, 1]`` (constants of the graph).
    ``named_outputs``: forward returns ``{name: tensor}`` (for TorchScript) instead of a tuple (for ONNX)."""

    output_names: tuple[str, ...] = ()

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1))
        self.named_outputs = False

    def _result(self, values: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | dict[str, torch.Tensor]:
        return dict(zip(self.output_names, values)) if self.named_outputs else values


class RecognitionGraph(_Normalised):
    """uint8 ``video`` ``[N, T, H, W, 3]`` -> ``(logits, [embedding,] features)`` of a registry network
    (``ClipClassifier``): its head's class scores, its label-embedding output when it has that branch, and
    the backbone features the head reads, averaged over frames."""

    def __init__(self, net: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__(mean, std)
        self.net = net
        self.output_names = ("logits", "embedding", "features") if net.head.embed is not None else ("logits", "features")

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, ...] | dict[str, torch.Tensor]:
        feats = self.net.forward_features(_as_network_input(video, self.mean, self.std))
        out = self.net.forward_head(feats)
        pooled = feats.view(video.shape[0], -1, feats.shape[-1]).mean(1)
        return self._result(tuple({**out, "features": pooled}[name] for name in self.output_names))


class _EmotionNetworks(nn.Module):
    """The emotion task's networks (face and action branches, temporal encoder, heads) without its loss and
    metrics, computed by the task's own ``forward``."""

    forward = EmotionRecognition.forward

    def __init__(self, task: EmotionRecognition):
        super().__init__()
        self.face, self.action = task.face, task.action
        if task.action is not None:
            self.temporal, self.position, self.action_head = task.temporal, task.position, task.action_head
        self.emotion_head = task.emotion_head


class EmotionGraph(_Normalised):
    """uint8 clips (``input_names``: ``video`` and/or ``face``, each ``[N, T, H, W, 3]``) -> ``(emotion,
    [actions])`` logits of an ``EmotionRecognition`` task."""

    def __init__(self, task: EmotionRecognition, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        super().__init__(mean, std)
        self.nets = _EmotionNetworks(task)
        self.input_names = tuple(n for n, used in (("video", task.uses_action), ("face", task.uses_face)) if used)
        self.output_names = ("emotion", "actions") if task.uses_action else ("emotion",)

    def forward(self, *clips: torch.Tensor) -> tuple[torch.Tensor, ...] | dict[str, torch.Tensor]:
        given = {name: _as_network_input(c, self.mean, self.std) for name, c in zip(self.input_names, clips)}
        out = self.nets(given.get("video"), given.get("face"))
        return self._result(tuple(out[name] for name in self.output_names))


class _CheckedOne(nn.Module):
    """A traced graph of one input (outputs by name) behind a check of the input's dtype and shape."""

    def __init__(self, graph: nn.Module, names: list[str], shapes: list[list[int]]):
        super().__init__()
        self.graph = graph
        self.name = names[0]
        self.shape = shapes[0]

    def forward(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_clip(clip, self.name, self.shape)
        return self.graph(clip)


class _CheckedTwo(nn.Module):
    """As ``_CheckedOne`` for a graph of two inputs (the emotion task's ``video`` and ``face``)."""

    def __init__(self, graph: nn.Module, names: list[str], shapes: list[list[int]]):
        super().__init__()
        self.graph = graph
        self.names = names
        self.first = shapes[0]
        self.second = shapes[1]

    def forward(self, video: torch.Tensor, face: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_clip(video, self.names[0], self.first)
        _check_clip(face, self.names[1], self.second)
        return self.graph(video, face)


def _check_clip(clip: torch.Tensor, name: str, shape: list[int]) -> None:
    """Refuse a clip batch that is not uint8 ``[N, *shape]`` (compiled into the TorchScript file)."""
    expected = "input " + name + ": expected uint8 [N, " + ", ".join([str(s) for s in shape]) + "] (RGB frames), got "
    if clip.dtype != torch.uint8:
        raise ValueError(expected + ("floating-point" if clip.is_floating_point() else "non-uint8") + " values")
    if clip.dim() != len(shape) + 1 or list(clip.shape[1:]) != shape:
        raise ValueError(expected + "shape " + str(list(clip.shape)))


# --- what a checkpoint's task exports as --------------------------------------------------------------------------

def _pair(size: Any, key: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"{key}={size!r}: expected a frame size in pixels (an integer, or [height, width])")


def model_name(task: nn.Module) -> str:
    """The ``model=`` option(s) a task's networks were built as (``manet``; the emotion task: both branches)."""
    hp = task.hparams
    name = str(hp["model"].get("name"))
    if isinstance(task, EmotionRecognition):
        face = str((hp.get("face_model") or hp["model"]).get("name"))
        return {"full": f"{name} (face: {face})", "face": face, "action": name}[hp["branches"]]
    return name


@dataclass
class GraphSpec:
    """A task's graph and its interface: inputs (name -> per-clip shape ``(T, H, W, 3)``), outputs' names,
    the reference outputs (the PyTorch task itself on normalised clips) and the JSON description."""

    graph: nn.Module
    inputs: dict[str, tuple[int, int, int, int]]
    outputs: tuple[str, ...]
    model: str
    metadata: dict

    def reference(self, task: nn.Module, clips: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """The task's outputs on uint8 ``clips`` through the package's own path: ``transforms.normalize``
        on ``[N, T, 3, H, W]``, then the task's ``forward`` (for ``features``: its network's)."""
        net_in = {k: normalize(v.permute(0, 1, 4, 2, 3)) for k, v in clips.items()}
        with torch.no_grad():
            if isinstance(task, EmotionRecognition):
                out = task(net_in.get("video"), net_in.get("face"))
            else:
                out = dict(task(net_in["video"]))
                feats = task.net.forward_features(net_in["video"])
                out["features"] = feats.view(clips["video"].shape[0], -1, feats.shape[-1]).mean(1)
        return {k: out[k].float().numpy() for k in self.outputs}


def build_graph(task: nn.Module, data: dict, input_size: Any = None, face_size: Any = None) -> GraphSpec:
    """The exportable graph of ``task`` (a checkpoint's, in eval mode) for clips of the checkpoint's size.

    ``data`` holds the stored data settings (``input_size``, ``face_size``); ``input_size``/``face_size``
    given here replace them. A size known from neither is refused, naming the key.
    """
    if not isinstance(task, (MicroActionRecognition, EmotionRecognition)):
        raise ExportError(f"task {type(task).__name__}: export knows the recognition and emotion tasks only")
    frames = int(task.num_segments)
    size = input_size if input_size is not None else data.get("input_size")
    if size is None:
        raise ValueError("input_size: the checkpoint records no data.input_size; give the frame size the network "
                         "was trained at, e.g. input_size=224")
    h, w = _pair(size, "input_size" if input_size is not None else "data.input_size (from the checkpoint)")
    space = task.label_space
    meta: dict[str, Any] = {
        "task": "emotion" if isinstance(task, EmotionRecognition) else "recognition",
        "model": model_name(task),
        "normalisation": {"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    }
    if isinstance(task, EmotionRecognition):
        graph = EmotionGraph(task)
        shapes = {"video": (frames, h, w, 3)}
        if task.uses_face:
            fs = face_size if face_size is not None else data.get("face_size")
            if fs is None:
                raise ValueError("face_size: the checkpoint records no data.face_size; give the face clips' side the "
                                 "network was trained at, e.g. face_size=112")
            f = _pair(fs, "face_size" if face_size is not None else "data.face_size (from the checkpoint)")
            shapes["face"] = (frames, f[0], f[1], 3)
        inputs = {name: shapes[name] for name in graph.input_names}
        meta["emotions"] = list(task.emotions)
        if task.uses_action:
            meta["actions"] = [space.classes[c] for c in task.kept_actions.tolist()]
    else:
        graph = RecognitionGraph(task.net)
        inputs = {"video": (frames, h, w, 3)}
        meta.update(classes=list(space.classes), coarse_classes=list(space.coarse_classes),
                    fine_to_coarse=list(space.fine_to_coarse))
    meta["inputs"] = {k: {"shape": ["N", *v], "dtype": "uint8", "layout": "N, T, H, W, RGB"} for k, v in inputs.items()}
    meta["outputs"] = list(graph.output_names)
    return GraphSpec(graph.eval(), inputs, tuple(graph.output_names), meta["model"], meta)


def random_clips(inputs: dict[str, tuple[int, ...]], batch: int, seed: int) -> dict[str, torch.Tensor]:
    """Uniform random uint8 clips ``[batch, *shape]`` for each input, from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=gen) for k, shape in inputs.items()}


# --- refusals known before exporting -----------------------------------------------------------------------------

# adaptive pooling layers -> the number of trailing dimensions they pool
_ADAPTIVE = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
             nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}


def _onnx_blockers(spec: GraphSpec, example: tuple[torch.Tensor, ...]) -> list[str]:
    """Layers the ONNX exporter cannot express at these input sizes: an adaptive pooling whose output size
    does not divide its input size (ONNX has fixed-window and global pooling only)."""
    found: list[str] = []

    def hook(name: str):
        def check(module: nn.Module, args: tuple, _out: torch.Tensor) -> None:
            dims = _ADAPTIVE[type(module)]
            size = tuple(args[0].shape[-dims:])
            want = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,) * dims
            want = tuple(s if o is None else o for s, o in zip(size, want))
            if any(s % o for s, o in zip(size, want)):
                found.append(f"{name} ({type(module).__name__}) pools a {'x'.join(map(str, size))} grid to "
                             f"{'x'.join(map(str, want))}")
        return check

    handles = [m.register_forward_hook(hook(n)) for n, m in spec.graph.named_modules() if type(m) in _ADAPTIVE]
    try:
        with torch.no_grad():
            spec.graph(*example)
    finally:
        for h in handles:
            h.remove()
    return found


def _standard_input(task: nn.Module) -> str:
    try:
        info = model_info(str(task.hparams["model"].get("name")))
    except KeyError:
        return ""
    return f" (model={info.name}'s standard input is {info.frames} frames of {info.size}x{info.size})"


# --- writing ---------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters' notices that are not the user's to act on: torch's deprecation of TorchScript and of the
    TorchScript-based ONNX exporter (chosen on purpose, see the module docstring), and tracer warnings about
    Python values fixed at trace time (T, H, W are fixed by design; the parity check runs another batch size)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*feature will be removed", category=DeprecationWarning)
        yield


@contextlib.contextmanager
def _composite_attention() -> Iterator[None]:
    """Transformer layers as their composite operations while tracing (the fused inference kernel they take in
    eval mode has no ONNX translation)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    """A temporary file name beside ``path`` (``.<name>.part-<pid>``), removed whatever happens unless the block
    renamed it; the block writes it, checks it and moves it into place with ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _failure(err: BaseException) -> str:
    """The exporter's own reason, one line, without its advice to file a bug report."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:400] if text else ''}"


def _write_onnx(spec: GraphSpec, example: tuple[torch.Tensor, ...], tmp: Path, opset: int) -> None:
    import onnx

    names = list(spec.inputs) + list(spec.outputs)
    with _quiet_exporter(), _composite_attention(), torch.no_grad():
        torch.onnx.export(spec.graph, example, str(tmp), dynamo=False, input_names=list(spec.inputs),
                          output_names=list(spec.outputs), opset_version=opset,
                          dynamic_axes={n: {0: "N"} for n in names}, do_constant_folding=True)
    model = onnx.load(str(tmp))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(spec.metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))


def _write_torchscript(spec: GraphSpec, example: tuple[torch.Tensor, ...], tmp: Path) -> None:
    spec.graph.named_outputs = True
    try:
        with _quiet_exporter(), _composite_attention(), torch.no_grad():
            # strict=False: the outputs are a dict of tensors
            traced = torch.jit.trace(spec.graph, example, check_trace=False, strict=False)
            front = _CheckedOne if len(spec.inputs) == 1 else _CheckedTwo
            scripted = torch.jit.script(front(traced, list(spec.inputs), [list(s) for s in spec.inputs.values()]))
    finally:
        spec.graph.named_outputs = False
    with _quiet_exporter():
        torch.jit.save(scripted, str(tmp), _extra_files={f"{METADATA_KEY}.json": json.dumps(spec.metadata)})


def run_file(path: Path, fmt: str, clips: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The outputs (name -> array) of an exported file on uint8 ``clips`` (input name -> tensor):
    onnxruntime on the CPU for ONNX, ``torch.jit.load`` for TorchScript."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {k: v.numpy() for k, v in clips.items()})
        return dict(zip(names, values))
    with _quiet_exporter(), torch.no_grad():
        module = torch.jit.load(str(path), map_location="cpu")
        out = module(*clips.values())
    return {k: v.numpy() for k, v in out.items()}


def check_exporters(fmt: str) -> None:
    """Refuse, before any work, a format that is not known or whose packages are missing."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        missing = []
        for package in ("onnx", "onnxruntime"):
            try:
                __import__(package)
            except ImportError:
                missing.append(package)
        if missing:
            raise ExportError(f"format=onnx needs the package(s) {', '.join(missing)} (the export and its parity "
                              "check): pip install -e \".[export]\"")


def default_out(ckpt_path: str | Path, fmt: str) -> Path:
    """Beside the checkpoint, its name with the format's ending: ``last.ckpt`` -> ``last.onnx``."""
    ckpt = Path(ckpt_path)
    return ckpt.with_name(ckpt.name.removesuffix(".ckpt") + FORMATS[fmt])


def check_settings(fmt: str, out: str | Path, *, opset: int = OPSET, tolerance: float = TOLERANCE,
                   parity_batch: int = 3, seed: int = 0) -> None:
    """Refuse, naming the key, settings ``export_task`` cannot use; before any work."""
    check_exporters(fmt)
    if not isinstance(parity_batch, int) or isinstance(parity_batch, bool) or parity_batch < 1 \
            or parity_batch == TRACE_BATCH:
        raise ValueError(f"parity_batch={parity_batch!r}: expected a positive integer other than {TRACE_BATCH} "
                         "(the batch the graph is traced with), so the check shows the batch axis is free")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance >= 0:
        raise ValueError(f"tolerance={tolerance!r}: expected a number >= 0 (max abs difference allowed)")
    for key, value, low in (("opset", opset, 7), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{key}={value!r}: expected an integer >= {low}")
    if Path(out).is_dir():
        raise ValueError(f"out={out}: is a folder; give the file to write")


def export_task(task: nn.Module, data: dict, fmt: str, out: str | Path, *, input_size: Any = None,
                face_size: Any = None, opset: int = OPSET, tolerance: float = TOLERANCE, parity_batch: int = 3,
                seed: int = 0) -> ExportResult:
    """Export ``task`` (with its weights; put in eval mode) to ``out`` in ``fmt`` and check the written file
    against it.

    The file is written under a temporary name beside ``out``, run on ``parity_batch`` random uint8 clips
    (``seed``) next to the PyTorch task, and moved to ``out`` only when every output agrees to ``tolerance``
    (largest absolute difference, fp32); otherwise ``ExportError`` says by how much, and nothing is left.
    A network the format cannot express raises ``ExportError`` naming the model and the reason.
    """
    check_settings(fmt, out, opset=opset, tolerance=tolerance, parity_batch=parity_batch, seed=seed)
    out = Path(out)
    task = task.eval()
    spec = build_graph(task, data, input_size, face_size)
    example = tuple(random_clips(spec.inputs, TRACE_BATCH, seed + 1).values())
    # the PyTorch task on the example: a size the network refuses is named here, by the network
    spec.reference(task, dict(zip(spec.inputs, example)))
    where = f"model={spec.model}"
    if fmt == "onnx":
        blockers = _onnx_blockers(spec, example)
        if blockers:
            sizes = ", ".join(f"{k} {'x'.join(map(str, v[:3]))}" for k, v in spec.inputs.items())
            raise ExportError(
                f"{where} cannot be exported to ONNX at {sizes} (frames x height x width): {'; '.join(blockers)}, "
                f"and ONNX pools only with fixed windows (the output must divide the input){_standard_input(task)}. "
                "Export at a size where it divides (input_size=...), or use format=torchscript"
            )
    with _temporary_beside(out) as tmp:
        try:
            if fmt == "onnx":
                _write_onnx(spec, example, tmp, opset)
            else:
                _write_torchscript(spec, example, tmp)
        except Exception as err:  # the exporter's failure, named for the user without its stack
            raise ExportError(f"{where} cannot be exported to {fmt}: the exporter failed: {_failure(err)}") from err
        _fsync(tmp)
        clips = random_clips(spec.inputs, parity_batch, seed)
        expected = spec.reference(task, clips)
        try:
            got = run_file(tmp, fmt, clips)
        except Exception as err:
            raise ExportError(f"{where}: the exported {fmt} file does not run on a batch of {parity_batch} "
                              f"(its batch axis may be fixed by tracing): {_failure(err)}") from err
        diffs = {k: float(np.abs(got[k].astype(np.float64) - expected[k]).max()) if got[k].shape == expected[k].shape
                 else float("inf") for k in spec.outputs}
        bad = {k: v for k, v in diffs.items() if not v <= tolerance}
        if bad:
            raise ExportError(
                f"{where}: the exported {fmt} file's outputs differ from the PyTorch model's by more than "
                f"tolerance={tolerance:g}: " + ", ".join(f"{k} {v:.3g}" for k, v in bad.items()) + " (max abs)"
            )
        os.replace(tmp, out)
    return ExportResult(out, fmt, spec.model, spec.inputs, spec.outputs, diffs, parity_batch)


def export_checkpoint(ckpt_path: str | Path, fmt: str, out: str | Path | None = None, **kwargs) -> ExportResult:
    """Export the task of a checkpoint train.py wrote (``pipeline.load_task``: read with weights_only=True,
    only registered classes built) to ``fmt``; ``out`` None: beside the checkpoint (``default_out``).
    ``kwargs`` go to ``export_task``."""
    from .pipeline import load_task

    out = out if out is not None else default_out(ckpt_path, fmt)
    check_settings(fmt, out, **{k: v for k, v in kwargs.items() if k not in ("input_size", "face_size")})
    module, _dm_cls, stored = load_task(str(ckpt_path))
    return export_task(module, stored, fmt, out, **kwargs)

