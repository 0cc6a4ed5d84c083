"""Pruning: unstructured masks (torch.nn.utils.prune) and structured channel removal (Torch-Pruning).

What to remove (the method's importance) is separate from how (mask vs. physical removal):
a method is one entry in METHODS. Every function leaves its input model untouched.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..core.data import Dataset
from ..core.train import TrainConfig, accuracy, train
from ..errors import CancelledError, LabError
from ..registry import Registry
from .prune_mlp import MlpHiddenPruner


@dataclass(frozen=True)
class Method:
    """What to remove (the importance) is separate from how (masks or physical removal, in prune_model).

    Unstructured methods give `mask(targets, amount)`, which masks `amount` of each target's remaining weights;
    structured methods give `importance()`, a Torch-Pruning importance object that ranks channels.
    """
    name: str
    label: str                       # for legends: "Channel pruning (L1)"
    structured: bool
    about: str                       # two lines for the UI: what it does and when it makes a model faster
    mask: Callable | None = None
    importance: Callable | None = None
    norm: int | None = None          # structured: the p of the norm that ranks channels
    language: bool = False           # a language-model method, calibrated on text (compression.text.prune)


def _per_layer(fn):
    def mask(targets, amount):
        for name, module in targets:
            remaining = int(module.weight_mask.sum()) if hasattr(module, "weight_mask") else module.weight.numel()
            if round(amount * remaining) >= remaining:
                raise LabError(f"Sparsity {amount:.3f} would remove every weight of layer '{name}' "
                               f"({remaining} weights). Lower the sparsity or leave the layer out.")
            fn(module, "weight", amount=amount)
    return mask


def _global_l1(targets, amount):
    torch_prune.global_unstructured([(m, "weight") for _, m in targets],
                                    pruning_method=torch_prune.L1Unstructured, amount=amount)


def _magnitude(p: int):
    def importance():
        import torch_pruning as tp
        return tp.importance.MagnitudeImportance(p=p)
    return importance


METHODS: Registry[Method] = Registry("pruning method")
for _m in [
    Method("l1_unstructured", "Weight pruning, per layer (L1)", False,
           "Zeroes the smallest-magnitude weights in each layer, to the same sparsity everywhere. Shrinks the gzip "
           "size, but dense kernels run no faster.", mask=_per_layer(torch_prune.l1_unstructured)),
    Method("random_unstructured", "Weight pruning, random (control)", False,
           "Zeroes random weights in each layer: the control that shows how much magnitude matters. No speed-up "
           "on dense kernels.", mask=_per_layer(torch_prune.random_unstructured)),
    Method("global_l1", "Weight pruning, global (L1)", False,
           "Zeroes the smallest weights across all layers at once, so robust layers give up more. Best accuracy "
           "per non-zero weight; no speed-up on dense kernels.", mask=_global_l1),
    Method("channel_l1", "Channel pruning (L1)", True,
           "Removes whole channels and neurons with the smallest L1 norm (Torch-Pruning keeps residual and "
           "depthwise layers consistent). The model really gets smaller and faster.", importance=_magnitude(1),
           norm=1),
    Method("channel_l2", "Channel pruning (L2)", True,
           "Like channel_l1 but ranks channels by L2 norm. Smaller, faster models; often within noise of L1.",
           importance=_magnitude(2), norm=2),
]:
    METHODS.register(_m.name, _m, about=_m.about, label=_m.label)
SCHEDULES = ("oneshot", "iterative")


@dataclass(frozen=True)
class PruneConfig:
    method: str = "global_l1"
    sparsity: float = 0.5
    layers: tuple[str, ...] | None = None  # module names to prune; None = every conv and linear
    skip_first_last: bool = False
    schedule: str = "oneshot"             # oneshot | iterative (AGP cubic schedule, Zhu & Gupta 2017)
    steps: int = 1                        # pruning steps for the iterative schedule
    finetune_epochs: int = 5              # spread over the steps, masks held fixed
    finetune_lr: float = 1e-3
    round_to: int | None = None           # structured: round kept channels to a multiple of 8 or 16
    seed: int = 0

    def __post_init__(self):
        METHODS.check(self.method)
        if not (isinstance(self.sparsity, (int, float)) and 0 <= self.sparsity < 1):
            raise LabError(f"Sparsity must be in [0, 1), got {self.sparsity}")
        if self.schedule not in SCHEDULES:
            raise LabError(f"Unknown schedule '{self.schedule}'. Known: {', '.join(SCHEDULES)}")
        if self.steps < 1 or self.finetune_epochs < 0:
            raise LabError("steps must be >= 1 and fine-tune epochs >= 0")
        if self.round_to not in (None, 1, 8, 16):
            raise LabError(f"round_to must be 8, 16 or none, got {self.round_to}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["layers"] = list(self.layers) if self.layers else None
        return out


def image_methods() -> list[str]:
    return [name for name in METHODS.names() if not METHODS[name].language]


def prunable_layers(model: nn.Module) -> list[str]:
    """Names of every conv and linear layer, in forward-definition order."""
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _targets(model: nn.Module, config: PruneConfig) -> list[tuple[str, nn.Module]]:
    names = prunable_layers(model)
    if not names:
        raise LabError("This model has no conv or linear layer to prune.")
    chosen = list(config.layers) if config.layers else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise LabError(f"Unknown layer(s) {', '.join(unknown)}. Prunable: {', '.join(names)}")
    if config.skip_first_last:
        chosen = [n for n in chosen if n not in (names[0], names[-1])]
    if not chosen:
        raise LabError("Nothing left to prune: every prunable layer was excluded.")
    modules = dict(model.named_modules())
    return [(n, modules[n]) for n in chosen]


def agp_targets(final: float, steps: int) -> list[float]:
    """Cubic schedule s_k = s_f (1 - (1 - k/N)^3): prune fast while there is redundancy, then gently."""
    return [final * (1 - (1 - k / steps) ** 3) for k in range(1, steps + 1)]


def _apply_unstructured(targets, method: str, amount: float) -> None:
    """Prune `amount` of the still-unpruned weights (torch.nn.utils.prune stacks masks)."""
    if amount > 0:
        METHODS[method].mask(targets, amount)


def _check_no_empty_layer(targets) -> None:
    for name, module in targets:
        if hasattr(module, "weight_mask") and int(module.weight_mask.sum()) == 0:
            raise LabError(f"This sparsity removes every weight of layer '{name}'. Lower the sparsity, "
                           "use a per-layer method, or leave the layer out.")


class _ShuffleFn(torch.autograd.Function):
    """A channel shuffle as one autograd node, so Torch-Pruning's tracer sees one op instead of the view and
    transpose it cannot map (they divide by zero in its reshape rule)."""

    @staticmethod
    def forward(ctx, x, groups):
        ctx.groups = groups
        return _shuffle(x, groups)

    @staticmethod
    def backward(ctx, grad):
        return _shuffle(grad, grad.shape[1] // ctx.groups), None  # shuffling by C/g groups undoes it


def _shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ChannelShuffle(nn.Module):
    """Pruning-time stand-in for torchvision's channel_shuffle: a leaf Torch-Pruning can be told about."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        return _ShuffleFn.apply(x, self.groups)


