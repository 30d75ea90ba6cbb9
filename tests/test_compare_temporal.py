"""scripts/compare_temporal.py: its pair and head/tail figures against hand counts and sklearn, the ablation
experiments against the paper's, and real runs (one seed; the ablations over two seeds)."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest
import yaml

from helpers import PROCEDURAL_TINY, REPO, run_as_typed

spec = importlib.util.spec_from_file_location("compare_temporal", REPO / "scripts" / "compare_temporal.py")
compare_temporal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_temporal)


def write_predictions(path, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "label", "pred", "top5"])
        for i, (label, top5) in enumerate(rows):
            w.writerow([f"test{i:04d}.mp4", label, top5[0], " ".join(map(str, top5))])


def test_pair_scores_are_averaged_per_class(tmp_path):
    rows = [
        # class 5 (twin 6), three clips: twin ranked first, true first, neither in the top 5
        (5, [6, 5, 1, 2, 3]), (5, [5, 6, 1, 2, 3]), (5, [1, 2, 3, 4, 7]),
        # class 6 (twin 5), one clip: true in the top 5, twin absent
        (6, [9, 6, 1, 2, 3]),
        # class 17 (twin 18): twin present, true absent
        (17, [18, 1, 2, 3, 4]),
        # not a pair class: ignored
        (9, [9, 1, 2, 3, 4]),
    ]
    path = tmp_path / "predictions_test.csv"
    write_predictions(path, rows)
    got = compare_temporal.pair_scores(path, [(5, 6), (17, 18)])
    # per class: 5 -> (0 + 1 + 0.5) / 3, 6 -> 1, 17 -> 0; top-1: 5 -> 1/3, 6 -> 0, 17 -> 0
    assert got["pair_acc"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert got["pair_top1"] == pytest.approx((1 / 3) / 3)
    assert got["pair_clips"] == 5 and got["pair_classes"] == 3


def test_an_order_blind_model_scores_half_whatever_the_class_counts(tmp_path):
    # always naming class 5 first: right on all 9 clips of 5, wrong on the 1 clip of 6
    rows = [(5, [5, 6, 1, 2, 3])] * 9 + [(6, [5, 6, 1, 2, 3])]
    path = tmp_path / "p.csv"
    write_predictions(path, rows)
    assert compare_temporal.pair_scores(path, [(5, 6)])["pair_acc"] == pytest.approx(0.5)


def test_unlabelled_or_pairless_predictions_are_refused(tmp_path):
    path = tmp_path / "p.csv"
    write_predictions(path, [("", [5, 6, 1, 2, 3])])
    with pytest.raises(ValueError, match="no labels"):
        compare_temporal.pair_scores(path, [(5, 6)])
    write_predictions(path, [(9, [9, 1, 2, 3, 4])])
    with pytest.raises(ValueError, match="no clip of an order-only pair class"):
        compare_temporal.pair_scores(path, [(5, 6)])


def test_head_and_tail_f1_against_sklearn(tmp_path):
    # the definition is microaction.results.head_tail_f1, shared with scripts/compare_recipes.py
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    counts = [int(c) for c in rng.integers(5, 500, size=9)]
    labels = rng.integers(0, 9, size=200)
    preds = np.where(rng.random(200) < 0.5, labels, rng.integers(0, 9, size=200))
    path = tmp_path / "p.csv"
    write_predictions(path, [(int(y), [int(p), 0, 0, 0, 0]) for y, p in zip(labels, preds)])
    got = compare_temporal.head_tail_f1(path, counts)
    order = np.argsort(-np.array(counts), kind="stable")
    for key, classes in (("F1_head", order[:3]), ("F1_tail", order[-3:])):
        want = f1_score(labels, preds, labels=list(classes), average="macro", zero_division=0)
        assert got[key] == pytest.approx(want)


def test_compare_temporal_end_to_end(checkout):
    """The script as the docs print it (`python scripts/compare_temporal.py`), from the root of a copy of the
    repository, with tiny sizes appended: generation, two real train.py runs, the table and the JSON line."""
    runs = checkout / "logs" / "compare_temporal"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    proc = run_as_typed("python scripts/compare_temporal.py", checkout,
                        ["--models", "tsn", "tsm", "--epochs", "1", "--", *PROCEDURAL_TINY])
    (out,) = [p for p in runs.iterdir() if p not in before]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(summary["results"]) == ["tsn", "tsm"]
    assert (out / "comparison.json").is_file()
    table = (out / "comparison.md").read_text()
    for model, r in summary["results"].items():
        run = out / model
        test = json.loads((run / "metrics.json").read_text())["test"]
        # the table's figures are the run's own test metrics and its predictions' pair figures
        assert r["F1_mean"] == pytest.approx(test["F1_mean"]) and r["action_top1"] == pytest.approx(test["action_top1"])
        assert r == {**r, **compare_temporal.pair_scores(run / "predictions_test.csv", summary["order_pairs"])}
        # the smallest dataset has one test clip per class: 8 clips in the 8 order-only classes
        assert r["pair_clips"] == 8 and r["pair_classes"] == 8
        assert f"| {model} | {100 * r['F1_mean']:.2f} |" in table


def test_ablation_experiments_derive_from_the_procedural_recipe_as_the_papers_do():
    """procedural_wo_se / procedural_wo_emb are to procedural_manet what ma52_wo_se / ma52_wo_emb are to
    ma52_manet: the same network and loss changes, nothing else."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    def composed(experiment):
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={experiment}"])
        return OmegaConf.to_container(cfg, resolve=False)

    def differences(a, b, prefix=""):
        keys = set(a) | set(b) if isinstance(a, dict) and isinstance(b, dict) else None
        if keys is None:
            return set() if a == b else {prefix.rstrip(".")}
        return set().union(*(differences(a.get(k), b.get(k), f"{prefix}{k}.") for k in keys)) if keys else set()

    for ablation in ("wo_se", "wo_emb"):
        paper = differences(composed("ma52_manet"), composed(f"ma52_{ablation}")) - {"tags"}
        ours = differences(composed("procedural_manet"), composed(f"procedural_{ablation}")) - {"tags"}
        assert ours == paper and ours, (ablation, ours, paper)
    assert composed("procedural_wo_se")["model"]["name"] == "tsm"
    # the stand-in recipe's embedding term is the released code's (docs/procedural_dataset.md)
    assert composed("procedural_wo_se")["loss"] == composed("procedural_manet")["loss"]
    assert (composed("procedural_manet")["loss"]["alpha"], composed("procedural_manet")["loss"]["embedding_distance"]) \
        == (50.0, "mse")
    assert composed("procedural_wo_emb")["model"]["name"] == "manet"
    assert composed("procedural_wo_emb")["loss"]["alpha"] == 0.0


