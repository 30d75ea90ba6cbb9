"""The model and loss side of the recipes (docs/recipes.md): VideoMAE through transformers (tiny, never
downloaded), the hierarchical head, class reweighting, mixup within body parts, layer-wise learning-rate decay,
the warm-up schedule, and the two experiments composed and run tiny through train.py's job."""

from __future__ import annotations

import csv
import math
from collections import Counter

import numpy as np
import pytest
import torch
from helpers import BASE_TINY, compose_train

from microaction.labels import LabelSpace
from microaction.models import create_model
from microaction.models.heads import HierarchicalHead
from microaction.tasks.losses import LabelEmbeddingLoss, Mix, class_weights
from microaction.tasks.mixup import MixupSettings, mix_batch

MA52 = LabelSpace.ma52()
F2C = list(MA52.fine_to_coarse)
# a VideoMAE small enough for a CPU: 2 frames of 32 px (one tube of 2 x 16 x 16 per quarter), 1 block
VIDEOMAE_TINY = dict(num_segments=2, input_size=32, hidden_size=32, num_layers=1, num_heads=2, drop_path=0.0)


# --- the hierarchical head ----------------------------------------------------------------------------------


def fused_by_hand(fine: np.ndarray, body: np.ndarray, groups: list[int], w: float) -> np.ndarray:
    """P = (1 - w) softmax(fine) + w P(body) P(class | body), class by class."""
    out = np.zeros_like(fine)
    for i in range(fine.shape[0]):
        flat = np.exp(fine[i]) / np.exp(fine[i]).sum()
        pbody = np.exp(body[i]) / np.exp(body[i]).sum()
        for c, g in enumerate(groups):
            same = [k for k, h in enumerate(groups) if h == g]
            within = math.exp(fine[i, c]) / sum(math.exp(fine[i, k]) for k in same)
            out[i, c] = (1 - w) * flat[c] + w * pbody[g] * within
    return out


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_hierarchical_head_fuses_as_documented(w):
    torch.manual_seed(0)
    groups = [0, 0, 1, 2, 2, 2]
    head = HierarchicalHead(8, 6, dropout=0.0, embed_dim=None, embed_hidden=4, fine_to_coarse=groups, fusion=w).eval()
    feats = torch.randn(3 * 2, 8)  # 3 clips x 2 frames: averaged over the frames, then fused
    out = head(feats, num_segments=2)
    fine = head.fc(feats).view(3, 2, 6).mean(1).detach().numpy().astype(np.float64)
    body = head.body_fc(feats).view(3, 2, 3).mean(1).detach().numpy().astype(np.float64)
    np.testing.assert_allclose(out["logits"].exp().detach().numpy(), fused_by_hand(fine, body, groups, w),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["body_logits"].detach().numpy(), body, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["logits"].exp().sum(1), torch.ones(3))


@pytest.mark.parametrize("name,settings", [("tsn", dict(depth=10)), ("videomae_b", VIDEOMAE_TINY)])
def test_every_backbone_takes_the_hierarchical_head(name, settings):
    settings = {"num_segments": 2, **settings}
    model = create_model(name, **settings, embed_dim=6, head="hierarchical", head_fusion=0.5, fine_to_coarse=F2C)
    out = model(torch.randn(2, 2, 3, 32, 32))
    assert out["logits"].shape == (2, 52) and out["body_logits"].shape == (2, 7) and out["embedding"].shape == (2, 6)
    torch.testing.assert_close(out["logits"].exp().sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="needs the fine -> coarse mapping"):
        create_model(name, **settings, head="hierarchical")
    with pytest.raises(ValueError, match="model.head must be one of"):
        create_model(name, **settings, head="tree")
    with pytest.raises(ValueError, match=r"model.head_fusion must be a number in \[0, 1\]"):
        create_model(name, **settings, head="hierarchical", head_fusion=1.5, fine_to_coarse=F2C)


# --- VideoMAE --------------------------------------------------------------------------------------------------


