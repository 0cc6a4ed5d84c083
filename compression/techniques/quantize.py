"""Quantization: int8, int4 and half precision, chosen by measurement on this machine.

- dynamic_int8 and static_int8 use torch.ao: real int8 matmuls and convs on CPU. The quantized engine
  is chosen by measurement once per process (int8_engine): on this AVX2 CPU onednn ran static int8
  1.78x faster than fp32 at batch 256, fbgemm 1.64x, the default x86 engine 1.32x.
- weight_only_int8 uses torchao's Int8WeightOnlyConfig: int8 storage, dequantized at run time, so
  smaller but not faster on CPU (measured 1.5x slower).
- int8_packed, int4_packed and bf16_linear are weight-only kernels for Linear layers (quantize_kernels.py): aten's
  packed int8 / int4 matmuls, bf16 matrix-vector products, each probed once per machine in a subprocess
  (kernel_probe): a crashing kernel is recorded as unavailable instead of taking the lab down with it.
- fp16 / bf16 cast the model; real on CUDA, and honest about being slower on most CPUs.
Each method is a handler registered by name (as torchao registers per config type).
"""
from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..core.data import Dataset
from ..errors import LabError
from ..registry import Registry
from ..text.families import is_conv1d
from . import quantize_kernels as kernels

logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's import notes an Enum change


@dataclass(frozen=True)
class QuantMethod:
    name: str
    about: str                      # two lines for the UI: what it does and when it speeds things up
    kernels: str                    # what really runs: "int8 kernels", "int8 storage, fp32 compute", ...
    real_int8: bool                 # True when int8 arithmetic really runs (not simulated)
    devices: tuple[str, ...]        # where it can run
    apply: Callable[..., nn.Module]
    input_dtype: torch.dtype = torch.float32
    calibrates: bool = False        # needs calibration batches (static int8)
    options: tuple[str, ...] = ()   # keyword options its apply takes (int4's group_size)
    probed: bool = False            # a weight-only kernel checked by kernel_probe before it runs
    width_multiple: int = 0         # its kernel needs Linear input widths that are multiples of this
    width_why: str = ""


_ENGINE: str | None = None


def int8_engine() -> str:
    """The torch.ao quantized engine that runs fastest here, and set for the whole process (packed int8 weights
    belong to the engine that packed them). The choice comes from a probe run in a subprocess once per machine
    (see engine_probe); COMPRESSION_LAB_INT8_ENGINE overrides it. Raises LabError where the probe crashed."""
    global _ENGINE
    if _ENGINE is None:
        forced = os.environ.get("COMPRESSION_LAB_INT8_ENGINE")
        if forced in torch.backends.quantized.supported_engines:
            _ENGINE = forced
        else:
            probe = engine_probe()
            if not probe.get("engine"):
                raise LabError(f"int8 kernels are unavailable on this machine: {probe.get('reason')}")
            _ENGINE = probe["engine"]
        torch.backends.quantized.engine = _ENGINE
    return _ENGINE


def _probe_cache(name: str = "int8-probe") -> Path:
    from ..core.timing import machine_fingerprint
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compression-lab"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{machine_fingerprint('cpu')['id']}.json"


def engine_probe() -> dict:
    """Time torch.ao's int8 engines and run static and dynamic int8 once, in a separate process, once per
    machine (cached by machine fingerprint). A crashing kernel (static_int8 segfaulted torch 2.11 on a GPU
    host's CPU) then kills only the probe, and int8 is recorded as unavailable instead of taking down the
    process and every result with it."""
    cache = _probe_cache()
    if cache.exists():
        try:
            return json.loads(cache.read_text())
        except ValueError:
            pass
    result = run_probe("from compression.techniques.quantize import _probe_main; _probe_main()")
    cache.write_text(json.dumps(result))
    return result