def test_ablations_over_two_seeds_end_to_end(checkout):
    """`--models wo_emb --seeds 0 1 --jobs 2` (a row of the documented 3-seed command and its seed handling, at
    the tiny size, one validation batch): one run per seed, both at once, each with its share of the cores; the
    row's cells the mean ± sample std of its runs' own figures. wo_se's composition is checked above; it runs
    through the same code."""
    from microaction.utils.cpus import usable_cpus

    runs = checkout / "logs" / "compare_temporal"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    proc = run_as_typed("python scripts/compare_temporal.py", checkout,
                        ["--models", "wo_emb", "--seeds", "0", "1", "--epochs", "1", "--jobs", "2", "--",
                         *PROCEDURAL_TINY, "trainer.limit_val_batches=1"])
    (out,) = [p for p in runs.iterdir() if p not in before]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(summary["results"]) == ["wo_emb"] and summary["seeds"] == [0, 1]
    table = (out / "comparison.md").read_text()
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    for model, r in summary["results"].items():
        assert set(r["runs"]) == {"0", "1"}
        f1 = []
        for seed in (0, 1):
            run = out / f"{model}_seed{seed}"
            hydra = (run / ".hydra" / "overrides.yaml").read_text()
            assert f"experiment=procedural_{model}" in hydra and f"seed={seed}" in hydra
            f1.append(100 * json.loads((run / "metrics.json").read_text())["test"]["F1_mean"])
            assert r["runs"][str(seed)]["F1_mean"] == pytest.approx(f1[-1] / 100)
        assert r["F1_mean"] == pytest.approx(np.mean(f1) / 100)
        assert r["std"]["F1_mean"] == pytest.approx(np.std(f1, ddof=1) / 100)
        (line,) = [ln for ln in table.splitlines() if ln.startswith(f"| {model} |")]
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        assert cells["F1_mean"] == f"{np.mean(f1):.2f} ± {np.std(f1, ddof=1):.2f}" and cells["n"] == "2"
    # --jobs 2: both runs were started with half the cores' threads, and each started before the other ended
    launched = [ln for ln in proc.stdout.splitlines() if ln.startswith("$ ")]
    assert len(launched) == 2 and all(ln.startswith(f"$ OMP_NUM_THREADS={max(1, usable_cpus() // 2)} ")
                                      for ln in launched)
    spans = []
    for seed in (0, 1):
        stamps = [ln[1:24] for ln in (out / f"wo_emb_seed{seed}" / "train.log").read_text().splitlines()
                  if ln.startswith("[20")]
        spans.append((min(stamps), max(stamps)))
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans
    # MANet without the embedding loss
    config = yaml.safe_load((out / "wo_emb_seed0" / "config_resolved.yaml").read_text())
    assert (config["model"]["name"], config["loss"]["alpha"]) == ("manet", 0.0)

