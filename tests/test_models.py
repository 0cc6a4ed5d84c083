"""Model registry: every model builds for every input shape and fails early on unknown names."""
import pytest
import torch

from compression import LabError, UnknownNameError, build_model, format_spec, list_models, parse_spec

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("shape", SHAPES)
def test_every_model_builds_for_every_shape(name, shape):
    model = build_model(name, shape, 10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_spec_parsing_and_round_trip():
    spec = parse_spec("mlp:hidden=256-128")
    assert spec == {"name": "mlp", "args": {"hidden": [256, 128]}}
    assert parse_spec(format_spec(spec)) == spec
    assert parse_spec("cnn:width=64")["args"]["width"] == 64
    model = build_model("mlp:hidden=32-16", (1, 8, 8), 10)
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [32, 16, 10]


def test_width_scales_the_cnn():
    small = sum(p.numel() for p in build_model("cnn:width=8", (1, 8, 8), 10).parameters())
    large = sum(p.numel() for p in build_model("cnn:width=32", (1, 8, 8), 10).parameters())
    assert large > 10 * small


def test_unknown_model_and_argument_fail_with_the_known_ones():
    with pytest.raises(UnknownNameError) as err:
        parse_spec("vgg99")
    assert "lenet5" in str(err.value) and "resnet_tiny" in str(err.value)
    with pytest.raises(LabError, match="Known: width"):
        parse_spec("cnn:depth=3")
    with pytest.raises(LabError, match="key=value"):
        parse_spec("cnn:64")
