"""The README's headline commands, run as a user types them from the root of a fresh copy of the repository.

Only sizes (``helpers.TINY``) and a data root are appended: a default or interpolation that breaks for the
user (a folder, an environment variable, a resolver) breaks here too.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import TINY, copy_checkout, run_as_typed
from omegaconf import OmegaConf


def _new_dirs(parent: Path, before: set[Path]) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p not in before) if parent.is_dir() else []


def _jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: int(p.name.split("_")[0]))


def test_alpha_sweep_as_typed(checkout, tiny_root):
    """`python train.py -m loss.alpha=0,0.1,1,2,5,10`: the default sweep folder, one job per alpha."""
    multiruns = checkout / "logs" / "train" / "multiruns"
    before = set(multiruns.iterdir()) if multiruns.is_dir() else set()
    run_as_typed("python train.py -m loss.alpha=0,0.1,1,2,5,10", checkout, [f"data.root={tiny_root}", *TINY])
    (sweep,) = _new_dirs(multiruns, before)
    jobs = _jobs(sweep)
    assert [j.name for j in jobs] == [f"{i}_loss.alpha={a}" for i, a in enumerate(["0", "0.1", "1", "2", "5", "10"])]
    for job, alpha in zip(jobs, (0, 0.1, 1, 2, 5, 10)):
        assert OmegaConf.load(job / "config_resolved.yaml").loss.alpha == alpha
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["val"]["num_clips"] == 4  # one batch of 4: the appended sizes
        assert (job / "checkpoints" / "last.ckpt").is_file()
        # the run folder is where the documented default says: <repo>/logs/...
        assert Path(metrics["output_dir"]) == job


def test_quickstart_as_typed(checkout):
    """`python train.py experiment=quickstart`: one run under logs/train/runs/ with every promised file."""
    runs = checkout / "logs" / "train" / "runs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    proc = run_as_typed("python train.py experiment=quickstart", checkout,
                        ["data.generate_kwargs.per_class=[1,1,1]", *TINY])
    (run,) = _new_dirs(runs, before)
    for name in ("metrics.json", "config_resolved.yaml", "csv/metrics.csv", "predictions_val.csv",
                 "predictions_test.csv", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").glob("best_epoch*.ckpt"))
    assert "F1_mean" in proc.stdout


# The quickstart's figures at a small size: the training code of commit ec0b18e on these data (2-core CPU,
# seed 0). Any change to data, sampling, initialisation, loss or metrics that moves them shows here. The data are
# written losslessly (crf=0): at the default quality the encoder's choices, and so the decoded pixels, can differ
# between two generations with the same seed; lossless frames are exactly the rendered ones. Ratios of clip
# counts (52 clips per split), so exact comparison is meaningful.
# The figures also depend on the CPU's math kernels (torch picks AVX2 or AVX-512 code, MKL picks its paths by
# vendor): two epochs of float rounding differences move a few of 52 argmaxes. So they are pinned per kind of
# machine the project has run on: PINNED for the machine of ec0b18e, and the figures of the same code on a
# 2-core AMD EPYC with AVX2 (2026-12-02; commits 490d5ae and its successors gave them identically there).
PINNED_SIZE = ["data.generate_kwargs.per_class=[1,1,1]", "data.generate_kwargs.crf=0", "data.num_segments=2",
               "data.input_size=32", "data.short_side=32", "model.depth=10", "trainer.max_epochs=2"]
PINNED = {
    "val": {"F1_mean": 0.09704640507698059, "action_F1_macro": 0.007326007355004549,
            "action_F1_micro": 0.03846153989434242, "action_top1": 0.03846153989434242,
            "action_top5": 0.11538461595773697, "body_F1_macro": 0.1308596134185791,
            "body_F1_micro": 0.21153846383094788, "body_top1": 0.21153846383094788, "num_clips": 52.0},
    "test": {"F1_mean": 0.08651350438594818, "action_F1_macro": 0.0010121457744389772,
             "action_F1_micro": 0.01923076994717121, "action_top1": 0.01923076994717121,
             "action_top5": 0.07692307978868484, "body_F1_macro": 0.13350340723991394,
             "body_F1_micro": 0.19230769574642181, "body_top1": 0.19230769574642181, "num_clips": 52.0},
}
PINNED_BY_MACHINE = {
    ("AuthenticAMD", "AVX2"): {
        "val": {"F1_mean": 0.0819954127073288, "action_F1_macro": 0.0, "action_F1_micro": 0.0, "action_top1": 0.0,
                "action_top5": 0.11538461595773697, "body_F1_macro": 0.13567396998405457,
                "body_F1_micro": 0.19230769574642181, "body_top1": 0.19230769574642181, "num_clips": 52.0},
        "test": {"F1_mean": 0.11609804630279541, "action_F1_macro": 0.004743589553982019,
                 "action_F1_micro": 0.03846153989434242, "action_top1": 0.03846153989434242,
                 "action_top5": 0.09615384787321091, "body_F1_macro": 0.1904178410768509,
                 "body_F1_micro": 0.23076923191547394, "body_top1": 0.23076923191547394, "num_clips": 52.0},
    },
}


def machine_kind() -> tuple[str, str]:
    """(CPU vendor, torch's CPU capability): what decides which math kernels a CPU run uses."""
    import torch

    vendor = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        vendor = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                       if ln.startswith("vendor_id")), "")
    return vendor, torch.backends.cpu.get_cpu_capability()


def test_quickstart_figures_are_pinned(tmp_path):
    """`python train.py experiment=quickstart` from its own fresh copy (so it writes its own data/)."""
    checkout = copy_checkout(tmp_path)
    run_as_typed("python train.py experiment=quickstart", checkout, PINNED_SIZE)
    (run,) = (checkout / "logs" / "train" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    for split, pinned in PINNED_BY_MACHINE.get(machine_kind(), PINNED).items():
        assert {k: metrics[split][k] for k in pinned} == pinned, (split, machine_kind())
