"""One measurement record for every run, whatever produced it, so any two runs compare."""
from __future__ import annotations

import copy
import gzip
import io
import logging
import math
import os
import time
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

# torch.utils.benchmark imports cpp_extension, which warns "No CUDA runtime is found" on every start
# on CUDA builds of torch run on CPU-only machines; it changes nothing here.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402

from .data import Dataset
from .timing import NOISY_LOAD_CORES, NOISY_REL_IQR, LoadSampler, machine_fingerprint, wait_for_quiet
from .train import predict

DEFAULT_LATENCY_BATCH = 256


_QUIET_WAIT_LIMIT: ContextVar[float | None] = ContextVar("quiet_wait_limit", default=None)


def quiet_wait_s() -> float:
    """How long a timing waits for other processes to go quiet (10 s by default; tests set it lower, and
    a job may cap it with `quiet_wait_limit`)."""
    configured = float(os.environ.get("COMPRESSION_LAB_QUIET_WAIT_S", 10.0))
    limit = _QUIET_WAIT_LIMIT.get()
    return configured if limit is None else min(configured, limit)


@contextmanager
def quiet_wait_limit(seconds: float):
    """Cap the quiet wait of every timing inside: for jobs whose figures are shown live, not quoted (the
    demo, where the browser drawing its charts is the very load being waited out), and flagged when noisy."""
    token = _QUIET_WAIT_LIMIT.set(seconds)
    try:
        yield
    finally:
        _QUIET_WAIT_LIMIT.reset(token)


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval: honest near 0 and 1, unlike the normal approximation."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    denom = 1 + z * z / total
    center = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def count_params(model: nn.Module) -> tuple[int, int]:
    """(all parameters, non-zero parameters), reading masked weights where pruning left masks."""
    total = nonzero = 0
    for tensor in _weights(model):
        total += tensor.numel()
        nonzero += int(torch.count_nonzero(tensor))
    return total, nonzero


def plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """A plain float tensor: torch.ao quantized tensors and torchao's int8 subclasses are dequantized."""
    if t.is_quantized or (type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "dequantize")):
        return t.dequantize()
    return t


def _storage_key(t: torch.Tensor):
    try:
        return (t.data_ptr(), tuple(t.shape), str(t.dtype))
    except RuntimeError:  # tensors without storage (some subclasses): never treated as shared
        return id(t)


def _weights(model: nn.Module):
    """Every learnable tensor, including packed int8 weights of quantized modules; a tied tensor (GPT-2's token
    embedding is its output layer) once, as model.parameters() counts it."""
    state, seen = model.state_dict(), set()
    for name, value in state.items():
        if name.endswith("_mask") or name.endswith("_orig"):
            continue  # torch.nn.utils.prune keeps weight_orig + weight_mask; the module's weight is the product
        if isinstance(value, torch.Tensor) and not _is_buffer(model, name):
            key = _storage_key(value)
            if key in seen:
                continue
            seen.add(key)
            yield plain_tensor(value)
        elif isinstance(value, tuple):  # packed params of quantized Linear: (weight, bias)
            yield from (plain_tensor(v) for v in value if isinstance(v, torch.Tensor))
    for module in model.modules():  # pruned weights live as attributes, not in the state dict
        if hasattr(module, "weight_mask"):
            yield module.weight


def _is_buffer(model: nn.Module, name: str) -> bool:
    module_name, _, leaf = name.rpartition(".")
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        return False
    except RuntimeError:  # an uploaded TorchScript module has no get_submodule: look among all its buffers
        return name in dict(model.named_buffers()) or leaf in ("scale", "zero_point")
    return leaf in dict(module.named_buffers(recurse=False)) or leaf in ("scale", "zero_point")


