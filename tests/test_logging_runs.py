"""What a run leaves in its loggers and its log, read back from the files: the offline W&B run (its
``.wandb`` transaction log and media files, read by ``wandb_offline``), the TensorBoard event files,
``csv/metrics.csv``, the console and ``train.log``.

One tiny real train.py job (a subprocess, so Hydra's logging is set up as for a user) with the CSV,
TensorBoard and W&B loggers, two epochs, the final evaluation on the whole val split; then the same job
resumed in its folder (``ckpt_path=auto``, one more epoch, in this process), which must continue the same
W&B run. Numbers are checked against sklearn on the run's own per-clip predictions.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import BASE_TINY, REPO, compose_train, user_env
from wandb_offline import offline_runs

EPOCHS = 2
ARGS = [*(a for a in BASE_TINY if not a.startswith(("logger=", "trainer.max_epochs=", "trainer.limit_val_batches="))),
        f"trainer.max_epochs={EPOCHS}", "logger=[csv,tensorboard,wandb]", "logger.wandb.log_model=true",
        # the whole val split (52 clips) in one batch: every class scored
        "trainer.limit_val_batches=1.0", "data.eval_batch_size=52"]


def _wandb_env(env: dict[str, str], home: Path) -> dict[str, str]:
    return {**env, "WANDB_MODE": "offline", "WANDB_DIR": str(home / "wandb_dir"),
            "WANDB_CONFIG_DIR": str(home / "wandb_config"), "WANDB_CACHE_DIR": str(home / "wandb_cache"),
            "WANDB_DATA_DIR": str(home / "wandb_data")}


@pytest.fixture(scope="module")
def logged_run(tiny_root, tmp_path_factory) -> dict:
    """The first job's run folder and output, what its files held before the resumed job, and that job's."""
    import torch

    from microaction.pipeline import train

    work = tmp_path_factory.mktemp("logged_run")
    run_dir = work / "run"
    args = [*ARGS, f"data.root={tiny_root}"]
    env = _wandb_env(user_env(work), work)
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args, f"hydra.run.dir={run_dir}"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    first = {"csv": (run_dir / "csv" / "metrics.csv").read_text(),
             "metrics": json.loads((run_dir / "metrics.json").read_text()),
             "events": sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")),
             "wandb_id": (run_dir / "wandb_run_id").read_text().strip(),
             # the checkpoints as the first job left them (the resumed job rewrites last.ckpt)
             "checkpoints": {p.name: _md5(p) for p in (run_dir / "checkpoints").glob("*.ckpt")}}

    # the same job again in its folder: it resumes from last.ckpt and runs a third epoch
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _wandb_env({"MICROACTION_OFFLINE": "1", "HOME": str(work)}, work).items():
            mp.setenv(key, value)
        for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
            mp.delenv(key, raising=False)
        resumed = train(compose_train([*args, "trainer.max_epochs=3", "test=false", "trainer.limit_val_batches=1",
                                       "data.eval_batch_size=4"], run_dir))
    torch.set_num_threads(threads)
    return {"run_dir": run_dir, "stdout": proc.stdout, "stderr": proc.stderr, "first": first, "resumed": resumed}


def _md5(path: Path) -> str:
    """A file's MD5 as W&B's manifests write it (base64)."""
    return base64.b64encode(hashlib.md5(Path(path).read_bytes()).digest()).decode()


def _csv_rows(text: str) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(text.splitlines())]


def _predictions(run_dir: Path, split: str) -> list[dict[str, str]]:
    with (run_dir / f"predictions_{split}.csv").open() as f:
        return list(csv.DictReader(f))


# --- W&B ---------------------------------------------------------------------------------------------------


def test_wandb_config_holds_the_resolved_config_once_nested_with_the_overrides(logged_run):
    run_dir = logged_run["run_dir"]
    first = offline_runs(run_dir)[0]
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    mine = {k for k in first.config if k != "_wandb"}
    # each key once, at its place: no hyperparameter of the task or datamodule repeated at the top level
    assert mine == set(resolved) | {"overrides"}, mine ^ (set(resolved) | {"overrides"})
    assert first.config["data"]["num_segments"] == resolved["data"]["num_segments"] == 2
    assert first.config["optimizer"] == resolved["optimizer"]
    assert first.config["overrides"] == [*ARGS, f"data.root={resolved['data']['root']}"]
    # the run's name: its overrides (no name configured, not a sweep)
    assert first.name.startswith("experiment=quickstart,data.generate=null") and first.group == ""


def test_wandb_summary_holds_the_best_value_and_the_final_evaluation(logged_run):
    run_dir, metrics = logged_run["run_dir"], logged_run["first"]["metrics"]
    first = offline_runs(run_dir)[0]
    (definition,) = [m for m in first.metrics if m.name == "val/F1_mean"]
    assert definition.summary.max and definition.step_metric == "trainer/global_step"
    curve = [row["val/F1_mean"] for row in first.history if "val/F1_mean" in row]
    assert len(curve) == EPOCHS
    assert first.summary["val/F1_mean"] == {"max": pytest.approx(max(curve))}
    # the final evaluation of the best checkpoint: summary values, as metrics.json holds them
    for split in ("val", "test"):
        for key, value in metrics[split].items():
            assert first.summary[f"eval/{split}/{key}"] == pytest.approx(value, abs=1e-6), (split, key)


def test_wandb_has_the_confusion_matrices_and_tables_of_the_final_evaluation(logged_run, tiny_root):
    from sklearn.metrics import confusion_matrix, f1_score

    from microaction.labels import LabelSpace

    run_dir, metrics = logged_run["run_dir"], logged_run["first"]["metrics"]
    first = offline_runs(run_dir)[0]
    space = LabelSpace.ma52()
    train_counts = Counter(int(line.split()[-1]) for line in (tiny_root / "train_list_videos.txt").read_text().split("\n")
                           if line.strip())
    for split in ("val", "test"):
        rows = _predictions(run_dir, split)
        y_true, y_pred = [int(r["label"]) for r in rows], [int(r["pred"]) for r in rows]
        # the PNGs the run wrote, as images
        for name in ("confusion_fine", "confusion_body"):
            assert first.summary[f"eval/{split}/{name}"]["_type"] == "image-file"
            assert first.media(f"eval/{split}/{name}").read_bytes() == (run_dir / f"{name}_{split}.png").read_bytes()
        # W&B's confusion charts, from the per-clip predictions
        for name, truth, pred, names in (("fine", y_true, y_pred, space.classes),
                                         ("body", [int(r["body"]) for r in rows], [int(r["pred_body"]) for r in rows],
                                          space.coarse_classes)):
            chart = first.table(f"eval/{split}/confusion_{name}_chart_table")
            expected = confusion_matrix(truth, pred, labels=range(len(names)))
            got = np.zeros_like(expected)
            index = {n: i for i, n in enumerate(names)}
            for actual, predicted, count in chart["data"]:
                got[index[actual], index[predicted]] = count
            np.testing.assert_array_equal(got, expected)
            assert f"eval/{split}/confusion_{name}_chart" in first.config["_wandb"]["visualize"]
        # per-class F1: sklearn's on the classes present; none for a class neither true nor predicted
        table = first.table(f"eval/{split}/per_class_F1")
        assert table["columns"] == ["class_id", "class", "body_part", "train_clips", "support", "F1"]
        present = sorted(set(y_true) | set(y_pred))
        reference = dict(zip(present, f1_score(y_true, y_pred, labels=present, average=None, zero_division=0)))
        support = Counter(y_true)
        assert len(table["data"]) == 52
        for class_id, name, body, count, n, f1 in table["data"]:
            assert (name, body) == (space.classes[class_id], space.coarse_classes[space.fine_to_coarse[class_id]])
            assert count == train_counts[class_id] and n == support[class_id]
            assert f1 == (pytest.approx(reference[class_id]) if class_id in present else None), class_id
        # the per-clip predictions as a table: the rows of predictions_<split>.csv
        predictions = first.table(f"eval/{split}/predictions")
        assert predictions["columns"] == list(rows[0])
        assert [str(r[0]) for r in predictions["data"]] == [r["video"] for r in rows]
        assert [r[predictions["columns"].index("pred")] for r in predictions["data"]] == y_pred
    assert len(_predictions(run_dir, "val")) == 52
    table = first.table("eval/metrics")
    assert [r[0] for r in table["data"]] == ["val", "test"]
    for row in table["data"]:
        for key, value in zip(table["columns"][1:], row[1:]):
            assert value == pytest.approx(metrics[row[0]][key], abs=1e-6)


def test_an_offline_run_logs_its_best_and_last_checkpoints_as_artifacts(logged_run):
    """logger.wandb.log_model=true in an offline run (Lightning refuses it there): the best and the last
    checkpoint as versions of the model-<run id> artifact, their contents those of the files."""
    first = offline_runs(logged_run["run_dir"])[0]
    best = Path(logged_run["first"]["metrics"]["best_checkpoint"]).name
    assert best != "last.ckpt" and set(logged_run["first"]["checkpoints"]) == {best, "last.ckpt"}
    logged = {}
    for artifact in (a for a in first.artifacts if a.type == "model"):  # the tables are artifacts too
        assert artifact.name == f"model-{first.run_id}"
        (entry,) = artifact.manifest.contents
        assert entry.path == "model.ckpt"
        # W&B adds "latest" to each version as it is logged (the server keeps it on the newest)
        logged[json.loads(artifact.metadata)["original_filename"]] = (set(artifact.aliases) - {"latest"},
                                                                      entry.digest)
    checkpoints = logged_run["first"]["checkpoints"]
    assert logged == {best: ({"best"}, checkpoints[best]), "last.ckpt": ({"last"}, checkpoints["last.ckpt"])}
    assert f"W&B: checkpoint(s) {best}, last.ckpt logged as artifact model-{first.run_id}" in logged_run["stdout"]


def test_resumed_job_continues_the_same_wandb_run(logged_run):
    run_dir = logged_run["run_dir"]
    runs = offline_runs(run_dir)
    assert len(runs) == 2  # the first job's and the resumed job's, one W&B run id
    assert runs[0].run_id == runs[1].run_id == logged_run["first"]["wandb_id"]
    assert (run_dir / "wandb_run_id").read_text().strip() == runs[0].run_id
    # the resumed job trained the third epoch only
    assert sorted({row["epoch"] for row in runs[1].history if "epoch" in row}) == [2]
    rows = _csv_rows((run_dir / "csv" / "metrics.csv").read_text())
    assert sorted({int(r["epoch"]) for r in rows if "train/loss_epoch" in r}) == [0, 1, 2]


# --- no phantom epoch ----------------------------------------------------------------------------------------


def test_the_final_evaluation_is_no_extra_epoch_in_any_logger(logged_run):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    first, metrics = logged_run["first"], logged_run["first"]["metrics"]
    rows = _csv_rows(first["csv"])
    assert sorted({int(r["epoch"]) for r in rows if "epoch" in r}) == list(range(EPOCHS))
    assert len([r for r in rows if "train/loss_epoch" in r]) == len([r for r in rows if "val/F1_mean" in r]) == EPOCHS
    (val,) = [r for r in rows if "eval/val/F1_mean" in r]
    (test,) = [r for r in rows if "eval/test/F1_mean" in r]
    for row, split in ((val, "val"), (test, "test")):
        assert "epoch" not in row and float(row[f"eval/{split}/F1_mean"]) == pytest.approx(metrics[split]["F1_mean"])

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in first["events"]:
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:  # the loader gives scalars as the scalars plugin's tensors
                if v.metadata.plugin_data.plugin_name == "scalars":
                    scalars.setdefault(v.tag, []).append((event.step, float(tensor_util.make_ndarray(v.tensor))))
    assert len(scalars["train/loss_epoch"]) == len(scalars["val/F1_mean"]) == EPOCHS
    assert sorted({int(v) for _, v in scalars["epoch"]}) == list(range(EPOCHS))
    assert [v for _, v in scalars["eval/val/F1_mean"]] == [pytest.approx(metrics["val"]["F1_mean"])]

    history = offline_runs(logged_run["run_dir"])[0].history
    assert sorted({row["epoch"] for row in history if "epoch" in row}) == list(range(EPOCHS))
    assert len([row for row in history if "val/F1_mean" in row]) == EPOCHS
    assert not [row for row in history if any(k.startswith("test/") for k in row)]


# --- TensorBoard ---------------------------------------------------------------------------------------------


def test_tensorboard_has_the_figures_tables_and_an_hparams_session(logged_run):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    tags: dict[str, str] = {}
    hparams: dict[str, object] = {}
    metric_tags: list[str] = []
    for path in logged_run["first"]["events"]:
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                plugin = v.metadata.plugin_data.plugin_name
                tags[v.tag] = plugin
                if plugin == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                    if data.WhichOneof("data") == "experiment":
                        metric_tags = [m.name.tag for m in data.experiment.metric_infos]
                    elif data.WhichOneof("data") == "session_start_info":
                        hparams = {k: getattr(h, h.WhichOneof("kind")) for k, h in data.session_start_info.hparams.items()}
    for split in ("val", "test"):
        assert tags[f"eval/{split}/confusion_fine"] == tags[f"eval/{split}/confusion_body"] == "images"
        assert tags[f"eval/{split}/per_class_F1/text_summary"] == "text"
    assert tags["eval/metrics/text_summary"] == "text"
    # the HParams view: the config's values, the optimized metric's curve, best and final value as its metrics
    assert metric_tags[:1] == ["val/F1_mean"] and "eval/val/F1_mean" in metric_tags
    assert all(t in tags for t in metric_tags)  # each a scalar the run logged
    resolved = yaml.safe_load((logged_run["run_dir"] / "config_resolved.yaml").read_text())
    assert hparams["optimizer/lr"] == pytest.approx(resolved["optimizer"]["lr"])
    assert hparams["data/num_segments"] == 2 and hparams["model/name"] == "manet"


# --- the console and train.log ------------------------------------------------------------------------------


def test_console_and_train_log_are_readable(logged_run):
    out, err = logged_run["stdout"], logged_run["stderr"]
    console = out + err
    # Lightning's messages once, through the job's handlers (not again by Lightning's own handler)
    assert console.count("GPU available:") == 1 and "INFO: " not in err
    assert console.count("Seed set to 0") == 1
    # the model summary ran the example clip: input sizes and FLOPs (0 without it)
    flops = re.search(r"Total FLOPs: ([\d.]+) ?([KMGT]?)", console)
    assert flops and float(flops.group(1)) > 0 and "In sizes" in console, console[:5000]
    # the progress bar (rich's, as it prints without a terminal) shows the loss and the optimized metric only
    bars = re.findall(r"^Epoch \d+/\d+ .*?(?=^\S)", out, flags=re.M | re.S)
    shown = set(re.findall(r"([a-z_]+/[\w/]+):", "".join(bars)))
    assert bars and shown == {"train/loss_step", "train/loss_epoch", "val/F1_mean"}, shown

    log = (logged_run["run_dir"] / "train.log").read_text()
    lines = [line for line in log.splitlines() if "] - epoch " in line]
    assert [re.search(r"epoch (\d+)/(\d+)", line).groups() for line in lines] == [(str(e), str(EPOCHS))
                                                                                   for e in range(EPOCHS)]
    rows = _csv_rows(logged_run["first"]["csv"])
    for epoch, line in enumerate(lines):
        (row,) = [r for r in rows if r.get("epoch") == str(epoch) and "train/loss_epoch" in r]
        assert f"train: loss {float(row['train/loss_epoch']):.4g}" in line
        (val,) = [r for r in rows if r.get("epoch") == str(epoch) and "val/F1_mean" in r]
        assert f"F1_mean {float(val['val/F1_mean']):.4g}" in line.split("val: ")[1]
    assert log.count("GPU available:") == 1
    # the final metric table is in the log, its values those of metrics.json (in %)
    table = log[log.index("final metrics"):]
    f1 = logged_run["first"]["metrics"]["val"]["F1_mean"]
    (row,) = [line for line in table.splitlines() if re.match(r"\W*F1_mean\b", line.replace("│", " ").strip())]
    assert f"{100 * f1:.2f}" in row and "clips scored" in table
