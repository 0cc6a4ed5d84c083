"""torchvision's classification models as tv.NAME: registration, adaptation to the data, local weights only, the
smallest side each family runs at, and what channel pruning does to each family (the coverage behind
docs/tv_coverage.md), plus the model-first API's "done when" checks of issue 14 on torchvision's own models."""
import pickle

import pytest
import torch
import torchvision
from torch import nn

import compression
from compression import LabError, build_model, format_spec, list_models, parse_spec
from compression.core.tv_models import min_side, tv_names

SHAPE = (3, 32, 32)

# One model per family: variants of a family share its code (only widths and depths differ), so the smallest
# stands for the rest here; benchmarks/tv_coverage.py --all runs every variant. Longest prefix wins.
FAMILIES = {
    "alexnet": "alexnet", "convnext": "convnext_tiny", "densenet": "densenet121", "efficientnet_b": "efficientnet_b0",
    "efficientnet_v2": "efficientnet_v2_s", "googlenet": "googlenet", "inception_v3": "inception_v3",
    "maxvit": "maxvit_t", "mnasnet": "mnasnet0_5", "mobilenet_v2": "mobilenet_v2", "mobilenet_v3": "mobilenet_v3_small",
    "regnet_x": "regnet_x_400mf", "regnet_y": "regnet_y_400mf", "resnet18": "resnet18", "resnet34": "resnet18",
    "resnet50": "resnet50", "resnet101": "resnet50", "resnet152": "resnet50", "wide_resnet": "resnet50",
    "resnext": "resnext50_32x4d", "shufflenet": "shufflenet_v2_x0_5", "squeezenet1_0": "squeezenet1_0",
    "squeezenet1_1": "squeezenet1_1", "swin_v2": "swin_v2_t", "swin_": "swin_t", "vgg": "vgg11", "vit_": "vit_b_16",
}
# wide_resnet is ResNet's bottleneck code with wider inner convs; vgg*_bn adds BatchNorm, checked via vgg11_bn.
REPRESENTATIVES = sorted(set(FAMILIES.values()) | {"vgg11_bn"})


def family_of(name: str) -> str:
    if name.startswith("vgg") and name.endswith("_bn"):
        return "vgg11_bn"
    return FAMILIES[max((p for p in FAMILIES if name.startswith(p)), key=len)]


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_torchvision_classifier_is_registered_and_has_a_tested_family():
    names = tv_names()
    assert names == sorted(torchvision.models.list_models(module=torchvision.models)) and len(names) >= 80
    assert list_models("tv.*") == [f"tv.{n}" for n in names]
    assert not any(n.startswith("tv.") for n in list_models())  # the zoo stays the zoo
    missing = [n for n in names if not any(n.startswith(p) for p in FAMILIES)]
    assert not missing, f"new torchvision families, add them to FAMILIES: {missing}"


def test_specs_parse_with_image_size_and_paths_that_hold_dashes():
    assert parse_spec("tv.vit_b_16:image_size=32") == {"name": "tv.vit_b_16", "args": {"image_size": 32}}
    spec = parse_spec("tv.resnet18:weights=/tmp/my-run-2/best-ckpt.pt")
    assert spec["args"]["weights"] == "/tmp/my-run-2/best-ckpt.pt"  # '-' splits lists in other args
    assert parse_spec(format_spec(spec)) == spec
    with pytest.raises(LabError, match="Known: weights, image_size"):
        parse_spec("tv.resnet18:width=2")


@pytest.mark.parametrize("shape,classes", [((1, 28, 28), 7), ((3, 8, 8), 4)])
def test_head_and_first_conv_adapt_to_the_data(shape, classes):
    model = build_model("tv.resnet18", shape, classes).eval()
    assert model.conv1.in_channels == shape[0] and model.fc.out_features == classes
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, classes)


def test_a_model_below_its_smallest_side_resizes_its_input():
    model = build_model("tv.inception_v3", (1, 28, 28), 3).eval()
    assert type(model).__name__ == "Resized" and model.side == min_side("inception_v3") == 75
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(LabError, match="multiples of 16.*image_size=32"):
        build_model("tv.vit_b_16:image_size=30", SHAPE, 10)


@pytest.mark.parametrize("name", ["alexnet", "convnext_tiny", "densenet121", "googlenet", "squeezenet1_0",
                                  "squeezenet1_1", "swin_t", "vgg11"])
