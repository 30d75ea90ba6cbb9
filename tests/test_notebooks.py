"""notebooks/explore_run.ipynb and notebooks/sweep_results.ipynb executed with nbclient on the session's tiny sweep
(``tiny_sweep``: 4 real train.py jobs), found through MICROACTION_LOGS as a user's default finds it, and on a run
folder that only W&B logged; their outputs are checked against the runs' own files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import REPO
from microaction import results

NOTEBOOKS = REPO / "notebooks"


def execute(name: str, parameters: dict | None = None) -> dict[str, list]:
    """Run ``notebooks/<name>`` from its folder with ``parameters`` set in a cell after the one tagged
    ``parameters`` (as papermill does); returns each tagged cell's outputs by tag. A failing cell fails here,
    with its traceback."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (at,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if parameters:
        source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return {t: c.get("outputs", []) for c in nb.cells if c.cell_type == "code" for t in c.metadata.get("tags", [])}


def text(outputs: list) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def images(outputs: list) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


@pytest.fixture
def sweep_logs(tiny_sweep, monkeypatch):
    """The kernel inherits this process's environment: the logs folder as a user sets it."""
    monkeypatch.setenv("MICROACTION_LOGS", str(tiny_sweep.logs))
    return tiny_sweep


def test_explore_run_on_the_newest_run(sweep_logs):
    out = execute("explore_run.ipynb")
    setup = text(out["setup"])
    run = Path(re.search(r"^run: (.+)$", setup, re.M).group(1))
    assert run == results.newest_run(sweep_logs.logs) and run.parent == sweep_logs.sweep
    assert "status: done" in setup
    metrics = json.loads((run / "metrics.json").read_text())
    table = text(out["metrics"])
    for key in ("F1_mean", "action_top5"):
        assert re.search(rf"^{key} +{100 * metrics['val'][key]:.2f} +{100 * metrics['test'][key]:.2f}$", table, re.M)
    curves = text(out["curves"])
    assert "from csv: csv/metrics.csv" in curves and "train/loss_epoch" in curves and "val/F1_mean" in curves
    assert images(out["curves"]) == 1
    per_class = text(out["per-class"])
    mean, logged = re.search(r"mean per-class F1: ([\d.]+); metrics.json action_F1_macro: ([\d.e-]+)", per_class).groups()
    assert float(mean) == pytest.approx(float(logged), abs=1e-6)
    assert images(out["per-class"]) == 1
    assert images(out["figures"]) >= 2  # the confusion matrices, and the W&B run's images
    predicted = text(out["predict"]).splitlines()
    assert predicted[0].startswith("best_epoch000.ckpt on ") and len(predicted) == 6


def test_explore_run_on_a_run_only_wandb_logged(sweep_logs, tmp_path):
    """A run whose only logger was W&B (offline): the curves come from its run file."""
    job = sweep_logs.jobs[0]
    run = Path(shutil.copytree(job, tmp_path / job.name, symlinks=True,
                               ignore=shutil.ignore_patterns("csv", "tensorboard", "checkpoints")))
    out = execute("explore_run.ipynb", {"RUN": str(run), "PREDICT": False})
    assert f"run: {run}" in text(out["setup"])
    curves = text(out["curves"])
    assert re.search(r"from wandb: wandb/offline-run-[^/]+/run-\w+\.wandb", curves), curves
    assert "train/loss_epoch" in curves and images(out["curves"]) == 1
    assert text(out["predict"]) == ""


def test_sweep_results_on_the_newest_sweep(sweep_logs):
    out = execute("sweep_results.ipynb")
    assert f"sweeps: {sweep_logs.sweep}" in text(out["table"])
    (md,) = [o["data"]["text/markdown"] for o in out["table"] if "text/markdown" in o.get("data", {})]
    jobs = results.collect([sweep_logs.sweep])
    assert md == results.build_table(jobs, "test").to_markdown(title=True, notes=True)
    assert "| 0 |" in md and "| 5 |" in md and " ± " in md
    assert images(out["curve"]) == 1
    assert (sweep_logs.sweep / "results" / "F1_mean_vs_loss.alpha_test.png").is_file()

    per_class = text(out["per-class"])
    for alpha in ("0", "5"):
        line = re.search(rf"^loss.alpha={alpha} +2 +\d+ +([\d.]+)", per_class, re.M)
        # per row: the mean over classes of the class F1s averaged over the two seeds
        f1 = {}
        for j in jobs:
            if j.overrides["loss.alpha"] == alpha:
                for c, v in results.per_class_f1(j.path / "predictions_test.csv").items():
                    f1.setdefault(c, []).append(v["f1"])
        want = sum(sum(v) / len(v) for v in f1.values()) / len(f1)
        assert float(line.group(1)) == pytest.approx(want, abs=1e-4)
    assert images(out["per-class"]) == 1

    changes = text(out["changes"])
    before, after = sweep_logs.jobs[0], sweep_logs.jobs[1]  # seed 0: alpha 0, then alpha 5
    assert changes.startswith(f"{before.parent.name}/{before.name} -> {after.parent.name}/{after.name}: 16 clips")
    want = results.confusion_changes(before / "predictions_test.csv", after / "predictions_test.csv")
    assert f"fixed: {sum(c['clips'] for c in want['fixed'])} clips in {len(want['fixed'])} confusions" in changes
    assert f"broken: {sum(c['clips'] for c in want['broken'])} clips in {len(want['broken'])} confusions" in changes

    tsne = text(out["tsne"])
    assert tsne.count("52 clips, features of size") == 2
    assert images(out["tsne"]) == 1
