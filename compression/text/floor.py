"""How far a language model's decode is from its memory floor, in one record's fields and in one sentence.

A decode step at batch 1 reads every weight once, so (weight bytes per token) / (memory bandwidth) is the fastest
it can run (core.bandwidth). A model near that floor is memory-bound: fewer bytes (quantization) is what speeds
it up. A model far above it is overhead-bound: its time goes to many small kernels and their launches, one set per
layer, so fewer layers (a shallower model) is what speeds it up, and quantizing barely helps.
"""
from __future__ import annotations

from torch import nn

from ..core.bandwidth import memory_bandwidth, weight_bytes_per_token

# At a fraction f of the floor's speed, cutting the bytes 4x (fp32 -> int8) can at best turn the time floor/f into
# floor/f - 3/4 floor: a speed-up of 1 / (1 - 3f/4). At f = 0.5 that is 1.6x, worth quantizing for; at f = 0.25
# only 1.23x, while a shallower model cuts the overhead that dominates.
MEMORY_BOUND_FRACTION = 0.5


def floor_fields(model: nn.Module, entry: dict) -> dict:
    """A decode latency entry's floor: weight_bytes_per_token, bandwidth_gb_s, floor_ms (per token), floor_fraction
    (floor / measured time per token, in (0, 1]; a model whose weights sit in the CPU's cache can read faster than
    memory delivers, and is then said to be at the floor, `faster_than_floor`)."""
    weight_bytes = weight_bytes_per_token(model)
    bandwidth = memory_bandwidth()
    floor_ms = weight_bytes / (bandwidth["gb_s"] * 1e9) * 1e3
    ms_per_token = entry["median_ms"] / entry["tokens"]
    ratio = floor_ms / ms_per_token if ms_per_token > 0 else 1.0
    return {"weight_bytes_per_token": weight_bytes, "bandwidth_gb_s": bandwidth["gb_s"],
            "bandwidth_noisy": bool(bandwidth.get("noisy")), "floor_ms": floor_ms, "ms_per_token": ms_per_token,
            "floor_fraction": min(1.0, ratio), "faster_than_floor": ratio > 1.0}


def bound(fraction: float) -> str:
    """'memory' or 'overhead': what limits a decode at this fraction of its floor."""
    return "memory" if fraction >= MEMORY_BOUND_FRACTION else "overhead"


def floor_text(entry: dict | None) -> str:
    """'21 ms/token, 4.0x the memory floor (5.2 ms for 78 MB at 15 GB/s): overhead-bound — make it shallower', or
    '' for an entry measured before the floor was recorded."""
    if not entry or not entry.get("floor_ms") or not entry.get("floor_fraction"):
        return ""
    ms = entry.get("ms_per_token") or entry["median_ms"] / entry["tokens"]
    where = (f"{_ms(entry['floor_ms'])} ms for {_megabytes(entry['weight_bytes_per_token'])} at "
             f"{entry['bandwidth_gb_s']:.0f} GB/s")
    if entry.get("faster_than_floor"):
        return (f"{_ms(ms)} ms/token, at the memory floor ({where}; its weights are read from the CPU's cache): "
                "memory-bound \u2014 quantize it")
    above = 1 / entry["floor_fraction"]
    head = f"{_ms(ms)} ms/token, {above:.1f}x" if above < 10 else f"{_ms(ms)} ms/token, {above:.0f}x"
    head += f" the memory floor ({where})"
    if bound(entry["floor_fraction"]) == "memory":
        return f"{head}: memory-bound \u2014 quantize it"
    return f"{head}: overhead-bound \u2014 make it shallower"


def floor_badge(entry: dict | None) -> str:
    """The same verdict, short, for a run's card: '4.0x the memory floor, overhead-bound' ('' without a floor)."""
    if not entry or not entry.get("floor_fraction"):
        return ""
    if entry.get("faster_than_floor"):
        return "at the memory floor, memory-bound"
    return f"{1 / entry['floor_fraction']:.1f}x the memory floor, {bound(entry['floor_fraction'])}-bound"


def decode_floor_text(record: dict, phase: str | None) -> str:
    """floor_text of the record's entry for `phase`, or '' where that phase has no floor (prefill, an image)."""
    entry = next((e for e in record.get("latency") or [] if e.get("phase") == phase and phase), None)
    return floor_text(entry)


def _ms(value: float) -> str:
    return f"{value:.2g}" if value < 1 else f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.0f} MB" if count >= 10e6 else f"{count / 1e6:.2g} MB" if count >= 1e5 else \
        f"{count / 1e3:.0f} kB"
