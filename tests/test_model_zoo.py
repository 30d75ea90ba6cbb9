"""Every Table II model: builds tiny, trains a step, runs the real configs; sizes at standard settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers import CONF, compose_train

from microaction.models import available_models, create_model
from microaction.models.heads import ClipClassifier
from microaction.models.temporal_interlace import TemporalInterlace, fractional_shift
from microaction.models.temporal_shift import temporal_shift
from microaction.models.zoo import ZOO, build_standard, count_params

REPO = Path(__file__).resolve().parents[1]
TABLE_II = ["tsn", "tsm", "tin", "c3d", "i3d", "slowfast", "vswin_t", "timesformer", "uniformer", "manet"]

# Constructor arguments small enough for a CPU (32 px frames); the frame counts are
# each architecture's smallest sensible one.
TINY = {
    "manet": dict(depth=18, num_segments=2),
    "tsn": dict(depth=18, num_segments=2),
    "tsm": dict(depth=18, num_segments=2),
    "tin": dict(depth=18, num_segments=2),
    "temporal_resnet": dict(depth=18, num_segments=2),
    "c3d": dict(num_segments=16, base_width=4, fc_dim=32),
    "i3d": dict(num_segments=8, base_width=8, layers=[1, 1, 1, 1]),
    "slowfast": dict(num_segments=8, alpha=4, beta_inv=4, base_width=8, layers=[1, 1, 1, 1]),
    "vswin_t": dict(num_segments=4, swin_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=[2, 4, 4]),
    "timesformer": dict(num_segments=4, input_size=32, patch_size=8, width=32, depth=2, num_heads=2),
    "uniformer": dict(num_segments=4, widths=[8, 16, 32, 64], depths=[1, 1, 1, 1], head_dim=16),
}


def tiny(name: str, **kwargs) -> nn.Module:
    return create_model(name, num_classes=52, **{**TINY[name], "embed_dim": 12, **kwargs})


def test_every_table_ii_method_is_registered_and_has_a_tiny_setting():
    assert set(TABLE_II) <= set(available_models())
    assert set(TINY) == set(available_models()), "a new model needs a tiny setting here"


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    model = tiny(name)
    assert not any("lightning" in type(m).__module__ for m in model.modules())
    x = torch.randn(2, TINY[name]["num_segments"], 3, 32, 32)
    out = model(x)
    assert out["logits"].shape == (2, 52) and out["embedding"].shape == (2, 12)
    (out["logits"].logsumexp(1).sum() + out["embedding"].pow(2).sum()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, no_grad
    # the shared head: class scores are the classifier applied to the backbone's features
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        t = feats.shape[0] // 2
        assert t in (1, TINY[name]["num_segments"])  # clip features, or per-frame ones averaged by the head
        expected = model.head.fc(feats).view(2, t, 52).mean(1)
        torch.testing.assert_close(model(x)["logits"], expected)


def test_without_embedding_branch_only_logits():
    out = tiny("uniformer", embed_dim=None)(torch.randn(1, 4, 3, 32, 32))
    assert set(out) == {"logits"}


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("c3d", dict(num_segments=8), "num_segments=8 .data.num_segments. is not allowed"),
        ("slowfast", dict(num_segments=10), "multiple of model.alpha=4"),
        ("i3d", dict(num_segments=4), "at least 5 frames"),
        ("vswin_t", dict(num_segments=5), "num_segments=5"),
    ],
)
def test_frame_counts_a_model_cannot_take_are_refused_when_built(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(name, **kwargs)


def test_clip_of_other_shape_is_reported():
    model = tiny("timesformer")
    with pytest.raises(ValueError, match="num_segments=4"):
        model(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="input_size=32"):
        model(torch.randn(1, 4, 3, 48, 48))


# --- TIN ---------------------------------------------------------------------------


def test_fractional_shift_by_whole_frames_is_the_tsm_shift():
    # TSM's first fold reads frame t+1 and its second t-1: offsets +1 and -1
    x = torch.randn(3 * 4, 16, 2, 2)
    ref = temporal_shift(x, 4, 8)[:, :4]
    groups = x[:, :4].reshape(3, 4, 2, 2, 2, 2)
    out = fractional_shift(groups, torch.tensor([[1.0, -1.0]] * 3)).reshape(12, 4, 2, 2)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_fractional_shift_interpolates_and_passes_gradient_to_offsets():
    x = torch.arange(4.0).view(1, 4, 1, 1, 1, 1)
    offset = torch.tensor([[0.25]], requires_grad=True)
    out = fractional_shift(x, offset).flatten()
    torch.testing.assert_close(out, torch.tensor([0.25, 1.25, 2.25, 0.75 * 3]))  # last frame: 1/4 falls outside
    out[0].backward()  # frame 0 reads 0.75 * x[0] + 0.25 * x[1]: d/d offset = x[1] - x[0]
    torch.testing.assert_close(offset.grad, torch.tensor([[1.0]]))


def test_tin_puts_interlacing_in_every_block_of_the_shared_resnet():
    model = tiny("tin")
    assert type(model).__name__ == "TemporalResNet"
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
    assert all(isinstance(b.conv1.shift, TemporalInterlace) and b.conv1.se is None for b in blocks)
    with pytest.raises(TypeError, match="fixed by the model name"):
        create_model("tin", interlace=False)


def test_interlace_starts_as_half_frame_shift_with_unit_weights():
    # TIN's initialisation: offsets +-0.5 frame, weights 1
    mod = TemporalInterlace(16, num_segments=4, shift_div=2)
    x = torch.randn(2 * 4, 16, 3, 3)
    moved = x[:, :8].reshape(2, 4, 4, 2, 3, 3)
    ref = fractional_shift(moved, torch.tensor([[0.5, 0.5, -0.5, -0.5]] * 2)).reshape(8, 8, 3, 3)
    out = mod(x)
    torch.testing.assert_close(out[:, :8], ref)
    torch.testing.assert_close(out[:, 8:], x[:, 8:], rtol=0, atol=0)


# --- pretrained weights (files only: nothing downloads in tests) --------------------


def test_i3d_inflates_a_2d_resnet50(tmp_path):
    import torchvision

    ref = torchvision.models.resnet50(weights=None)
    path = tmp_path / "r50.pth"
    torch.save(ref.state_dict(), path)
    model = create_model("i3d", num_segments=8, embed_dim=4, pretrained=str(path))
    w = model.conv1.weight
    assert w.shape[2] == 5
    torch.testing.assert_close(w.sum(2), ref.conv1.weight)
    torch.testing.assert_close(w[:, :, 0], ref.conv1.weight / 5)
    torch.testing.assert_close(model.layer3[0].conv1.weight.sum(2), ref.layer3[0].conv1.weight)  # inflated 3x1x1
    torch.testing.assert_close(model.layer3[1].conv1.weight[:, :, 0], ref.layer3[1].conv1.weight)  # 1x1x1
    torch.testing.assert_close(model.layer4[2].bn3.running_var, ref.layer4[2].bn3.running_var)


@pytest.mark.parametrize("name", ["c3d", "slowfast", "uniformer", "vswin_t"])
def test_state_dict_round_trip_and_misfit_is_an_error(name, tmp_path):
    src = tiny(name)
    path = tmp_path / "w.pth"
    torch.save({k: v for k, v in src.state_dict().items() if not k.startswith("head.")}, path)
    loaded = tiny(name, pretrained=str(path))
    for key, value in src.state_dict().items():
        if not key.startswith("head."):
            torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="state dict"):
        tiny(name, pretrained=str(path))


def test_timesformer_from_a_2d_vit_copies_spatial_attention_to_temporal(tmp_path):
    vit = {k: v for k, v in tiny("timesformer").state_dict().items()
           if "temporal" not in k and k != "time_embed" and not k.startswith("head.")}
    vit["head.weight"] = torch.zeros(1000, 32)  # an ImageNet classifier, dropped
    path = tmp_path / "vit.pth"
    torch.save(vit, path)
    model = tiny("timesformer", pretrained=str(path))
    torch.testing.assert_close(model.blocks[1].temporal_attn.qkv.weight, vit["blocks.1.attn.qkv.weight"])
    torch.testing.assert_close(model.blocks[0].temporal_norm1.weight, vit["blocks.0.norm1.weight"])
    assert model.blocks[0].temporal_fc.weight.abs().sum() == 0  # starts as the per-frame ViT


def test_unobtainable_weights_fall_back_to_random_init_and_say_so(tmp_path, caplog):
    with caplog.at_level("INFO"):
        tiny("vswin_t", pretrained=str(tmp_path / "absent.pth"))
        tiny("c3d", pretrained=True)  # no library ships C3D: told to pass a path
        tiny("slowfast")
    assert "Video Swin-T: pretrained weights not obtainable" in caplog.text
    assert "C3D: no library ships weights" in caplog.text
    assert "SlowFast-R50: random initialisation" in caplog.text


# --- sizes at the standard settings --------------------------------------------------


@pytest.mark.parametrize("name", [n for n in ZOO if ZOO[n].published_params_m])
def test_parameter_count_matches_the_published_size(name):
    model = build_standard(name)  # meta device: nothing allocated
    assert all(p.is_meta for p in model.parameters())
    got = count_params(model) / 1e6
    assert got == pytest.approx(ZOO[name].published_params_m, rel=0.03), f"{name}: {got:.2f} M"


def test_model_zoo_doc_lists_the_counted_sizes():
    doc = (REPO / "docs" / "model_zoo.md").read_text()
    for name in ZOO:
        row = re.search(rf"^\| `{name}` \|.*$", doc, re.M)
        assert row, f"docs/model_zoo.md has no row for {name}; run scripts/model_zoo.py"
        model = build_standard(name)
        assert f"| {count_params(model) / 1e6:.2f} |" in row.group(0), f"{name}: table out of date"


def test_manet_parameters_unchanged_by_the_shared_head():
    # test_models.py pins the exact count; here: the head is the same class for every model
    from microaction.models.heads import ClipHead

    assert isinstance(tiny("manet").head, ClipHead) and isinstance(tiny("i3d").head, ClipHead)
    assert isinstance(tiny("i3d"), ClipClassifier)


# --- the real configs -----------------------------------------------------------------

# per method: its experiment, made tiny (frames, width) and kept offline (pretrained=false)
FDR_TINY = {
    "tin": ["model.depth=18", "data.num_segments=2"],
    "c3d": ["data.num_segments=16", "model.base_width=4", "model.fc_dim=32"],
    "i3d": ["data.num_segments=8", "model.base_width=8", "model.layers=[1,1,1,1]"],
    "slowfast": ["data.num_segments=8", "model.alpha=4", "model.beta_inv=4", "model.base_width=8",
                 "model.layers=[1,1,1,1]"],
    "vswin_t": ["data.num_segments=4", "model.swin_dim=16", "model.depths=[1,1,1,1]", "model.num_heads=[1,1,2,2]",
                "model.window_size=[2,4,4]"],
    "timesformer": ["data.num_segments=4", "model.patch_size=8", "model.width=32", "model.depth=2",
                    "model.num_heads=2"],
    "uniformer": ["data.num_segments=4", "model.widths=[8,16,32,64]", "model.depths=[1,1,1,1]",
                  "model.head_dim=16"],
}




def test_every_table_ii_method_has_an_experiment():
    assert set(FDR_TINY) | {"tsn", "tsm", "manet"} == set(TABLE_II)
    for name in TABLE_II:
        assert (CONF / "model" / f"{name}.yaml").is_file() and (CONF / "experiment" / f"ma52_{name}.yaml").is_file()


@pytest.mark.parametrize("name", TABLE_II)
def test_each_experiment_uses_its_methods_standard_input_and_builds(name, tmp_path):
    from omegaconf import OmegaConf

    cfg = compose_train([f"experiment=ma52_{name}", f"data.root={tmp_path}"], tmp_path)
    assert (cfg.model.name, cfg.data.num_segments, cfg.data.input_size) == (name, ZOO[name].frames, ZOO[name].size)
    assert cfg.loss.alpha == (5.0 if name == "manet" else 0.0)  # the comparison: cross-entropy only
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert model.pop("pretrained") in (True, False)
    with torch.device("meta"):  # the recipe's own frame count and size fit the architecture
        net = create_model(num_classes=52, **{**model, "embed_dim": 384})
    with torch.no_grad():
        out = net(torch.empty(1, ZOO[name].frames, 3, ZOO[name].size, ZOO[name].size, device="meta"))
    assert out["logits"].shape == (1, 52)


@pytest.mark.parametrize("name", sorted(FDR_TINY))
def test_fast_dev_run_of_each_experiment(name, tiny_root, tmp_path):
    from microaction.pipeline import train

    cfg = compose_train(
        [f"experiment=ma52_{name}", *FDR_TINY[name], f"data.root={tiny_root}", "data.input_size=32",
         "data.short_side=32", "data.batch_size=2", "data.num_workers=0", "model.pretrained=false",
         "loss.alpha=1", "debug=fdr"],
        tmp_path,
    )
    assert cfg.model.name == name and cfg.model.pretrained is False and cfg.loss.alpha == 1.0
    train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["val"]["num_clips"] == 2 and 0.0 <= saved["val"]["F1_mean"] <= 1.0