def test_each_family_runs_at_its_smallest_side_and_not_one_pixel_below(name):
    side = min_side(name)
    model = torchvision.models.get_model(name, num_classes=2).eval()  # torchvision's own model: the oracle
    with torch.no_grad():
        assert model(torch.randn(1, 3, side, side)).shape == (1, 2)
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 3, side - 1, side - 1))


def test_local_weights_load_with_a_new_head_and_a_grey_first_conv(tmp_path):
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet18-imagenet-like.pt"
    torch.save({"state_dict": imagenet.state_dict()}, path)  # wrapped, as training scripts often save
    model = build_model(f"tv.resnet18:weights={path}", (1, 16, 16), 5)
    assert torch.equal(model.layer3[1].conv2.weight, imagenet.layer3[1].conv2.weight)
    # a grey pixel x gives each filter the response the RGB filter gave to (x, x, x)
    assert torch.allclose(model.conv1.weight[:, 0], imagenet.conv1.weight.sum(1), atol=1e-6)
    assert model.fc.out_features == 5


def test_a_hostile_or_wrong_weights_file_is_refused_and_never_run(tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    hostile = tmp_path / "hostile.pt"
    hostile.write_bytes(pickle.dumps({"conv1.weight": Boom()}))
    with pytest.raises(LabError, match="not a weights-only checkpoint"):
        build_model(f"tv.resnet18:weights={hostile}", SHAPE, 10)
    assert not (tmp_path / "pwned").exists()
    other = tmp_path / "vgg.pt"
    torch.save(torchvision.models.squeezenet1_1(num_classes=10).state_dict(), other)
    with pytest.raises(LabError, match="not a checkpoint of resnet18"):
        build_model(f"tv.resnet18:weights={other}", SHAPE, 10)
    with pytest.raises(LabError, match="not found.*nothing is downloaded"):
        build_model(f"tv.resnet18:weights={tmp_path / 'absent.pt'}", SHAPE, 10)


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_channel_pruning_coverage(name):
    """Each family prunes at 50% and runs with the same output (maxvit_t at 224: its input is resized)."""
    torch.manual_seed(0)
    model = build_model(f"tv.{name}", SHAPE, 10).eval()
    data = (torch.randn(4, *SHAPE), torch.arange(4) % 10)
    pruned = compression.prune(model, data, method="channel_l1", sparsity=0.5)
    with torch.no_grad():
        assert pruned(torch.randn(2, *SHAPE)).shape == (2, 10)
    # every family sheds at least a fifth of its weights (ShuffleNet keeps its block outputs: ~0.52)
    assert params(pruned) <= 0.8 * params(model)


def test_vit_pruning_keeps_each_head_whole():
    """Head-aware: every head loses the same number of dims, so a kept dim stays in the head it came from."""
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(image_size=32, num_classes=10).eval()
    pruned = compression.prune(vit, (torch.randn(4, *SHAPE), torch.arange(4)), sparsity=0.5)
    rows = pruned.conv_proj.weight.flatten(1)
    original = vit.conv_proj.weight.flatten(1)
    kept = [int((original == row).all(1).nonzero()[0]) for row in rows]  # which original dim each one is
    heads = vit.encoder.layers[0].num_heads
    head_dim = vit.hidden_dim // heads
    assert sorted(kept) == kept and len(kept) == vit.hidden_dim // 2
    assert [sum(k // head_dim == h for k in kept) for h in range(heads)] == [head_dim // 2] * heads
    attention = pruned.encoder.layers[0].self_attention
    assert attention.num_heads == heads and attention.head_dim == head_dim // 2


def test_swin_loses_mlp_hidden_units_only_with_a_note_saying_so():
    """Torch-Pruning cannot trace Swin's window attention: its MLPs' hidden units go, by the norm of their rows,
    and every other width stays, in as many steps as asked."""
    from compression.core.data import from_examples
    from compression.techniques.prune import PruneConfig, prune_model

    torch.manual_seed(0)
    swin = torchvision.models.swin_t(num_classes=10).eval()
    data = from_examples((torch.randn(8, *SHAPE), torch.arange(8) % 10))
    pruned, report = prune_model(swin, data, PruneConfig(method="channel_l2", sparsity=0.5, finetune_epochs=0))
    assert [block.mlp[0].out_features for block in pruned.features[1]] == [192, 192]  # 384 hidden units, halved
    first, kept = swin.features[1][0].mlp[0], pruned.features[1][0].mlp[0]
    chosen = first.weight.norm(dim=1).topk(192).indices.sort().values  # the largest L2 rows, in their order
    assert torch.equal(kept.weight, first.weight[chosen]) and torch.equal(kept.bias, first.bias[chosen])
    assert torch.equal(pruned.features[1][0].mlp[3].weight, swin.features[1][0].mlp[3].weight[:, chosen])
    for before, after in zip(swin.modules(), pruned.modules()):
        if isinstance(before, torchvision.models.swin_transformer.ShiftedWindowAttention):
            assert after.qkv.weight.shape == before.qkv.weight.shape  # attention untouched
    assert swin.features[1][0].mlp[0].out_features == 384  # the caller's model unchanged
    assert "MLP hidden units only, in 12 MLPs (they keep 50% of them)" in report["notes"][0]
    with pytest.warns(UserWarning, match="MLP hidden units only"):  # the API says so too
        compression.prune(swin, (torch.randn(4, *SHAPE), torch.arange(4)), sparsity=0.5)
    gradual = PruneConfig(method="channel_l1", sparsity=0.5, schedule="iterative", steps=2, finetune_epochs=2)
    tuned, report = prune_model(swin, data, gradual)
    assert [h["step"] for h in report["finetune_history"]] == [1, 2]  # pruned 25%, tuned, pruned 50%, tuned
    assert tuned.features[1][0].mlp[0].out_features == 192
    with torch.no_grad():
        assert tuned(torch.randn(2, *SHAPE)).shape == (2, 10)


def _loader(n=64, batch=16):
    images = torch.utils.data.TensorDataset(torch.randn(n, *SHAPE), torch.randint(0, 10, (n,)))
    return torch.utils.data.DataLoader(images, batch_size=batch)


API_MODELS = {"resnet18": lambda: torchvision.models.resnet18(num_classes=10),
              "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
              "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(num_classes=10),
              "vit_b_16": lambda: torchvision.models.vit_b_16(image_size=32, num_classes=10)}


@pytest.mark.parametrize("name", list(API_MODELS))
def test_api_prunes_torchvision_models_from_a_plain_dataloader(name):
    torch.manual_seed(0)
    model = API_MODELS[name]().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = compression.prune(model, _loader(), method="channel_l1", sparsity=0.5)
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert pruned.eval()(x).shape == model(x).shape == (3, 10)
    assert params(pruned) <= 0.8 * params(model)
    after = model.state_dict()  # the caller's model is untouched: same tensors, same shapes, same values
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "shufflenet_v2_x0_5"])
def test_api_static_int8_runs_on_torchvision_models(name):
    # ShuffleNet pools with x.mean([2, 3]); on 1x1 int8 maps that raised a channels_last rank error
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=10)
    with torch.no_grad():  # BatchNorm statistics from the data: a fresh mobilenet's outputs are ~1e-10 otherwise
        for x, _ in _loader():
            model.train()(x)
    model.eval()
    int8 = compression.quantize(model, _loader(), method="static_int8", calibration_batches=2)
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        out, ref = int8(x), model(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert any("quantized" in type(m).__module__ for m in int8.modules())  # real int8 modules ran
    assert torch.corrcoef(torch.stack([out.flatten(), ref.flatten()]))[0, 1] > 0.9


def test_api_static_int8_accepts_a_channels_last_model():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval().to(memory_format=torch.channels_last)
    int8 = compression.quantize(model, _loader(32), method="static_int8", calibration_batches=1)
    with torch.no_grad():
        assert int8(torch.randn(2, *SHAPE)).shape == (2, 10)
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # the caller's model is as it was


class _HardCodedWidth(nn.Module):
    """Code that hard-codes a channel count: removing channels breaks it, and the message must say where."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.mix = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.mix(torch.relu(self.conv(x)))
        return self.fc(x.reshape(x.shape[0], 16, -1).mean(-1))


def test_api_refuses_what_it_cannot_prune_with_a_lab_error():
    data = (torch.randn(4, *SHAPE), torch.arange(4))
    with pytest.raises(LabError, match="layer '") as err:
        compression.prune(_HardCodedWidth(), data, sparsity=0.5)
    assert "Error" not in str(err.value)  # a sentence for the user, no exception class
