"""Every Table II model: builds tiny, trains a step, runs the real configs (and every model= option with the
quickstart); the registry's catalogue and sizes at standard settings."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers import CONF, compose_train, run_as_typed
from omegaconf import OmegaConf

from microaction.models import ClipClassifier, ClipHead, available_models, catalogue, create_model, model_info
from microaction.models.counting import build_standard, count_params
from microaction.models.temporal_interlace import TemporalInterlace, fractional_shift
from microaction.models.temporal_shift import temporal_shift

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
    # one class, three published sizes: each name built at the same tiny width
    **{name: dict(num_segments=2, input_size=32, hidden_size=32, num_layers=1, num_heads=2)
       for name in ("videomae_s", "videomae_b", "videomae_l")},
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


def test_unobtainable_weights_fall_back_to_random_init_and_say_so(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("MICROACTION_OFFLINE", "1")  # library weights from the (empty) cache only
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with caplog.at_level("INFO"):
        tiny("vswin_t", pretrained=True)
        tiny("c3d", pretrained=True)  # no library ships C3D: told to pass a path
        tiny("slowfast")
    assert "Video Swin-T: pretrained weights not obtainable" in caplog.text
    assert "C3D: no library ships weights" in caplog.text
    assert "SlowFast-R50: random initialisation" in caplog.text


# --- sizes at the standard settings --------------------------------------------------


@pytest.mark.parametrize("name", [i.name for i in catalogue() if i.published_params_m])
def test_parameter_count_matches_the_published_size(name):
    model = build_standard(name)  # meta device: nothing allocated
    assert all(p.is_meta for p in model.parameters())
    got = count_params(model) / 1e6
    assert got == pytest.approx(model_info(name).published_params_m, rel=0.03), f"{name}: {got:.2f} M"


def test_model_zoo_doc_lists_the_counted_sizes():
    doc = (REPO / "docs" / "model_zoo.md").read_text()
    doc = doc.split("<!-- zoo:begin -->", 1)[1].split("<!-- zoo:end -->", 1)[0]  # the generated table
    for name in (i.name for i in catalogue()):
        row = re.search(rf"^\| `{name}` \|.*$", doc, re.M)
        assert row, f"docs/model_zoo.md has no row for {name}; run scripts/model_zoo.py"
        model = build_standard(name)
        assert f"| {count_params(model) / 1e6:.2f} |" in row.group(0), f"{name}: table out of date"


def test_manet_parameters_unchanged_by_the_shared_head():
    # test_models.py pins the exact count; here: the head is the same class for every model
    assert isinstance(tiny("manet").head, ClipHead) and isinstance(tiny("i3d").head, ClipHead)
    assert isinstance(tiny("i3d"), ClipClassifier)


# --- the registry: each model's facts beside its registration; the builder adds head and weights -------------

MODELS = REPO / "src" / "microaction" / "models"
BACKBONE_FILES = {"manet", "c3d", "i3d", "slowfast", "video_swin", "timesformer", "uniformer", "videomae"}


def test_catalogue_facts_live_in_the_registry():
    assert [i.name for i in catalogue()] == ["tsn", "tsm", "tin", "manet", "c3d", "i3d", "slowfast", "vswin_t",
                                             "timesformer", "uniformer", "videomae_s", "videomae_b", "videomae_l"]
    assert not (MODELS / "zoo.py").exists()
    for info in catalogue():
        assert info.method and info.family and info.source and info.frames >= 1 and info.size >= 32
        # the standard frame count is the only default of num_segments (and the size of input_size)
        with torch.device("meta"):
            model = create_model(info.name)
        assert model.num_segments == info.frames
        assert model.input_size in (None, info.size)


def test_backbone_files_define_no_head_and_load_no_weights():
    """The registry's builder attaches the head and loads weights; backbones import shared layers, not each other."""
    registered = {model_info(n).cls.__module__.rsplit(".", 1)[1] for n in available_models()}
    assert registered == BACKBONE_FILES
    for name in BACKBONE_FILES:
        source = (MODELS / f"{name}.py").read_text()
        imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom) and n.level == 1}
        assert not imported & BACKBONE_FILES, f"{name}.py imports from {imported & BACKBONE_FILES}"
        assert not {"pretrained", "counting"} & imported, name
        assert "ClipHead" not in source and "load_pretrained" not in source, name


@pytest.mark.parametrize("name", ["c3d", "tsm"])
def test_the_builder_attaches_the_head_to_the_bare_backbone(name):
    info = model_info(name)
    bare = info.cls(**{k: v for k, v in TINY[name].items()}, **info.fixed)
    assert not hasattr(bare, "head") and not hasattr(bare, "initialised_from")
    built = tiny(name)
    assert isinstance(built.head, ClipHead) and built.head.fc.in_features == bare.num_features
    assert built.initialised_from == "random"
    head_params = sum(p.numel() for p in built.head.parameters())
    assert count_params(built) == count_params(bare) + head_params