def _shuffle_barrier():
    """Torch-Pruning's rule for ChannelShuffle: no channel can be removed through it (it interleaves two
    branches' channels), so every group that reaches it is left whole; the rest of the model prunes."""
    import torch_pruning as tp

    class ShuffleBarrier(tp.pruner.function.BasePruningFunc):
        def prune_out_channels(self, layer, idxs):
            return layer

        def prune_in_channels(self, layer, idxs):  # a different function: no coupling through the shuffle
            return layer

        def get_out_channels(self, layer):
            return 0  # "nothing to remove": check_pruning_group then refuses any group holding the shuffle

        def get_in_channels(self, layer):
            return 0
    return ShuffleBarrier()


def _shuffle_block_forward(self, x):  # torchvision's InvertedResidual.forward, with the shuffle as a module
    if self.stride == 1:
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
    else:
        out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
    return self.prune_shuffle(out)


_VIEWS: dict[type, type] = {}


def _enter_shuffle(block: nn.Module) -> None:
    base = type(block)
    _VIEWS.setdefault(base, type(f"Prunable{base.__name__}", (base,), {"forward": _shuffle_block_forward}))
    block.add_module("prune_shuffle", ChannelShuffle(2))
    block.__class__ = _VIEWS[base]


def _leave_shuffle(block: nn.Module) -> None:
    del block.prune_shuffle
    block.__class__ = type(block).__mro__[1]  # back to torchvision's own class: the saved model is plain


