"""scripts/compare_recipes.py: its refusals, its table over seeds against numpy, what three crops are at the
recipe's size, and a real run of the documented command (one seed, tiny size)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
import yaml

from helpers import PROCEDURAL_TINY, REPO, run_as_typed

spec = importlib.util.spec_from_file_location("compare_recipes", REPO / "scripts" / "compare_recipes.py")
compare_recipes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_recipes)


@pytest.mark.parametrize("argv, message", [
    (["--rows", "views"], "views evaluates the baseline's checkpoints"),
    (["--rows", "baseline", "baseline"], "baseline given more than once"),
    (["--seeds", "0", "0"], "--seeds: 0 given more than once"),
    (["--", "data.sampler=random"], "data.sampler is what the rows compare"),
    (["--", "data.test_views.clips=2"], "data.test_views.clips is what the rows compare"),
    (["--test-clips", "0"], "--test-clips 0: expected 1 to 32"),
    (["--jobs", "0"], "--jobs 0: expected at least 1"),
    (["--test-crops", "2"], "invalid choice: 2"),
    # procedural_manet validates every 4th epoch: one epoch writes no checkpoint for the views row
    (["--epochs", "1"], "trainer.check_val_every_n_epoch=4 > trainer.max_epochs=1"),
])
def test_bad_arguments_are_refused_before_any_work(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as err:
        compare_recipes.main(["--out", str(tmp_path), *argv])
    assert err.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing generated, nothing trained


def test_parallel_runs_keep_their_order_and_stop_at_a_failure():
    """run_parallel: results in the calls' order whatever order they finish in; a failure cancels the calls
    not started, lets the running ones finish, and is raised."""
    import threading
    import time

    from microaction.utils.comparison import run_parallel, threads_per_job

    finished = []

    def call(i, delay):
        def run():
            time.sleep(delay)
            finished.append(i)
            return i * 10
        return run

    assert run_parallel([call(0, 0.2), call(1, 0.0), call(2, 0.1)], jobs=3) == [0, 10, 20]
    assert finished.index(1) < finished.index(0)  # they did run at once
    assert run_parallel([call(3, 0), call(4, 0)], jobs=1) == [30, 40]

    started, release = [], threading.Event()

    def failing():
        started.append("fail")
        raise SystemExit("row x: train.py failed")

    def slow():
        started.append("slow")
        release.wait(5)
        return "slow done"

    def never():
        started.append("never")

    threading.Timer(0.3, release.set).start()
    with pytest.raises(SystemExit, match="row x"):
        run_parallel([slow, failing, never], jobs=2)
    assert "never" not in started and release.is_set()  # the running call finished before the error came
    assert threads_per_job(1) is None and threads_per_job(10**6) == 1
    with pytest.raises(ValueError, match="jobs=0"):
        threads_per_job(0)


def test_each_trained_row_is_the_recipe_plus_its_one_switch():
    from omegaconf import OmegaConf

    from microaction.utils.comparison import compose_train

    def flat(cfg, prefix=""):
        out = {}
        for key, value in cfg.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    def composed(switch):
        return flat(OmegaConf.to_container(compose_train(REPO, "procedural_manet", switch), resolve=False))

    base = composed([])
    want = {"baseline": {}, "balanced": {"data.sampler": "class_balanced"},
            "hierarchical": {"model.head": "hierarchical"}, "reweight": {"loss.reweight": "body_inverse_freq"}}
    assert set(compare_recipes.SWITCHES) == set(want)
    for row, switch in compare_recipes.SWITCHES.items():
        cfg = composed(switch)
        assert {k: v for k, v in cfg.items() if base.get(k) != v} == want[row], row


def test_table_cells_are_mean_and_sample_std_over_seeds():
    rng = np.random.default_rng(0)
    runs = {row: {seed: {c: float(rng.random()) for c in compare_recipes.COLUMNS} | {"seconds": 100 + 10 * seed}
                  for seed in (0, 1, 2)} for row in ("baseline", "views")}
    results = {row: compare_recipes.over_seeds(by_seed) for row, by_seed in runs.items()}
    table = compare_recipes.comparison_table(results, [0, 1, 2], clips=3, crops=3)
    header, _, *lines = table.to_markdown().splitlines()
    header = [c.strip() for c in header.strip("|").split("|")]
    assert header[:2] == ["row", "switch"] and header[-1] == "n"
    for line, (row, by_seed) in zip(lines, runs.items()):
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        assert cells["row"] == row and cells["n"] == "3"
        for c in compare_recipes.COLUMNS:
            values = 100 * np.array([by_seed[s][c] for s in (0, 1, 2)])
            assert cells[c] == f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"
            assert results[row][c] == pytest.approx(values.mean() / 100)
        assert cells["train or eval s"] == "110 ± 10"
    assert "data.test_views.clips=3 data.test_views.crops=3" in lines[1]


def test_three_crops_at_the_recipes_size_are_the_training_crops_extremes():
    """What the docs say of the views row: procedural_manet's 48 x 40 clips decode to 32 x 38 (short side 32);
    the three 32 x 32 test crops start 0, 3 and 6 rows from the top, the centre crop at 3, and the training
    crop (scales [1.0]) at any of 0..6."""
    import random

    from hydra import compose, initialize_config_dir

    from microaction.data.transforms import CenterCrop, MultiScaleCrop, ThreeCrop
    from microaction.data.video import scaled_size

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        data = compose("train", overrides=["experiment=procedural_manet"]).data
    height, width = data.generate_kwargs.size
    w, h = scaled_size(width, height, data.short_side)
    assert (w, h) == (32, 38) and data.input_size == 32
    # each pixel holds its row: a crop's first row is where it starts
    clip = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(2, 3, h, w).contiguous()
    assert [int(c[0, 0, 0, 0]) for c in ThreeCrop(data.input_size)(clip)] == [0, 3, 6]
    assert int(CenterCrop(data.input_size)(clip)[0, 0, 0, 0]) == 3
    random.seed(0)
    train = MultiScaleCrop(data.input_size, scales=list(data.scales), flip_p=0.0)
    assert {int(train(clip)[0, 0, 0, 0]) for _ in range(200)} == set(range(7))


def test_compare_recipes_as_documented(checkout):
    """`python scripts/compare_recipes.py` from the root of a copy of the repository, with one seed, two of the
    trained rows (each a train.py process, both at once with --jobs 2: the switches alone are checked above) and tiny sizes appended, one
    validation and one test batch: the baseline and the hierarchical head trained, eval.py with 3 x 3 views of
    the baseline's best checkpoint, the table and the JSON line; every figure is the run's own (metrics.json,
    its predictions)."""
    from sklearn.metrics import f1_score

    from microaction.labels import LabelSpace
    from microaction.results import head_tail_f1, read_predictions

    runs = checkout / "logs" / "compare_recipes"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    proc = run_as_typed("python scripts/compare_recipes.py", checkout, [
        "--seeds", "0", "--rows", "baseline", "hierarchical", "views", "--epochs", "1", "--jobs", "2", "--",
        *PROCEDURAL_TINY,
        "trainer.check_val_every_n_epoch=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"])
    (out,) = [p for p in runs.iterdir() if p not in before]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(summary["results"]) == ["baseline", "hierarchical", "views"]
    assert summary["views"] == {"clips": 3, "crops": 3} and summary["seeds"] == [0]
    table = (out / "comparison.md").read_text()
    for row, r in summary["results"].items():
        run = out / "seed0" / row
        test = json.loads((run / "metrics.json").read_text())["test"]
        assert r["F1_mean"] == pytest.approx(test["F1_mean"])
        assert r["action_F1_macro"] == pytest.approx(test["action_F1_macro"])
        assert r["F1_tail"] == pytest.approx(head_tail_f1(run / "predictions_test.csv", LabelSpace.ma52().train_counts)
                                             ["F1_tail"])
        # the tail's F1 against sklearn over the 17 classes with the fewest MA-52 training clips
        rows = read_predictions(run / "predictions_test.csv")
        tail = list(np.argsort(-np.array(LabelSpace.ma52().train_counts), kind="stable")[-17:])
        assert r["F1_tail"] == pytest.approx(f1_score([x["label"] for x in rows], [x["pred"] for x in rows],
                                                      labels=tail, average="macro", zero_division=0))
        assert f"| {row} |" in table and f" {100 * r['F1_mean']:.2f} |" in table
    config = {row: yaml.safe_load((out / "seed0" / row / "config_resolved.yaml").read_text())
              for row in ("baseline", "hierarchical")}
    assert [config[row]["model"]["head"] for row in config] == ["linear", "hierarchical"]
    # the views row: eval.py of the baseline's best checkpoint with 3 x 3 views, scoring other logits than
    # the baseline's single view of the same weights and clips
    views = out / "seed0" / "views"
    trained = json.loads((out / "seed0" / "baseline" / "metrics.json").read_text())
    ckpt = trained.get("best_checkpoint") or str(out / "seed0" / "baseline" / "checkpoints" / "last.ckpt")
    assert summary["results"]["views"]["runs"]["0"]["checkpoint"] == ckpt
    overrides = yaml.safe_load((views / ".hydra" / "overrides.yaml").read_text())
    assert {"split=test", "data.test_views.clips=3", "data.test_views.crops=3"} <= set(overrides)
    single = np.load(out / "seed0" / "baseline" / "logits_test.npz")
    multi = np.load(views / "logits_test.npz")
    assert list(single["names"]) == list(multi["names"]) and len(multi["names"]) == 8  # one test batch
    assert not np.allclose(single["logits"], multi["logits"])