def test_a_setting_the_model_does_not_take_is_refused_before_anything_is_built(monkeypatch):
    from microaction.models.c3d import C3D

    def build(*args, **kwargs):
        raise AssertionError("C3D was built")

    monkeypatch.setattr(C3D, "__init__", build)
    settings = ("num_segments, base_width, fc_dim, dropout, num_classes, embed_dim, embed_hidden, head, head_fusion, "
                "fine_to_coarse, pretrained")
    with pytest.raises(TypeError) as info:
        create_model("c3d", depth=18)
    assert str(info.value) == f"model.depth: not a setting of model=c3d (its settings: {settings})"
    with pytest.raises(TypeError, match=r"^model\.depth, model\.width: not settings of model=c3d \(its settings"):
        create_model("c3d", depth=18, width=3)
    with pytest.raises(TypeError, match="model.shift is fixed by the model name .* model=tsn/tsm/tin/manet"):
        create_model("tsn", shift=True)


def test_a_key_only_another_model_has_is_named_by_the_run(tiny_root, tmp_path):
    """An experiment's ResNet depth given to C3D: the run stops with the key and the model named, before training."""
    from helpers import FAST

    from microaction.pipeline import train

    # procedural_manet picks its ResNet-10 with model.depth, which C3D does not have
    cfg = compose_train(["experiment=procedural_manet", "model=c3d"], tmp_path)
    with pytest.raises(TypeError, match=r"^model\.depth: not a setting of model=c3d \(its settings: num_segments"):
        create_model(**OmegaConf.to_container(cfg.model, resolve=True))
    # the same through the whole run, from the command line's `+model.depth=18`
    cfg = compose_train([*[a for a in FAST if a != "model.depth=18"], "model=c3d", "+model.depth=18",
                         "data.num_segments=16", "data.input_size=32", f"data.root={tiny_root}"], tmp_path)
    with pytest.raises(Exception) as info:  # the task is built by Hydra, which wraps the error, keeping its text
        train(cfg)
    assert "model.depth: not a setting of model=c3d (its settings: num_segments" in str(info.value)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()


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
    info = model_info(name)
    assert (cfg.model.name, cfg.data.num_segments, cfg.data.input_size) == (name, info.frames, info.size)
    assert cfg.loss.alpha == (5.0 if name == "manet" else 0.0)  # the comparison: cross-entropy only
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert model.pop("pretrained") in (True, False)
    with torch.device("meta"):  # the recipe's own frame count and size fit the architecture
        net = create_model(num_classes=52, **{**model, "embed_dim": 384})
    with torch.no_grad():
        out = net(torch.empty(1, info.frames, 3, info.size, info.size, device="meta"))
    assert out["logits"].shape == (1, 52)


# --- every model= option with the quickstart ------------------------------------------------------------------

MODEL_OPTIONS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
# the pretrained video transformers beyond Table II (docs/recipes.md)
VIDEOMAE = ["videomae_s", "videomae_b", "videomae_l"]
# One class at three widths: ViT-S trains here at full size; ViT-B and ViT-L (86 M / 304 M parameters, about
# 40 s / 5 GB with AdamW's state on 2 CPU cores) compose and build at the quickstart's input on the meta
# device (test_quickstart_composes_with_every_model_option), and train at a tiny width in test_recipes_model.py
TRAINED_FULL_SIZE = [o for o in MODEL_OPTIONS if o not in ("videomae_b", "videomae_l")]
RESNET_OPTIONS = {"manet": 50, "manet_r18": 18, "tsm": 50, "tsn": 50, "tin": 50}
# what the quickstart runs each option at: its 8 x 32 x 32, except where the architecture needs more frames
QUICKSTART_FRAMES = {"c3d": 16}  # C3D pools time by 2 four times


def test_quickstart_itself_is_manet_r18_as_before(tmp_path):
    cfg = compose_train(["experiment=quickstart"], tmp_path)
    assert OmegaConf.to_container(cfg.model, resolve=True) == {
        "name": "manet", "depth": 18, "num_segments": 8, "shift_div": 8, "se_ratio": 4, "dropout": 0.5,
        "embed_dim": None, "embed_hidden": 300, "head": "linear", "head_fusion": 0.5, "pretrained": False}
    assert (cfg.data.num_segments, cfg.data.input_size, cfg.optimizer.lr, cfg.trainer.max_epochs) == (8, 32, 0.001, 15)