def hf_twin(model):
    """transformers' own VideoMAEForVideoClassification with the same configuration and weights, the shared
    head's classifier as its classifier."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    config = VideoMAEConfig(**{**model.videomae.config.to_dict(), "num_labels": 52})
    hf = VideoMAEForVideoClassification(config).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    state.update({"classifier.weight": model.head.fc.weight, "classifier.bias": model.head.fc.bias})
    missing, unexpected = hf.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    return hf


def original_keys(hf_state: dict) -> dict:
    """A transformers state dict in the original VideoMAE release's key names (the inverse of adapt_weights)."""
    out = {}
    layers = {int(k.split(".")[3]) for k in hf_state if k.startswith("videomae.encoder.layer.")}
    for i in layers:
        src = f"videomae.encoder.layer.{i}."
        a = src + "attention.attention."
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([hf_state[a + "query.weight"], hf_state[a + "key.weight"],
                                                        hf_state[a + "value.weight"]])
        out[f"blocks.{i}.attn.q_bias"] = hf_state[a + "query.bias"]
        out[f"blocks.{i}.attn.v_bias"] = hf_state[a + "value.bias"]
        for mine, theirs in (("norm1", "layernorm_before"), ("norm2", "layernorm_after"),
                             ("attn.proj", "attention.output.dense"), ("mlp.fc1", "intermediate.dense"),
                             ("mlp.fc2", "output.dense")):
            for kind in ("weight", "bias"):
                out[f"blocks.{i}.{mine}.{kind}"] = hf_state[f"{src}{theirs}.{kind}"]
    for kind in ("weight", "bias"):
        out[f"patch_embed.proj.{kind}"] = hf_state[f"videomae.embeddings.patch_embeddings.projection.{kind}"]
        out[f"fc_norm.{kind}"] = hf_state[f"fc_norm.{kind}"]
    out["head.weight"] = torch.zeros(400, 32)  # a Kinetics classifier: never loaded
    return out


def test_videomae_is_transformers_videomae_with_mean_pooling_and_the_shared_head(tmp_path):
    torch.manual_seed(0)
    model = create_model("videomae_b", **VIDEOMAE_TINY, embed_dim=5, dropout=0.0).eval()
    x = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["logits"], hf_twin(model)(pixel_values=x).logits)
    assert model.initialised_from == "random" and model.num_layer_groups == 1
    # a transformers folder (save_pretrained), as a downloaded hub model is: loaded by from_pretrained
    torch.manual_seed(1)
    source = hf_twin(create_model("videomae_b", **VIDEOMAE_TINY, embed_dim=5))
    source.save_pretrained(tmp_path / "hf")
    loaded = create_model("videomae_b", **VIDEOMAE_TINY, embed_dim=5, pretrained=str(tmp_path / "hf"))
    assert loaded.initialised_from == str((tmp_path / "hf").resolve())
    for key, value in source.state_dict().items():
        if not key.startswith("classifier."):
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)
    # the original release's key names (qkv in one matrix, q_bias / v_bias), from a file
    torch.save({"model": original_keys(source.state_dict())}, tmp_path / "original.pth")
    again = create_model("videomae_b", **VIDEOMAE_TINY, embed_dim=5, pretrained=str(tmp_path / "original.pth"))
    for key, value in loaded.state_dict().items():
        if not key.startswith("head."):
            torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_videomae_weights_that_cannot_be_had_are_an_error_naming_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROACTION_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"model.pretrained=microaction-tests/no-such-videomae: .*local Hugging Face "
                                         r"cache \(MICROACTION_OFFLINE=1"):
        create_model("videomae_b", **VIDEOMAE_TINY, pretrained="microaction-tests/no-such-videomae")
    # a VideoMAE of another width: the sizes do not fit
    torch.save(create_model("videomae_b", **{**VIDEOMAE_TINY, "hidden_size": 16}).state_dict(), tmp_path / "w.pth")
    with pytest.raises(ValueError, match="not a VideoMAE state dict"):
        create_model("videomae_b", **VIDEOMAE_TINY, pretrained=str(tmp_path / "w.pth"))
    with pytest.raises(ValueError, match="num_segments=3 .* multiple of model.tubelet_size=2"):
        create_model("videomae_b", **{**VIDEOMAE_TINY, "num_segments": 3})


