"""Pretrained weights are never silently replaced: an explicit file must load; library weights that
cannot be had are recorded as ``init: random`` (and warned about at the end of the run) or, with
``model.pretrained=required``, stop the run before training. Nothing here downloads: every test
runs with MICROACTION_OFFLINE=1 and its own empty TORCH_HOME, and the download functions fail the
test if called."""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch
import torch.nn as nn
import torchvision
from omegaconf import OmegaConf
from torchvision.models import resnet

from helpers import FAST, TINY, compose_train, run_cli
from microaction.models import create_model
from microaction.models.pretrained import (
    WeightsUnavailable, library_cache_file, library_state_dict, load_pretrained, pretrained_mode,
)
from microaction.utils.untrusted import UnsafeFileError

TINY_KEYS = {t.split("=")[0] for t in TINY}
# ImageNet weights exist from ResNet-18 up
BASE = [a for a in FAST if a.split("=")[0] not in TINY_KEYS] + [t for t in TINY if t != "model.depth=10"] + [
    "model.depth=18", "logger=none", "test=false"]
R18 = resnet.ResNet18_Weights.IMAGENET1K_V1


@pytest.fixture(autouse=True)
def no_download(monkeypatch, tmp_path):
    monkeypatch.setenv("MICROACTION_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def cache_r18(seed: int = 0) -> dict:
    """Put a ResNet-18 state dict where torchvision keeps its ImageNet weights; return it."""
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = library_cache_file(R18)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def build(pretrained, depth: int = 18):
    return create_model("tsn", depth=depth, num_segments=2, embed_dim=4, pretrained=pretrained)


@pytest.mark.parametrize("value, mode", [
    (False, "random"), (None, "random"), ("false", "random"), (True, "library"), ("true", "library"),
    ("imagenet", "library"), ("required", "required"), ("/w.pth", "path"),
])
def test_pretrained_values(value, mode):
    assert pretrained_mode(value)[0] == mode


def test_pretrained_value_of_another_type_is_an_error():
    with pytest.raises(TypeError, match="model.pretrained=3"):
        pretrained_mode(3)


# --- an explicit file --------------------------------------------------------------------------------------


def test_explicit_file_is_loaded_and_recorded(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": ref.state_dict(), "epoch": 3}, path)  # a common wrapper
    model = build(str(path))
    assert model.initialised_from == str(path.resolve())
    torch.testing.assert_close(model.layer2[0].conv1.conv.weight, ref.layer2[0].conv1.weight)


@pytest.mark.parametrize("kind", ["missing", "corrupt", "unsafe", "other_network"])
def test_explicit_file_that_does_not_load_is_an_error(tmp_path, kind):
    path = tmp_path / "w.pth"
    marker = tmp_path / "ran"
    if kind == "corrupt":
        path.write_bytes(b"\x00" * 64)
    elif kind == "unsafe":
        from test_untrusted_files import hostile_torch_file

        hostile_torch_file(path, marker)
    elif kind == "other_network":
        torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    error, text = {"missing": (FileNotFoundError, "no such file"), "corrupt": (ValueError, "not loaded"),
                   "unsafe": (UnsafeFileError, "refused"),
                   "other_network": (ValueError, "not a ResNet-18 state dict")}[kind]
    with pytest.raises(error, match=text) as info:
        build(str(path))
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_explicit_file_errors_for_every_model_that_loads_weights(tmp_path):
    """The shared loader (C3D, I3D, SlowFast, Video Swin, TimeSformer, UniFormer) has no fallback either."""
    toy = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(FileNotFoundError, match="model.pretrained=.*absent.pth: no such file"):
        load_pretrained(toy, str(tmp_path / "absent.pth"), "Toy")
    (tmp_path / "bad.pth").write_text("no tensors here")
    with pytest.raises(ValueError, match="bad.pth: not loaded"):
        load_pretrained(toy, str(tmp_path / "bad.pth"), "Toy")
    torch.save(nn.Sequential(nn.Linear(2, 2)).state_dict(), tmp_path / "ok.pth")
    assert load_pretrained(toy, str(tmp_path / "ok.pth"), "Toy") == str((tmp_path / "ok.pth").resolve())


def test_resnet10_takes_a_file_but_no_library_weights(tmp_path):
    src = build(False, depth=10)
    path = tmp_path / "r10.pth"
    torch.save({k.replace("stem.0.", "conv1.").replace("stem.1.", "bn1.").replace(".conv1.conv.", ".conv1."): v
                for k, v in src.state_dict().items() if not k.startswith("head.")}, path)
    assert build(str(path), depth=10).initialised_from == str(path.resolve())
    for value in (True, "required"):
        with pytest.raises(ValueError, match="no ImageNet weights exist for ResNet-10"):
            build(value, depth=10)


# --- library weights: the cache, offline, required ---------------------------------------------------------


def test_library_weights_come_from_the_cache_offline():
    state = cache_r18()
    for value in (True, "required"):
        model = build(value)
        assert model.initialised_from == "imagenet"
        torch.testing.assert_close(model.stem[0].weight, state["conv1.weight"])


def test_unsafe_cached_library_file_is_an_error(tmp_path):
    from test_untrusted_files import hostile_torch_file

    marker = tmp_path / "ran"
    library_cache_file(R18).parent.mkdir(parents=True)
    hostile_torch_file(library_cache_file(R18), marker)
    with pytest.raises(UnsafeFileError, match="cached torchvision ResNet18_Weights.IMAGENET1K_V1=.*refused"):
        build(True)
    assert not marker.exists()


def test_offline_without_cache_records_random_and_required_is_an_error(caplog):
    with caplog.at_level("WARNING"):
        model = build(True)
    assert model.initialised_from == "random"
    assert "MICROACTION_OFFLINE=1 forbids downloading" in caplog.text and "recorded as init: random" in caplog.text
    with pytest.raises(WeightsUnavailable, match="model.pretrained=required: ResNet-18: torchvision "
                                                 "ResNet18_Weights.IMAGENET1K_V1 not obtainable"):
        build("required")
    for no_library in ("c3d",):
        with pytest.raises(ValueError, match="model.pretrained=required: no library ships C3D weights"):
            create_model(no_library, num_segments=16, base_width=4, fc_dim=8, embed_dim=4, pretrained="required")


def test_a_failed_download_is_not_obtainable(monkeypatch):
    """Without MICROACTION_OFFLINE the download is tried; no network means random init, recorded."""
    monkeypatch.delenv("MICROACTION_OFFLINE")
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsUnavailable, match="download from https://download.pytorch.org/.*failed"):
        library_state_dict(R18)
    assert build(True).initialised_from == "random"
    assert calls == [R18.url, R18.url]


# --- what a run records ------------------------------------------------------------------------------------


def _run(tiny_root, tmp_path, *extra, check=True):
    run_dir = tmp_path / "run"
    proc = run_cli("train.py", [*BASE, f"data.root={tiny_root}", *extra, f"hydra.run.dir={run_dir}"], tmp_path,
                   check=check)
    return run_dir, proc


def _train(tiny_root, tmp_path, *extra):
    """train.py's job on its real config, in this process; returns the run folder."""
    from microaction.pipeline import train

    run_dir = tmp_path / "run"
    train(compose_train([*BASE, f"data.root={tiny_root}", *extra], run_dir))
    return run_dir


def test_unobtainable_imagenet_is_recorded_as_random_and_warned_at_the_end(tiny_root, tmp_path):
    """As typed (train.py in its own process): the warnings in the order the user reads them."""
    run_dir, proc = _run(tiny_root, tmp_path, "model.pretrained=true")
    assert json.loads((run_dir / "metrics.json").read_text())["init"] == "random"
    saved = OmegaConf.load(run_dir / "config_resolved.yaml")
    assert saved.init == "random" and saved.model.pretrained is True
    out = proc.stdout + proc.stderr
    end_warning = out.rfind("asked for pretrained weights, which could not be obtained")
    assert end_warning > out.find("`Trainer.fit` stopped") > out.find("MICROACTION_OFFLINE=1 forbids downloading") > 0


def test_cached_imagenet_is_recorded(tiny_root, tmp_path, caplog):
    cache_r18()
    with caplog.at_level("INFO"):
        run_dir = _train(tiny_root, tmp_path, "model.pretrained=true")
    assert json.loads((run_dir / "metrics.json").read_text())["init"] == "imagenet"
    assert OmegaConf.load(run_dir / "config_resolved.yaml").init == "imagenet"
    assert f"ResNet-18: pretrained weights loaded from torchvision {R18}" in caplog.text  # the log is heard
    assert "could not be obtained" not in caplog.text


@pytest.mark.parametrize("value, message", [
    ("required", "model.pretrained=required: ResNet-18: torchvision ResNet18_Weights.IMAGENET1K_V1 not obtainable"),
    ("/nonexistent/weights.pth", "model.pretrained=/nonexistent/weights.pth: no such file"),
])
def test_required_offline_or_missing_file_stops_before_training(tiny_root, tmp_path, value, message):
    with pytest.raises(WeightsUnavailable if value == "required" else FileNotFoundError) as info:
        _train(tiny_root, tmp_path, f"model.pretrained={value}")
    assert message in str(info.value), str(info.value)[-3000:]
    assert not (tmp_path / "run" / "checkpoints").exists()
