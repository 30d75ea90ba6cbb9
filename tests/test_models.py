import pytest
import torch

from microaction.models import available_models, create_model
from microaction.models.manet import ResidualPrefix
from microaction.models.squeeze_excite import SqueezeExcite
from microaction.models.temporal_shift import TemporalShift, temporal_shift


def shift_by_loop(x: torch.Tensor, t: int, fold_div: int) -> torch.Tensor:
    nt, c, h, w = x.shape
    fold = c // fold_div
    out = torch.empty_like(x)
    for clip in range(nt // t):
        for f in range(t):
            for ch in range(c):
                if ch < fold:
                    src = f + 1
                elif ch < 2 * fold:
                    src = f - 1
                else:
                    src = f
                out[clip * t + f, ch] = x[clip * t + src, ch] if 0 <= src < t else 0.0
    return out


@pytest.mark.parametrize("t,c,fold_div", [(8, 16, 8), (4, 12, 4), (3, 7, 8), (1, 16, 8)])
def test_temporal_shift_matches_loop(t, c, fold_div):
    x = torch.randn(2 * t, c, 3, 2)
    torch.testing.assert_close(temporal_shift(x, t, fold_div), shift_by_loop(x, t, fold_div), rtol=0, atol=0)


def test_temporal_shift_rejects_partial_clip():
    with pytest.raises(ValueError, match="num_segments"):
        temporal_shift(torch.randn(7, 8, 2, 2), 4)


def test_temporal_shift_moves_information_across_frames():
    # A frame's output depends on its neighbours only through the shifted channels.
    x = torch.zeros(4, 16, 1, 1, requires_grad=True)
    temporal_shift(x, 4, 8)[1].sum().backward()
    touched = {(f, c) for f in range(4) for c in range(16) if x.grad[f, c] != 0}
    assert touched == {(2, 0), (2, 1)} | {(0, 2), (0, 3)} | {(1, c) for c in range(4, 16)}


def _blocks(model):
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        yield from stage


@pytest.mark.parametrize("name,se,shift", [("manet", True, True), ("tsm", False, True), ("tsn", False, False)])
def test_variants_are_one_module_with_switches(name, se, shift):
    model = create_model(name, depth=18, num_segments=4, embed_dim=16)
    assert type(model).__name__ == "TemporalResNet"
    for block in _blocks(model):
        prefix = block.conv1
        assert isinstance(prefix, ResidualPrefix)
        assert isinstance(prefix.se, SqueezeExcite) == se
        assert isinstance(prefix.shift, TemporalShift) == shift
        if se:
            assert prefix.se.fc1.in_features == prefix.conv.in_channels
            assert prefix.se.fc1.out_features == prefix.conv.in_channels // 4
            assert prefix.se.fc1.bias is None and prefix.se.fc2.bias is None
        # the shortcut is never wrapped
        if block.downsample is not None:
            assert not any(isinstance(m, (SqueezeExcite, TemporalShift)) for m in block.downsample.modules())


def test_se_then_shift_then_conv_on_residual_branch():
    model = create_model("manet", depth=50, num_segments=2, embed_dim=8).eval()
    block = model.layer2[0]
    order = []
    for name, mod in (("se", block.conv1.se), ("shift", block.conv1.shift), ("conv", block.conv1.conv)):
        mod.register_forward_hook(lambda m, i, o, name=name: order.append(name))
    block.downsample.register_forward_hook(lambda m, i, o: order.append("shortcut"))
    with torch.no_grad():
        model(torch.randn(1, 2, 3, 64, 64))
    assert order[:3] == ["se", "shift", "conv"]
    assert "shortcut" in order


def test_squeeze_excite_against_hand_computation():
    se = SqueezeExcite(8, ratio=4)
    x = torch.randn(3, 8, 5, 4)
    z = x.mean(dim=(2, 3))
    gate = torch.sigmoid(torch.relu(z @ se.fc1.weight.T) @ se.fc2.weight.T)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def resnet50_manet_param_arithmetic(num_classes=52, embed_dim=300, hidden=300, se_ratio=4) -> int:
    """Parameters of MANet-R50 counted from the architecture, not from torch."""
    total = 3 * 64 * 7 * 7 + 2 * 64  # stem conv + BN
    inplanes = 64
    se = 0
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            total += inplanes * planes + 2 * planes  # 1x1 + BN
            total += 9 * planes * planes + 2 * planes  # 3x3 + BN
            total += planes * 4 * planes + 2 * 4 * planes  # 1x1 + BN
            if b == 0:
                total += inplanes * 4 * planes + 2 * 4 * planes  # downsample + BN
            se += 2 * inplanes * (inplanes // se_ratio)  # SE on the block's input channels
            inplanes = 4 * planes
    head = 2048 * num_classes + num_classes + 2048 * hidden + hidden + hidden * embed_dim + embed_dim
    return total + se + head


def test_manet_r50_parameter_count():
    model = create_model("manet", depth=50, num_segments=8, embed_dim=300)
    assert sum(p.numel() for p in model.parameters()) == resnet50_manet_param_arithmetic()
    # without SE and shift (TSN/TSM) the same network is smaller by exactly the SE weights
    tsm = create_model("tsm", depth=50, num_segments=8, embed_dim=300)
    se_params = sum(p.numel() for m in model.modules() if isinstance(m, SqueezeExcite) for p in m.parameters())
    assert sum(p.numel() for p in tsm.parameters()) == resnet50_manet_param_arithmetic() - se_params


def test_forward_backward_shapes_and_averaging_over_frames():
    model = create_model("manet", depth=18, num_segments=4, embed_dim=12, dropout=0.0)
    x = torch.randn(2, 4, 3, 48, 48)
    out = model(x)
    assert out["logits"].shape == (2, 52) and out["embedding"].shape == (2, 12)
    (out["logits"].sum() + out["embedding"].sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        per_frame = model.head.fc(feats).view(2, 4, 52)
        torch.testing.assert_close(model(x)["logits"], per_frame.mean(1))


def test_wrong_number_of_frames_is_reported():
    model = create_model("tsn", depth=18, num_segments=4, embed_dim=8)
    with pytest.raises(ValueError, match="num_segments=4"):
        model(torch.randn(1, 3, 3, 32, 32))


def test_registry():
    assert {"manet", "tsm", "tsn"} <= set(available_models())
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(TypeError, match="fixed by the model name"):
        create_model("tsn", shift=True)
    with pytest.raises(ValueError, match="depth"):
        create_model("manet", depth=42)


def test_pretrained_missing_file_is_an_error(tmp_path):
    # an explicit file never falls back to random initialisation (tests/test_pretrained.py has the rest)
    missing = tmp_path / "nothing.pth"
    with pytest.raises(FileNotFoundError, match="model.pretrained=.*nothing.pth: no such file"):
        create_model("tsn", depth=18, num_segments=2, embed_dim=4, pretrained=str(missing))


def test_pretrained_from_state_dict_file(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    model = create_model("manet", depth=18, num_segments=2, embed_dim=4, pretrained=str(path))
    torch.testing.assert_close(model.stem[0].weight, ref.conv1.weight)
    torch.testing.assert_close(model.layer3[1].conv1.conv.weight, ref.layer3[1].conv1.weight)


def test_resnet10_is_resnet18_with_one_block_per_stage():
    import torchvision

    model = create_model("manet", depth=10, num_segments=2, embed_dim=4)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [1, 1, 1, 1]
    # the torchvision ResNet-18's stem plus the first block of each stage, nothing more
    r18 = torchvision.models.resnet18(weights=None)
    kept = {k: v for k, v in r18.state_dict().items()
            if not k.startswith("fc.") and (not k.startswith("layer") or k.split(".")[1] == "0")}
    tsn = create_model("tsn", depth=10, num_segments=2, embed_dim=None)
    backbone = {k: v for k, v in tsn.state_dict().items() if not k.startswith("head.")}
    assert sum(v.numel() for v in backbone.values()) == sum(v.numel() for v in kept.values())
    assert model(torch.randn(1, 2, 3, 32, 32))["logits"].shape == (1, 52)
    with pytest.raises(ValueError, match="no ImageNet weights exist for ResNet-10"):
        create_model("tsn", depth=10, pretrained=True)


def test_pretrained_file_in_this_models_key_names(tmp_path):
    # besides torchvision's key names, a file of this network itself loads (SE and head included)
    torch.manual_seed(1)
    src = create_model("manet", depth=10, num_segments=2, embed_dim=4)
    path = tmp_path / "manet_r10.pth"
    torch.save(src.state_dict(), path)
    torch.manual_seed(2)
    loaded = create_model("manet", depth=10, num_segments=2, embed_dim=4, pretrained=str(path))
    assert loaded.initialised_from == str(path.resolve())
    for key, value in src.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_torchvision_file_leaves_se_at_its_initialisation(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    torch.manual_seed(0)
    plain = create_model("manet", depth=18, num_segments=2, embed_dim=4)
    torch.manual_seed(0)
    loaded = create_model("manet", depth=18, num_segments=2, embed_dim=4, pretrained=str(tmp_path / "r18.pth"))
    torch.testing.assert_close(loaded.layer2[1].conv1.se.fc1.weight, plain.layer2[1].conv1.se.fc1.weight)
    assert not torch.equal(loaded.layer2[1].conv1.conv.weight, plain.layer2[1].conv1.conv.weight)
