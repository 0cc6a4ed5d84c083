"""Search spaces as data: a JSON-able dict of choices per dimension, and how an architecture becomes a spec."""
from __future__ import annotations

import math

from ..errors import LabError

DEFAULT_SPACES = {
    "cnn": {"stages": [1, 2, 3], "channels": [8, 16, 32, 64], "kernel": [3, 5], "depthwise": [False, True],
            "activation": ["relu", "hardswish"], "head": [0, 32]},
    "mlp": {"depth": [1, 2, 3], "width": [16, 32, 64, 128, 256]},
}
REQUIRED = {"cnn": ("stages", "channels", "kernel", "depthwise", "activation", "head"), "mlp": ("depth", "width")}


def validate_space(family: str, space: dict) -> dict:
    if family not in DEFAULT_SPACES:
        raise LabError(f"Unknown search space '{family}'. Known: {', '.join(DEFAULT_SPACES)}")
    space = {**DEFAULT_SPACES[family], **(space or {})}
    for key in REQUIRED[family]:
        if not space.get(key):
            raise LabError(f"The search space is empty in '{key}': give at least one choice")
    unknown = set(space) - set(REQUIRED[family])
    if unknown:
        raise LabError(f"Unknown dimension(s) {', '.join(sorted(unknown))} for {family}. Known: {', '.join(REQUIRED[family])}")
    for key in ("stages", "channels", "kernel", "depth", "width", "head"):
        if key in space and any(not isinstance(v, int) or v < 0 or (v == 0 and key != "head") for v in space[key]):
            raise LabError(f"'{key}' choices must be positive integers, got {space[key]}")
    return space


def space_size(family: str, space: dict) -> int:
    """How many distinct architectures the space holds (per-stage choices multiply per stage)."""
    space = validate_space(family, space)
    if family == "mlp":
        return sum(len(space["width"]) ** d for d in space["depth"])
    rest = math.prod(len(space[k]) for k in ("kernel", "depthwise", "activation", "head"))
    return rest * sum(len(space["channels"]) ** s for s in space["stages"])


def suggest(trial, family: str, space: dict) -> dict:
    """Sample one architecture through an Optuna trial (so samplers see every dimension)."""
    if family == "mlp":
        depth = trial.suggest_categorical("depth", space["depth"])
        return {"hidden": [trial.suggest_categorical(f"width_{i}", space["width"]) for i in range(depth)]}
    stages = trial.suggest_categorical("stages", space["stages"])
    return {"channels": [trial.suggest_categorical(f"channels_{i}", space["channels"]) for i in range(stages)],
            "kernel": trial.suggest_categorical("kernel", space["kernel"]),
            "depthwise": trial.suggest_categorical("depthwise", space["depthwise"]),
            "activation": trial.suggest_categorical("activation", space["activation"]),
            "head": trial.suggest_categorical("head", space["head"])}


def arch_to_spec(family: str, arch: dict) -> dict:
    return {"name": "mlp" if family == "mlp" else "searched_cnn", "args": dict(arch)}


def smallest_arch(family: str, space: dict) -> dict:
    """The cheapest architecture in the space (for 'can any satisfy the constraint?')."""
    if family == "mlp":
        return {"hidden": [min(space["width"])] * min(space["depth"])}
    return {"channels": [min(space["channels"])] * min(space["stages"]), "kernel": min(space["kernel"]),
            "depthwise": True in space["depthwise"], "activation": space["activation"][0], "head": min(space["head"])}
