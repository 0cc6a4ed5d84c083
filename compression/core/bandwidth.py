"""The memory floor of a batch-1 decode step: every weight is read once per token, so no kernel can beat
(bytes of weights read per token) / (memory read bandwidth). Above that floor a model is overhead-bound (many
small kernels, Python, threads waking up: fewer layers help); near it, memory-bound (fewer bytes help: quantize).

- `memory_bandwidth()`: the machine's read bandwidth, measured once per machine fingerprint (CPU, SIMD set, thread
  count, torch) and cached beside the int8 probe ($XDG_CACHE_HOME/compression-lab/bandwidth-<id>.json);
  COMPRESSION_LAB_BANDWIDTH_GB_S overrides it (a figure known from elsewhere, or a test that needs none measured).
- `weight_bytes_per_token(model)`: the bytes of parameters and buffers one decode step reads, counted from what
  each module really stores (int8 one byte, packed int4 half a byte, their scales), torch.ao's packed params and
  torchao's tensor subclasses included.

Bottom layer: torch, psutil and the standard library only.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import psutil
import torch
from torch import nn

from .measure import quiet_wait_s
from .timing import NOISY_LOAD_CORES, LoadSampler, machine_fingerprint, num_threads, wait_for_quiet

ENV_OVERRIDE = "COMPRESSION_LAB_BANDWIDTH_GB_S"
ROUNDS = 7
QUIET_WAIT_S = 1.0          # at most this long for a neighbour's burst to pass before measuring
MEASURE_ATTEMPTS = 4        # a figure measured under load is measured again by the next few processes, no more
MIN_BUFFER = 256 * 2 ** 20  # read more than the last-level cache holds, or the figure is the cache's bandwidth
MAX_BUFFER = 2 ** 30        # 1 GiB read at ~10-25 GB/s is 40-100 ms a round: the whole probe stays under ~1 s
_MEMO: dict[str, dict] = {}  # cache file -> figure: a process measures (or reads the file) once


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache's size from sysfs (None where unreadable). A VM may report the host's whole L3 (300 MiB
    here) while its slice is smaller: the buffer is sized from it generously, never from it exactly."""
    best = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        units = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}
        size = int(text[:-1]) * units[text[-1]] if text[-1:] in units else int(text or 0)
        best = max(best or 0, size)
    return best


def _cache_file(machine: str) -> Path:
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compression-lab"
    return folder / f"bandwidth-{machine}.json"