# --- losses: body term, reweighting, mixed targets -------------------------------------------------------------


def test_class_weights_against_a_hand_count():
    groups = [0, 0, 0, 1, 1]
    labels = [0] * 6 + [1] * 3 + [2] * 1 + [3] * 8 + [4] * 2  # 20 clips
    counts = Counter(labels)
    inv = np.array([1 / counts[c] for c in range(5)])
    np.testing.assert_allclose(class_weights(labels, 5, "inverse_freq"), inv / inv.mean(), rtol=1e-6)
    # within each body part: (clips of the part / its classes) / clips of the class
    body = np.array([(10 / 3) / 6, (10 / 3) / 3, (10 / 3) / 1, (10 / 2) / 8, (10 / 2) / 2])
    np.testing.assert_allclose(class_weights(labels, 5, "body_inverse_freq", groups), body / body.mean(), rtol=1e-6)
    # a class without training clips: weight 1, the rest normalised over the classes that occur
    w = class_weights([0, 0, 1], 3, "inverse_freq")
    np.testing.assert_allclose(w, [0.5 / 0.75, 1 / 0.75, 1.0], rtol=1e-6)
    assert class_weights(labels, 5, "none").tolist() == [1.0] * 5
    with pytest.raises(ValueError, match="loss.reweight must be one of"):
        class_weights(labels, 5, "sqrt")


def test_loss_with_body_term_weights_and_a_mixed_batch_against_hand_computation():
    torch.manual_seed(0)
    groups = [0, 0, 1, 1, 1]
    table = torch.randn(5, 3)
    loss = LabelEmbeddingLoss(table, alpha=2.0, body_weight=0.5, reweight="inverse_freq", fine_to_coarse=groups,
                              num_classes=5)
    weights = loss.set_class_weights([0, 0, 0, 1, 2, 2, 3, 4])
    logits, body, emb = torch.randn(4, 5), torch.randn(4, 2), torch.randn(4, 3)
    y = torch.tensor([0, 2, 3, 1])
    mix = Mix(torch.tensor([2, 3, 0, 1]), 0.7)
    got = loss({"logits": logits, "body_logits": body, "embedding": emb}, y, mix)

    def weighted_ce(z, t, w):
        return sum(-w[t[i]] * z.log_softmax(1)[i, t[i]] for i in range(len(t))) / sum(w[t[i]] for i in range(len(t)))

    partner = y[mix.partner]
    cls = 0.7 * weighted_ce(logits, y, weights) + 0.3 * weighted_ce(logits, partner, weights)
    g = torch.tensor(groups)
    ones = torch.ones(2)
    body_ce = 0.7 * weighted_ce(body, g[y], ones) + 0.3 * weighted_ce(body, g[partner], ones)
    target = 0.7 * table[y] + 0.3 * table[partner]
    dist = (emb - target).norm(dim=1).mean()
    torch.testing.assert_close(got["loss_cls"], cls)
    torch.testing.assert_close(got["loss_body"], body_ce)
    torch.testing.assert_close(got["loss_emb"], dist)
    torch.testing.assert_close(got["loss"], cls + 0.5 * body_ce + 2.0 * dist)
    # without class weights the mixed cross-entropy is cross-entropy against the soft target
    plain = LabelEmbeddingLoss(None, alpha=0.0, label_smoothing=0.1)
    soft = 0.7 * torch.nn.functional.one_hot(y, 5) + 0.3 * torch.nn.functional.one_hot(partner, 5)
    torch.testing.assert_close(plain({"logits": logits}, y, mix)["loss"],
                               torch.nn.functional.cross_entropy(logits, soft.float(), label_smoothing=0.1))
    # the class weights are state: saved and restored with the task's checkpoint
    fresh = LabelEmbeddingLoss(table, alpha=2.0, reweight="inverse_freq", fine_to_coarse=groups, num_classes=5)
    fresh.load_state_dict(loss.state_dict())
    torch.testing.assert_close(fresh.class_weights, weights)