def run_probe(code: str, what: str = "int8") -> dict:
    """Run `code` in a fresh Python process; its last stdout line is the JSON result. A crash or a hang is
    turned into {"engine": None, "reason": ...}, never raised."""
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        result = {"engine": None, "reason": f"the {what} probe did not finish within 300 s"}
    else:
        if done.returncode == 0 and done.stdout.strip():
            result = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            how = (f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}")
            result = {"engine": None, "reason": f"the {what} kernels crashed a probe process ({how}); {what} is "
                                                "recorded as unavailable here"}
    return result


KERNEL_PROBE_CODE = "from compression.techniques.quantize_kernels import probe_main; probe_main()"


def kernel_probe() -> dict:
    """Whether each weight-only kernel (int8_packed, int4_packed, bf16_linear) runs right on this CPU, and whether
    it has native bf16: {method: None or why not, "native_bf16": bool}. Run in a subprocess once per machine and
    cached by its fingerprint, as engine_probe is: aten's packed int8 kernel segfaults on some shapes (torch
    2.14), and a crash must cost a probe process, not the lab."""
    cache = _probe_cache("weight-kernels")
    if cache.exists():
        try:
            return json.loads(cache.read_text())
        except ValueError:
            pass
    result = run_probe(KERNEL_PROBE_CODE, "weight-only")
    cache.write_text(json.dumps(result))
    return result


def _kernel_reason(method: str) -> str | None:
    probe = kernel_probe()
    if "engine" in probe:  # the probe process crashed: its reason stands for every kernel
        return probe.get("reason")
    if method == "bf16_linear" and not probe.get("native_bf16"):
        return ("this CPU has no native bf16 (AMX or AVX512-BF16), so bf16 matrix products run emulated, slower "
                "than fp32")
    return probe.get(method, "the weight-only kernel probe did not check it")


def _probe_main() -> None:
    """Run in the probe subprocess: choose the engine, then exercise static and dynamic int8 with it."""
    engine = _fastest_engine()
    torch.backends.quantized.engine = engine
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    probe = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10)).eval()
    x = torch.randn(4, 3, 8, 8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(probe), get_default_qconfig_mapping(engine), (x,))
        prepared(x)
        convert_fx(prepared)(x)
        torch.ao.quantization.quantize_dynamic(copy.deepcopy(probe), {nn.Linear}, dtype=torch.qint8)(x)
    print(json.dumps({"engine": engine, "supported": list(torch.backends.quantized.supported_engines)}))


