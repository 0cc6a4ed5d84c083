"""Weight-only kernels for Linear layers (a language model's projections and its output head) on a CPU.

Decoding one token reads every weight once, so at batch 1 a CPU's decode speed is set by the bytes of weights read
per token. Fewer bits pay off only through a kernel that multiplies the stored weights directly; torchao's eager
int8 weight-only turns them back into an fp32 tensor on every call and runs about 2x slower than fp32.

- Int8WeightLinear: int8 weights, one scale per output channel (symmetric), multiplied by aten's
  `_weight_int8pack_mm`. Activations go in as bf16: its fp32 (and fp16) path is a scalar reference loop, measured
  4-25x slower than fp32's own matmul here; its bf16 path is vectorised. It needs input widths that are a multiple
  of 16 (others crashed it with a segfault, and a width of 8 gave wrong numbers, in torch 2.14).
- Int4WeightLinear: 4-bit weights in groups of 32 / 64 / 128 / 256 input columns, each group with its own scale and
  zero (asymmetric: w = (q - 8) * scale + zero, aten's convention), multiplied by aten's
  `_weight_int4pack_mm_for_cpu`. Its packed layout depends on the CPU (blocks of 64 output rows with AVX512, 32
  with AVX2), so the stored form is a portable one (two values a byte: column j in the low nibble, column j + in/2
  in the high one) and it is packed for this CPU at the first call, never written to the model file.
- Bf16WeightLinear: bf16 weights; one token is a matrix-vector product (torch.mv: measured faster than F.linear's
  bf16 path, and than fp32, at batch 1).

The packed int8 / int4 kernels are built for few rows (a decode step); measured on a 1536 x 576 layer, their time
grows with every row while a GEMM's hardly does, and at 1024 rows (a prefill) they were 2.5-3x slower than fp32.
So a call with more rows than PACKED_ROWS dequantizes the weights once and runs one GEMM: in bf16 where the CPU
has native bf16 (AMX / AVX512-BF16: 4-6x faster than fp32 at 1024 rows, dequantizing included), else in fp32.
Each module returns what it was given (fp32 in, fp32 out): norms, attention and the residual stream stay fp32.
The modules are buffers plus class code of this package, so the safe model file stores and loads them as is.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LabError

GROUP_SIZES = (32, 64, 128, 256)  # what _weight_int4pack_mm_for_cpu accepts
DEFAULT_GROUP_SIZE = 32
INT8_WIDTH = 16                   # _weight_int8pack_mm's input widths: multiples of 16
_INT4_ROWS = 16                   # _convert_weight_to_int4pack_for_cpu wants output rows in multiples of 16


@functools.cache
def native_bf16() -> bool:
    """The CPU multiplies bf16 natively (AMX tiles or AVX512-BF16); elsewhere bf16 GEMMs are emulated and slow."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private helpers: absent on some builds
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _gemm_dtype() -> torch.dtype:
    return torch.bfloat16 if native_bf16() else torch.float32


class WeightOnlyLinear(nn.Module):
    """What the three share: the layer's shape, its fp32 bias, and the step from (..., in) to (..., out)."""
    storage = "float32"       # the stored weights' type, as quantized_layers reports it
    kernel = ""               # what multiplies a few rows (a decode step)
    packed_rows = 0           # up to this many rows go through `kernel`; more are one dequantized GEMM

    def _setup(self, linear: nn.Linear) -> None:
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a decode step calls ~7 of these per block, so each Python-level op here (~2-4 us) is a visible share of
        # a step: the fewest that convert to bf16 and back
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] <= self.packed_rows:
            y = self._few_rows(rows.bfloat16())
        else:
            dtype = _gemm_dtype()
            y = F.linear(rows.to(dtype), self.dequantized(dtype))
        y = y.float() if x.dtype == torch.float32 else y.to(x.dtype)
        if self.bias is not None:
            y += self.bias.to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)  # a view, unless int4's padded rows were cut off

    def weight_bytes(self) -> int:
        """Bytes of what the kernel reads for this layer's weights: values, scales and zeros (not the bias)."""
        return sum(b.numel() * b.element_size() for name, b in self.named_buffers() if name != "bias")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, storage={self.storage}"