def serialized_size(model: nn.Module) -> tuple[int, int]:
    """(bytes of torch.save(state_dict), bytes after gzip): sparsity shows in the second."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    raw = buffer.getvalue()
    return len(raw), len(gzip.compress(raw, compresslevel=6))


def example_input(model: nn.Module, input_shape) -> torch.Tensor:
    floats = [p.dtype for p in model.parameters() if p.dtype.is_floating_point]
    return torch.zeros(1, *input_shape, device=_model_device(model), dtype=floats[0] if floats else torch.float32)


def count_macs(model: nn.Module, input_shape) -> int:
    """Multiply-accumulates for one sample, from torch.utils.flop_counter (FLOPs / 2).

    torch.ao's int8 kernels are invisible to the counter (0); callers use the float model's count.
    """
    from torch.utils.flop_counter import FlopCounterMode  # imports triton (~0.5 s): only where MACs are counted
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            model.eval()(example_input(model, input_shape))
    except Exception:  # some quantized kernels cannot run under the counter's dispatch mode
        return 0
    return int(counter.get_total_flops() // 2)


def effective_macs(model: nn.Module, input_shape) -> int:
    """MACs if zero weights cost nothing: each conv/linear's MACs scaled by its weight density.

    This is what a sparse kernel could at best achieve; dense kernels still pay `macs`.
    """
    dense = count_macs(model, input_shape)
    saved, hooks = [0.0], []

    def hook(module, _inputs, output):
        weight = plain_tensor(module.weight)
        if weight.numel() == 0:
            return
        per_out = weight[0].numel() if isinstance(module, nn.Conv2d) else module.in_features
        layer_macs = output[0].numel() * per_out  # one sample: outputs x inputs feeding each output
        saved[0] += layer_macs * (1 - torch.count_nonzero(weight).item() / weight.numel())
    for module in model.modules():
        if type(module) in (nn.Conv2d, nn.Linear):
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(example_input(model, input_shape))
    except Exception:  # kernels the hooks cannot follow: no sparsity to account for
        return dense
    finally:
        for h in hooks:
            h.remove()
    return max(int(dense - saved[0]), 0)


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or "cpu"


def available_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def measure_latency(model: nn.Module, input_shape, device: str, batch_size: int,
                    threads: int | None = None, min_run_time: float = 0.3,
                    input_dtype: torch.dtype = torch.float32) -> dict:
    """Median and IQR of one forward pass, after warm-up, at a fixed thread count.

    torch.utils.benchmark synchronises CUDA around each timed block on its own.
    """
    threads = threads or torch.get_num_threads()
    dev = torch.device(device)
    runnable = model if _model_device(model) == dev else copy.deepcopy(model).to(dev)
    runnable.eval()
    x = torch.randn(batch_size, *input_shape, device=dev, dtype=input_dtype)

    @torch.inference_mode()
    def forward():
        runnable(x)

    for _ in range(3):  # warm-up: allocator, kernel selection, lazy init
        forward()
    timer = benchmark.Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads)
    # Blocks of ~20 ms, at least 7 of them, so the median and IQR are over several samples.
    per_call = max(timer.timeit(1).median, 1e-6)
    number = max(1, int(0.02 / per_call))
    blocks = max(7, int(min_run_time / (number * per_call)))
    # The load of other processes, not the spread, is what exposes a competing job: OpenMP oversubscription
    # inflated latency 100x+ while IQR/median stayed at 0.01.
    with LoadSampler() as sampler:
        result = benchmark.Measurement.merge([timer.timeit(number) for _ in range(blocks)])[0]
    reasons = []
    if sampler.load >= NOISY_LOAD_CORES:
        reasons.append(f"load: other processes kept {sampler.load:.2f} cores busy")
    if result.median > 0 and result.iqr / result.median > NOISY_REL_IQR:
        reasons.append(f"spread: IQR/median {result.iqr / result.median:.2f}")
    return {"device": device, "device_name": device_name(dev), "batch_size": batch_size,
            "median_ms": result.median * 1e3, "iqr_ms": result.iqr * 1e3, "threads": threads,
            "repeats": len(result.times), "torch": torch.__version__, "mode": "eager",
            "load": round(sampler.load, 2), "noisy": bool(reasons), "noisy_reasons": reasons,
            "machine": machine_fingerprint(device, threads)["id"], "time": time.time()}


def measure(model: nn.Module, data: Dataset, devices: list[str] | None = None,
            latency_batch: int = DEFAULT_LATENCY_BATCH, min_run_time: float = 0.3,
            threads: int | None = None, exclusive: bool | None = None,
            input_dtype: torch.dtype = torch.float32) -> dict:
    """The record every run carries: accuracy (+CI), params, size, MACs, latency per device/batch.

    `exclusive` says whether latency was taken while no other job ran (the job runner knows).
    """
    model.eval()
    dev = _model_device(model)
    load_before = wait_for_quiet(quiet_wait_s())  # bounded: time anyway afterwards, and flag
    logits = predict(model, data.x_test.to(input_dtype), dev)
    correct = int((logits.argmax(1) == data.y_test).sum())
    n = len(data.y_test)
    params, nonzero = count_params(model)
    size, gz = serialized_size(model)
    latency = []
    for device in devices or available_devices():
        for batch in sorted({1, latency_batch}):
            try:
                entry = measure_latency(model, data.input_shape, device, batch, threads, min_run_time,
                                        input_dtype)
            except (RuntimeError, NotImplementedError) as err:  # e.g. int8 kernels exist only on CPU
                entry = {"device": device, "batch_size": batch, "median_ms": None, "iqr_ms": None,
                         "threads": threads or torch.get_num_threads(),
                         "unavailable": str(err).splitlines()[0][:200]}
            entry["exclusive"] = exclusive
            entry["load_before"] = round(load_before, 2)
            latency.append(entry)
    return {"accuracy": correct / n if n else float("nan"), "accuracy_ci": list(wilson_interval(correct, n)),
            "correct": correct, "n_test": n, "params": params, "nonzero_params": nonzero,
            "sparsity": 1 - nonzero / params if params else 0.0,
            "size_bytes": size, "gzip_bytes": gz, "macs": count_macs(model, data.input_shape),
            "effective_macs": effective_macs(model, data.input_shape),
            "latency": latency}


def latency_of(record: dict, device: str = "cpu", batch_size: int | None = None) -> float | None:
    """Median ms for one device and batch (the largest batch when none is named)."""
    entries = [e for e in record.get("latency", []) if e["device"] == device and e.get("median_ms")]
    if batch_size is not None:
        entries = [e for e in entries if e["batch_size"] == batch_size]
    if not entries:
        return None
    return max(entries, key=lambda e: e["batch_size"])["median_ms"]


def hardware_info() -> dict:
    """What the lab will measure on: shown on Home and kept with every latency entry."""
    info = {"cpu": device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": [], "cpu_simd": cpu_simd()}
    if torch.cuda.is_available():
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def paired_speedup(baseline: nn.Module, candidate: nn.Module, input_shape, batch_size: int, device: str = "cpu",
                   rounds: int = 7, threads: int | None = None,
                   candidate_dtype: torch.dtype = torch.float32) -> dict:
    """Speed-up of `candidate` over `baseline` from interleaved paired timing (core.timing), on random input of
    `input_shape` at `batch_size`; `candidate_dtype` is the input dtype the candidate takes (fp16 models)."""
    from .speedup import paired_speedup as paired
    x = torch.randn(batch_size, *input_shape)
    return paired(baseline, candidate, x, x.to(candidate_dtype), device=device, rounds=rounds, threads=threads,
                  max_quiet_wait_s=quiet_wait_s())


def cpu_simd() -> list[str]:
    """The CPU's vector extensions that decide int8/bf16 speed (VNNI and AMX speed up int8 a lot)."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in wanted if flag in flags]