def _fastest_engine() -> str:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    from torch.utils import benchmark

    candidates = [e for e in ("x86", "fbgemm", "onednn") if e in torch.backends.quantized.supported_engines]
    probe = nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(32 * 8 * 8, 64)).eval()
    x = torch.randn(64, 8, 8, 8)
    timings = {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        for engine in candidates:
            torch.backends.quantized.engine = engine
            prepared = prepare_fx(copy.deepcopy(probe), get_default_qconfig_mapping(engine), (x[:2],))
            prepared(x)
            quantized = convert_fx(prepared)
            timings[engine] = benchmark.Timer("q(x)", globals={"q": quantized, "x": x}).blocked_autorange(
                min_run_time=0.2).median
    return min(timings, key=timings.get) if timings else torch.backends.quantized.engine


def conv1d_as_linear(model: nn.Module) -> int:
    """Swap each of transformers' Conv1D (GPT-2's projections: y = x W + b with W stored in x out) for the equal
    nn.Linear (W transposed), in place; returns how many. torch.ao and torchao quantize nn.Linear only, so without this
    a GPT-2's blocks keep every projection in fp32 (perplexity 192.84 -> 192.90: only the output head was int8)."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not is_conv1d(child):
                continue
            fan_in, fan_out = child.weight.shape
            linear = nn.Linear(fan_in, fan_out, bias=child.bias is not None)
            with torch.no_grad():
                linear.weight.copy_(child.weight.T)
                if child.bias is not None:
                    linear.bias.copy_(child.bias)
            setattr(parent, name, linear)
            swapped += 1
    return swapped


def _dynamic_int8(model, data, calibration_batches, batch_size):
    int8_engine()
    conv1d_as_linear(model)
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise LabError("dynamic_int8 quantizes Linear layers and this model has none; use static_int8.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao is deprecated in favour of torchao, but it is the fast path here
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def _static_int8(model, data, calibration_batches, batch_size):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = int8_engine()
    model = model.to(memory_format=torch.contiguous_format)  # a channels_last model: packed int8 weights want NCHW
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            prepared = prepare_fx(model, get_default_qconfig_mapping(engine), (data.x_train[:2].contiguous(),))
        except Exception as err:  # FX cannot trace some control flow
            raise LabError(f"static_int8 needs an FX-traceable model; this one is not ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:120]}). Try dynamic_int8 or weight_only_int8.") from None
        with torch.no_grad():  # calibration: observers record activation ranges
            for i in range(calibration_batches):
                prepared(data.x_train[i * batch_size:(i + 1) * batch_size].contiguous())
        return _keepdim_spatial_means(convert_fx(prepared))


def _keepdim_spatial_means(graph_module):
    """`x.mean([2, 3])` on an int8 feature map of 1x1 pixels fails ("required rank 4 tensor to use channels_last
    format": quantized convs return channels_last, and the 2-D result cannot keep that format). ShuffleNet pools
    this way, and small images shrink to 1x1. `x.mean([2, 3], keepdim=True).flatten(1)` is the same numbers and
    runs."""
    graph = graph_module.graph
    for node in list(graph.nodes):
        dims = node.args[1] if node.op == "call_method" and node.target == "mean" and len(node.args) == 2 else None
        if not isinstance(dims, (list, tuple)) or node.kwargs.get("keepdim") or list(dims) not in ([2, 3], [-2, -1]):
            continue
        node.kwargs = {**node.kwargs, "keepdim": True}
        with graph.inserting_after(node):
            flat = graph.call_method("flatten", (node, 1))
        node.replace_all_uses_with(flat, delete_user_cb=lambda user: user is not flat)
    graph.lint()
    graph_module.recompile()
    return graph_module


def _weight_only_int8(model, data, calibration_batches, batch_size):
    from torchao.quantization import Int8WeightOnlyConfig, quantize_
    conv1d_as_linear(model)
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise LabError("weight_only_int8 quantizes Linear layers and this model has none; use static_int8.")
    quantize_(model, Int8WeightOnlyConfig())
    return model


def _weight_only(make):
    """A weight-only kernel's apply: the widths checked, GPT-2's Conv1D as Linear, every Linear swapped."""
    def apply(model, data, calibration_batches, batch_size, method: str, group_size: int | None = None):
        check_fits(model, method, group_size)
        conv1d_as_linear(model)
        options = {} if group_size is None else {"group_size": group_size}
        kernels.replace_linears(model, lambda linear: make(linear, **options))
        return model
    return apply


def _input_widths(model: nn.Module) -> list[tuple[str, int]]:
    """(name, input width) of each layer a weight-only method swaps: nn.Linear, and GPT-2's Conv1D (in x out)."""
    return [(name, m.in_features if type(m) is nn.Linear else m.weight.shape[0]) for name, m in model.named_modules()
            if type(m) is nn.Linear or is_conv1d(m)]


def check_fits(model: nn.Module, method: str, group_size: int | None = None) -> None:
    """Raise the one-sentence LabError `method` would raise on this model's layer widths, before any work (the
    quantize lab asks this of a parent as soon as it is loaded)."""
    spec = METHODS[method]
    if "group_size" in spec.options:
        group = group_size or kernels.DEFAULT_GROUP_SIZE
        kernels.check_widths(_input_widths(model), f"{method} with group size {group}", group,
                             "its groups of input columns", kernels.GROUP_SIZES)
    elif spec.width_multiple:
        kernels.check_widths(_input_widths(model), method, spec.width_multiple, spec.width_why)


def _cast(dtype):
    def apply(model, data, calibration_batches, batch_size):
        return model.to(dtype)
    return apply


_LABELS = {"dynamic_int8": "Dynamic int8", "static_int8": "Static int8", "weight_only_int8": "Weight-only int8",
           "int8_packed": "Packed int8 weights", "int4_packed": "Packed int4 weights", "bf16_linear": "bf16 Linear layers",
           "fp16": "Half precision (fp16)", "bf16": "Brain float (bf16)"}
METHODS: Registry[QuantMethod] = Registry("quantization method")
for _m in [
    QuantMethod("dynamic_int8", "Linear weights stored as int8; activations quantized on the fly per batch. "
                "Fast for Linear-heavy models on CPU; convs stay fp32.", "int8 kernels (torch.ao)", True,
                ("cpu",), _dynamic_int8),
    QuantMethod("static_int8", "Weights and activations int8, with activation ranges calibrated on a few "
                "batches. Speeds up convs and linears on CPU; needs calibration data.",
                "int8 kernels (torch.ao FX)", True, ("cpu",), _static_int8, calibrates=True),
    QuantMethod("weight_only_int8", "Linear weights stored as int8 (4x smaller), dequantized when used; convs "
                "stay fp32. Shrinks Linear-heavy models; on CPU no faster, on GPUs it can be with torch.compile.",
                "int8 storage, fp32 compute (torchao)", False, ("cpu", "cuda"), _weight_only_int8),
    QuantMethod("int8_packed", "Linear weights (the output head too) as int8 with a scale per output channel, "
                "multiplied by aten's packed int8 kernel at decode; a prefill dequantizes them for one GEMM. A "
                "quarter of fp32's bytes per token: faster decoding where the weights are large.",
                "int8 weights, bf16 arithmetic (aten _weight_int8pack_mm)", False, ("cpu",),
                _weight_only(kernels.Int8WeightLinear), options=("method",), probed=True,
                width_multiple=kernels.INT8_WIDTH, width_why="aten's int8 kernel crashes on other widths"),
    QuantMethod("int4_packed", "Linear weights (the output head too) as 4-bit values in groups of 32 or 64 "
                "columns, each with its own scale and zero, multiplied by aten's packed int4 kernel at decode; a "
                "prefill dequantizes them for one GEMM. About a sixth of fp32's bytes per token.",
                "int4 weights, bf16 arithmetic (aten _weight_int4pack_mm_for_cpu)", False, ("cpu",),
                _weight_only(kernels.Int4WeightLinear), options=("method", "group_size"), probed=True),
    QuantMethod("bf16_linear", "Linear weights (the output head too) in bf16, multiplied in bf16 (a matrix-vector "
                "product for one token, oneDNN's AMX GEMM for more); norms and attention stay fp32. Half the bytes; "
                "only where the CPU has native bf16.",
                "bf16 weights and arithmetic in Linear layers (torch.mv / oneDNN)", False, ("cpu",),
                _weight_only(kernels.Bf16WeightLinear), options=("method",), probed=True),
    QuantMethod("fp16", "Every weight and activation in 16-bit floats: half the size. Fast on GPUs with "
                "tensor cores; most CPUs run it slower than fp32.", "fp16", False, ("cpu", "cuda"),
                _cast(torch.float16), torch.float16),
    QuantMethod("bf16", "16-bit brain floats: fp32's range with fewer mantissa bits, half the size. Fast on "
                "recent GPUs and CPUs with AMX/AVX512-BF16; slower elsewhere.", "bf16", False, ("cpu", "cuda"),
                _cast(torch.bfloat16), torch.bfloat16),
]:
    METHODS.register(_m.name, _m, about=_m.about, label=_LABELS[_m.name])


def availability(method: str, device: str = "cpu") -> str | None:
    """None when the method can run on this device here, else the reason it cannot."""
    METHODS.check(method)
    kind = torch.device(device).type
    if kind not in METHODS[method].devices:
        return f"{method} has no {kind.upper()} kernels in this build; it runs on {', '.join(METHODS[method].devices)}."
    if kind == "cuda" and not torch.cuda.is_available():
        return "no CUDA device is available here"
    if kind == "cpu" and METHODS[method].real_int8:
        if not {"x86", "fbgemm", "onednn"} & set(torch.backends.quantized.supported_engines):
            return "this CPU build has no x86 int8 engine (x86, fbgemm or onednn)"
        if not os.environ.get("COMPRESSION_LAB_INT8_ENGINE") and not engine_probe().get("engine"):
            return engine_probe().get("reason")
    if method == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        return "this GPU does not support bf16"
    if method == "weight_only_int8":
        try:
            import torchao  # noqa: F401
        except ImportError:
            return "torchao is not installed"
    if METHODS[method].probed:
        return _kernel_reason(method)
    return None


def quantized_layers(model: nn.Module) -> list[dict]:
    """Every layer whose weights are no longer fp32, with their real dtype and module type."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, kernels.WeightOnlyLinear):
            rows.append({"layer": name, "module": f"{type(module).__module__}.{type(module).__name__}",
                         "dtype": module.storage})
            continue
        weight = None
        if hasattr(module, "weight") and callable(module.weight):  # torch.ao quantized modules
            weight = module.weight()
        elif isinstance(getattr(module, "weight", None), torch.Tensor):
            weight = module.weight
        if weight is None or not isinstance(weight, torch.Tensor):
            continue
        dtype = _storage_dtype(weight)
        if dtype != torch.float32:
            rows.append({"layer": name, "module": f"{type(module).__module__}.{type(module).__name__}",
                         "dtype": str(dtype).replace("torch.", "")})
    return rows


def _storage_dtype(weight: torch.Tensor) -> torch.dtype:
    for attr in ("qdata", "int_data"):  # torchao keeps int8 data inside a tensor subclass
        inner = getattr(weight, attr, None)
        if isinstance(inner, torch.Tensor):
            return inner.dtype
    impl = getattr(weight, "tensor_impl", None)
    if impl is not None and hasattr(impl, "get_plain"):
        return impl.get_plain()[0].dtype
    return weight.dtype


def quantize_model(model: nn.Module, data: Dataset | None, method: str, device: str = "cpu",
                   calibration_batches: int = 8, batch_size: int = 64,
                   group_size: int = kernels.DEFAULT_GROUP_SIZE) -> tuple[nn.Module, dict]:
    """Return (quantized copy, report). The report says what really runs: int8 kernels or not, and for the
    weight-only kernels which one, the group size, the bits per weight and the weights' bytes."""
    spec = METHODS.get(method)
    if spec.calibrates and (calibration_batches is None or int(calibration_batches) <= 0):
        raise LabError(f"The calibration batch count must be at least 1, got {calibration_batches}")
    if group_size not in kernels.GROUP_SIZES:
        raise LabError(f"The group size must be one of {', '.join(map(str, kernels.GROUP_SIZES))}, got {group_size}.")
    reason = availability(method, device)
    if reason:
        raise LabError(f"{method} is unavailable: {reason}")
    candidate = copy.deepcopy(model).cpu().eval()
    if any(p.dtype != torch.float32 for p in candidate.parameters()) or quantized_layers(candidate):
        raise LabError(f"This model is already quantized; {method} needs a float32 model. Quantize last.")
    options = {"method": method, "group_size": group_size}
    quantized = spec.apply(candidate, data, int(calibration_batches or 0), batch_size,
                           **{k: options[k] for k in spec.options}).eval()
    if device != "cpu":
        quantized = quantized.to(device)
    layers = quantized_layers(quantized)
    if not layers:  # an unchanged copy stored as a "quantized" run would mislead every comparison made with it
        raise LabError(f"{method} found nothing to quantize in this model (no layer's weights changed type), so no "
                       "run was stored.")
    ran = f"{spec.kernels[:-1]}, {int8_engine()} engine)" if spec.real_int8 else spec.kernels
    report = {"method": method, "kernels": ran, "real_int8": spec.real_int8,
              "engine": int8_engine() if spec.real_int8 else None,
              "simulated": False, "device": device, "quantized_layers": layers,
              "calibration_batches": int(calibration_batches) if spec.calibrates else 0,
              "input_dtype": str(spec.input_dtype).replace("torch.", "")}
    if spec.probed:
        report.update(kernels.weight_report(quantized))
        if "group_size" in spec.options:
            report["group_size"] = group_size
    return quantized, report