class Int8WeightLinear(WeightOnlyLinear):
    storage = "int8"
    kernel = "aten _weight_int8pack_mm (bf16 activations)"
    packed_rows = 16  # measured on a 1536 x 576 layer: the kernel beats dequantizing up to ~20 rows

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self._setup(linear)
        w = linear.weight.detach().float()
        scale = (w.abs().amax(1) / 127).clamp(min=1e-12)  # symmetric per output channel: int8's full range
        self.register_buffer("qweight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        # the kernel takes its scales in the activations' dtype (bf16: 0.4% apart; an int8 step is 0.8%)
        self.register_buffer("scales", scale.to(torch.bfloat16))

    def _few_rows(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(x, self.qweight, self.scales)

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (self.qweight.float() * self.scales.float()[:, None]).to(dtype)


class Int4WeightLinear(WeightOnlyLinear):
    storage = "int4"
    kernel = "aten _weight_int4pack_mm_for_cpu (bf16 activations)"
    packed_rows = 32  # measured on a 1536 x 576 layer: the kernel beats dequantizing up to ~30 rows
    _packed: torch.Tensor | None = None  # the values in this CPU's layout: made at the first call, never stored

    def __init__(self, linear: nn.Linear, group_size: int = DEFAULT_GROUP_SIZE):
        super().__init__()
        self._setup(linear)
        if group_size not in GROUP_SIZES or self.in_features % group_size:
            raise LabError(f"An input width of {self.in_features} is not a multiple of the group size {group_size}.")
        self.group_size = group_size
        w = linear.weight.detach().float()
        rows = -(-self.out_features // _INT4_ROWS) * _INT4_ROWS  # padded with zero rows, cut off after the multiply
        groups = torch.cat([w, w.new_zeros(rows - self.out_features, self.in_features)]).reshape(rows, -1, group_size)
        low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-8)
        q = torch.round((groups - low) / scale).clamp(0, 15).to(torch.uint8).reshape(rows, -1).T
        # stored input-major, (in / 2, out): row j holds input j in its low nibble and input j + in/2 in its high
        # one, so unpacking is two whole-row copies and dequantizing broadcasts each group's scale along contiguous
        # outputs (measured 5x faster than along the groups' 32 inputs)
        half = self.in_features // 2
        self.register_buffer("qweight", (q[:half] | (q[half:] << 4)).contiguous())
        # aten's (in / group, out, 2) table of (scale, zero), dequantizing (q - 8) * scale + zero
        self.register_buffer("scales_and_zeros", torch.cat([scale, low + 8 * scale], -1).transpose(0, 1).contiguous()
                             .to(torch.bfloat16))

    def values(self) -> torch.Tensor:
        """The 4-bit values 0..15 as uint8, (in, out padded to a multiple of 16)."""
        return torch.cat([self.qweight & 15, self.qweight >> 4], 0)

    def packed(self) -> torch.Tensor:
        if self._packed is None:
            self._packed = torch._convert_weight_to_int4pack_for_cpu(self.values().T.contiguous().int(), 1)
        return self._packed

    def _apply(self, fn, recurse=True):  # moved or cast: its packed copy is remade from the moved values
        self._packed = None
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs):  # new values: so is the packed copy
        self._packed = None
        return super()._load_from_state_dict(*args, **kwargs)

    def _few_rows(self, x: torch.Tensor) -> torch.Tensor:
        y = torch._weight_int4pack_mm_for_cpu(x, self._packed if self._packed is not None else self.packed(),
                                              self.group_size, self.scales_and_zeros)
        return y if y.shape[1] == self.out_features else y[:, :self.out_features]

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(out, in) in `dtype`, computed in fp32 (bf16 arithmetic on CPU tensors is several times slower)."""
        table = self.scales_and_zeros.float()
        scale, zero = table[..., :1].transpose(1, 2), table[..., 1:].transpose(1, 2)  # (groups, 1, out)
        q = self.values().float().view(-1, self.group_size, self.qweight.shape[1])
        w = torch.addcmul(zero - 8 * scale, q, scale).view(self.in_features, -1)[:, :self.out_features]
        return w.to(dtype).T


class Bf16WeightLinear(WeightOnlyLinear):
    storage = "bfloat16"
    kernel = "torch.mv in bf16 (one token), F.linear in bf16 (more)"
    packed_rows = 1

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self._setup(linear)
        self.register_buffer("qweight", linear.weight.detach().to(torch.bfloat16).contiguous())

    def _few_rows(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mv(self.qweight, x[0])[None]

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.qweight if dtype == torch.bfloat16 else self.qweight.to(dtype)


# ------------------------------------------------------------------------------------------ whole models

def check_widths(widths: list[tuple[str, int]], method: str, multiple: int, why: str,
                 choices: tuple[int, ...] = ()) -> None:
    """One sentence naming the first layer whose input width is not a multiple of `multiple` (and, for a group
    size, which of `choices` would fit every layer)."""
    bad = next(((name, width) for name, width in widths if width % multiple), None)
    if bad is None:
        return
    fit = [c for c in choices if all(width % c == 0 for _, width in widths)]
    hint = (f"; group sizes that fit every layer: {', '.join(map(str, fit))}" if fit else
            f"; none of {', '.join(map(str, choices))} fits every layer" if choices else "")
    raise LabError(f"{method} needs every Linear layer's input width to be a multiple of {multiple} ({why}), "
                   f"and {bad[0]} takes {bad[1]}{hint}.")


def replace_linears(model: nn.Module, make) -> list[str]:
    """Swap every nn.Linear (the blocks' projections and the output head) for make(linear), in place. A head tied
    to the embedding becomes its own quantized copy: the embedding table keeps its fp32 rows."""
    names = []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:  # not its subclasses: MultiheadAttention reads out_proj.weight itself
                setattr(parent, name, make(child))
                names.append(f"{parent_name}.{name}" if parent_name else name)
    return names


def weight_report(model: nn.Module) -> dict:
    """Bytes and bits per weight of the quantized layers (scales and zeros included), and what multiplies them."""
    layers = [m for m in model.modules() if isinstance(m, WeightOnlyLinear)]
    weights = sum(m.in_features * m.out_features for m in layers)
    stored = sum(m.weight_bytes() for m in layers)
    return {"kernel": layers[0].kernel if layers else None, "packed_rows": layers[0].packed_rows if layers else 0,
            "prefill_gemm": str(_gemm_dtype()).removeprefix("torch."),
            "quantized_weights": weights, "weight_bytes": stored, "float_weight_bytes": 4 * weights,
            "bits_per_weight": round(8 * stored / weights, 3) if weights else None}


# ------------------------------------------------------------------------------------------ the probe

def probe_main() -> None:
    """Run in a probe subprocess: each kernel on small layers against fp32, and whether bf16 is native here. Prints
    {method: None or why not, "native_bf16": bool} as its last line."""
    import json
    torch.manual_seed(0)
    result = {"native_bf16": native_bf16()}
    makers = {"int8_packed": Int8WeightLinear, "int4_packed": lambda linear: Int4WeightLinear(linear, 32),
              "bf16_linear": Bf16WeightLinear}
    for method, make in makers.items():
        worst = 0.0
        for fan_in, fan_out, rows in ((64, 48, 1), (128, 40, 3), (64, 300, 40)):
            linear = nn.Linear(fan_in, fan_out)
            x = torch.randn(rows, fan_in)
            with torch.no_grad():
                module = make(linear)
                reference = F.linear(x, module.dequantized(), linear.bias)
                worst = max(worst, ((module(x) - reference).abs().max() / reference.abs().max()).item())
        result[method] = None if worst < 0.05 else (f"its kernel gave wrong numbers here (largest error {worst:.0%} "
                                                    "of the output)")
    print(json.dumps(result))
