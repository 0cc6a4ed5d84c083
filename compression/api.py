"""The model-first API: any nn.Module, with any DataLoader, Dataset or (x, y) pair that yields (input, label).

In the style of Torch-Pruning and torchao: one verb per technique, keyword options, a new model back. The
caller's model is never changed; an architecture a technique cannot handle raises LabError naming why.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .core import measure as _measure
from .core.data import Dataset, from_examples
from .core.speedup import paired_speedup
from .errors import LabError
from .techniques.distill import DistillConfig, distill_student
from .techniques.prune import PruneConfig, prune_model
from .techniques.quantize import quantize_model


def _data(data, example_input: torch.Tensor | None = None) -> Dataset:
    if data is None:
        if example_input is None:
            raise LabError("Give data (a DataLoader or (x, y) tensors) or an example_input")
        x = example_input.detach().cpu().float()
        return from_examples((x, torch.zeros(len(x), dtype=torch.long)))
    return from_examples(data)


def _unsupported(what: str, err: Exception) -> LabError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return LabError(f"{what} does not support this model: {first}")


def prune(model: nn.Module, data=None, *, method: str = "channel_l1", sparsity: float = 0.5, finetune_epochs: int = 0,
          example_input: torch.Tensor | None = None, device: str = "cpu") -> nn.Module:
    """A pruned copy of `model`. Channel methods remove channels (smaller, faster); weight methods zero them."""
    config = PruneConfig(method=method, sparsity=sparsity, finetune_epochs=finetune_epochs)
    dataset = _data(data, example_input)
    try:
        pruned, report = prune_model(model, dataset, config, device)
    except LabError:
        raise
    except Exception as err:
        raise _unsupported(f"Pruning with {method}", err) from None
    for note in report["notes"]:  # it did less than asked (e.g. Swin: MLP hidden units only): say so
        warnings.warn(note, UserWarning, stacklevel=2)
    return pruned


def quantize(model: nn.Module, data=None, *, method: str = "static_int8", calibration_batches: int = 8,
             device: str = "cpu") -> nn.Module:
    """A quantized copy of `model`; `data` calibrates static int8 (its first batches)."""
    try:
        quantized, _ = quantize_model(model, _data(data), method, device, calibration_batches)
    except LabError:
        raise
    except Exception as err:
        raise _unsupported(f"Quantization with {method}", err) from None
    return quantized


def distill(teacher: nn.Module, student: nn.Module, data, *, temperature: float = 4.0, alpha: float = 0.9,
            epochs: int = 10, device: str = "cpu") -> nn.Module:
    """A copy of `student` trained on `teacher`'s soft targets (Hinton et al. 2015) and the labels."""
    config = DistillConfig(temperature=temperature, alpha=alpha, epochs=epochs)
    trained, _ = distill_student(teacher, student, _data(data), config, device)
    return trained


def measure(model: nn.Module, data, *, devices: list[str] | None = None, batch_sizes=(1, 64)) -> dict:
    """The record every lab stores: accuracy with CI, params, size, MACs and latency per device and batch."""
    dataset = _data(data)
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise LabError(f"Batch sizes must be at least 1, got {list(batch_sizes)}")
    return _measure.measure(copy.deepcopy(model), dataset, devices=devices, latency_batch=sizes[-1])


def speedup(model_a: nn.Module, model_b: nn.Module, example_input: torch.Tensor, *, device: str = "cpu",
            rounds: int = 7, threads: int | None = None) -> dict:
    """How many times faster B is than A, from interleaved paired timing, with a 95% CI, the load seen and
    the machine. The only kind of speed-up this project reports."""
    if rounds < 5:
        raise LabError(f"A paired timing needs at least 5 rounds, got {rounds}")
    return paired_speedup(model_a, model_b, example_input, device=device, rounds=rounds, threads=threads)