@pytest.mark.parametrize("option", MODEL_OPTIONS)
def test_quickstart_composes_with_every_model_option(option, tmp_path):
    """Quick to fail: the composed settings are all the model's and it builds and runs at the quickstart's input."""
    assert set(TABLE_II) | {"manet_r18"} | set(VIDEOMAE) == set(MODEL_OPTIONS)
    cfg = compose_train(["experiment=quickstart", f"model={option}"], tmp_path)
    frames = QUICKSTART_FRAMES.get(option, 8)
    assert (cfg.data.num_segments, cfg.data.input_size, cfg.model.pretrained) == (frames, 32, False)
    assert cfg.model.get("depth") == RESNET_OPTIONS.get(option, 12 if option == "timesformer" else None)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    with torch.device("meta"):
        net = create_model(num_classes=52, **{**model, "embed_dim": 384})
    with torch.no_grad():
        out = net(torch.empty(2, frames, 3, 32, 32, device="meta"))
    assert out["logits"].shape == (2, 52) and out["embedding"].shape == (2, 384)


# one training batch and one validation batch of the real pipeline, without writing the full-size networks'
# checkpoints (hundreds of MB for timesformer's ViT-B with its optimizer state)
ONE_STEP = ["data.generate=null", "data.num_workers=0", "data.batch_size=2", "trainer.max_epochs=1",
            "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0",
            "trainer.accelerator=cpu", "test=false", "logger=csv", "callbacks.rich_progress_bar=null",
            "extras.print_config=false", "~callbacks.model_checkpoint", "~callbacks.last_checkpoint",
            "~callbacks.step_checkpoint", "+trainer.enable_checkpointing=false"]


@pytest.mark.parametrize("option", TRAINED_FULL_SIZE)
def test_quickstart_trains_with_every_model_option(option, tiny_root, tmp_path):
    """`python train.py experiment=quickstart model=<option>` as train.py's job in this process, on the tiny data:
    each option's full-size network (VideoMAE: ViT-S, see TRAINED_FULL_SIZE), at the quickstart's frames and size,
    takes a training step and scores a validation batch through the real pipeline (data, task, loss, optimizer
    groups, Lightning, logger)."""
    import csv
    import math

    from microaction.pipeline import train

    out = tmp_path / "run"
    results = train(compose_train(["experiment=quickstart", f"model={option}", f"data.root={tiny_root}", *ONE_STEP],
                                  out))
    saved = OmegaConf.load(out / "config_resolved.yaml")
    assert saved.model.name == option.removesuffix("_r18") and saved.init == results["init"] == "random"
    assert (saved.data.num_segments, saved.data.input_size) == (QUICKSTART_FRAMES.get(option, 8), 32), option
    with (out / "csv" / "metrics.csv").open() as f:
        rows = [{k: v for k, v in r.items() if v} for r in csv.DictReader(f)]
    val = [r for r in rows if "val/num_clips" in r]
    assert [float(r["val/num_clips"]) for r in val] == [2.0] and 0.0 <= float(val[0]["val/F1_mean"]) <= 1.0, rows
    (loss,) = [float(r["train/loss_epoch"]) for r in rows if "train/loss_epoch" in r]
    assert math.isfinite(loss)


SWEPT_AS_TYPED = ["c3d", "tsm"]  # a 3D network at its own 16 frames and a ResNet-50 option


def test_quickstart_sweeps_models_as_typed(checkout):
    """`python train.py -m experiment=quickstart model=c3d,tsm` from a fresh checkout: one job per model, each a
    real (one batch per stage) run of the quickstart with that model, on the data it writes on first use.
    The options run through train.py's job in test_quickstart_trains_with_every_model_option."""
    assert set(SWEPT_AS_TYPED) < set(MODEL_OPTIONS)
    multiruns = checkout / "logs" / "train" / "multiruns"
    before = set(multiruns.iterdir()) if multiruns.is_dir() else set()
    run_as_typed(f"python train.py -m experiment=quickstart model={','.join(SWEPT_AS_TYPED)}", checkout,
                 ["data.generate_kwargs.per_class=[1,1,1]", "data.batch_size=2", "debug=fdr"])
    (sweep,) = [p for p in multiruns.iterdir() if p not in before]
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: int(p.name.split("_")[0]))
    assert [j.name for j in jobs] == [f"{i}_model={m}" for i, m in enumerate(SWEPT_AS_TYPED)]
    for job, option in zip(jobs, SWEPT_AS_TYPED):
        saved = OmegaConf.load(job / "config_resolved.yaml")
        assert saved.model.name == option.removesuffix("_r18") and saved.init == "random"
        assert (saved.data.num_segments, saved.data.input_size) == (QUICKSTART_FRAMES.get(option, 8), 32), option
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["val"]["num_clips"] == 2 and 0.0 <= metrics["val"]["F1_mean"] <= 1.0, option