def _vit_after_step(vit: nn.Module) -> None:
    vit.hidden_dim = vit.conv_proj.out_channels  # torchvision's ViT reshapes patches with this number


def _is(module: nn.Module, module_path: str, *names: str) -> bool:
    """By class name, so torchvision is not imported here just to ask."""
    return type(module).__module__ == module_path and type(module).__name__ in names


@dataclass(frozen=True)
class Architecture:
    """A layer or model that Torch-Pruning must be told about. `matches` picks
    modules; `options` adds Torch-Pruning arguments for them; `enter`/`leave` rewrite a module for the tracing and
    restore it after pruning; `after_step` fixes what a pruning step leaves stale; `mlp_only` names why only the
    model's MLP hidden units can be removed (prune_mlp.py)."""
    name: str
    matches: Callable[[nn.Module], bool]
    options: Callable[[nn.Module], dict] | None = None
    enter: Callable[[nn.Module], None] | None = None
    after_step: Callable[[nn.Module], None] | None = None
    leave: Callable[[nn.Module], None] | None = None
    mlp_only: str | None = None


ARCHITECTURES: Registry[Architecture] = Registry("architecture rule")
for _a in [
    # nn.MultiheadAttention splits its embedding into heads of consecutive dims: pruning as many dims in each head,
    # at the same positions, keeps every head whole and the head count fixed (head-aware, not head removal).
    Architecture("multihead_attention", lambda m: isinstance(m, nn.MultiheadAttention),
                 options=lambda m: {"out_channel_groups": {m: m.num_heads}, "in_channel_groups": {m: m.num_heads}}),
    # The class token and position embedding are bare parameters whose last dim is the embedding.
    Architecture("torchvision_vit", lambda m: _is(m, "torchvision.models.vision_transformer", "VisionTransformer"),
                 options=lambda m: {"unwrapped_parameters": [(m.class_token, 2), (m.encoder.pos_embedding, 2)]},
                 after_step=_vit_after_step),
    # ShuffleNet's channel shuffle interleaves two branches: block outputs stay whole, block insides prune.
    Architecture("channel_shuffle", lambda m: _is(m, "torchvision.models.shufflenetv2", "InvertedResidual"),
                 options=lambda m: {"customized_pruners": {ChannelShuffle: _shuffle_barrier()}},
                 enter=_enter_shuffle, leave=_leave_shuffle),
    Architecture("shifted_window_attention", lambda m: _is(
        m, "torchvision.models.swin_transformer", "ShiftedWindowAttention", "ShiftedWindowAttentionV2"),
        mlp_only="Swin's shifted-window attention (torchvision ShiftedWindowAttention): Torch-Pruning cannot trace "
                 "its window partition and relative position bias"),
    Architecture("maxvit_attention", lambda m: _is(
        m, "torchvision.models.maxvit", "RelativePositionalMultiHeadAttention"),
        mlp_only="MaxViT's block and grid attention (torchvision RelativePositionalMultiHeadAttention): "
                 "Torch-Pruning's index mapping through its window partitions does not finish"),
]:
    ARCHITECTURES.register(_a.name, _a)

