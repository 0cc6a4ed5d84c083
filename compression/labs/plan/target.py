"""What a plan aims at: `KIND=RATIO`, the share of the baseline's cost a compressed model may keep.

`latency=0.4` is "2.5x faster" (timed in pairs with the baseline), `size=0.025` "40x smaller" (bytes of the
stored file), `params=0.2` "5x fewer non-zero parameters", `macs=0.3` "3.3x fewer multiply-accumulates".
Each kind is registered once with its phrase and its prior: the first recipes a plan tries for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ...errors import LabError
from ...registry import Registry


@dataclass(frozen=True)
class TargetKind:
    unit: str                                  # "faster": "2.5x faster"
    measured: str                              # what the cost is, for the UI
    prior: Callable[[float], list[dict]]       # ratio -> recipe parameters tried first


def _latency_prior(ratio: float) -> list[dict]:
    # Removing a share s of channels leaves ~(1 - s)^2 of the conv MACs; int8 kernels add ~1.8x on CPUs
    # (README's benchmarks). Aim a little past the target: timing on a shared machine is noisy.
    plain = _step(1 - math.sqrt(ratio) + 0.08, 0.7)
    with_int8 = _step(1 - math.sqrt(min(1.0, 1.8 * ratio)) + 0.05, 0.7)
    return [{"structured": plain, "unstructured": 0.0, "kd": True},
            {"structured": with_int8, "unstructured": 0.0, "kd": True, "quantize": "static_int8"}]


def _macs_prior(ratio: float) -> list[dict]:
    return [{"structured": _step(1 - math.sqrt(ratio) + 0.03, 0.7), "unstructured": 0.0, "kd": True}]


def _params_prior(ratio: float) -> list[dict]:
    return [{"structured": 0.0, "unstructured": round(min(0.97, 1 - ratio + 0.01), 2), "kd": True}]


def _size_prior(ratio: float) -> list[dict]:
    # A kept weight costs ~(bits + 5) bits in the file (a coded gap + a code) against 32 dense, and ~30% of a
    # small file is fixed cost (header, biases, codebooks): so keep about 0.7 * 32 * ratio / (bits + 5).
    def sparsity(bits: int) -> float:
        return round(min(0.97, max(0.5, 1 - 0.7 * 32 * ratio / (bits + 5))), 2)
    return [{"structured": 0.0, "unstructured": sparsity(4), "kd": True, "bits": 4},
            {"structured": 0.0, "unstructured": sparsity(5), "kd": True, "bits": 5}]


def _step(value: float, top: float) -> float:
    return round(min(top, max(0.0, math.ceil(value * 20) / 20)), 2)


TARGETS: Registry[TargetKind] = Registry("plan target")
TARGETS.register("latency", TargetKind("faster", "time of a batch, timed in pairs with the baseline",
                                       _latency_prior), about="measured latency at the latency batch")
TARGETS.register("size", TargetKind("smaller", "bytes of the stored file", _size_prior),
                 about="bytes of the stored file (the compressed file when weights are shared)")
TARGETS.register("params", TargetKind("fewer non-zero parameters", "non-zero parameters", _params_prior),
                 about="non-zero parameters")
TARGETS.register("macs", TargetKind("fewer MACs", "multiply-accumulates per sample that dense kernels run",
                                    _macs_prior), about="dense multiply-accumulates per sample")


@dataclass(frozen=True)
class Target:
    kind: str
    ratio: float

    def phrase(self, cost: float | None = None) -> str:
        """'2.5x faster' for the target itself, or for a measured cost ratio."""
        value = self.ratio if cost is None else cost
        if not value or value <= 0:
            return "-"
        factor = 1 / value
        unit = TARGETS[self.kind].unit
        if factor < 1:  # slower or larger: say so, not "0.8x faster"
            opposite = {"faster": "slower", "smaller": "larger"}.get(unit, unit.replace("fewer", "more"))
            return f"{_times(1 / factor)} {opposite}"
        return f"{_times(factor)} {unit}"

    def text(self) -> str:
        return f"{self.kind}={self.ratio:g}"

    def prior(self) -> list[dict]:
        return TARGETS[self.kind].prior(self.ratio)


def target_text(kind: str, factor: float) -> str:
    """'2.5x faster' as the target it means: ('latency', 2.5) -> 'latency=0.4'."""
    TARGETS.check(kind)
    return f"{kind}={1 / factor:.4g}"


def _times(factor: float) -> str:
    return f"{factor:,.0f}x" if factor >= 100 else f"{factor:.3g}x"


def parse_target(text: str) -> Target:
    """'latency=0.4' -> Target('latency', 0.4); anything else is one LabError sentence."""
    example = "write KIND=RATIO, e.g. latency=0.4 (2.5x faster) or size=0.025 (40x smaller)"
    kind, eq, value = str(text).strip().partition("=")
    if not eq:
        raise LabError(f"Bad target '{text}': {example}")
    TARGETS.check(kind.strip())
    try:
        ratio = float(value)
    except ValueError:
        raise LabError(f"Bad target '{text}': the ratio '{value}' is not a number; {example}") from None
    if not (math.isfinite(ratio) and 0 < ratio < 1):
        raise LabError(f"Bad target '{text}': the ratio is the share of the baseline's cost to keep, so it must "
                       f"be between 0 and 1 (exclusive); {example}")
    return Target(kind.strip(), ratio)
