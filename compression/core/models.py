"""Model registry: each model is a JSON-able spec `{"name", "args"}` that builds an nn.Module
for any registered data set's input shape and class count.

On the command line a spec is written `NAME` or `NAME:key=value,key=value`, e.g.
`cnn:width=64` or `mlp:hidden=256-256` (lists use '-').
"""
from __future__ import annotations

import fnmatch
import inspect
from typing import Callable

import torch
from torch import nn

from ..errors import LabError
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


_ZOO: list[str] = []  # the hand-written models, in registration order (torchvision's come as tv.NAME)


def register_model(description: str, name: str | None = None, zoo: bool = True):
    """Decorator: the function's name is the model's name; its keyword args are the spec's args. `zoo=False`: a
    registered name that is not an image classifier of the zoo (the language models)."""
    def wrap(fn):
        if zoo:
            _ZOO.append(name or fn.__name__)
        return MODELS.register(name or fn.__name__, fn, about=description)
    return wrap


def list_models(pattern: str | None = None) -> list[str]:
    """The zoo's names; with a glob pattern, every registered name matching it: `list_models("tv.*")` gives
    torchvision's classification models, `list_models("*")` everything (as timm's list_models(pattern))."""
    if pattern is None:
        return list(_ZOO)
    return [n for n in MODELS.names() if fnmatch.fnmatchcase(n, pattern)]


def model_args(name: str) -> dict:
    """Default arguments of a registered model (what the spec may set)."""
    params = inspect.signature(MODELS.get(name)).parameters
    return {k: p.default for k, p in params.items() if k not in ("input_shape", "num_classes")}


RAW_ARGS = {"weights", "path"}  # file paths: kept as written ('-' splits lists elsewhere, and paths hold '-')
# names whose whole rest is one argument, as written (`hf:PATH`: a path holds ':' and ',' that key=value would split)
WHOLE_REST_ARG: dict[str, str] = {}


def parse_value(text: str):
    if "-" in text.strip("-"):
        return [parse_value(part) for part in text.split("-")]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_spec(text: str | dict) -> dict:
    """`"cnn:width=64"` -> `{"name": "cnn", "args": {"width": 64}}`, validated against the registry."""
    if isinstance(text, dict):
        return normalize_spec(text)
    name, _, rest = text.strip().partition(":")
    if name in WHOLE_REST_ARG:
        return normalize_spec({"name": name, "args": {WHOLE_REST_ARG[name]: rest}})
    args = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise LabError(f"Bad model argument '{item}' in '{text}': write key=value")
        key = key.strip()
        args[key] = value.strip() if key in RAW_ARGS else parse_value(value.strip())
    return normalize_spec({"name": name, "args": args})


def normalize_spec(spec: dict) -> dict:
    name, args = spec.get("name", ""), dict(spec.get("args") or {})
    known = model_args(name)
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise LabError(f"Unknown argument(s) {', '.join(unknown)} for model '{name}'. "
                       f"Known: {', '.join(known) or '(none)'}")
    for key, value in args.items():  # widths and depths: a zero-wide layer only fails deep inside torch
        numbers = value if isinstance(value, list) else [value]
        floor = 0 if key in OPTIONAL_ZERO_ARGS else 1
        if any(isinstance(v, (int, float)) and not isinstance(v, bool) and v < floor for v in numbers):
            raise LabError(f"Model argument {key}={value} of '{name}' must be {'>= 0' if floor == 0 else 'at least 1'}")
    return {"name": name, "args": args}


OPTIONAL_ZERO_ARGS = {"head"}  # searched_cnn's head=0 means "no hidden head layer"


def format_spec(spec: dict) -> str:
    def fmt(v):
        return "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    if spec["name"] in WHOLE_REST_ARG:
        return f"{spec['name']}:{spec.get('args', {}).get(WHOLE_REST_ARG[spec['name']], '')}"
    args = ",".join(f"{k}={fmt(v)}" for k, v in sorted(spec.get("args", {}).items()))
    return f"{spec['name']}:{args}" if args else spec["name"]


