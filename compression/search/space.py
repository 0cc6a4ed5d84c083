"""Search spaces as data: a JSON-able dict of choices per dimension, and how an architecture becomes a spec.

Each family is registered once (FAMILIES) with the kind of data its models take, its default choices, how it
counts, samples and builds architectures. A new family is one `FAMILIES.register(name, SpaceFamily(...))`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..errors import LabError
from ..registry import Registry

IMAGE, TEXT = "image", "text"


@dataclass(frozen=True)
class SpaceFamily:
    data: str                                # IMAGE or TEXT: the data sets this family's models take
    defaults: dict                           # dimension -> default choices
    minimum: dict                            # integer dimension -> its smallest allowed choice
    size: Callable[[dict], int]              # distinct architectures in a (validated) space
    suggest: Callable[[object, dict], dict]  # (optuna trial, space) -> architecture
    model: str                               # the model registry name an architecture builds
    smallest: Callable[[dict], dict]         # the cheapest architecture (for "can any satisfy the constraint?")
    # why an architecture of the space cannot be built (None: it can); sampled anyway, then pruned with the reason
    infeasible: Callable[[dict], str | None] = lambda arch: None


# ---------------------------------------------------------------- image families

def _cnn_size(space: dict) -> int:  # per-stage channel choices multiply per stage
    rest = math.prod(len(space[k]) for k in ("kernel", "depthwise", "activation", "head"))
    return rest * sum(len(space["channels"]) ** s for s in space["stages"])


def _cnn_suggest(trial, space: dict) -> dict:
    stages = trial.suggest_categorical("stages", space["stages"])
    return {"channels": [trial.suggest_categorical(f"channels_{i}", space["channels"]) for i in range(stages)],
            "kernel": trial.suggest_categorical("kernel", space["kernel"]),
            "depthwise": trial.suggest_categorical("depthwise", space["depthwise"]),
            "activation": trial.suggest_categorical("activation", space["activation"]),
            "head": trial.suggest_categorical("head", space["head"])}


def _cnn_smallest(space: dict) -> dict:
    return {"channels": [min(space["channels"])] * min(space["stages"]), "kernel": min(space["kernel"]),
            "depthwise": True in space["depthwise"], "activation": space["activation"][0], "head": min(space["head"])}


def _mlp_suggest(trial, space: dict) -> dict:
    depth = trial.suggest_categorical("depth", space["depth"])
    return {"hidden": [trial.suggest_categorical(f"width_{i}", space["width"]) for i in range(depth)]}


# ---------------------------------------------------------------- gpt (language models)

def _head_split(width: int, heads: int) -> str | None:
    return None if width % heads == 0 else f"width {width} does not split into {heads} heads"


def _gpt_pairs(space: dict) -> list[tuple[int, int]]:
    """The (width, heads) pairs that build, cheapest first."""
    return sorted((w, h) for w in space["width"] for h in space["heads"] if _head_split(w, h) is None)


def _gpt_suggest(trial, space: dict) -> dict:
    # every dimension independent, with fixed choices: Optuna's samplers cannot take choices that change with
    # another dimension (heads that divide the width), so a pair that does not split is pruned instead
    return {dim: trial.suggest_categorical(dim, space[dim]) for dim in ("layers", "width", "heads", "context")}


def _gpt_smallest(space: dict) -> dict:
    pairs = _gpt_pairs(space)
    width, heads = pairs[0] if pairs else (min(space["width"]), min(space["heads"]))
    return {"layers": min(space["layers"]), "width": width, "heads": heads, "context": min(space["context"])}


FAMILIES: Registry[SpaceFamily] = Registry("search space")
FAMILIES.register("cnn", SpaceFamily(
    IMAGE, {"stages": [1, 2, 3], "channels": [8, 16, 32, 64], "kernel": [3, 5], "depthwise": [False, True],
            "activation": ["relu", "hardswish"], "head": [0, 32]},
    {"stages": 1, "channels": 1, "kernel": 1, "head": 0}, _cnn_size, _cnn_suggest, "searched_cnn", _cnn_smallest),
    about="convolutional stages, kernel, depthwise, activation and head")
FAMILIES.register("mlp", SpaceFamily(
    IMAGE, {"depth": [1, 2, 3], "width": [16, 32, 64, 128, 256]}, {"depth": 1, "width": 1},
    lambda s: sum(len(s["width"]) ** d for d in s["depth"]), _mlp_suggest, "mlp",
    lambda s: {"hidden": [min(s["width"])] * min(s["depth"])}), about="fully connected layers and their widths")
FAMILIES.register("gpt", SpaceFamily(
    # small enough for a trial of a few seconds on two CPU cores
    TEXT, {"layers": [1, 2, 3], "width": [32, 64, 96], "heads": [2, 4], "context": [32, 64]},
    {"layers": 1, "width": 1, "heads": 1, "context": 2},
    lambda s: len(s["layers"]) * len(_gpt_pairs(s)) * len(s["context"]), _gpt_suggest, "gpt", _gpt_smallest,
    lambda arch: _head_split(arch["width"], arch["heads"])),
    about="decoder-only transformers: layers, width, attention heads and context")

DEFAULT_SPACES = {name: family.defaults for name, family in FAMILIES.items()}
REQUIRED = {name: tuple(family.defaults) for name, family in FAMILIES.items()}


def family_of(name: str) -> SpaceFamily:
    if name not in FAMILIES:
        raise LabError(f"Unknown search space '{name}'. Known: {', '.join(FAMILIES.names())}")
    return FAMILIES[name]


def families_for(data: str) -> list[str]:
    """The families whose models take this kind of data (IMAGE or TEXT), the default first."""
    return [name for name, family in FAMILIES.items() if family.data == data]


def check_space_fits_data(name: str, dataset: str, data: str) -> None:
    """A family on the other kind of data is refused in one sentence that names the families that fit."""
    family = family_of(name)
    if family.data != data:
        fits = " or ".join(families_for(data))
        raise LabError(f"The {name} space holds {'language' if family.data == TEXT else 'image'} models, and "
                       f"'{dataset}' is {'text' if data == TEXT else 'an image data set'}: use --space {fits}.")


def validate_space(name: str, space: dict) -> dict:
    family = family_of(name)
    space = {**family.defaults, **(space or {})}
    for key in family.defaults:
        if not space.get(key):
            raise LabError(f"The search space is empty in '{key}': give at least one choice")
    unknown = set(space) - set(family.defaults)
    if unknown:
        raise LabError(f"Unknown dimension(s) {', '.join(sorted(unknown))} for {name}. Known: "
                       f"{', '.join(family.defaults)}")
    for key, least in family.minimum.items():
        if any(not isinstance(v, int) or isinstance(v, bool) or v < least for v in space[key]):
            what = "positive integers" if least == 1 else f"integers of at least {least}"
            raise LabError(f"'{key}' choices must be {what}, got {space[key]}")
    if family.size(space) == 0:
        raise LabError(f"No architecture in this {name} space builds: "
                       f"{family.infeasible(family.smallest(space))} (and no other choice does either).")
    return space


def space_size(name: str, space: dict) -> int:
    """How many distinct architectures the space holds that build (per-stage choices multiply per stage)."""
    space = validate_space(name, space)
    return family_of(name).size(space)


def suggest(trial, name: str, space: dict) -> dict:
    """Sample one architecture through an Optuna trial (so samplers see every dimension)."""
    return family_of(name).suggest(trial, space)


def infeasible(name: str, arch: dict) -> str | None:
    return family_of(name).infeasible(arch)


def arch_to_spec(name: str, arch: dict) -> dict:
    return {"name": family_of(name).model, "args": dict(arch)}


def smallest_arch(name: str, space: dict) -> dict:
    """The cheapest architecture in the space (for 'can any satisfy the constraint?')."""
    return family_of(name).smallest(space)
