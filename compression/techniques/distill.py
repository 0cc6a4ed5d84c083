"""Knowledge distillation (Hinton et al. 2015), compared honestly with the same student trained alone.

loss = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y), on logits.
The T^2 keeps the soft-target gradients on the same scale as the hard-label ones when T changes.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.data import Dataset
from ..core.stream import rows
from ..core.train import TrainConfig, predict, train
from ..errors import LabError


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 4.0
    alpha: float = 0.9
    label_fraction: float = 1.0  # share of training labels the students may see; soft targets cover all
    epochs: int = 20
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise LabError(f"The temperature T must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise LabError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0 < self.label_fraction <= 1:
            raise LabError(f"The label fraction must be in (0, 1], got {self.label_fraction}")
        if self.epochs < 1:
            raise LabError(f"epochs must be >= 1, got {self.epochs}")

    def to_dict(self) -> dict:
        return asdict(self)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float, alpha: float, labelled: torch.Tensor | None = None,
            label_smoothing: float = 0.0) -> torch.Tensor:
    """Hinton's loss. `labelled` masks which samples' labels the student may use (CE term only)."""
    soft = F.kl_div(F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                    reduction="batchmean", log_target=True) * temperature ** 2
    if labelled is None:
        labelled = torch.ones_like(targets, dtype=torch.bool)
    hard = (F.cross_entropy(student_logits[labelled], targets[labelled], label_smoothing=label_smoothing)
            if labelled.any() else student_logits.sum() * 0.0)
    return alpha * soft + (1 - alpha) * hard


def label_mask(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Exactly round(fraction * n) labelled samples (at least one), chosen by the seed."""
    keep = max(1, round(fraction * n))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:keep]] = True
    return mask


def check_compatible(teacher: nn.Module, data: Dataset) -> None:
    """Teacher and student must see the same inputs and predict the same classes."""
    try:
        out = predict(teacher, data.x_val[:2])
    except Exception as err:
        raise LabError(f"The teacher does not accept {data.name}'s inputs {data.input_shape}: "
                       f"it was built for another data set ({type(err).__name__}).") from None
    if out.shape[1] != data.num_classes:
        raise LabError(f"The teacher predicts {out.shape[1]} classes but {data.name} has {data.num_classes}: "
                       "teacher and student must be built for the same data set.")


def train_plain_student(student: nn.Module, data: Dataset, config: DistillConfig, device="cpu", on_epoch=None,
                        should_cancel=None) -> tuple[nn.Module, list[dict]]:
    """A copy of the same untrained student, same seed and epochs, trained on the labelled share alone."""
    mask = label_mask(len(data.y_train), config.label_fraction, config.seed)
    labelled = dataclasses.replace(data, x_train=rows(data.x_train, mask), y_train=data.y_train[mask])
    student = copy.deepcopy(student)
    history = train(student, labelled, TrainConfig(epochs=config.epochs, seed=config.seed), device,
                    on_epoch=on_epoch, should_cancel=should_cancel)
    return student.cpu().eval(), history


def distill_student(teacher: nn.Module, student: nn.Module, data: Dataset, config: DistillConfig, device="cpu",
                    on_epoch=None, should_cancel=None) -> tuple[nn.Module, list[dict]]:
    """Train a copy of `student` on every training sample's soft targets and the labelled share's labels.
    Neither the teacher nor the caller's student is changed."""
    check_compatible(teacher, data)
    teacher_logits = predict(teacher, data.x_train).to(device)  # eval mode, no_grad: no gradient reaches it
    mask = label_mask(len(data.y_train), config.label_fraction, config.seed).to(device)
    train_config = TrainConfig(epochs=config.epochs, seed=config.seed)

    def loss_fn(_model, logits, targets, idx):
        return kd_loss(logits, teacher_logits[idx], targets, config.temperature, config.alpha, mask[idx],
                       train_config.label_smoothing)
    student = copy.deepcopy(student)
    history = train(student, data, train_config, device, on_epoch=on_epoch, should_cancel=should_cancel,
                    loss_fn=loss_fn)
    return student.cpu().eval(), history
