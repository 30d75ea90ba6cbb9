"""A real tiny run with the recipes switched on (train+val, class-balanced sampling, rare-class augmentation, two
test-time clips), eval.py on its checkpoint with one view, and scripts/ensemble.py over the two runs' logits: every
number checked against a hand computation (frames decoded by hand, the network run view by view, sklearn's F1)."""

from __future__ import annotations

import csv
import functools
import json
import math
import shutil

import numpy as np
import pytest
import torch
from helpers import BASE_TINY, REPO, compose_job, compose_train
from torchvision.transforms.v2 import functional as F

from microaction.data.annotations import list_path, read_list, video_dir
from microaction.data.transforms import normalize
from microaction.data.video import read_frames
from microaction.ensemble import EnsembleError, read_logits, run_ensemble
from microaction.labels import LabelSpace

SIZE, FRAMES = 32, 2
SPY: list = []


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("MICROACTION_OFFLINE", "1")


CLIPS = 12  # per split: a few seconds of decoding on a busy CPU


@pytest.fixture(scope="module")
def small_root(tiny_root, tmp_path_factory):
    """The first 12 clips of each split of the shared tiny dataset, in a layout of their own."""
    root = tmp_path_factory.mktemp("small") / "ma52"
    root.mkdir(parents=True)
    shutil.copy(tiny_root / "label_name.txt", root / "label_name.txt")
    for split in ("train", "val", "test"):
        records = read_list(list_path(tiny_root, split))[:CLIPS]
        video_dir(root, split).mkdir()
        for r in records:
            shutil.copy(video_dir(tiny_root, split) / r.name, video_dir(root, split) / r.name)
        list_path(root, split).write_text("".join(f"{r.name} {r.label}\n" for r in records))
    return root


