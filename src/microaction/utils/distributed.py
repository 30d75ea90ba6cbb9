"""Checks and helpers for runs with more than one process (DDP on one or several nodes).

`preflight` turns the ways a distributed run goes wrong late (a missing GPU, a sweep whose
extra processes re-run the whole sweep, ranks writing to different folders) into one message
before anything is built. The rest makes rank-local results whole again: per-clip rows gathered
from every rank (``gather_predictions``, used by the prediction writer).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

SUPPORTED_WAYS = """Supported ways to run a sweep whose jobs use several processes (docs/scaling.md):
  1. a cluster:   python train.py -m hydra/launcher=submitit_slurm trainer=ddp trainer.devices=4 loss.alpha=0,5
                  (each job is its own SLURM job with one task per GPU)
  2. one server, one GPU per job, jobs in parallel:
                  python train.py -m hydra/launcher=submitit_local hydra.launcher.gpus_per_node=<GPUs> trainer=gpu loss.alpha=0,5
                  or one `CUDA_VISIBLE_DEVICES=i python train.py trainer=gpu ...` per GPU
  3. one job at a time, each on N GPUs: run train.py once per job, without -m
                  (python train.py trainer=ddp trainer.devices=N ..., or torchrun --nproc-per-node=N train.py
                  trainer=ddp trainer.devices=N hydra.run.dir=<run folder> ...)"""


class DistributedConfigError(ValueError):
    """A trainer/launcher combination that cannot run correctly; raised before any work starts."""


@dataclass(frozen=True)
class ProcessLayout:
    accelerator: str  # "gpu" or "cpu"
    devices_per_node: int
    num_nodes: int

    @property
    def world_size(self) -> int:
        return self.devices_per_node * self.num_nodes


def _wants_gpu(accelerator: str) -> bool:
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def _count_devices(devices: Any, accelerator: str) -> int:
    gpu = accelerator == "gpu"
    available = torch.cuda.device_count() if gpu else (os.cpu_count() or 1)
    if devices is None or devices == "auto":
        # Lightning's "auto": every GPU, one CPU process
        return available if gpu else 1
    if isinstance(devices, str):
        text = devices.strip()
        if "," in text:
            return len([d for d in text.split(",") if d.strip()])
        devices = int(text)
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    devices = int(devices)
    if devices == -1:
        return available if gpu else 1
    return devices


def process_layout(trainer_cfg: DictConfig) -> ProcessLayout:
    accelerator = "gpu" if _wants_gpu(str(trainer_cfg.get("accelerator", "auto"))) else "cpu"
    devices = _count_devices(trainer_cfg.get("devices", 1), accelerator)
    return ProcessLayout(accelerator, devices, int(trainer_cfg.get("num_nodes", 1) or 1))


def _hydra_runtime() -> tuple[bool, str, list[str]]:
    """(multirun?, launcher target, hydra overrides) of the current Hydra job; (False, "", []) outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return False, "", []
    launcher = str(OmegaConf.select(hc, "launcher._target_", default="") or "")
    return hc.mode == RunMode.MULTIRUN, launcher, list(hc.overrides.hydra)


def _hydra_job_num() -> int:
    from hydra.core.hydra_config import HydraConfig

    return int(HydraConfig.get().job.num)


def assign_local_gpu(cfg: DictConfig, layout: ProcessLayout, job_num: int) -> None:
    """Spread single-GPU sweep jobs over the GPUs of one server: job k gets GPU k mod #GPUs.

    submitit's local executor shows every job the same first ``gpus_per_node`` GPUs, so without this
    all jobs of ``hydra/launcher=submitit_local hydra.launcher.gpus_per_node=4`` would share GPU 0.
    """
    count = torch.cuda.device_count() if layout.accelerator == "gpu" else 0
    if count > 1 and layout.world_size == 1:
        with open_dict(cfg):
            cfg.trainer.devices = [job_num % count]
        log.info("sweep job %d on GPU %d of %d", job_num, job_num % count, count)


def launched_externally() -> str | None:
    """The launcher that started this process as one of several ranks, if any (torchrun, srun)."""
    if os.environ.get("TORCHELASTIC_RUN_ID") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "torchrun"
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and not os.environ.get("SUBMITIT_EXECUTOR"):
        return "srun"
    return None