def test_mixup_against_a_hand_loop():
    labels = torch.tensor([0, 5, 1, 12, 6, 2, 30, 13])  # body parts 0, 1, 0, 2, 1, 0, 3, 2
    video = torch.randn(8, 2, 3, 4, 4)
    settings = MixupSettings(alpha=0.4, p=1.0, within_body=True)
    torch.manual_seed(3)
    mixed, mix = mix_batch(video, labels, settings, F2C)
    assert sorted(mix.partner.tolist()) == list(range(8)) and 0.0 <= mix.lam <= 1.0
    for i in range(8):
        j = int(mix.partner[i])
        assert F2C[int(labels[j])] == F2C[int(labels[i])], (i, j)
        torch.testing.assert_close(mixed[i], mix.lam * video[i] + (1 - mix.lam) * video[j])
    assert int(mix.partner[6]) == 6  # alone in its body part: mixed with itself
    # ordinary mixup pairs across body parts; lam given; p = 0 never mixes
    torch.manual_seed(0)
    crossed = [mix_batch(video, labels, MixupSettings(0.4, 1.0, False), lam=0.25)[1] for _ in range(5)]
    assert all(m.lam == 0.25 for m in crossed)
    assert any(F2C[int(labels[int(m.partner[i])])] != F2C[int(labels[i])] for m in crossed for i in range(8))
    assert mix_batch(video, labels, MixupSettings(0.4, 0.0, True), F2C) == (video, None)
    assert mix_batch(video, labels, MixupSettings(0.0, 1.0, True), F2C) == (video, None)
    with pytest.raises(ValueError, match="loss.mixup.p must be a probability"):
        MixupSettings.from_config({"alpha": 0.4, "p": 2})
    with pytest.raises(ValueError, match=r"loss.mixup: unknown keys \['beta'\]"):
        MixupSettings.from_config({"beta": 1})


# --- optimisation: layer decay, backbone scale, warm-up ---------------------------------------------------------


def test_layer_decay_and_backbone_scale_give_each_parameter_its_rate():
    from functools import partial

    from microaction.tasks.recognition import MicroActionRecognition
    from microaction.tasks.schedules import warmup_cosine, warmup_cosine_factor

    model = {"name": "videomae_b", **VIDEOMAE_TINY, "num_layers": 2, "embed_dim": None, "pretrained": False}
    task = MicroActionRecognition(model, {"alpha": 0.0}, optimizer=partial(torch.optim.AdamW, lr=1.0, weight_decay=0.1),
                                  layer_decay=0.5, backbone_lr_scale=0.1)
    rate = {id(p): g["lr"] for g in task.configure_optimizers().param_groups for p in g["params"]}
    named = dict(task.net.named_parameters())
    # L = 2 blocks: embedding 0.5^3, block 1 0.5^2, block 2 0.5, fc_norm 1 (all x 0.1); the head 1
    assert rate[id(named["videomae.embeddings.patch_embeddings.projection.weight"])] == pytest.approx(0.1 * 0.125)
    assert rate[id(named["videomae.encoder.layer.0.output.dense.weight"])] == pytest.approx(0.1 * 0.25)
    assert rate[id(named["videomae.encoder.layer.1.attention.attention.query.bias"])] == pytest.approx(0.1 * 0.5)
    assert rate[id(named["fc_norm.weight"])] == pytest.approx(0.1)
    assert rate[id(named["head.fc.weight"])] == 1.0
    assert len(rate) == len(named)
    with pytest.raises(ValueError, match="task.layer_decay=0.5: model=tsn has no order of layers"):
        MicroActionRecognition({"name": "tsn", "depth": 10, "num_segments": 2, "pretrained": False}, {"alpha": 0.0},
                               optimizer=partial(torch.optim.SGD, lr=1.0), layer_decay=0.5).configure_optimizers()
    # warm-up from 0.1 over 2 epochs, then a cosine to 0 at the last of 6
    factors = [warmup_cosine_factor(e, 2, 6, 0.1, 0.0) for e in range(6)]
    assert factors[:3] == pytest.approx([0.1, 0.55, 1.0]) and factors[-1] == pytest.approx(0.0)
    assert factors[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 3)))
    opt = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": 2.0}, {"params": [torch.zeros(1)], "lr": 0.5}], lr=1.0)
    sched, seen = warmup_cosine(opt, max_epochs=6, warmup_epochs=2), []
    for _ in range(6):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [s[0] for s in seen] == pytest.approx([2.0 * f for f in factors])
    assert [s[1] for s in seen] == pytest.approx([0.5 * f for f in factors])


