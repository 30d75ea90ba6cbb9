"""microaction.results and scripts/collect_results.py on a real sweep (the session's ``tiny_sweep``): the table's
figures against a hand computation from the jobs' metrics.json files, the files it writes, the jobs it names
(failed, running, stopped, missing), a job that really failed, the three loggers' histories of one run, and the
per-clip figures against scikit-learn."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, user_env
from microaction import results
from microaction.metrics import METRIC_KEYS


def _metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def _hand_rows(sweep, split: str) -> dict[str, dict[str, tuple[float, float]]]:
    """{alpha: {metric: (mean, sample std) in %}} from the metrics.json files, grouped by the folder names."""
    by_alpha: dict[str, list[dict]] = {}
    for job in sweep.jobs:
        alpha = job.name.split("loss.alpha=")[1]
        by_alpha.setdefault(alpha, []).append(_metrics(job)[split])
    return {a: {m: (statistics.mean(100 * r[m] for r in rs), statistics.stdev(100 * r[m] for r in rs))
                for m in METRIC_KEYS} for a, rs in by_alpha.items()}


def test_the_table_is_the_mean_and_sample_std_over_seeds(tiny_sweep):
    jobs = results.collect([tiny_sweep.sweep])
    assert [j.status for j in jobs] == ["done"] * 4
    assert results.swept_keys(jobs) == ["loss.alpha"]  # the seed is folded, the fixed overrides are not rows
    for split in ("val", "test"):
        table = results.build_table(jobs, split)
        want = _hand_rows(tiny_sweep, split)
        assert [r.labels for r in table.rows] == [["0"], ["5"]]
        for row in table.rows:
            assert row.n == 2
            for m in METRIC_KEYS:
                assert row.cells[m].mean == pytest.approx(want[row.labels[0]][m][0], abs=1e-9)
                assert row.cells[m].std == pytest.approx(want[row.labels[0]][m][1], abs=1e-9)
    # the figures are not all alike: the test would notice a wrong grouping
    f1 = [_metrics(j)["val"]["F1_mean"] for j in tiny_sweep.jobs]
    assert len(set(f1)) > 1, f1
    # every job has both splits' metrics, so `auto` takes test
    assert results.choose_split(jobs) == "test"


def test_collect_results_writes_markdown_csv_latex_and_the_plot(tiny_sweep, tmp_path):
    """`python scripts/collect_results.py <sweep>` as the docs print it, here with --out and --split."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "scripts/collect_results.py", str(tiny_sweep.sweep), "--split", "val",
                           "--out", str(out)], cwd=REPO, env=user_env(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 2 and summary["runs"] == 4 and summary["jobs"] == {"done": 4}
    want = _hand_rows(tiny_sweep, "val")

    md = (out / "table_val.md").read_text()
    for alpha, figures in want.items():
        mean, std = figures["F1_mean"]
        assert f"| {alpha} | {mean:.2f} ± {std:.2f} |" in md
    assert md in proc.stdout + "\n"

    with (out / "table_val.csv").open() as f:
        rows = {r["loss.alpha"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"0", "5"}
    for alpha, figures in want.items():
        assert int(rows[alpha]["n"]) == 2
        for m, (mean, std) in figures.items():
            assert float(rows[alpha][m]) == pytest.approx(mean, rel=1e-5, abs=1e-9)
            assert float(rows[alpha][f"{m}_std"]) == pytest.approx(std, rel=1e-5, abs=1e-9)

    tex = (out / "table_val.tex").read_text()
    assert "\\begin{tabular}{lrrrrrrrrr}" in tex and tex.count("\\\\") == 3  # header + 2 rows
    assert "loss.alpha & F1\\_mean" in tex and "$\\pm$" in tex

    import matplotlib.image

    png = Path(summary["files"]["plot"])
    assert png == out / "F1_mean_vs_loss.alpha_val.png"
    assert matplotlib.image.imread(png).ndim == 3
    with (out / "jobs.csv").open() as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["done"] * 4


def test_the_paper_layout_table4(tiny_sweep, tmp_path):
    """`python scripts/collect_results.py <sweep> --layout table4`: Table IV's rows and the paper's figures."""
    proc = subprocess.run([sys.executable, "scripts/collect_results.py", str(tiny_sweep.sweep), "--layout", "table4",
                           "--out", str(tmp_path)], cwd=REPO, env=user_env(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "table4_test.md").read_text().splitlines()
    assert md[0] == "**Table IV: loss weight alpha, test split (%), mean ± sample std over seeds**"
    assert md[2].startswith("| alpha | F1_mean | body_F1_macro | action_F1_macro |")
    assert md[2].endswith("| n | paper F1_mean |")
    want = _hand_rows(tiny_sweep, "test")
    for line, alpha, paper in ((md[4], "0", "63.55"), (md[5], "5", "65.59")):
        mean, std = want[alpha]["F1_mean"]
        assert line.startswith(f"| α={alpha} | {mean:.2f} ± {std:.2f} |") and line.endswith(f"| 2 | {paper} |")
    assert "- rows of the paper without a run here: α=0.1, α=1, α=2, α=10 (the paper's sweep: " in md[-1]
    assert "$\\alpha$=5" in (tmp_path / "table4_test.tex").read_text()
    assert (tmp_path / "F1_mean_vs_loss.alpha_test.png").is_file()
    jobs = results.collect([tiny_sweep.sweep])
    # Table III's rows vary data.num_segments only: these jobs vary loss.alpha
    with pytest.raises(ValueError, match=r"--layout table3: the jobs also differ in loss.alpha \(0, 5\)"):
        results.build_table(jobs, "test", "table3")


def test_layouts_name_their_rows_from_experiments_or_config():
    def job(**kw):
        return results.Job(name="j", **kw)

    assert results.LAYOUTS["table2"].row_of(job(choices={"experiment": "ma52_slowfast", "model": "slowfast"})) == "SlowFast"
    # a sweep over model= in another recipe (the quickstart)
    assert results.LAYOUTS["table2"].row_of(job(choices={"experiment": "quickstart", "model": "manet_r18"})) == "MANet"
    t5 = results.LAYOUTS["table5"]
    assert t5.row_of(job(choices={"experiment": "ma52_wo_se"})) == "w/o SE"
    for name, alpha, want in (("tsm", 0.0, "Baseline"), ("tsm", 5.0, "w/o SE"), ("manet", 0.0, "w/o emb"),
                              ("manet", 0.1, "MANet")):
        assert t5.row_of(job(config={"model": {"name": name}, "loss": {"alpha": alpha}})) == want
    # the override as typed wins over the config, and numbers print without trailing zeros
    assert results.LAYOUTS["table4"].row_of(job(overrides={"loss.alpha": "5.0"}, config={"loss": {"alpha": 1}})) == "5"
    assert results.LAYOUTS["table3"].row_of(job(config={"data": {"num_segments": 16}})) == "16"


@pytest.mark.parametrize("experiment,row", [("ma52_tsm", "Baseline"), ("ma52_wo_se", "w/o SE"),
                                            ("ma52_wo_emb", "w/o emb"), ("ma52_manet", "MANet")])
def test_table5_experiments_compose_to_their_rows(experiment, row, tmp_path):
    """Each experiment of Table V's sweep, composed as train.py composes it: its network and loss weight give its
    row (what --layout table5 reads from a job's config when the experiment is not known)."""
    from helpers import compose_train
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose_train([f"experiment={experiment}"], tmp_path), resolve=False)
    assert results.LAYOUTS["table5"].row_of(results.Job(name=experiment, config=cfg)) == row
    assert results.LAYOUTS["table5"].row_of(results.Job(name=experiment, choices={"experiment": experiment})) == row


def _copy_sweep(sweep: Path, dest: Path) -> Path:
    return Path(shutil.copytree(sweep, dest, ignore=shutil.ignore_patterns("*.ckpt", "wandb", "tensorboard")))


def test_jobs_without_metrics_are_named_with_their_state(tiny_sweep, tmp_path):
    """A sweep still running: job 1 failed (its log ends with a traceback), job 2 is running (no metrics.json yet,
    files just written), job 3 has not started (no folder; multirun.yaml lists it)."""
    sweep = _copy_sweep(tiny_sweep.sweep, tmp_path / tiny_sweep.sweep.name)
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()), key=lambda p: p.name)
    (jobs[1] / "metrics.json").unlink()
    with (jobs[1] / "train.log").open("a") as f:
        f.write("[2026-01-01 00:00:00,000][microaction.job][ERROR] - job failed: RuntimeError: out of memory\n"
                "Traceback (most recent call last):\n  File \"train.py\", line 1, in <module>\n    main()\n"
                "RuntimeError: out of memory\n")
    (jobs[2] / "metrics.json").unlink()
    shutil.rmtree(jobs[3])

    found = {j.number: j for j in results.collect([sweep])}
    assert [found[i].status for i in range(4)] == ["done", "failed", "running", "missing"]
    assert found[1].detail == "RuntimeError: out of memory (see train.log)"
    assert found[3].overrides == {**found[2].overrides, "seed": "1", "loss.alpha": "5"}
    # long idle: stopped, not running
    later = {j.number: j for j in results.collect([sweep], now=time.time() + 2 * results.STALE_AFTER_S)}
    assert later[2].status == "stopped" and "killed" in later[2].detail

    proc = subprocess.run([sys.executable, "scripts/collect_results.py", str(sweep), "--split", "val"], cwd=REPO,
                          env=user_env(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"{sweep.name}/{jobs[1].name}: failed: RuntimeError: out of memory" in out
    assert f"{sweep.name}/{jobs[2].name}: running: no metrics.json yet" in out
    assert f"{sweep.name}/3_(not started): missing: job 3 of the 4 in multirun.yaml has no folder yet" in out
    # the rows count what they hold: alpha 0 one run of two (job 2 running), alpha 5 none (job 1 failed, 3 missing)
    row0 = [ln for ln in out.splitlines() if ln.startswith("| 0 |")][0]
    row5 = [ln for ln in out.splitlines() if ln.startswith("| 5 |")][0]
    assert row0.endswith("| 1 of 2 (1 running) |") and row5.endswith("| 0 of 2 (1 failed, 1 missing) |")
    assert row0.startswith(f"| 0 | {100 * _metrics(jobs[0])['val']['F1_mean']:.2f} |")  # job 0's alone, no ±
    assert row5.startswith("| 5 | - | - |")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["jobs"] == {"done": 1, "failed": 1, "running": 1, "missing": 1}
    assert (sweep / "results" / "table_val.md").is_file()  # the default --out


def test_a_failed_job_leaves_its_traceback_in_its_log(tiny_root, tmp_path):
    """A real failure: the job's log (Hydra's train.log) ends with the error (conf/hydra/default.yaml's callback),
    and collect_results.py names the job and its error and exits 1 (nothing to tabulate)."""
    env = user_env(tmp_path)
    env["MICROACTION_LOGS"] = str(tmp_path / "logs")
    proc = subprocess.run([sys.executable, "train.py", "-m", "experiment=quickstart", f"data.root={tiny_root}",
                           "data.generate=null", "data.batch_size=0"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    (job,) = [p for p in sweep.iterdir() if p.is_dir()]
    log = (job / "train.log").read_text()
    assert "Traceback (most recent call last):" in log and "data.batch_size=0: expected an integer >= 1" in log
    (found,) = results.collect([sweep])
    assert found.status == "failed" and "data.batch_size=0: expected an integer >= 1" in found.detail
    proc = subprocess.run([sys.executable, "scripts/collect_results.py", str(sweep)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{job.name}: failed: " in proc.stdout and "data.batch_size=0" in proc.stdout
    assert "no job has val metrics yet" in proc.stderr


def test_the_three_loggers_histories_agree(tiny_sweep, tmp_path):
    job = tiny_sweep.jobs[0]
    histories = {s: results.load_run_history(job, s) for s in results.HISTORY_SOURCES}
    assert results.load_run_history(job).source == "csv"  # auto: the first there
    for key in ("val/F1_mean", "train/loss_epoch", "train/loss_cls", "train/loss_emb"):
        series = {s: h.series(key) for s, h in histories.items()}
        steps = {s: h.series(key, "step")[0] for s, h in histories.items()}
        assert series["csv"][0], key
        for s in ("tensorboard", "wandb"):
            assert series[s][0] == series["csv"][0] and steps[s] == steps["csv"], (key, s)
            assert series[s][1] == pytest.approx(series["csv"][1], rel=1e-6), (key, s)
    # the epoch's val/F1_mean is the one the checkpoint was chosen on (one epoch: the best is the last)
    best = histories["csv"].last("val/F1_mean_best")
    assert histories["csv"].last("val/F1_mean") == pytest.approx(best)

    # a run still writing: its W&B file cut in the middle of a record reads as far as it is whole
    (run_file,) = histories["wandb"].files
    cut = tmp_path / "wandb" / "offline-run-x" / run_file.name
    cut.parent.mkdir(parents=True)
    data, full = run_file.read_bytes(), histories["wandb"].rows
    seen = set()
    for end in range(len(data) // 32, len(data), len(data) // 32):
        cut.write_bytes(data[:end])
        partial = results.load_run_history(tmp_path, "wandb").rows
        assert partial == full[: len(partial)], end
        seen.add(len(partial))
    assert len(seen & set(range(1, len(full)))) >= 2, seen  # cuts that end inside the history
    cut.write_bytes(b"not a W&B file")
    with pytest.raises(ValueError, match="not a W&B run file"):
        results.load_run_history(tmp_path, "wandb")
    with pytest.raises(FileNotFoundError, match="no csv files"):
        results.load_run_history(tmp_path, "csv")


def test_per_class_f1_and_confusion_changes_against_sklearn(tiny_sweep):
    from sklearn.metrics import f1_score

    job = tiny_sweep.jobs[0]
    rows = list(csv.DictReader((job / "predictions_val.csv").open()))
    y, p = np.array([int(r["label"]) for r in rows]), np.array([int(r["pred"]) for r in rows])
    per_class = results.per_class_f1(job / "predictions_val.csv")
    classes = sorted(set(y) | set(p))
    assert sorted(per_class) == classes
    want = f1_score(y, p, labels=classes, average=None, zero_division=0)
    assert [per_class[c]["f1"] for c in classes] == pytest.approx(list(want))
    # their mean is the run's own fine macro F1
    assert np.mean(want) == pytest.approx(_metrics(job)["val"]["action_F1_macro"], abs=1e-6)
    counts, source = results.train_class_counts(results.load_job(job))
    assert source.endswith("train_list_videos.txt") and counts == [1] * 52  # the tiny data: one clip per class

    other = tiny_sweep.jobs[1]
    changes = results.confusion_changes(job / "predictions_val.csv", other / "predictions_val.csv")
    b = {r["video"]: r for r in csv.DictReader((other / "predictions_val.csv").open())}
    fixed = sum(1 for r in rows if r["pred"] != r["label"] and b[r["video"]]["pred"] == r["label"])
    broken = sum(1 for r in rows if r["pred"] == r["label"] and b[r["video"]]["pred"] != r["label"])
    assert sum(c["clips"] for c in changes["fixed"]) == fixed
    assert sum(c["clips"] for c in changes["broken"]) == broken
    assert changes["clips"] == len(rows) == 16
    assert changes["right_after"] - changes["right_before"] == fixed - broken


def test_clip_features_are_what_the_classifier_sees(tiny_sweep):
    """The head applied to the features gives the run's own predictions (predictions_val.csv, the best checkpoint)."""
    import torch

    from microaction.features import clip_features, load_checkpoint_data, tsne_2d

    job = tiny_sweep.jobs[1]
    ckpt = results.best_checkpoint(job)
    found = clip_features(ckpt, "val")
    assert found["features"].shape[0] == 52 and len(found["names"]) == 52  # the whole split, not the run's limit
    assert list(found["labels"]) == list(range(52))  # the tiny data: clip i is of class i
    module, _ = load_checkpoint_data(ckpt, "val")
    net = module.net
    frames = net.num_segments if net.frame_features else 1
    with torch.no_grad():
        logits = net.forward_head(torch.from_numpy(found["features"]).repeat_interleave(frames, 0))["logits"]
    probs = dict(zip(found["names"], logits.softmax(1).numpy()))
    rows = list(csv.DictReader((job / "predictions_val.csv").open()))
    assert len(rows) == 16
    for r in rows:
        # the 5 highest probabilities (compared as values: a near-tie may order two classes either way)
        want = [float(x) for x in r["top5_prob"].split()]
        assert sorted(probs[r["video"]])[::-1][:5] == pytest.approx(want, abs=2e-6), r["video"]
    assert tsne_2d(found["features"]).shape == (52, 2)


class _FakeRun:
    def __init__(self, name, state, summary, group="2026-01-01_00-00-00"):
        self.name, self.state, self.summary_metrics, self.group, self.id = name, state, summary, group, name
        self.config = {"seed": int(name.split("seed=")[1].split(",")[0]), "loss": {"alpha": float(name.split("=")[-1])}}


class _FakeApi:
    """What load_wandb_jobs uses of wandb.Api: runs(path, filters=...)."""

    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return list(self._runs)


def test_wandb_runs_as_the_source():
    values = {"0_seed=0,loss.alpha=0": 0.10, "1_seed=0,loss.alpha=5": 0.30, "2_seed=1,loss.alpha=0": 0.20,
              "3_seed=1,loss.alpha=5": 0.50}
    # the final evaluation (eval/val/...) is the run's figure; val/... is the last epoch's, or W&B's max of it
    runs = [_FakeRun(n, "finished", {"eval/val/F1_mean": v, "eval/val/body_top1": 2 * v, "val/F1_mean": {"max": 1.0},
                                     "val/body_top1": 0.99, "train/F1_mean": 0.9, "_step": 3})
            for n, v in values.items()]
    # a run from before eval/...: its val/... are taken
    runs[0].summary_metrics = {"val/F1_mean": 0.10, "val/body_top1": 0.20}
    runs.append(_FakeRun("4_seed=2,loss.alpha=5", "crashed", {"train/F1_mean": 0.1}))
    api = _FakeApi(runs)
    jobs = results.load_wandb_jobs("team/microaction", "2026-01-01_00-00-00", api=api)
    assert api.calls == [("team/microaction", {"group": "2026-01-01_00-00-00"})]
    assert [j.status for j in jobs] == ["done"] * 4 + ["failed"]
    assert jobs[1].overrides == {"seed": "0", "loss.alpha": "5"} and jobs[1].value("loss.alpha") == "5"
    table = results.build_table(jobs, "val", metrics=["F1_mean", "body_top1"])
    (r0, r5) = table.rows
    assert r0.cells["F1_mean"].mean == pytest.approx(15.0) and r0.cells["F1_mean"].std == pytest.approx(
        statistics.stdev([10.0, 20.0]))
    assert r5.cells["body_top1"].mean == pytest.approx(80.0) and r5.n == 2
    assert table.notes == ["2026-01-01_00-00-00/4_seed=2,loss.alpha=5: failed: W&B state crashed"]

    class Unreachable:
        def runs(self, path, filters=None):
            raise ConnectionError("Max retries exceeded with url: /graphql")

    with pytest.raises(results.WandbUnavailable, match="the API failed .*ConnectionError.*collect from the run folders"):
        results.load_wandb_jobs("team/microaction", api=Unreachable())
    with pytest.raises(ValueError, match="expected ENTITY/PROJECT"):
        results.load_wandb_jobs("microaction", api=api)


def test_the_metric_names_are_the_benchmarks():
    import microaction.metrics

    assert results.METRIC_KEYS == microaction.metrics.METRIC_KEYS
    assert sorted(results.PAPER_METRICS) == sorted(microaction.metrics.METRIC_KEYS)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        results.collect([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a sweep folder .* nor a run folder"):
        results.collect([tmp_path / "empty"])
    proc = subprocess.run([sys.executable, "scripts/collect_results.py", str(tmp_path / "empty")], cwd=REPO,
                          env={**os.environ, "HOME": str(tmp_path)}, capture_output=True, text=True)
    assert proc.returncode == 2 and "neither a sweep folder" in proc.stderr
