"""DDP on CPU processes (gloo), sweeps with the submitit launcher, and the refusals that come before any work."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import FAST, compose_job, compose_train, run_cli
from omegaconf import OmegaConf

from microaction.data.samplers import UnpaddedDistributedSampler
from microaction.pipeline import evaluate
from microaction.utils import distributed


@pytest.fixture(scope="module")
def odd_root(tiny_root, tmp_path_factory) -> Path:
    """The tiny dataset with 51 val and 51 test clips: a count that 2 ranks cannot split evenly,
    so a padding sampler would score 52."""
    root = tmp_path_factory.mktemp("odd") / "data"
    shutil.copytree(tiny_root, root)
    for split in ("val", "test"):
        lst = root / f"{split}_list_videos.txt"
        lines = lst.read_text().splitlines()
        lst.write_text("\n".join(lines[:-1]) + "\n")
    return root


def compose_eval(overrides: list[str], out: Path):
    return compose_job("eval", overrides, out)


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("n,world", [(51, 2), (5, 3), (2, 4), (52, 2)])
def test_unpadded_sampler_covers_each_index_once_in_order(n, world):
    parts = [list(UnpaddedDistributedSampler(range(n), world, r)) for r in range(world)]
    assert [i for part in parts for i in part] == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # torch's own sampler pads uneven splits with repeats: what this sampler exists to avoid
    padded = [list(torch.utils.data.DistributedSampler(range(n), world, r, shuffle=False)) for r in range(world)]
    assert sum(map(len, padded)) == n + (-n % world)


def test_ddp_sim_scores_every_clip_once_like_a_single_process(odd_root, tmp_path):
    """Train and evaluate with 2 gloo processes; a single process evaluating the same checkpoint on
    the same data must give the same numbers, counts and per-clip predictions."""
    run_dir = tmp_path / "ddp"
    run_cli("train.py", [*FAST, f"data.root={odd_root}", "trainer=ddp_sim", "trainer.limit_train_batches=1",
                         f"hydra.run.dir={run_dir}"], tmp_path)
    ddp = json.loads((run_dir / "metrics.json").read_text())
    assert ddp["val"]["num_clips"] == 51 and ddp["test"]["num_clips"] == 51

    single_dir = tmp_path / "single"
    evaluate(compose_eval([f"ckpt_path={ddp['best_checkpoint']}", "trainer=cpu", "data.num_workers=0",
                           "extras.print_config=false"], single_dir))
    single = json.loads((single_dir / "metrics.json").read_text())
    assert single["val"].keys() == ddp["val"].keys()
    for key, value in single["val"].items():
        assert ddp["val"][key] == pytest.approx(value, abs=1e-6), key

    ddp_rows, single_rows = _rows(run_dir / "predictions_val.csv"), _rows(single_dir / "predictions_val.csv")
    assert len(ddp_rows) == 51 and ddp_rows == single_rows
    assert len(_rows(run_dir / "submission_test.csv")) == 51

    # rank 0 alone writes: one logger version, checkpoints without duplicates, rank 1 only its log
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best_epoch000.ckpt", "last.ckpt"]
    assert not list(run_dir.rglob("version_*"))
    rows = _rows(run_dir / "csv" / "metrics.csv")
    assert [float(r["val/num_clips"]) for r in rows if r.get("val/num_clips")] == [51.0]  # fit's validation
    # the final one, logged once as evaluation (no epoch), not as one more epoch
    (final,) = [r for r in rows if r.get("eval/val/num_clips")]
    assert float(final["eval/val/num_clips"]) == 51.0 and not final.get("epoch")


def test_multirun_with_ddp_is_refused_before_any_work(tiny_root, tmp_path):
    proc = run_cli("train.py", ["-m", *FAST, f"data.root={tiny_root}", "trainer=ddp_sim", "loss.alpha=0,1",
                                f"paths.log_dir={tmp_path}"], tmp_path, check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert "every process would run the whole sweep" in err
    for way in ("hydra/launcher=submitit_slurm", "hydra/launcher=submitit_local", "torchrun"):
        assert way in err
    assert "Epoch" not in proc.stdout
    assert not list(tmp_path.rglob("*.ckpt"))


def test_submitit_local_sweep_runs_each_job_in_its_own_process(tiny_root, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    run_cli("train.py", ["-m", "hydra/launcher=submitit_local", *FAST, f"data.root={tiny_root}", "debug=fdr",
                         "loss.alpha=0,1", f"paths.log_dir={tmp_path}"], tmp_path)
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    # named by the swept key, although the job's own argv is submitit's
    assert [j.name for j in jobs] == ["0_loss.alpha=0", "1_loss.alpha=1"]
    alphas = []
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["val"]["num_clips"] == 8
        alphas.append(OmegaConf.load(job / "config_resolved.yaml").loss.alpha)
    assert alphas == [0, 1]
    # submitit's own records: each job ran as a separate submitted process
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2


def _cfg(tmp_path, tiny_root, *overrides):
    return compose_train([*FAST, f"data.root={tiny_root}", *overrides], tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_gpu_trainer_without_gpu_is_refused(tiny_root, tmp_path, trainer):
    cfg = _cfg(tmp_path, tiny_root, f"trainer={trainer}", "trainer.accelerator=gpu")
    with pytest.raises(distributed.DistributedConfigError, match="no CUDA GPU is visible"):
        distributed.preflight(cfg)


def test_more_gpus_than_exist_is_refused(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cfg = _cfg(tmp_path, tiny_root, "trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=4")
    with pytest.raises(distributed.DistributedConfigError, match="asks for 4 GPUs but this machine has 2"):
        distributed.preflight(cfg)
    assert distributed.preflight(_cfg(tmp_path, tiny_root, "trainer=ddp", "trainer.accelerator=gpu")).world_size == 2  # -1: all


def test_parallel_single_gpu_jobs_get_different_gpus(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    cfg = _cfg(tmp_path, tiny_root, "trainer=gpu", "trainer.accelerator=gpu")
    layout = distributed.process_layout(cfg.trainer)
    gpus = []
    for job in range(6):
        distributed.assign_local_gpu(cfg, layout, job)
        gpus.append(list(cfg.trainer.devices))
    assert gpus == [[0], [1], [2], [3], [0], [1]]


def test_global_batch_is_divided_over_processes_or_refused(tiny_root, tmp_path):
    cfg = _cfg(tmp_path, tiny_root, "trainer=ddp_sim", "accel.global_batch_size=16")
    assert distributed.preflight(cfg).world_size == 2 and cfg.data.batch_size == 8
    cfg = _cfg(tmp_path, tiny_root, "trainer=ddp_sim", "accel.global_batch_size=15")
    with pytest.raises(distributed.DistributedConfigError, match="does not divide over 2 processes"):
        distributed.preflight(cfg)


def test_torchrun_without_a_shared_run_folder_is_refused(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(distributed.DistributedConfigError, match="hydra.run.dir"):
        distributed.preflight(_cfg(tmp_path, tiny_root, "trainer=ddp_sim"))


def test_compiled_network_checkpoints_have_plain_keys(tiny_root, tmp_path):
    """accel.compile compiles in place: the saved keys are the uncompiled network's."""
    from microaction.pipeline import train

    cfg = _cfg(tmp_path, tiny_root, "accel.compile=true", "accel.compile_backend=eager", "test=false",
               "trainer.limit_train_batches=1", "trainer.limit_val_batches=1")
    train(cfg)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state and not [k for k in state if "_orig_mod" in k]
    from microaction.tasks import MicroActionRecognition

    MicroActionRecognition.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu")


def test_channels_last_covers_2d_and_3d_convolutions():
    from microaction.utils.distributed import to_channels_last

    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3))
    conv2d = torch.nn.Conv2d(3, 5, 3)
    both = torch.nn.ModuleDict({"c3": net, "c2": conv2d})
    to_channels_last(both)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert conv2d.weight.is_contiguous(memory_format=torch.channels_last)
    ref = torch.nn.functional.conv3d(torch.ones(1, 3, 4, 5, 5), net[0].weight.contiguous(), net[0].bias)
    torch.testing.assert_close(net(torch.ones(1, 3, 4, 5, 5)), ref)