def build_model(spec: dict | str, input_shape, num_classes: int) -> nn.Module:
    spec = parse_spec(spec)
    try:
        model = MODELS.get(spec["name"])(input_shape=tuple(input_shape), num_classes=num_classes,
                                        **spec["args"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise LabError(f"Model {format_spec(spec)} does not build for input {tuple(input_shape)}: "
                       f"{str(err).splitlines()[0][:200]}") from None
    try:  # a spec that builds but cannot run (too small an input for its pooling) fails here, with its name
        with torch.no_grad():
            model.eval()(torch.zeros(2, *input_shape))
    except Exception as err:
        raise LabError(f"Model {format_spec(spec)} does not run on input {tuple(input_shape)}: "
                       f"{str(err).splitlines()[0][:200]}") from None
    return model.train()


def _flat_features(body: nn.Module, input_shape) -> int:
    with torch.no_grad():
        return body(torch.zeros(1, *input_shape)).flatten(1).shape[1]


def _conv_bn(cin, cout, kernel=3, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_model("multi-layer perceptron; hidden widths set with hidden=256-256")
def mlp(input_shape, num_classes, hidden=(256, 256)):
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    widths = [int(torch.tensor(input_shape).prod())] + hidden
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(widths[-1], num_classes))
    return nn.Sequential(*layers)


@register_model("LeNet-5-style CNN: two 5x5 convs with pooling, then 120-84 fully connected")
def lenet5(input_shape, num_classes):
    features = nn.Sequential(nn.Conv2d(input_shape[0], 6, 5, padding=2), nn.ReLU(inplace=True),
                             nn.MaxPool2d(2), nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(inplace=True),
                             nn.MaxPool2d(2))
    flat = _flat_features(features, input_shape)
    return nn.Sequential(features, nn.Flatten(), nn.Linear(flat, 120), nn.ReLU(inplace=True),
                         nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes))


@register_model("plain CNN of two stages (width, 2*width channels); width scales every layer")
def cnn(input_shape, num_classes, width=32):
    w = int(width)
    pool = nn.MaxPool2d(2) if min(input_shape[1:]) >= 8 else nn.Identity()
    return nn.Sequential(_conv_bn(input_shape[0], w), _conv_bn(w, w), pool,
                         _conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, num_classes))


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, stride=stride),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


@register_model("tiny ResNet: three stages of residual basic blocks (width, 2w, 4w)")
def resnet_tiny(input_shape, num_classes, width=16):
    w = int(width)
    return nn.Sequential(_conv_bn(input_shape[0], w), _BasicBlock(w, w, 1), _BasicBlock(w, 2 * w, 2),
                         _BasicBlock(2 * w, 4 * w, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4 * w, num_classes))


@register_model("tiny MobileNet: depthwise-separable conv blocks (depthwise 3x3 + pointwise 1x1)")
def mobilenet_tiny(input_shape, num_classes, width=16):
    w = int(width)

    def separable(cin, cout, stride):
        return nn.Sequential(_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, cout, 1))

    return nn.Sequential(_conv_bn(input_shape[0], w), separable(w, 2 * w, 1), separable(2 * w, 4 * w, 2),
                         separable(4 * w, 4 * w, 1), separable(4 * w, 8 * w, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes))


@register_model("torchvision resnet18, stem adapted to small inputs (3x3 conv, no max-pool)")
def resnet18(input_shape, num_classes):
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


@register_model("torchvision mobilenet_v3_small, first conv adapted to small inputs (stride 1)")
def mobilenet_v3_small(input_shape, num_classes):
    import torchvision

    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes)
    first = model.features[0][0]
    model.features[0][0] = nn.Conv2d(input_shape[0], first.out_channels, 3, 1, 1, bias=False)
    return model


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "hardswish": nn.Hardswish}


@register_model("CNN found by architecture search: channels per stage, kernel, depthwise, activation, head width")
def searched_cnn(input_shape, num_classes, channels=(16, 32), kernel=3, depthwise=False, activation="relu", head=0):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation '{activation}' (known: {', '.join(_ACTIVATIONS)})")
    channels = [channels] if isinstance(channels, int) else list(channels)
    act, layers, cin, size = _ACTIVATIONS[activation], [], input_shape[0], min(input_shape[1:])
    for i, cout in enumerate(channels):
        if depthwise and i > 0:  # depthwise k x k then pointwise 1x1
            layers += [nn.Conv2d(cin, cin, kernel, 1, kernel // 2, groups=cin, bias=False), nn.BatchNorm2d(cin), act(),
                       nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), act()]
        else:
            layers += [nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(cout), act()]
        if i < len(channels) - 1 and size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers += [nn.Linear(cin, head), act(), nn.Linear(head, num_classes)] if head else [nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def _register_torchvision(registry: Registry) -> None:
    from .tv_models import register_all
    register_all(registry)


# torchvision's classification models as tv.NAME, registered on first need: importing torchvision.models costs
# seconds (it pulls in torch._dynamo), which verbs that never build a tv model should not pay.
MODELS.add_loader(_register_torchvision)