def preflight(cfg: DictConfig) -> ProcessLayout:
    """Refuse, with the reason and the fix, a trainer setup that would fail or give wrong numbers.

    Also applies ``accel.global_batch_size`` (split over all processes) to ``data.batch_size``.
    """
    trainer_cfg = cfg.trainer
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise DistributedConfigError(
            f"trainer.accelerator={accelerator} (trainer=gpu/ddp) but no CUDA GPU is visible to this process "
            "(torch.cuda.is_available() is False). Use trainer=cpu, or trainer=ddp_sim to try DDP on CPU processes."
        )
    layout = process_layout(trainer_cfg)
    if layout.accelerator == "gpu":
        available = torch.cuda.device_count()
        if layout.devices_per_node > available:
            raise DistributedConfigError(
                f"trainer.devices asks for {layout.devices_per_node} GPUs but this machine has {available} visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). "
                f"Set trainer.devices={available} or fewer (-1: all)."
            )
        if str(trainer_cfg.get("precision", "")).startswith("bf16") and not torch.cuda.is_bf16_supported():
            raise DistributedConfigError(
                f"trainer.precision={trainer_cfg.precision} but {torch.cuda.get_device_name()} has no bfloat16 support; "
                "use trainer.precision=16-mixed."
            )

    multirun, launcher, hydra_overrides = _hydra_runtime()
    if multirun and layout.world_size > 1 and not launcher.endswith("SlurmLauncher"):
        name = launcher.rsplit(".", 1)[-1] or "the basic launcher"
        raise DistributedConfigError(
            f"python train.py -m with a trainer of {layout.world_size} processes "
            f"({layout.devices_per_node} devices x {layout.num_nodes} nodes) under {name} is refused: Lightning starts "
            "each extra process by re-running this command line, so every process would run the whole sweep "
            f"(and write into another folder).\n{SUPPORTED_WAYS}"
        )
    if multirun and os.environ.get("SUBMITIT_EXECUTOR") == "local":
        assign_local_gpu(cfg, layout, _hydra_job_num())
    external = launched_externally()
    if external and not multirun and not any(o.startswith("hydra.run.dir=") for o in hydra_overrides):
        raise DistributedConfigError(
            f"started by {external} as one of several processes without hydra.run.dir=...: each process would name "
            "its own time-stamped run folder, so ranks would not find each other's checkpoints. "
            "Pass the same hydra.run.dir=<run folder> to every process."
        )

    global_batch = cfg.get("accel", {}).get("global_batch_size") if cfg.get("accel") else None
    if global_batch:
        if int(global_batch) % layout.world_size:
            raise DistributedConfigError(
                f"accel.global_batch_size={global_batch} does not divide over {layout.world_size} processes "
                f"({layout.devices_per_node} devices x {layout.num_nodes} nodes): choose a multiple of {layout.world_size}."
            )
        with open_dict(cfg):
            cfg.data.batch_size = int(global_batch) // layout.world_size
        log.info("global batch %d = %d per process x %d processes", global_batch, cfg.data.batch_size,
                 layout.world_size)
    return layout


# --- results spread over ranks ------------------------------------------------------------
def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_predictions(local: list[dict]) -> list[dict]:
    """Every rank's per-clip predictions, in rank order, each clip once.

    With the contiguous evaluation sampler (data/samplers.py) rank order is dataset order; the
    de-duplication by clip name also makes a padded sampler's repeated clips harmless.
    """
    _, size = world()
    if size == 1:
        return list(local)
    parts: list[list[dict] | None] = [None] * size
    dist.all_gather_object(parts, list(local))
    seen: set[str] = set()
    merged: list[dict] = []
    for part in parts:
        for row in part or []:
            if row["name"] not in seen:
                seen.add(row["name"])
                merged.append(row)
    return merged


# --- speed switches ------------------------------------------------------------------------
def to_channels_last(net: torch.nn.Module) -> None:
    """Channels-last weights for 2D (NHWC) and 3D (NDHWC) convolutions alike;
    ``net.to(memory_format=channels_last)`` refuses the 5-D weights of 3D models."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for param in net.parameters():
        if param.dim() in formats:
            param.data = param.data.contiguous(memory_format=formats[param.dim()])


def apply_accel(module: torch.nn.Module, cfg: DictConfig, layout: ProcessLayout) -> None:
    """channels_last and torch.compile on the network, as ``accel.*`` asks.

    ``nn.Module.compile`` compiles in place, so the state dict keeps its plain keys
    (``torch.compile(net)`` would prefix them with ``_orig_mod.``) and checkpoints load without compiling.
    """
    accel = cfg.get("accel") or {}
    channels_last = accel.get("channels_last", "auto")
    if channels_last == "auto":
        channels_last = layout.accelerator == "gpu"
    # a task's networks: ``networks()`` when it has several (the emotion task's branches), else ``net``
    networks = module.networks() if hasattr(module, "networks") else [module.net]
    if channels_last:
        for net in networks:
            to_channels_last(net)
        log.info("network in channels_last memory format")
    if accel.get("compile"):
        kwargs = {"backend": accel.get("compile_backend") or "inductor"}
        if accel.get("compile_mode"):
            kwargs["mode"] = accel.compile_mode
        for net in networks:
            net.compile(**kwargs)
        log.info("network compiled with torch.compile(%s)", kwargs)


def cluster_plugins(layout: ProcessLayout) -> list[Any]:
    """Under submitit on SLURM, leave preemption to submitit: its USR1 handler checkpoints the job and
    requeues it (then ``ckpt_path=auto`` resumes from last.ckpt); Lightning's own SLURM auto-requeue
    would answer the same signal with a second `scontrol requeue`."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and os.environ.get("SLURM_JOB_ID"):
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        return [SLURMEnvironment(auto_requeue=False)]
    return []
