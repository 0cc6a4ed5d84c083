"""Torchvision's classification models, by name: `tv.resnet18`, `tv.vit_b_16:image_size=32`, ...

Every model of `torchvision.models.list_models(module=torchvision.models)` is registered in MODELS as `tv.NAME`
and adapts to the data set: the classifier head gets the data's class count and the first conv its channel
count. Arguments:

- `weights=PATH`: a local checkpoint (a state dict, or a dict holding one under "state_dict" or "model"),
  loaded with weights_only=True, so no pickled code runs. Nothing is ever downloaded. An ImageNet checkpoint
  loads into the 1000-class, RGB model first; its head is then replaced and its first conv's filters averaged
  over the colour channels for a grey data set.
- `image_size=N`: the side the model sees. By default the data's own side, raised to the smallest the model
  accepts (inception_v3 pools its way down to nothing below 75 px). When it differs from the data's side, the
  model resizes its input first (bilinear), so the same model runs on the data set as stored.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LabError

PREFIX = "tv."

# Smallest input side of each family (a name prefix): below it a pooling or stride leaves an empty feature map.
# Found by building each at every side from 1 up; tests/test_tv_models.py checks that the smallest model of each
# family runs at its minimum and fails one pixel below. ViTs need whole patches, MaxViT whole 7x7 windows at
# every stage (224 = 7 x its total stride of 32), so their sides are multiples of those.
_MIN_SIDE = {"alexnet": 63, "convnext": 32, "densenet": 29, "googlenet": 15, "inception_v3": 75,
             "squeezenet1_0": 21, "squeezenet1_1": 17, "swin": 4, "vgg": 32}
_NO_AUX = ("googlenet", "inception_v3")  # auxiliary heads return a tuple while training: the trainer wants logits


def tv_names() -> list[str]:
    """torchvision's classification models (detection, segmentation and video models are other modules)."""
    import torchvision
    return sorted(torchvision.models.list_models(module=torchvision.models))


def min_side(name: str) -> int:
    """The smallest input side `name` runs at (1 where any side works)."""
    return max([side for key, side in _MIN_SIDE.items() if name.startswith(key)] + [_multiple(name)])


def _multiple(name: str) -> int:
    """What the side must be a multiple of: a ViT's patch, MaxViT's window times its stride; else 1."""
    if name.startswith("vit_"):
        return int(name.rsplit("_", 1)[1])
    return 224 if name.startswith("maxvit") else 1


class Resized(nn.Module):
    """Resizes the input to the side the wrapped model runs at (bilinear, as torchvision's transforms do)."""

    def __init__(self, net: nn.Module, side: int):
        super().__init__()
        self.side = side
        self.net = net

    def forward(self, x):
        return self.net(F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False))


