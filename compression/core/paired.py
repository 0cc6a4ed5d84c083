"""Paired timings of two models, the only way a lab times a child against its parent: interleaved rounds in one
process on the same input (core.speedup.paired_speedup), and the run record's speedup_* fields from one of them.
Tasks and labs both time pairs, so this lives below both."""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .measure import quiet_wait_s
from .speedup import paired_speedup
from .timing import AdaptiveRounds

ROUNDS = 5


def _example(input_shape, batch_size: int, device: str) -> torch.Tensor:
    return torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)


def time_pair(model_a: nn.Module, model_b: nn.Module, input_shape, batch_size: int, *, device: str = "cpu",
              dtype_b: torch.dtype = torch.float32, rounds: int | AdaptiveRounds = ROUNDS,
              block_s: float = 0.05) -> dict:
    """One paired timing of B against A (speedup = time(A) / time(B)); int8 models always run on the CPU.
    `rounds`: an int is the quick figure a lab stores beside each run (that many rounds, in this process);
    AdaptiveRounds is the figure to quote (fresh processes, pooled; see core.timing_pool)."""
    x = _example(input_shape, batch_size, device)
    return time_pair_on(model_a, model_b, x, x.to(dtype_b), device=device, rounds=rounds, block_s=block_s)


def time_pair_on(model_a: nn.Module, model_b: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, *,
                 device: str = "cpu", rounds: int | AdaptiveRounds = ROUNDS, block_s: float = 0.05) -> dict:
    """time_pair on given inputs: token ids for a language model's prefill, a one-token prompt for its decode."""
    return paired_speedup(model_a, model_b, x_a, x_b, device=device, rounds=rounds,
                          max_quiet_wait_s=quiet_wait_s(), block_s=block_s)


def record_fields(timing: dict) -> dict:
    """The run record's speedup_* fields from one paired timing (all of them from that one timing)."""
    key = f"speedup_{timing['device']}_b{timing['batch_size']}"
    return {key: timing["speedup"], f"{key}_ci95": timing["ci95"], f"{key}_noisy": timing["noisy"],
            f"{key}_load": timing["load"], f"{key}_machine": timing["machine"], f"{key}_mode": timing["mode"]}


def fused_reference(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """The fp32 model with conv+BN folded (what FX does before int8), to split a static int8 gain into
    'fusing layers' and 'int8'. TorchScript, like the stored int8 model it is timed against: an FX module runs
    its graph in Python, which would charge ~0.15 ms a call to the wrong factor. None when it cannot be traced."""
    try:
        from torch.fx.experimental.optimization import fuse
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.jit.trace(fuse(copy.deepcopy(model).eval()), example)
    except Exception:
        return None


def split_gain(parent: nn.Module, quantized: nn.Module, input_shape, batch_size: int, block_s: float) -> dict | None:
    """'6.9x = 2.0x from fusing layers x 3.4x from int8': both factors timed in pairs, like the total."""
    fused = fused_reference(parent, _example(input_shape, 1, "cpu"))
    if fused is None:
        return None
    fusion = time_pair(parent, fused, input_shape, batch_size, block_s=block_s)
    int8 = time_pair(fused, quantized, input_shape, batch_size, block_s=block_s)
    return {"fusion": fusion["speedup"], "fusion_ci95": fusion["ci95"], "int8": int8["speedup"],
            "int8_ci95": int8["ci95"], "batch_size": batch_size, "noisy": fusion["noisy"] or int8["noisy"]}
