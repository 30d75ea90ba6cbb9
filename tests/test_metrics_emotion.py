"""MA-52-Pro metrics (emotion figures, multi-label AP) against sklearn, split over batches and over
2 gloo processes, and the MA-52-Pro report files read back."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    recall_score,
)

from microaction import reports
from microaction.data.samplers import UnpaddedDistributedSampler
from microaction.metrics_emotion import EMOTION_METRIC_KEYS, EmotionMetrics, MultiLabelAP, average_precision

E, C = 5, 52
EMOTIONS = ("joy", "sadness", "surprise", "fear", "anger")


def emotion_data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced targets (joy common, anger rare), one emotion never the target but sometimes
    predicted, some right answers."""
    rng = np.random.default_rng(seed)
    missing = seed % E
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    p[missing] = 0
    y = rng.choice(E, size=n, p=p / p.sum())
    scores = rng.normal(size=(n, E))
    scores[:, 0] += 0.5  # the majority class is favoured, as a real model does
    right = rng.random(n) < 0.4
    scores[right, y[right]] += 3
    scores[rng.random(n) < 0.05, missing] += 5  # the missing emotion is predicted now and then
    return scores.astype(np.float32), y


def sklearn_emotion(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = scores.argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ill-defined recall / "y_pred contains classes not in y_true"
        return {
            "emotion_acc": accuracy_score(y, pred),
            "emotion_acc_avg": balanced_accuracy_score(y, pred),
            "emotion_f1_weighted": f1_score(y, pred, average="weighted"),
            "emotion_uf1": f1_score(y, pred, average="macro"),
            "emotion_uar": recall_score(y, pred, average="macro", zero_division=0),
        }


def action_data(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot targets (1 to 6 actions per clip, skewed towards low ids, several classes never
    present) and coarse scores with many ties."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, C), dtype=np.int64)
    weights = 1.0 / np.arange(1, C + 1)
    weights[rng.choice(C, size=6, replace=False)] = 0  # all-negative classes
    for i in range(n):
        k = rng.integers(1, 7)
        y[i, rng.choice(C, size=k, replace=False, p=weights / weights.sum())] = 1
    scores = rng.normal(size=(n, C)) + 1.5 * y
    scores = np.round(scores, 1)  # ties, within classes and across positives/negatives
    scores[:, 3] = 0.25  # one class where every clip ties
    return scores.astype(np.float32), y


def sklearn_ap(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No positive class found in y_true"
        return average_precision_score(y, scores.astype(np.float64), average=None)


def feed(metric, scores: np.ndarray, y: np.ndarray, chunks: int):
    for part in np.array_split(np.arange(len(y)), chunks):
        metric.update(torch.from_numpy(scores[part]), torch.from_numpy(y[part]))
    return metric


# --- emotion ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_emotion_figures_match_sklearn(seed):
    scores, y = emotion_data(seed)
    got = feed(EmotionMetrics(E), scores, y, chunks=7).compute()
    ref = sklearn_emotion(scores, y)
    assert set(got) == {*EMOTION_METRIC_KEYS, "emotion_num_clips"}
    for key, value in ref.items():
        assert got[key].item() == pytest.approx(value, abs=1e-6), key
    assert got["emotion_num_clips"].item() == len(y)
    # the data has an emotion predicted but never the target: the two averages of recall part
    assert ref["emotion_acc_avg"] != pytest.approx(ref["emotion_uar"], abs=1e-3)


def test_emotion_acc_avg_is_uar_when_every_emotion_occurs():
    rng = np.random.default_rng(11)
    y = np.concatenate([np.arange(E), rng.integers(0, E, size=95)])
    scores = rng.normal(size=(100, E)).astype(np.float32)
    got = feed(EmotionMetrics(E), scores, y, chunks=1).compute()
    assert got["emotion_acc_avg"].item() == pytest.approx(got["emotion_uar"].item(), abs=1e-7)
    assert got["emotion_uar"].item() == pytest.approx(recall_score(y, scores.argmax(1), average="macro"), abs=1e-6)


def test_per_emotion_accuracy_and_confusion():
    scores, y = emotion_data(2)
    metric = feed(EmotionMetrics(E), scores, y, chunks=3)
    pred = scores.argmax(1)
    acc = metric.per_class_accuracy().numpy()
    for k in range(E):
        if (y == k).any():
            assert acc[k] == pytest.approx(np.mean(pred[y == k] == k), abs=1e-12)
        else:
            assert np.isnan(acc[k])
    assert np.isnan(acc[2])  # seed 2: emotion 2 never the target
    cm = metric.confusion().numpy()
    expect = np.zeros((E, E), dtype=np.int64)
    np.add.at(expect, (y, pred), 1)
    assert (cm == expect).all()
    # the mean of the per-emotion accuracies is emotion_acc_avg
    assert np.nanmean(acc) == pytest.approx(metric.compute()["emotion_acc_avg"].item(), abs=1e-6)


def test_emotion_batch_split_invariance_and_reset():
    scores, y = emotion_data(3)
    one = feed(EmotionMetrics(E), scores, y, chunks=1)
    many = feed(EmotionMetrics(E), scores, y, chunks=len(y) // 2)
    assert torch.equal(one.confmat, many.confmat)
    a, b = one.compute(), many.compute()
    assert all(torch.equal(a[k], b[k]) for k in a)
    one.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        out = one.compute()
    assert out["emotion_num_clips"] == 0 and all(out[k] == 0 for k in EMOTION_METRIC_KEYS)


def test_emotion_refuses_bad_input():
    m = EmotionMetrics(E)
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        m.update(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[N\] with N=3"):
        m.update(torch.zeros(3, E), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"ids in \[0, 5\).*\[0, 5\]"):
        m.update(torch.zeros(3, E), torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match="integer ids"):
        m.update(torch.zeros(3, E), torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        m.update(torch.full((3, E), float("nan")), torch.zeros(3, dtype=torch.long))
    assert m.confmat.sum() == 0  # nothing counted from a refused batch


# --- multi-label AP --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_ap_matches_sklearn_with_ties_and_absent_classes(seed):
    scores, y = action_data(seed)
    metric = feed(MultiLabelAP(C), scores, y, chunks=5)
    got = metric.per_class_ap().numpy()
    ref = sklearn_ap(scores, y)
    present = y.sum(0) > 0
    assert (~present).sum() >= 6
    assert np.allclose(got[present], ref[present], rtol=0, atol=1e-6)
    assert np.isnan(got[~present]).all()
    out = metric.compute()
    assert out["action_mAP"].item() == pytest.approx(ref[present].mean(), abs=1e-6)
    assert out["actions_absent"].item() == (~present).sum()
    assert (metric.positives().numpy() == y.sum(0)).all()
    # sklearn's own macro average counts the absent classes as 0: a lower figure
    assert out["action_mAP"].item() > ref.mean() + 1e-3


def test_ap_tie_order_does_not_matter_and_follows_sklearn_by_hand():
    # one positive and one negative tied at the top: precision there is 1/2, not 1 or 0
    scores = torch.tensor([[0.9], [0.9], [0.1]])
    target = torch.tensor([[1], [0], [1]])
    ap = average_precision(scores, target).item()
    # thresholds 0.9 (recall 1/2, precision 1/2) and 0.1 (recall 1, precision 2/3)
    assert ap == pytest.approx(0.5 * 0.5 + 0.5 * (2 / 3))
    assert ap == pytest.approx(sklearn_ap(scores.numpy().ravel(), target.numpy().ravel()))
    swapped = average_precision(scores, target[[1, 0, 2]]).item()
    assert swapped == pytest.approx(ap)


def test_ap_batch_split_invariance():
    scores, y = action_data(9, n=120)
    one = feed(MultiLabelAP(C), scores, y, chunks=1)
    many = feed(MultiLabelAP(C), scores, y, chunks=17)
    assert torch.equal(one.per_class_ap().nan_to_num(-1), many.per_class_ap().nan_to_num(-1))
    a, b = one.compute(), many.compute()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ap_empty_and_refusals():
    m = MultiLabelAP(4)
    with pytest.warns(UserWarning, match="before the ``update``"):
        out = m.compute()
    assert out["action_mAP"] == 0 and out["actions_absent"] == 4
    assert torch.isnan(m.per_class_ap()).all()
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        m.update(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"scores' shape \(2, 4\)"):
        m.update(torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="0 or 1"):
        m.update(torch.zeros(2, 4), torch.full((2, 4), 2))
    with pytest.raises(ValueError, match="NaN"):
        m.update(torch.full((2, 4), float("inf")), torch.zeros(2, 4))
    assert m.scores == []


# --- two processes ---------------------------------------------------------------------------------

def _ddp_worker(rank: int, world: int, store: str, cases: list, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        out = []
        for escores, ey, ascores, ay, splits in cases:
            emo, act = EmotionMetrics(E), MultiLabelAP(C)
            # this rank's share, fed in a few batches as a loader would
            idx = splits[rank]
            for part in np.array_split(idx, 3):
                if len(part):
                    emo.update(torch.from_numpy(escores[part]), torch.from_numpy(ey[part]))
                    act.update(torch.from_numpy(ascores[part]), torch.from_numpy(ay[part]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "compute called before update" on the rank without clips
                figures = {**emo.compute(), **act.compute()}
            out.append({**figures, "confusion": emo.confusion(), "per_class_accuracy": emo.per_class_accuracy(),
                        "per_class_ap": act.per_class_ap(), "positives": act.positives()})
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_figures(tmp_path):
    escores, ey = emotion_data(4, n=151)
    ascores, ay = action_data(4, n=151)
    n, world = len(ey), 2
    unpadded = [np.array(list(UnpaddedDistributedSampler(range(n), world, r))) for r in range(world)]
    cases = [
        # the evaluation sampler's split of an odd count: contiguous blocks, nothing repeated
        (escores, ey, ascores, ay, unpadded),
        # a rank that scores no clip at all (fewer clips than ranks, or limit_*_batches)
        (escores, ey, ascores, ay, [np.arange(n), np.arange(0)]),
    ]
    # fork: the processes start with this one's imports (spawn would re-import torch and torchmetrics)
    mp.start_processes(_ddp_worker, args=(world, str(tmp_path / "store"), cases, str(tmp_path)), nprocs=world,
                       join=True, start_method="fork")
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]

    emo, act = feed(EmotionMetrics(E), escores, ey, 1), feed(MultiLabelAP(C), ascores, ay, 1)
    single = {**emo.compute(), **act.compute()}
    single_ap = act.per_class_ap()
    assert single["emotion_num_clips"] == n
    for case in range(len(cases)):
        for rank in range(world):
            got = results[rank][case]
            for key, value in single.items():
                assert got[key].item() == pytest.approx(value.item(), abs=1e-7), (case, rank, key)
            assert torch.equal(got["confusion"], emo.confusion())
            assert torch.equal(got["per_class_accuracy"].nan_to_num(-1), emo.per_class_accuracy().nan_to_num(-1))
            assert torch.allclose(got["per_class_ap"].nan_to_num(-1), single_ap.nan_to_num(-1), atol=1e-12)
            assert torch.equal(got["positives"], act.positives())


# --- reports ---------------------------------------------------------------------------------------

ACTIONS = tuple(f"action {i}" for i in range(C))


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        eprob = rng.dirichlet(np.ones(E))
        aprob = rng.random(C) * (0.8 if i % 2 else 0.45)  # odd clips cross 0.5 somewhere, even ones never
        truth = sorted(rng.choice(C, size=rng.integers(1, 6), replace=False).tolist())
        rows.append({"name": f"s{i:03d}_c001.mp4", "emotion": int(rng.integers(E)), "emotion_prob": eprob,
                     "actions": truth, "action_prob": aprob})
    rows.append({"name": "unlabelled.mp4", "emotion": None, "emotion_prob": np.eye(E)[3], "actions": None,
                 "action_prob": np.full(C, 0.2)})
    return rows


def _read(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_emotion_predictions_csv(tmp_path):
    rows = _rows(12)
    path = reports.write_emotion_predictions_csv(tmp_path / "out" / "pred.csv", rows, EMOTIONS, ACTIONS)
    back = _read(path)
    assert [r["video"] for r in back] == [r["name"] for r in rows]
    assert list(back[0]) == reports.emotion_prediction_columns(EMOTIONS)
    assert not [p for p in path.parent.iterdir() if p.name != "pred.csv"]  # no temporary file left
    for row, got in zip(rows[:-1], back):
        pred = int(np.argmax(row["emotion_prob"]))
        assert int(got["emotion"]) == row["emotion"] and got["emotion_name"] == EMOTIONS[row["emotion"]]
        assert int(got["pred_emotion"]) == pred and got["pred_emotion_name"] == EMOTIONS[pred]
        assert got["emotion_correct"] == str(int(pred == row["emotion"]))
        probs = [float(got[f"prob_{name}"]) for name in EMOTIONS]
        assert np.allclose(probs, row["emotion_prob"], atol=1e-6)
        expect = {j for j in range(C) if row["action_prob"][j] >= 0.5} or {int(np.argmax(row["action_prob"]))}
        pred_set = [int(j) for j in got["pred_actions"].split()]
        assert pred_set == sorted(expect)
        assert got["pred_action_names"] == "; ".join(ACTIONS[j] for j in pred_set)
        assert np.allclose([float(p) for p in got["pred_action_probs"].split()],
                           [row["action_prob"][j] for j in pred_set], atol=1e-6)
        assert [int(j) for j in got["actions"].split()] == row["actions"]
        assert got["action_names"] == "; ".join(ACTIONS[j] for j in row["actions"])
        assert got["actions_found"] == f"{len(set(pred_set) & set(row['actions']))}/{len(row['actions'])}"
    # even clips have no action at 0.5: their set is the top-1 alone; odd ones have several
    assert all(len(r["pred_actions"].split()) == 1 for r in back[0:12:2])
    assert any(len(r["pred_actions"].split()) > 1 for r in back[1:12:2])
    last = back[-1]
    assert last["emotion"] == last["emotion_correct"] == last["actions"] == last["actions_found"] == ""
    assert last["pred_emotion_name"] == "fear" and last["pred_actions"] == "0"  # all tied: lowest id


def test_emotion_predictions_csv_refusals_leave_the_old_file(tmp_path):
    path = reports.write_emotion_predictions_csv(tmp_path / "pred.csv", _rows(2), EMOTIONS, ACTIONS)
    before = path.read_text()
    bad = _rows(3)
    bad[1]["action_prob"] = bad[1]["action_prob"][:10]
    with pytest.raises(ValueError, match=r"s001_c001\.mp4: action_prob must hold 52"):
        reports.write_emotion_predictions_csv(path, bad, EMOTIONS, ACTIONS)
    bad = _rows(3)
    bad[2]["emotion_prob"] = bad[2]["emotion_prob"] * 3
    with pytest.raises(ValueError, match=r"s002_c001\.mp4: emotion_prob must be probabilities"):
        reports.write_emotion_predictions_csv(path, bad, EMOTIONS, ACTIONS)
    bad = _rows(3)
    bad[0]["actions"] = [1, 52]
    with pytest.raises(ValueError, match=r"s000_c001\.mp4: actions must be ids in \[0, 52\)"):
        reports.write_emotion_predictions_csv(path, bad, EMOTIONS, ACTIONS)
    with pytest.raises(ValueError, match="distinct"):
        reports.write_emotion_predictions_csv(path, _rows(1), ("joy",) * 5, ACTIONS)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pred.csv"]


def test_per_class_ap_csv_from_the_metric(tmp_path):
    scores, y = action_data(1, n=80)
    metric = feed(MultiLabelAP(C), scores, y, chunks=2)
    ap, counts = metric.per_class_ap(), metric.positives()
    path = reports.write_per_class_ap_csv(tmp_path / "ap.csv", ap.tolist(), ACTIONS, counts.tolist())
    back = _read(path)
    ref = sklearn_ap(scores, y)
    assert [int(r["class"]) for r in back] == list(range(C))
    for k, r in enumerate(back):
        assert r["name"] == ACTIONS[k] and int(r["positives"]) == y[:, k].sum()
        if y[:, k].any():
            assert float(r["ap"]) == pytest.approx(ref[k], abs=1e-6)
        else:
            assert r["ap"] == ""
    present = [float(r["ap"]) for r in back if r["ap"]]
    assert np.mean(present) == pytest.approx(metric.compute()["action_mAP"].item(), abs=1e-6)
    with pytest.raises(ValueError, match="one AP, name and count per class"):
        reports.write_per_class_ap_csv(tmp_path / "x.csv", ap.tolist()[:-1], ACTIONS, counts.tolist())
    absent = int(np.flatnonzero(y.sum(0) == 0)[0])
    wrong = counts.tolist()
    wrong[absent] = 3
    with pytest.raises(ValueError, match=rf"class {absent} \(action {absent}\).*NaN exactly"):
        reports.write_per_class_ap_csv(tmp_path / "x.csv", ap.tolist(), ACTIONS, wrong)
    assert not (tmp_path / "x.csv").exists()


def test_emotion_confusion_plot(tmp_path):
    import matplotlib.image

    scores, y = emotion_data(0, n=60)
    cm = feed(EmotionMetrics(E), scores, y, 1).confusion().numpy()
    path = reports.plot_confusion(cm, EMOTIONS, tmp_path / "confusion_emotion.png", "emotion")
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 100
    assert not math.isclose(float(img.std()), 0.0)  # not a blank image