def _head_and_stem(model: nn.Module) -> tuple[str, str]:
    """(classifier head, first conv) by module name: the head is the last Linear (squeezenet's is a 1x1
    conv, its last conv); the stem is the first conv, which every torchvision model registers first."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return (linears or convs)[-1], convs[0]


def _swap(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def _new_head(old: nn.Module, num_classes: int) -> nn.Module:
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    return nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)


def _new_stem(old: nn.Conv2d, channels: int) -> nn.Conv2d:
    """The same conv for `channels` inputs; trained filters are averaged over their inputs and spread evenly,
    so a grey image gives the response the RGB filters gave to the same grey in colour."""
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation, old.groups,
                    bias=old.bias is not None, padding_mode=old.padding_mode)
    with torch.no_grad():
        new.weight.copy_(old.weight.mean(1, keepdim=True).expand_as(new.weight) * old.in_channels / channels)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    return new


def read_checkpoint(path: str) -> OrderedDict:
    """A state dict from a local file, never executing pickled code; a bad file is a LabError."""
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise LabError(f"Weights file {file} not found (weights= takes a local checkpoint; nothing is downloaded).")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise LabError(f"{file.name} is not a weights-only checkpoint torch can load safely: "
                       f"{str(err).strip().splitlines()[0][:160]}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):  # training scripts often wrap the state dict
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LabError(f"{file.name} does not hold a state dict (names to tensors).")
    return OrderedDict((k.removeprefix("module."), v) for k, v in state.items())  # DataParallel's prefix


def _torchvision_model(name: str, num_classes: int, side: int) -> nn.Module:
    import torchvision

    kwargs: dict = {"weights": None, "num_classes": num_classes}
    if name.startswith(_NO_AUX):
        kwargs.update(aux_logits=False, init_weights=True)
    if name.startswith("vit_"):
        kwargs["image_size"] = side
    elif name.startswith("maxvit"):
        kwargs["input_size"] = (side, side)
    return torchvision.models.get_model(name, **kwargs)


def _load_weights(name: str, path: str, side: int) -> nn.Module:
    """The torchvision model with a checkpoint's own class and channel counts, its weights loaded."""
    state = read_checkpoint(path)
    probe = _torchvision_model(name, 10, side)
    head, stem = _head_and_stem(probe)
    if f"{head}.weight" not in state or f"{stem}.weight" not in state:
        raise LabError(f"{Path(path).name} is not a checkpoint of {name}: it has no '{head}.weight' or "
                       f"'{stem}.weight'.")
    model = _torchvision_model(name, state[f"{head}.weight"].shape[0], side)
    if state[f"{stem}.weight"].shape[1] != 3:
        _swap(model, stem, _new_stem(model.get_submodule(stem), state[f"{stem}.weight"].shape[1]))
    if name.startswith("vit_") and "encoder.pos_embedding" in state:  # a 224-px ViT checkpoint, another side
        from torchvision.models.vision_transformer import interpolate_embeddings
        state = interpolate_embeddings(side, _multiple(name), state)
    state = OrderedDict((k, v) for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits.")))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:240]
        raise LabError(f"{Path(path).name} does not fit {name}: {detail}") from None
    return model


def build_tv(name: str, input_shape, num_classes: int, weights: str | None = None,
             image_size: int | None = None) -> nn.Module:
    """torchvision's `name` for this data: head and first conv adapted, weights from a local file if given."""
    if len(input_shape) != 3:
        raise LabError(f"tv.{name} takes images (channels, height, width), not inputs of shape {tuple(input_shape)}.")
    channels, height, width = input_shape
    side = int(image_size) if image_size else _default_side(name, height, width)
    if side < min_side(name):
        raise LabError(f"tv.{name} needs image_size of at least {min_side(name)}, got {side}.")
    step = _multiple(name)
    if side % step:
        raise LabError(f"tv.{name} runs on sides that are multiples of {step} (its patches or windows), got "
                       f"{side}. Pass image_size={step * max(1, round(side / step))}.")
    model = _load_weights(name, weights, side) if weights else _torchvision_model(name, num_classes, side)
    head, stem = _head_and_stem(model)
    if _out_size(model.get_submodule(head)) != num_classes:
        _swap(model, head, _new_head(model.get_submodule(head), num_classes))
    if model.get_submodule(stem).in_channels != channels:
        _swap(model, stem, _new_stem(model.get_submodule(stem), channels))
    return Resized(model, side) if (height, width) != (side, side) else model


def _default_side(name: str, height: int, width: int) -> int:
    """The data's side, raised to the model's minimum and rounded up to its multiple."""
    step = _multiple(name)
    return -(-max(height, width, min_side(name)) // step) * step


def _out_size(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _builder(name: str):
    def build(input_shape, num_classes, weights=None, image_size=None):
        return build_tv(name, input_shape, num_classes, weights=weights, image_size=image_size)
    build.__name__ = f"tv_{name}"
    return build


def register_all(models) -> None:
    """Called by core/models.py on its MODELS registry (this module does not import models.py: no cycle)."""
    for name in tv_names():
        models.register(PREFIX + name, _builder(name),
                        about=f"torchvision {name}: head and first conv adapted to the data; weights=PATH loads "
                              f"a local checkpoint; image_size=N sets the side it runs at")