def measure_read_bandwidth(rounds: int = ROUNDS, threads: int | None = None) -> dict:
    """Read bandwidth, GB/s (1e9 bytes): a float32 sum over a buffer of max(2 x last-level cache, 256 MiB), at most
    1 GiB and a quarter of the free memory, with the threads the lab times with. A sum is one streaming read that
    SIMD finishes far faster than memory delivers, so memory is what it times. The figure is the best of `rounds`
    (after one untimed read that faults the pages in): a busy neighbour can only slow a read down, never speed it
    up, so the best round is the machine's capability; the median is kept beside it."""
    threads = int(threads) if threads is not None else torch.get_num_threads()
    llc = last_level_cache_bytes()
    free = psutil.virtual_memory().available
    size = int(min(max(2 * (llc or 0), MIN_BUFFER), MAX_BUFFER, free // 4)) // 4 * 4
    wait_for_quiet(min(QUIET_WAIT_S, quiet_wait_s()))
    started = time.perf_counter()
    with num_threads(threads):
        buffer = torch.ones(size // 4, dtype=torch.float32)
        buffer.sum()
        seconds = []
        with LoadSampler() as sampler:
            for _ in range(max(1, int(rounds))):
                t0 = time.perf_counter()
                buffer.sum()
                seconds.append(time.perf_counter() - t0)
        del buffer
    rates = [size / s / 1e9 for s in seconds]
    return {"gb_s": round(max(rates), 2), "median_gb_s": round(statistics.median(rates), 2),
            "method": f"read: float32 sum over {size / 2 ** 20:.0f} MiB, {threads} thread(s), best of "
                      f"{len(rates)} rounds",
            "buffer_bytes": size, "llc_bytes": llc, "rounds": len(rates), "threads": threads,
            "load": round(sampler.load, 2), "noisy": sampler.load >= NOISY_LOAD_CORES,
            "probe_s": round(time.perf_counter() - started, 2)}


def memory_bandwidth() -> dict:
    """{"gb_s", "median_gb_s", "method", "measured_at" (unix time), "machine", "noisy", ...}: this machine's memory
    read bandwidth at the current thread count, measured once per machine fingerprint and cached on disk. A cache
    file that does not parse, or names another machine, is measured again. On a 2-core machine a neighbour that
    keeps one core busy halves a 2-thread read (OpenMP waits for its descheduled thread), so a figure measured
    under load is `noisy`: the next few processes measure again (MEASURE_ATTEMPTS in all) and keep the best."""
    machine = machine_fingerprint("cpu")["id"]
    forced = os.environ.get(ENV_OVERRIDE)
    if forced:
        return {"gb_s": float(forced), "method": f"given by {ENV_OVERRIDE}", "measured_at": None,
                "machine": machine, "noisy": False}
    path = _cache_file(machine)
    key = str(path)
    if key in _MEMO:
        return dict(_MEMO[key])
    cached = _read_cache(path, machine)
    if cached and (not cached.get("noisy") or cached.get("attempts", 1) >= MEASURE_ATTEMPTS):
        _MEMO[key] = cached
        return dict(cached)
    figure = {**measure_read_bandwidth(), "measured_at": time.time(), "machine": machine}
    if cached:  # the last figure was measured under load: keep the better of the two, and count the tries
        figure = max(figure, cached, key=lambda f: (not f.get("noisy"), f["gb_s"]))
        figure = {**figure, "attempts": cached.get("attempts", 1) + 1}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")  # two processes measuring at once never leave half a file
    partial.write_text(json.dumps(figure))
    os.replace(partial, path)
    _MEMO[key] = figure
    return dict(figure)


def _read_cache(path: Path, machine: str) -> dict | None:
    try:
        cached = json.loads(path.read_text())
        if cached.get("machine") == machine and float(cached["gb_s"]) > 0:
            return cached
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


# ---------------------------------------------------------------- bytes a decode step reads

def tensor_bytes(tensor) -> int:
    """The bytes a tensor really stores: a tensor subclass (torchao's int8/int4 weights) is the sum of its inner
    tensors; a torch quantized tensor is its integer data plus its scales and zero points (per channel: one each
    a row; per tensor: a float32 scale and an int32 zero point, 8 bytes)."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, nn.Parameter):
        names = tensor.__tensor_flatten__()[0]
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    if tensor.is_quantized:
        data = _packed_data_bytes(tensor)
        if tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                                torch.per_channel_affine_float_qparams):
            scales, zeros = tensor.q_per_channel_scales(), tensor.q_per_channel_zero_points()
            return data + scales.numel() * scales.element_size() + zeros.numel() * zeros.element_size()
        return data + 8
    return tensor.numel() * tensor.element_size()


def _packed_data_bytes(tensor: torch.Tensor) -> int:
    """quint4x2 / quint2x4 pack two / four values a byte: numel() counts values, not bytes."""
    per_byte = {torch.quint4x2: 2, torch.quint2x4: 4}.get(tensor.dtype, 1)
    return -(-tensor.numel() // per_byte) * (tensor.element_size() if per_byte == 1 else 1)


def _tensors(value):
    """Tensors inside a state-dict value: a tensor, or a tuple/list of them (torch.ao's packed params unpack to
    (weight, bias) when a module saves its state)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def _own_tensors(module: nn.Module) -> list[torch.Tensor]:
    """What one module stores itself (not its children): its parameters and persistent buffers as it saves them
    (so packed params come back as real tensors), plus its non-persistent buffers."""
    local: dict = {}
    module._save_to_state_dict(local, "", keep_vars=True)
    tensors = [t for value in local.values() for t in _tensors(value)]
    tensors += [b for name, b in module._buffers.items()
                if b is not None and name in module._non_persistent_buffers_set]
    return tensors


def _is_embedding(module: nn.Module) -> bool:
    """A lookup table (nn.Embedding, torch.ao's quantized Embedding, an EmbeddingBag): a step reads the rows of its
    tokens, not the table."""
    return isinstance(module, (nn.Embedding, nn.EmbeddingBag)) or "Embedding" in type(module).__name__


def weight_bytes_per_token(model: nn.Module) -> int:
    """The bytes of parameters and buffers one batch-1 decode step reads: every tensor the forward touches, once.
    An embedding table counts one row (a token reads its row), unless the same tensor is also another module's
    (an output head tied to it reads the whole table every step); a tensor shared by several modules counts
    once."""
    owners: dict[int, list] = {}
    tensors: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for tensor in _own_tensors(module):
            owners.setdefault(id(tensor), []).append(module)
            tensors[id(tensor)] = tensor
    total = 0
    for key, tensor in tensors.items():
        size = tensor_bytes(tensor)
        if all(_is_embedding(m) for m in owners[key]) and tensor.dim() >= 2 and tensor.shape[0] > 0:
            size = -(-size // tensor.shape[0])  # one row, its share of the scales included
        total += size
    return int(total)