SUPPORTED = ("Conv2d (grouped and depthwise too), Linear, BatchNorm, LayerNorm, GroupNorm, nn.MultiheadAttention, "
             "torchvision's ViT and ShuffleNet blocks, and Swin and MaxViT through their MLP hidden units")


def _rules(model: nn.Module) -> list[tuple[Architecture, str, nn.Module]]:
    """Each (rule, module name, module) that applies."""
    return [(rule, name, module) for name, module in model.named_modules() for rule in ARCHITECTURES.values()
            if rule.matches(module)]


def _merge_options(found) -> dict:
    merged: dict = {}
    for rule, _, module in found:
        for key, value in (rule.options(module) if rule.options else {}).items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else merged.get(key, []) + value
    return merged


def _executed_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Convs and linears in the order one forward pass runs them."""
    order: list[nn.Module] = []
    def record(mod, inputs, output):
        order.append(mod)

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def _failing_layer(model: nn.Module, example: torch.Tensor) -> str | None:
    """The innermost module whose forward raised (the layer a pruned model breaks at), or None if it runs."""
    names = {m: n for n, m in model.named_modules()}
    stack: list[str] = []

    def enter(mod, inputs):
        stack.append(names[mod])

    def leave(mod, inputs, output):  # returns None: a forward hook's return value would replace the output
        stack.pop()

    hooks = [m.register_forward_pre_hook(enter) for m in model.modules()]
    hooks += [m.register_forward_hook(leave) for m in model.modules()]
    try:
        with torch.no_grad():
            model(example)
        return None
    except Exception:
        return stack[-1] if stack else "(model)"
    finally:
        for h in hooks:
            h.remove()


def _structured_pruner(model, data: Dataset, config: PruneConfig, targets, found):
    import torch_pruning as tp

    example = torch.randn(1, *data.input_shape)
    chosen = {id(m) for _, m in targets}
    output = _executed_layers(model, example)[-1:]  # the classifier (a Linear, or squeezenet's 1x1 conv)
    ignored = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in chosen]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Torch-Pruning's notes on unwrapped parameters
            return tp.pruner.BasePruner(
                model, example, importance=METHODS[config.method].importance(), pruning_ratio=config.sparsity,
                iterative_steps=config.steps if config.schedule == "iterative" else 1,
                ignored_layers=ignored + output,  # never remove output classes
                round_to=config.round_to if config.round_to and config.round_to > 1 else None,
                **_merge_options(found))
    except Exception as err:
        raise LabError(f"Torch-Pruning cannot trace this model's channel dependencies "
                       f"({(str(err).strip().splitlines() or ['no detail'])[0][:160]}). Channel pruning supports "
                       f"{SUPPORTED}; weight pruning (l1_unstructured, global_l1) works on any model.") from None


def _clamp(pruner, config: PruneConfig) -> list[str]:
    """Keep at least one channel in each group (per channel group: per head, per conv group): Torch-Pruning would
    instead skip a group whose every channel the sparsity removes, silently leaving it whole. Returns notes."""
    groups = pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types)
    notes = []
    for group in groups:
        root = group[0].dep.target.module
        width = pruner.DG.get_out_channels(root)
        size = (width or 0) // max(1, pruner._get_channel_groups(group))
        if size > 1 and int(size * (1 - config.sparsity)) < 1:
            ratio = 1 - 1.5 / size  # Torch-Pruning keeps int(size * (1 - ratio)) = int(1.5) = 1 channel
            pruner._layer_to_scope[root] = (f"_keep_one_{len(notes)}", [root])
            pruner.pruning_ratio_dict[root] = pruner.iterative_pruning_ratio_scheduler(ratio, pruner.iterative_steps)
            notes.append(f"layer '{pruner.DG._module2name.get(root, root)}' keeps 1 of its {size} channels "
                         f"{'per group ' if size != width else ''}instead of none at {config.sparsity:.0%}")
    return notes


def _needs_clamp(model: nn.Module, sparsity: float) -> bool:
    """Cheap test before the group scan: could any layer's (group's) width round down to zero kept channels?"""
    sizes = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            sizes.append(m.out_channels // (m.groups if m.groups != m.out_channels else 1))
        elif isinstance(m, nn.Linear):
            sizes.append(m.out_features)
        elif isinstance(m, nn.MultiheadAttention):
            sizes.append(m.embed_dim // m.num_heads)
        elif isinstance(m, nn.GroupNorm):
            sizes.append(m.num_channels // m.num_groups)
    return any(int(n * (1 - sparsity)) < 1 for n in sizes if n > 1)


def _check_structured(model: nn.Module) -> None:
    for name, m in model.named_modules():
        width = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features if isinstance(m, nn.Linear) else 1
        if width == 0:
            raise LabError(f"This sparsity removes every channel of layer '{name}'. Lower the sparsity.")


def _check_runs(model: nn.Module, example: torch.Tensor, expected: torch.Size, method: str) -> None:
    """A pruned model must run and give the same output shape; if not, name the layer where it breaks."""
    layer = _failing_layer(model, example)
    if layer is not None:
        raise LabError(f"{method} broke layer '{layer}' of this model: Torch-Pruning removed channels the layer's "
                       f"code still expects. Channel pruning supports {SUPPORTED}; weight pruning works on any model.")
    with torch.no_grad():
        shape = model(example).shape
    if shape != expected:
        raise LabError(f"{method} changed the output shape from {tuple(expected)} to {tuple(shape)}; the output "
                       "layer could not be protected.")


def _prunable(name: str, module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv2d, nn.Linear))


def layer_report(before: nn.Module, after: nn.Module, keep: Callable[[str, nn.Module], bool] = _prunable) -> list[dict]:
    """Each prunable layer's weight count before and after, and its sparsity (zeros or removed); `keep(name,
    module)` says which layers count (every conv and linear by default)."""
    after_modules = dict(after.named_modules())
    rows = []
    for name, module in before.named_modules():
        if not keep(name, module) or name not in after_modules:
            continue
        pruned = after_modules[name].weight
        nonzero = int(torch.count_nonzero(pruned))
        rows.append({"layer": name, "type": type(module).__name__, "params_before": module.weight.numel(),
                     "params_after": pruned.numel(), "nonzero_after": nonzero,
                     "sparsity": 1 - nonzero / module.weight.numel()})
    return rows


def prune_model(model: nn.Module, data: Dataset, config: PruneConfig, device: str = "cpu",
                progress: Callable[[dict], None] | None = None, should_cancel=None) -> tuple[nn.Module, dict]:
    """Return (pruned copy, report). Masks are folded into the weights of the returned model."""
    if METHODS[config.method].language:
        raise LabError(f"'{config.method}' prunes language models, calibrated on text. For image models: "
                       f"{', '.join(image_methods())}.")
    pruned = copy.deepcopy(model).cpu()
    targets = _targets(pruned, config)
    steps = config.steps if config.schedule == "iterative" else 1
    per_step = [math.ceil(config.finetune_epochs / steps)] * steps if config.finetune_epochs else [0] * steps
    history: list[dict] = []
    pruner, found, notes = None, [], []
    if METHODS[config.method].structured:
        found = _rules(pruned)
        example = data.x_train[:2].float().cpu()
        with torch.no_grad():
            expected = pruned.eval()(example).shape
        untraceable = [rule.mlp_only for rule, _, _ in found if rule.mlp_only]
        if untraceable:
            pruner = MlpHiddenPruner(pruned, [m for _, m in targets], METHODS[config.method].norm, config.sparsity,
                                     steps, reason=untraceable[0])
        else:
            for rule, _, module in found:
                if rule.enter:
                    rule.enter(module)
            pruner = _structured_pruner(pruned, data, config, targets, found)
            if _needs_clamp(pruned, config.sparsity):
                notes = _clamp(pruner, config)
    previous = 0.0
    for step, target in enumerate(agp_targets(config.sparsity, steps) if steps > 1 else [config.sparsity]):
        if pruner is not None:
            try:
                pruner.step()
            except Exception as err:  # Torch-Pruning's own failure, in its words: never a traceback for the user
                raise LabError(f"Torch-Pruning could not remove channels from this model "
                               f"({(str(err).strip().splitlines() or ['no detail'])[0][:160]}). Channel pruning "
                               f"supports {SUPPORTED}; weight pruning works on any model.") from None
            for rule, _, module in found:
                if rule.after_step:
                    rule.after_step(module)
                if rule.leave and step == steps - 1:  # the tracing view is done with: back to the model's classes
                    rule.leave(module)
            _check_structured(pruned)
            _check_runs(pruned, example, expected, config.method)
        else:
            _apply_unstructured(targets, config.method, 1 - (1 - target) / (1 - previous))
            _check_no_empty_layer(targets)
        previous = target
        if per_step[step]:
            def on_epoch(info, step=step):
                history.append({**info, "step": step + 1})
                if progress:
                    progress({**info, "fraction": (step + info["epoch"] / info["epochs"]) / steps,
                              "message": f"step {step + 1}/{steps} at {target:.0%}: fine-tune epoch "
                                         f"{info['epoch']}/{info['epochs']}"})
            train(pruned, data, TrainConfig(epochs=per_step[step], lr=config.finetune_lr, seed=config.seed + step),
                  device, on_epoch=on_epoch, should_cancel=should_cancel)  # masks hold: weight = orig * mask
            pruned.cpu()
    if isinstance(pruner, MlpHiddenPruner):
        notes = [pruner.note()]
    for _, module in targets:
        if torch_prune.is_pruned(module):
            torch_prune.remove(module, "weight")  # fold the mask: plain zeros in a plain weight
    pruned.eval()
    layers = layer_report(model, pruned)
    return pruned, {"method": config.method, "sparsity": config.sparsity, "structured": METHODS[config.method].structured,
                    "layers": layers, "finetune_history": history, "config": config.to_dict(), "notes": notes}


def sensitivity(model: nn.Module, data: Dataset, sparsities: list[float], structured: bool = False,
                layers: list[str] | None = None, should_cancel=None) -> list[dict]:
    """Prune each layer alone at each sparsity (no fine-tuning) and record validation accuracy."""
    base = accuracy(model, data.x_val, data.y_val)
    method = "channel_l1" if structured else "l1_unstructured"
    rows = []
    for name in layers or prunable_layers(model):
        for s in sparsities:
            if should_cancel and should_cancel():
                raise CancelledError("cancelled by the user")
            try:
                pruned, _ = prune_model(model, data, PruneConfig(method=method, sparsity=s, layers=(name,),
                                                                 finetune_epochs=0))
                acc = accuracy(pruned, data.x_val, data.y_val)
            except LabError:
                acc = float("nan")  # e.g. the classifier cannot lose channels
            rows.append({"layer": name, "sparsity": s, "accuracy": acc, "drop_pt": 100 * (base - acc)})
    return rows


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The zero pattern of each prunable weight (tests use it to check that fine-tuning keeps zeros at zero)."""
    return {name: (m.weight != 0) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def parse_sparsities(text: str) -> list[float]:
    """'0.3, 0.5 0.7' or '30%, 50%' -> [0.3, 0.5, 0.7]; bad items give a clear message."""
    values = []
    for item in text.replace(",", " ").split():
        try:
            value = float(item.rstrip("%")) / (100 if item.endswith("%") else 1)
        except ValueError:
            raise LabError(f"'{item}' is not a sparsity: write numbers like 0.5 or 50%") from None
        if not 0 <= value < 1:
            raise LabError(f"Sparsity must be in [0, 1), got {item}")
        values.append(value)
    if not values:
        raise LabError("The sweep is empty: give at least one sparsity, e.g. 0.5 0.7 0.9")
    return values
