import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

from microaction.classes import class_table
from microaction.labels import LabelSpace
from microaction.metrics import MA52Metrics

F2C = np.array(class_table().fine_to_coarse)
MA52 = LabelSpace.ma52()


def sklearn_reference(scores: np.ndarray, y: np.ndarray, f2c: np.ndarray = F2C) -> dict:
    pred = scores.argmax(1)
    cy, cp = f2c[y], f2c[pred]
    ref = {
        "action_top1": accuracy_score(y, pred),
        "action_top5": top_k_accuracy_score(y, scores, k=5, labels=np.arange(scores.shape[1])),
        "action_F1_micro": f1_score(y, pred, average="micro"),
        "action_F1_macro": f1_score(y, pred, average="macro"),
        "body_top1": accuracy_score(cy, cp),
        "body_F1_micro": f1_score(cy, cp, average="micro"),
        "body_F1_macro": f1_score(cy, cp, average="macro"),
    }
    ref["F1_mean"] = (ref["action_F1_micro"] + ref["action_F1_macro"] + ref["body_F1_micro"] + ref["body_F1_macro"]) / 4
    return ref


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn_with_absent_classes(seed):
    rng = np.random.default_rng(seed)
    n = 257
    # targets use only some classes; predictions favour others, so some classes
    # appear only in targets, some only in predictions, some in neither
    y = rng.choice(rng.choice(52, size=20, replace=False), size=n)
    scores = rng.normal(size=(n, 52))
    scores[:, rng.choice(52, size=8, replace=False)] += 1.5
    scores[np.arange(n) % 3 == 0, y[np.arange(n) % 3 == 0]] += 4  # some right answers
    metric = MA52Metrics(MA52)
    for chunk in np.array_split(np.arange(n), 7):  # several batches of uneven size
        metric.update(torch.from_numpy(scores[chunk]), torch.from_numpy(y[chunk]))
    got = metric.compute()
    ref = sklearn_reference(scores, y)
    for key, value in ref.items():
        assert got[key].item() == pytest.approx(value, abs=1e-6), key
    assert got["num_clips"].item() == n


def test_perfect_and_reset():
    y = torch.arange(52)
    scores = torch.nn.functional.one_hot(y, 52).float()
    metric = MA52Metrics(MA52)
    metric.update(scores, y)
    assert all(v.item() == pytest.approx(1.0) for k, v in metric.compute().items() if k != "num_clips")
    metric.reset()
    assert metric.confmat.sum() == 0


def test_body_part_comes_from_the_fine_prediction():
    # fine wrong but same body part: body correct, action wrong
    metric = MA52Metrics(MA52)
    metric.update(torch.nn.functional.one_hot(torch.tensor([9]), 52).float(), torch.tensor([10]))
    out = metric.compute()
    assert out["action_top1"] == 0 and out["body_top1"] == 1


def test_rejects_wrong_score_shape():
    with pytest.raises(ValueError, match=r"\[N, 52\]"):
        MA52Metrics(MA52).update(torch.zeros(3, 7), torch.zeros(3, dtype=torch.long))


def test_the_mapping_comes_from_the_label_space():
    """A 9-class space whose groups are not MA-52's: body figures follow its mapping (checked against sklearn)."""
    f2c = np.array([3, 0, 0, 1, 2, 2, 2, 1, 3])
    space = LabelSpace(name="other", classes=tuple("abcdefghi"), coarse_classes=("p", "q", "r", "s"),
                       fine_to_coarse=tuple(int(c) for c in f2c))
    rng = np.random.default_rng(7)
    y = rng.integers(0, 9, size=120)
    scores = rng.normal(size=(120, 9))
    scores[np.arange(0, 120, 2), y[::2]] += 3
    metric = MA52Metrics(space)
    metric.update(torch.from_numpy(scores), torch.from_numpy(y))
    got = metric.compute()
    for key, value in sklearn_reference(scores, y, f2c).items():
        assert got[key].item() == pytest.approx(value, abs=1e-6), key
    # with MA-52's mapping the body figures would differ: the space's mapping is the one used
    assert sklearn_reference(scores, y, F2C[:9])["body_top1"] != pytest.approx(got["body_top1"].item())
    cms = metric.confusion()
    assert cms["fine"].sum() == 120 and cms["coarse"].shape == (4, 4)
    assert np.trace(cms["coarse"].numpy()) / 120 == pytest.approx(got["body_top1"].item())