# --- the experiments -----------------------------------------------------------------------------------------

# ma52_videomae_b / ma52_sota made tiny: a 1-block VideoMAE of width 32 on 2 frames of 32 px, one batch per stage,
# random initialisation (the recipe's hub weights are never asked for in a test)
RECIPE_TINY = [a for a in BASE_TINY if not a.startswith(("experiment=", "model.", "logger="))] + [
    "model.pretrained=false", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "logger=csv",
    "test=false", "data.eval_batch_size=2",
]


def test_recipes_compose_with_their_settings(tmp_path):
    cfg = compose_train(["experiment=ma52_videomae_b", f"data.root={tmp_path}"], tmp_path)
    assert (cfg.model.name, cfg.model.head, cfg.data.num_segments, cfg.data.input_size) == ("videomae_b", "hierarchical",
                                                                                           16, 224)
    assert cfg.model.pretrained == "MCG-NJU/videomae-base-finetuned-kinetics" and cfg.task.layer_decay == 0.75
    assert cfg.optimizer.lr == pytest.approx(1e-3 * cfg.data.batch_size / 256)
    assert cfg.scheduler._target_.endswith("warmup_cosine") and cfg.loss.alpha == 0.0
    sota = compose_train(["experiment=ma52_sota", f"data.root={tmp_path}"], tmp_path)
    assert sota.loss.alpha == 5.0 and sota.loss.mixup.alpha == 0.8 and sota.loss.mixup.within_body
    assert (sota.data.sampler, sota.data.rare_aug, sota.data.test_views.crops) == ("class_balanced", True, 3)
    assert sota.loss.reweight == "none"  # the sampler's alternative (see the experiment's comment)
    assert sota.model.head == "hierarchical" and sota.task.layer_decay == 0.75


@pytest.mark.parametrize("experiment,extra", [
    ("ma52_videomae_b", ["loss.alpha=5", "loss.reweight=body_inverse_freq"]),
    ("ma52_sota", []),
])
def test_recipe_trains_tiny_with_the_hierarchical_head(experiment, extra, tiny_root, tmp_path, monkeypatch):
    """`python train.py experiment=<recipe> data.root=...` as train.py's job in this process, made tiny: the
    hierarchical head's body term is logged, the embedding loss (alpha > 0) trains, and the checkpoint carries
    what the task needs to rebuild it."""
    from microaction.pipeline import train
    from microaction.tasks.recognition import MicroActionRecognition

    monkeypatch.setenv("MICROACTION_OFFLINE", "1")
    out = tmp_path / "run"
    train(compose_train([f"experiment={experiment}", f"data.root={tiny_root}", *RECIPE_TINY, *extra], out))
    with (out / "csv" / "metrics.csv").open() as f:
        rows = [{k: v for k, v in r.items() if v} for r in csv.DictReader(f)]
    logged = {k for r in rows for k in r}
    assert {"train/loss_body", "train/loss_emb", "train/loss_cls", "val/F1_mean"} <= logged, logged
    (body,) = [float(r["train/loss_body"]) for r in rows if "train/loss_body" in r]
    assert math.isfinite(body) and body > 0
    ckpt = sorted((out / "checkpoints").glob("*.ckpt"))[0]
    task = MicroActionRecognition.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    assert task.net.head.fusion == 0.5 and task.criterion.alpha == 5.0
    assert (task.criterion.class_weights is not None) == ("loss.reweight=body_inverse_freq" in extra)
