"""scripts/bench_model.py runs end to end and counts FLOPs like an independent count on torchvision's ResNet.
Its main() runs in this process; the command as the docs print it runs in test_docs_commands.py."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import resnet18

from helpers import REPO

KEYS = {"train_clips_per_s", "infer_clips_per_s", "gflops_per_clip", "manet_over_resnet_time", "device"}


@pytest.fixture(scope="module")
def bench_main():
    """The script's main(argv), loaded from scripts/bench_model.py."""
    spec = importlib.util.spec_from_file_location("bench_model", REPO / "scripts" / "bench_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_bench_reports_throughput_flops_and_the_manet_overhead(bench_main, capsys):
    size = 64
    returned = bench_main(["model=tsn", "model.depth=18", "--batch-size", "2", "--frames", "2", "--size", str(size),
                           "--device", "cpu", "--steps", "1", "--warmup", "1", "--rounds", "1"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the JSON line it prints last
    assert result == returned
    assert KEYS <= result.keys()
    assert result["device"].startswith("cpu") and result["model"] == "tsn" and result["depth"] == 18
    assert result["train_clips_per_s"] > 0 and result["infer_clips_per_s"] > 0
    assert result["manet_over_resnet_time"] > 0

    # TSN is a plain ResNet per frame: its FLOPs per clip are frames x torchvision's ResNet-18 per image,
    # up to the heads (52 classes and a label-embedding branch instead of 1000 classes)
    with FlopCounterMode(display=False) as counter:
        resnet18(num_classes=52)(torch.zeros(1, 3, size, size))
    assert result["gflops_per_clip"] == pytest.approx(2 * counter.get_total_flops() / 1e9, rel=0.01)
    # SE adds a little work on top; the temporal shift adds none
    assert result["resnet_gflops_per_clip"] < result["manet_gflops_per_clip"] < 1.05 * result["resnet_gflops_per_clip"]
    # a training step is a forward and a backward pass: about three forwards
    assert 2.5 < result["train_gflops_per_clip"] / result["gflops_per_clip"] < 3.5


def test_bench_refuses_cuda_without_a_gpu(bench_main):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    with pytest.raises(SystemExit) as exc:  # sys.exit(message): exit status 1, the message on stderr
        bench_main(["--device", "cuda", "--steps", "1"])
    assert "no CUDA GPU is visible" in str(exc.value.code)