@pytest.fixture(scope="module")
def recipe_run(small_root, tmp_path_factory):
    """train.py's job with data.train_splits=[train,val], class-balanced sampling, rare-class augmentation and two
    temporal test views; the checkpoints its final evaluation was given are kept in SPY."""
    from microaction import pipeline

    run_dir = tmp_path_factory.mktemp("recipe") / "run"
    # every training and test clip (the test logits are ensembled with another run's), one val batch
    base = [a for a in BASE_TINY if not a.startswith(("logger=", "trainer.limit_train", "trainer.limit_test",
                                                      "data.batch_size"))]
    cfg = compose_train([*base, f"data.root={small_root}", "logger=csv", "data.batch_size=8",
                         "data.train_splits=[train,val]",
                         "data.sampler=class_balanced", "data.balance_power=1.0", "data.rare_aug=true",
                         "data.test_views.clips=2"], run_dir)
    real = pipeline._evaluate_split

    def spy(trainer, module, dm, split, ckpt, *args, **kwargs):
        SPY.append((split, ckpt))
        return real(trainer, module, dm, split, ckpt, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MICROACTION_OFFLINE", "1")
        mp.setattr(pipeline, "_evaluate_split", spy)
        results = pipeline.train(cfg)
    return run_dir, results


@pytest.fixture(scope="module")
def eval_run(recipe_run, small_root, tmp_path_factory):
    """eval.py's job on the recipe run's best checkpoint, test split, one view per clip (the run stored two:
    data.test_views.clips=1 on the command line overrides them)."""
    from microaction.pipeline import evaluate

    (best,) = (recipe_run[0] / "checkpoints").glob("best_epoch*.ckpt")
    out = tmp_path_factory.mktemp("eval") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MICROACTION_OFFLINE", "1")
        evaluate(compose_job("eval", [f"ckpt_path={best}", f"data.root={small_root}", "split=test", "trainer=cpu",
                                      "data.num_workers=0", "extras.print_config=false", "logger=none",
                                      "data.test_views.clips=1"], out))
    return out, best


@functools.cache
def _network(ckpt: str):
    from microaction.pipeline import load_task

    module, _, _ = load_task(ckpt)
    return module.eval()


def _hand_logits(ckpt, root, name: str, clips: int) -> torch.Tensor:
    """The network of ``ckpt`` on one test clip, view by view: frames at (k + 0.5) / clips of each of the 2
    segments, decoded at short side 32, centre-cropped, normalised; the mean of the views' logits."""
    module = _network(str(ckpt))
    path = video_dir(root, "test") / name
    views = []
    for k in range(clips):
        offset = (k + 0.5) / clips
        frames = read_frames(path, lambda n: np.array([math.floor((i + offset) * n / FRAMES) for i in range(FRAMES)]),
                             short_side=SIZE)
        clip = F.center_crop(torch.from_numpy(frames).permute(0, 3, 1, 2), [SIZE, SIZE])
        with torch.no_grad():
            views.append(module(normalize(clip)[None])["logits"][0].float())
    return torch.stack(views).mean(0)


def _predicted_top1(path) -> dict[str, int]:
    with path.open() as f:
        return {row["video"]: int(row["pred"]) for row in csv.DictReader(f)}


def test_training_on_train_and_val_runs_every_clip_of_both_and_evaluates_the_final_weights(recipe_run):
    run_dir, results = recipe_run
    with (run_dir / "csv" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/num_clips")]
    # one epoch of the class-balanced sampler: as many clips as the train and val lists hold together
    assert [float(r["train/num_clips"]) for r in rows] == [2.0 * CLIPS]
    assert results["clips"]["train"]["listed"] == 2 * CLIPS
    assert results["best_checkpoint"] and [c for _, c in SPY] == [None, None]  # not the "best" by val
    assert results["val"]["num_clips"] == 8 and results["test"]["num_clips"] == CLIPS  # one val batch, all test


def test_logits_files_hold_the_view_averaged_scores_and_single_views_are_unchanged(recipe_run, eval_run, small_root):
    run_dir, results = recipe_run
    eval_dir, best = eval_run
    test_names = [r.name for r in read_list(list_path(small_root, "test"))]
    for folder, ckpt, clips in ((run_dir, run_dir / "checkpoints" / "last.ckpt", 2), (eval_dir, best, 1)):
        logits = read_logits(folder / "logits_test.npz")
        assert sorted(logits.names) == sorted(test_names) and logits.logits.shape == (CLIPS, 52)
        assert logits.label_space == LabelSpace.ma52().to_dict()
        assert (logits.labels >= 0).all()
        # the predictions CSV ranks by the same scores
        top1 = _predicted_top1(folder / "predictions_test.csv")
        assert {n: int(np.argmax(v)) for n, v in zip(logits.names, logits.logits)} == top1
        for name in logits.names[:2]:
            by_hand = _hand_logits(ckpt, small_root, name, clips)
            got = torch.from_numpy(logits.logits[logits.names.index(name)])
            torch.testing.assert_close(got, by_hand, rtol=0, atol=2e-4)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["files"]["logits"].endswith("logits_test.npz")


def _f1(y, p, labels=None):
    from sklearn.metrics import f1_score

    return f1_score(y, p, average="micro"), f1_score(y, p, average="macro")


def _script():
    """scripts/ensemble.py as a module (its main() takes the command line's arguments)."""
    from importlib import util

    spec = util.spec_from_file_location("ensemble_script", REPO / "scripts" / "ensemble.py")
    script = util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_ensemble_of_two_runs_is_the_hand_average_and_scores_as_sklearn(recipe_run, eval_run, tmp_path, capsys):
    run_dir, results = recipe_run
    eval_dir, _ = eval_run
    out = tmp_path / "ens"
    # the documented command line: python scripts/ensemble.py RUN1 RUN2 --split test --out DIR
    assert _script().main([str(run_dir), str(eval_dir), "--split", "test", "--out", str(out)]) == 0
    assert f"ensemble of 2 runs over {CLIPS} test clips" in capsys.readouterr().out
    a, b = read_logits(run_dir / "logits_test.npz"), read_logits(eval_dir / "logits_test.npz")
    order = [b.names.index(n) for n in a.names]
    softmax = lambda x: np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)  # noqa: E731
    by_hand = (softmax(a.logits.astype(np.float64)) + softmax(b.logits[order].astype(np.float64))) / 2
    ens = read_logits(out / "logits_test.npz")
    assert ens.names == a.names
    np.testing.assert_allclose(softmax(ens.logits.astype(np.float64)), by_hand, atol=1e-5)
    with (out / "submission_test.csv").open() as f:
        sub = list(csv.reader(f))
    assert sub[0] == ["vid"] + [f"action_pred_{i}" for i in range(1, 6)] + [f"body_pred_{i}" for i in range(1, 6)]
    f2c = LabelSpace.ma52().fine_to_coarse
    rows = {r[0]: r[1:] for r in sub[1:]}
    assert len(rows) == CLIPS
    for i, name in enumerate(a.names):
        top = [int(c) for c in np.argsort(-by_hand[i], kind="stable")[:5]]
        assert [int(v) for v in rows[name]] == top + [f2c[c] for c in top]
    # metrics: the ensemble's by sklearn; each run's as its own run reported them
    saved = json.loads((out / "metrics_test.json").read_text())["metrics"]
    y = a.labels
    pred = by_hand.argmax(1)
    fine, coarse = _f1(y, pred), _f1(np.array([f2c[c] for c in y]), np.array([f2c[c] for c in pred]))
    assert saved["ensemble"]["F1_mean"] == pytest.approx((sum(fine) + sum(coarse)) / 4, abs=1e-6)
    top5 = np.mean([y[i] in np.argsort(-by_hand[i])[:5] for i in range(len(y))])
    assert saved["ensemble"]["action_top5"] == pytest.approx(top5, abs=1e-6)
    assert saved["run1"]["F1_mean"] == pytest.approx(results["test"]["F1_mean"], abs=1e-5)
    evaluated = json.loads((eval_dir / "metrics.json").read_text())["test"]
    assert saved["run2"]["action_F1_macro"] == pytest.approx(evaluated["action_F1_macro"], abs=1e-5)


def test_weighted_logit_average_and_refusals_name_the_file(recipe_run, eval_run, tmp_path, capsys):
    run_dir, _ = recipe_run
    eval_dir, _ = eval_run
    a, b = read_logits(run_dir / "logits_test.npz"), read_logits(eval_dir / "logits_test.npz")
    result = run_ensemble([run_dir / "logits_test.npz", eval_dir], "test", tmp_path / "w", weights=[3, 1],
                          mode="logits")
    ens = read_logits(tmp_path / "w" / "logits_test.npz")
    order = [b.names.index(n) for n in a.names]
    np.testing.assert_allclose(ens.logits, (3 * a.logits + b.logits[order]) / 4, atol=1e-5)
    assert result["weights"] == [3.0, 1.0]

    # a run missing a clip
    short = tmp_path / "short"
    short.mkdir()
    data = dict(np.load(eval_dir / "logits_test.npz"))
    np.savez(short / "logits_test.npz", **{k: (v[1:] if k in ("names", "logits", "labels") else v)
                                            for k, v in data.items()})
    with pytest.raises(EnsembleError, match=rf"{short / 'logits_test.npz'}: its clips differ .*1 missing"):
        run_ensemble([run_dir, short], "test", tmp_path / "x")
    # a run over other classes
    other = tmp_path / "other"
    other.mkdir()
    space = json.loads(str(data["label_space"]))
    space["fine_to_coarse"] = [0] * 52
    np.savez(other / "logits_test.npz", **{**data, "label_space": np.array(json.dumps(space))})
    with pytest.raises(EnsembleError, match=rf"{other / 'logits_test.npz'}: its classes differ .*fine_to_coarse"):
        run_ensemble([run_dir, other], "test", tmp_path / "x")
    # a folder without the split's file, through the script: exit 2 and the reason
    empty = tmp_path / "empty"
    shutil.copytree(eval_dir, empty, ignore=shutil.ignore_patterns("logits_*"))
    assert _script().main([str(run_dir), str(empty), "--out", str(tmp_path / "x")]) == 2
    assert f"{empty}: no logits_test.npz in this run folder" in capsys.readouterr().err
    with pytest.raises(EnsembleError, match="2 weights for 1 runs|1 weights for 2 runs"):
        run_ensemble([run_dir, eval_dir], "test", tmp_path / "x", weights=[1])
