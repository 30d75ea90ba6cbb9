"""Model throughput on synthetic clips (no data loading): how close to the hardware limit a model runs.

    python scripts/bench_model.py model=manet model.depth=50 --batch-size 8 --frames 8 --size 224   # GPU: bf16, channels_last
    python scripts/bench_model.py model=manet model.depth=18 --batch-size 2 --frames 8 --size 112 --device cpu

Positional arguments are Hydra overrides of conf/train.yaml (any `model=` config and its keys).
Reports training and inference clips/s at the batch size, FLOPs per clip counted by
torch.utils.flop_counter (2 per multiply-add), achieved TFLOP/s and, on a GPU with a known bf16 peak,
the fraction of it. In the same run it times MANet against the plain ResNet of the same depth
(model=tsn) on the same input, rounds interleaved so that both see the same machine load:
`manet_over_resnet_time` is MANet's training step time over the ResNet's (1.10 = 10% slower).
The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendor's data sheets; the first
# name fragment found in torch.cuda.get_device_name() wins, so specific names come first.
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def bf16_peak(device_name: str) -> float | None:
    for fragment, peak in BF16_PEAK_TFLOPS:
        if fragment in device_name:
            return peak
    return None


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=manet model.depth=50")
    p.add_argument("--batch-size", type=int, default=8, help="clips per step")
    p.add_argument("--frames", type=int, default=8, help="frames (segments) per clip")
    p.add_argument("--size", type=int, default=224, help="frame height and width")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1")
    p.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"], help="auto: bf16 on GPU")
    p.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"], help="auto: on for GPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks first")
    p.add_argument("--steps", type=int, default=20, help="timed steps per model and mode")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (cuDNN autotuning, compilation)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the median round counts")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's bf16 peak, if not in the table")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.frames < 1 or args.size < 32 or args.steps < 1 or args.rounds < 1:
        p.error("--batch-size, --frames, --steps, --rounds must be >= 1 and --size >= 32")
    return args, args.overrides


def model_config(overrides: list[str], frames: int) -> tuple[dict, dict]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"data.num_segments={frames}"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    loss = OmegaConf.to_container(cfg.loss, resolve=True)
    # speed does not depend on the weights; never download them for a benchmark
    model["pretrained"] = False
    return model, loss


def build(model: dict, loss: dict, device: torch.device, channels_last: bool, compile_: bool):
    from microaction.tasks import MicroActionRecognition

    module = MicroActionRecognition(model=model, loss=loss).to(device)
    if channels_last:
        module.net.to(memory_format=torch.channels_last)
    if compile_:
        module.net.compile()
    return module


class Bench:
    def __init__(self, module, batch: int, frames: int, size: int, device: torch.device, bf16: bool):
        self.module, self.device, self.bf16 = module, device, bf16
        g = torch.Generator().manual_seed(0)
        self.video = torch.randn(batch, frames, 3, size, size, generator=g).to(device)
        self.label = torch.randint(0, module.label_space.num_classes, (batch,), generator=g).to(device)
        self.opt = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def train_step(self) -> None:
        self.module.train()
        with self._autocast():
            loss = self.module.criterion(self.module(self.video), self.label)["loss"]
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def infer_step(self) -> None:
        self.module.eval()
        with torch.inference_mode(), self._autocast():
            self.module(self.video)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def seconds_per_step(self, step, steps: int) -> float:
        self._sync()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        self._sync()
        return (time.perf_counter() - start) / steps

    def flops(self, step) -> int:
        with FlopCounterMode(display=False) as counter:
            step()
        return counter.get_total_flops()


def main(argv: list[str] | None = None) -> dict:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: no CUDA GPU is visible (torch.cuda.is_available() is False); use --device cpu")
    gpu = device.type == "cuda"
    bf16 = args.precision == "bf16" or (args.precision == "auto" and gpu)
    channels_last = args.channels_last == "on" or (args.channels_last == "auto" and gpu)
    if gpu:
        torch.backends.cudnn.benchmark = True

    target, loss = model_config(overrides, args.frames)
    variants = {"target": target, "manet": {**target, "name": "manet"}, "resnet": {**target, "name": "tsn"}}
    if target["name"] in ("manet", "tsn"):
        variants.pop("manet" if target["name"] == "manet" else "resnet")
    benches = {k: Bench(build(m, loss, device, channels_last, args.compile), args.batch_size, args.frames, args.size,
                        device, bf16) for k, m in variants.items()}
    alias = {"manet": "target" if target["name"] == "manet" else "manet",
             "resnet": "target" if target["name"] == "tsn" else "resnet"}

    flops = {k: (b.flops(b.infer_step), b.flops(b.train_step)) for k, b in benches.items()}
    for b in benches.values():
        for _ in range(args.warmup):
            b.train_step()
            b.infer_step()
    times: dict[str, dict[str, list[float]]] = {k: {"train": [], "infer": []} for k in benches}
    for _ in range(args.rounds):
        for k, b in benches.items():
            times[k]["train"].append(b.seconds_per_step(b.train_step, args.steps))
            times[k]["infer"].append(b.seconds_per_step(b.infer_step, args.steps))
    med = {k: {mode: statistics.median(v) for mode, v in t.items()} for k, t in times.items()}

    train_cps = args.batch_size / med["target"]["train"]
    infer_cps = args.batch_size / med["target"]["infer"]
    infer_flops, train_flops = (f / args.batch_size for f in flops["target"])
    train_tflops = train_flops * train_cps / 1e12
    infer_tflops = infer_flops * infer_cps / 1e12
    name = torch.cuda.get_device_name(device) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    peak = args.peak_tflops or (bf16_peak(name) if gpu and bf16 else None)
    result = {
        "train_clips_per_s": round(train_cps, 3),
        "infer_clips_per_s": round(infer_cps, 3),
        "gflops_per_clip": round(infer_flops / 1e9, 4),
        "train_gflops_per_clip": round(train_flops / 1e9, 4),
        "train_tflops_per_s": round(train_tflops, 4),
        "infer_tflops_per_s": round(infer_tflops, 4),
        "bf16_peak_tflops": peak,
        "train_fraction_of_peak": round(train_tflops / peak, 4) if peak else None,
        "infer_fraction_of_peak": round(infer_tflops / peak, 4) if peak else None,
        "manet_over_resnet_time": round(med[alias["manet"]]["train"] / med[alias["resnet"]]["train"], 4),
        "manet_over_resnet_time_infer": round(med[alias["manet"]]["infer"] / med[alias["resnet"]]["infer"], 4),
        "manet_gflops_per_clip": round(flops[alias["manet"]][0] / args.batch_size / 1e9, 4),
        "resnet_gflops_per_clip": round(flops[alias["resnet"]][0] / args.batch_size / 1e9, 4),
        "device": name,
        "model": target["name"],
        "depth": target["depth"],
        "batch_size": args.batch_size,
        "frames": args.frames,
        "size": args.size,
        "precision": "bf16-mixed" if bf16 else "32-true",
        "channels_last": channels_last,
        "compile": args.compile,
        "torch": torch.__version__,
    }
    print(f"{target['name']}-R{target['depth']} {args.batch_size} x {args.frames} x {args.size}^2 on {name}, "
          f"{result['precision']}, channels_last={channels_last}")
    print(f"  train {train_cps:9.2f} clips/s  {train_tflops:8.3f} TFLOP/s ({train_flops / 1e9:.2f} GFLOP/clip)")
    print(f"  infer {infer_cps:9.2f} clips/s  {infer_tflops:8.3f} TFLOP/s ({infer_flops / 1e9:.2f} GFLOP/clip)")
    if peak:
        print(f"  fraction of the {peak:g} TFLOP/s bf16 peak: train {result['train_fraction_of_peak']:.1%}, "
              f"infer {result['infer_fraction_of_peak']:.1%}")
    print(f"  MANet / ResNet-{target['depth']} step time: train {result['manet_over_resnet_time']:.3f}, "
          f"infer {result['manet_over_resnet_time_infer']:.3f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
