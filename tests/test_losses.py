import numpy as np
import pytest
import torch

from microaction.tasks.losses import LabelEmbeddingLoss


def log_softmax_np(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


@pytest.mark.parametrize("alpha", [0.0, 0.1, 5.0])
def test_euclidean_loss_against_numpy(alpha):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(52, 6)).astype(np.float32)
    logits = rng.normal(size=(5, 52)).astype(np.float32)
    emb = rng.normal(size=(5, 6)).astype(np.float32)
    y = np.array([0, 3, 51, 3, 10])
    loss = LabelEmbeddingLoss(torch.from_numpy(table), alpha=alpha, embedding_distance="euclidean")
    out = loss({"logits": torch.from_numpy(logits), "embedding": torch.from_numpy(emb)}, torch.from_numpy(y))
    ce = -log_softmax_np(logits)[np.arange(5), y].mean()
    dist = np.sqrt(((emb - table[y]) ** 2).sum(1)).mean()
    assert out["loss_cls"].item() == pytest.approx(ce, rel=1e-5)
    assert out["loss_emb"].item() == pytest.approx(dist, rel=1e-5)
    assert out["loss"].item() == pytest.approx(ce + alpha * dist, rel=1e-5)


def test_mse_loss_against_numpy():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(52, 4)).astype(np.float32)
    emb = rng.normal(size=(3, 4)).astype(np.float32)
    y = np.array([7, 8, 9])
    loss = LabelEmbeddingLoss(torch.from_numpy(table), alpha=50, embedding_distance="mse")
    out = loss({"logits": torch.zeros(3, 52), "embedding": torch.from_numpy(emb)}, torch.from_numpy(y))
    assert out["loss_emb"].item() == pytest.approx(((emb - table[y]) ** 2).mean(), rel=1e-5)
    assert out["loss_cls"].item() == pytest.approx(np.log(52), rel=1e-5)


def test_alpha_zero_still_reaches_embedding_head():
    # DDP needs every parameter in the graph each step, even at alpha = 0.
    loss = LabelEmbeddingLoss(torch.randn(52, 3), alpha=0.0)
    emb = torch.randn(2, 3, requires_grad=True)
    loss({"logits": torch.randn(2, 52), "embedding": emb}, torch.tensor([1, 2]))["loss"].backward()
    assert emb.grad is not None


def test_bad_settings():
    with pytest.raises(ValueError, match="embedding_distance"):
        LabelEmbeddingLoss(torch.randn(52, 3), embedding_distance="cosine")
    with pytest.raises(ValueError, match="alpha"):
        LabelEmbeddingLoss(torch.randn(52, 3), alpha=-1)
