"""The one training / evaluation loop, over in-memory tensors or streamed image folders.

Why not a DataLoader for tensors: on small data the per-sample `__getitem__` + collate costs more
than the model itself; slicing a shuffled index tensor is several times faster (benchmarks/trainer.py).
A folder larger than memory goes through one, with decoding workers (core/stream.py).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset
from .stream import in_batches, in_order
from .timing import num_threads
from ..errors import CancelledError, DivergedError, LabError

# on_epoch(info) gets {"epoch", "epochs", "train_loss", "val_accuracy", "elapsed_s", ...}
EpochCallback = Callable[[dict], None]
# on_batch(info) gets {"epoch", "epochs", "batch", "batches"} after every optimizer step
BatchCallback = Callable[[dict], None]
CancelCheck = Callable[[], bool]
# loss_fn(model, logits, targets, batch_indices) -> scalar loss; the default is cross-entropy
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1  # lifted lenet5 on digits from ~0.96 to ~0.98 over 4 seeds
    optimizer: str = "adam"  # adam | sgd
    schedule: str = "cosine"  # cosine | constant; cosine settles the last epochs (less seed noise)
    seed: int = 0
    augment: bool = False  # random crop (padding 1/8 of the side) and horizontal flip; for photos, not digits

    def __post_init__(self):
        if self.epochs < 0:
            raise LabError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise LabError(f"batch size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LabError(f"learning rate must be a positive number, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise LabError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.optimizer not in ("adam", "sgd"):
            raise LabError(f"Unknown optimizer '{self.optimizer}'. Known: adam, sgd")
        if self.schedule not in ("cosine", "constant"):
            raise LabError(f"Unknown schedule '{self.schedule}'. Known: cosine, constant")

    def to_dict(self) -> dict:
        return asdict(self)


SMALL_INPUT = 28 * 28  # below this many values per sample, kernel launches cost more than CPU cores save


def resolve_device(device: str | None = None, data: Dataset | None = None) -> torch.device:
    """`auto` (or None) picks CUDA only where it pays: digits-sized inputs trained 2x slower on an H100 than
    on 2 CPU cores, launch-bound. Explicit choices are checked."""
    if device in (None, "auto"):
        small = data is not None and math.prod(data.input_shape) < SMALL_INPUT
        return torch.device("cuda" if torch.cuda.is_available() and not small else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LabError("CUDA was asked for, but no CUDA device is available here; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise LabError(f"Unknown device '{device}'. Known: cpu, cuda")
    return torch.device(device)


def _make_optimizer(model: nn.Module, config: TrainConfig):
    """Fused optimizers update all tensors in one kernel: 1.3x faster steps on lenet5/digits (CPU)."""
    params = [p for p in model.parameters() if p.requires_grad]
    cls, kwargs = ((torch.optim.SGD, {"momentum": 0.9}) if config.optimizer == "sgd" else (torch.optim.Adam, {}))
    try:
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # a device or dtype without a fused kernel
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, **kwargs)




@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device | str = "cpu",
            batch_size: int = 1024) -> torch.Tensor:
    """Logits for all of x, in eval mode; the model's train/eval state is restored after."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    outs = [model(batch.to(device)).float().cpu() for batch in in_batches(x, batch_size)]
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device="cpu") -> float:
    if len(y) == 0:
        return float("nan")
    return (predict(model, x, device).argmax(1) == y).float().mean().item()


def train(model: nn.Module, data: Dataset, config: TrainConfig, device: str | torch.device = "cpu",
          on_epoch: EpochCallback | None = None, should_cancel: CancelCheck | None = None,
          loss_fn: LossFn | None = None, after_step: Callable[[nn.Module], None] | None = None,
          on_batch: BatchCallback | None = None) -> list[dict]:
    """Train `model` in place; returns the per-epoch history.

    `after_step` runs after every optimizer step (pruning uses it to keep masked weights at zero); `on_batch`
    after it, for progress within an epoch (a streamed folder's epoch can take minutes).
    A NaN or Inf loss raises DivergedError; `should_cancel()` returning True raises CancelledError.
    """
    device = torch.device(device)
    with num_threads(training_threads(data, config, device)):
        return _train(model, data, config, device, on_epoch, should_cancel, loss_fn, after_step, on_batch)


# below this many input numbers per batch a second intra-op thread gains nothing (digits: lenet5 0.61 s vs 0.64 s
# for 5 epochs), and when another process holds a core it stalls at every OpenMP barrier: 4-5x slower measured
# with one busy core beside it (lenet5 3.8-5.6 s vs 0.75 s) -- as in a browser demo, where the page is that process
SMALL_BATCH_NUMBERS = 65_536


def training_threads(data: Dataset, config: TrainConfig, device: torch.device) -> int | None:
    """One intra-op thread for small CPU batches (digits, MNIST); None keeps torch's setting."""
    per_batch = config.batch_size * math.prod(data.input_shape)
    return 1 if device.type == "cpu" and per_batch < SMALL_BATCH_NUMBERS else None


def _train(model, data, config, device, on_epoch, should_cancel, loss_fn, after_step, on_batch) -> list[dict]:
    torch.manual_seed(config.seed)
    model.to(device).train()
    optimizer = _make_optimizer(model, config)
    steps = config.epochs * math.ceil(len(data.y_train) / config.batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
                 if config.schedule == "cosine" else None)
    loss_fn = loss_fn or (lambda _model, logits, targets, _idx:
                          F.cross_entropy(logits, targets, label_smoothing=config.label_smoothing))
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)  # a streamed split stays on disk
    shuffle = torch.Generator().manual_seed(config.seed)
    batches = math.ceil(len(y_train) / config.batch_size)
    history, start = [], time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(y_train), generator=shuffle).to(device)
        total, seen = 0.0, 0
        for step, (idx, batch) in enumerate(in_order(x_train, order, config.batch_size), 1):
            if should_cancel and should_cancel():
                raise CancelledError("cancelled by the user")
            batch = batch.to(device, non_blocking=True)
            batch = augment_batch(batch, shuffle) if config.augment else batch
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                logits = model(batch)
                loss = loss_fn(model, logits.float(), y_train[idx], idx)
            if not torch.isfinite(loss):
                raise DivergedError(f"Training diverged: the loss became {loss.item()} in epoch {epoch}. "
                                    "Try a lower learning rate.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if scheduler:
                scheduler.step()
            if after_step:
                after_step(model)
            total += loss.item() * len(idx)
            seen += len(idx)
            if on_batch:
                on_batch({"epoch": epoch, "epochs": config.epochs, "batch": step, "batches": batches})
        info = {"epoch": epoch, "epochs": config.epochs, "train_loss": total / max(seen, 1),
                "val_accuracy": accuracy(model, data.x_val, data.y_val, device),
                "elapsed_s": time.perf_counter() - start}
        history.append(info)
        if on_epoch:
            on_epoch(info)
    model.eval()
    return history


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image cropped at a random offset from a zero-padded copy (padding 1/8 of the side: 4 px on 32x32, as
    the CIFAR-10 recipes do) and mirrored left-right with probability 1/2; done on the batch, on its device."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(-1), out).contiguous()


def cache_key(dataset: str, spec: dict, config: TrainConfig) -> str:
    settings = config.to_dict()
    if not settings["augment"]:
        del settings["augment"]  # runs trained before augmentation existed keep their keys
    blob = json.dumps({"dataset": dataset, "model": spec, "config": settings, "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
