"""Pruning: unstructured masks (torch.nn.utils.prune) and structured channel removal (Torch-Pruning).

What to remove (the method's importance) is separate from how (mask vs. physical removal):
a method is one entry in METHODS. Every function leaves its input model untouched.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..core.data import Dataset
from ..core.train import TrainConfig, accuracy, train
from ..errors import CancelledError, LabError
from ..registry import Registry


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
           "depthwise layers consistent). The model really gets smaller and faster.", importance=_magnitude(1)),
    Method("channel_l2", "Channel pruning (L2)", True,
           "Like channel_l1 but ranks channels by L2 norm. Smaller, faster models; often within noise of L1.",
           importance=_magnitude(2)),
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


def _structured_pruner(model, data: Dataset, config: PruneConfig, targets):
    import torch_pruning as tp

    chosen = {id(m) for _, m in targets}
    classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    ignored = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in chosen]
    return tp.pruner.BasePruner(
        model, torch.randn(1, *data.input_shape), importance=METHODS[config.method].importance(),
        pruning_ratio=config.sparsity,
        iterative_steps=config.steps if config.schedule == "iterative" else 1,
        ignored_layers=ignored + classifier,  # never remove output classes
        round_to=config.round_to if config.round_to and config.round_to > 1 else None)


def _check_structured(model: nn.Module) -> None:
    for name, m in model.named_modules():
        width = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features if isinstance(m, nn.Linear) else 1
        if width == 0:
            raise LabError(f"This sparsity removes every channel of layer '{name}'. Lower the sparsity.")


def layer_report(before: nn.Module, after: nn.Module) -> list[dict]:
    """Each prunable layer's weight count before and after, and its sparsity (zeros or removed)."""
    after_modules = dict(after.named_modules())
    rows = []
    for name, module in before.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or name not in after_modules:
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
    pruned = copy.deepcopy(model).cpu()
    targets = _targets(pruned, config)
    steps = config.steps if config.schedule == "iterative" else 1
    per_step = [math.ceil(config.finetune_epochs / steps)] * steps if config.finetune_epochs else [0] * steps
    history: list[dict] = []
    pruner = _structured_pruner(pruned, data, config, targets) if METHODS[config.method].structured else None
    previous = 0.0
    for step, target in enumerate(agp_targets(config.sparsity, steps) if steps > 1 else [config.sparsity]):
        if pruner is not None:
            pruner.step()
            _check_structured(pruned)
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
    for _, module in targets:
        if torch_prune.is_pruned(module):
            torch_prune.remove(module, "weight")  # fold the mask: plain zeros in a plain weight
    pruned.eval()
    layers = layer_report(model, pruned)
    return pruned, {"method": config.method, "sparsity": config.sparsity, "structured": METHODS[config.method].structured,
                    "layers": layers, "finetune_history": history, "config": config.to_dict()}


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
