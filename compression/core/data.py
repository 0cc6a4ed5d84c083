"""Dataset registry: every data set comes back as in-memory tensors with a fixed, seeded split.

`digits` (scikit-learn's 1,797 real 8x8 handwritten digits) is the default because it ships
inside scikit-learn and works offline. MNIST, Fashion-MNIST and CIFAR-10 go through
torchvision's own dataset classes and download only when asked to.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DatasetNotFoundError, LabError
from ..paths import default_data_dir
from ..registry import Registry

SPLIT_SEED = 0  # the split never depends on the training seed, so every run sees the same test set


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "train": len(self.y_train),
                "val": len(self.y_val), "test": len(self.y_test)}


DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")


def register_dataset(name: str, description: str):
    return DATASETS.register(name, about=description)


def list_datasets() -> list[str]:
    return DATASETS.names()


def load_dataset(name: str = "digits", data_dir: str | Path | None = None,
                 download: bool = False) -> Dataset:
    """Load a registered data set; cached per process because pages and jobs reload often."""
    DATASETS.check(name)
    return _load_cached(name, str(data_dir or default_data_dir()), download)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, data_dir: str, download: bool) -> Dataset:
    return DATASETS.get(name)(data_dir=Path(data_dir), download=download)


def _standardize(x_train: torch.Tensor, *others: torch.Tensor):
    """Per-channel mean/std from the training split only, applied to every split."""
    dims = (0, 2, 3)
    mean = x_train.mean(dim=dims, keepdim=True)
    std = x_train.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (x_train, *others)]


def _split(x: torch.Tensor, y: torch.Tensor, fractions: tuple[float, ...]):
    """Seeded permutation cut into consecutive parts of the given fractions."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    bounds = np.cumsum([0] + [round(f * len(y)) for f in fractions[:-1]] + [len(y)])
    bounds[-1] = len(y)
    return [(x[order[a:b]], y[order[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])]


def _make(name, train, val, test, class_names) -> Dataset:
    x_train, x_val, x_test = _standardize(train[0], val[0], test[0])
    return Dataset(name, x_train.contiguous(), train[1].long(), x_val.contiguous(), val[1].long(),
                   x_test.contiguous(), test[1].long(), tuple(class_names))


@register_dataset("digits", "scikit-learn's 1,797 real 8x8 handwritten digits; embedded, offline")
def _digits(data_dir: Path, download: bool) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    train, val, test = _split(x, y, (0.7, 0.1, 0.2))
    return _make("digits", train, val, test, [str(c) for c in range(10)])


@register_dataset("synthetic", "tiny random 1x8x8 data with 4 separable classes, for fast tests")
def _synthetic(data_dir: Path, download: bool) -> Dataset:
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    prototypes = torch.randn(4, 1, 8, 8, generator=gen)
    y = torch.arange(400) % 4
    x = prototypes[y] + 0.8 * torch.randn(400, 1, 8, 8, generator=gen)
    train, val, test = _split(x, y, (0.6, 0.2, 0.2))
    return _make("synthetic", train, val, test, [f"class {c}" for c in range(4)])


def _torchvision_dataset(cls_name: str, data_dir: Path, download: bool, train: bool):
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(root=str(data_dir), train=train, download=download)
    except RuntimeError as err:  # torchvision says "Dataset not found ... use download=True"
        raise DatasetNotFoundError(
            f"{cls_name} files not found in {data_dir}. Put torchvision's {cls_name} files there "
            f"(e.g. {data_dir}/{_FOLDERS[cls_name]}), or tick 'download' / pass --download "
            f"while online. ({err})") from None


_FOLDERS = {"MNIST": "MNIST/raw/train-images-idx3-ubyte",
            "FashionMNIST": "FashionMNIST/raw/train-images-idx3-ubyte",
            "CIFAR10": "cifar-10-batches-py/data_batch_1"}


def _from_torchvision(name: str, cls_name: str, data_dir: Path, download: bool) -> Dataset:
    parts = []
    for train in (True, False):
        ds = _torchvision_dataset(cls_name, data_dir, download, train)
        x = torch.as_tensor(np.asarray(ds.data)).float() / 255.0
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # NHWC (CIFAR) -> NCHW
        parts.append((x, torch.as_tensor(np.asarray(ds.targets)), list(ds.classes)))
    (x_tr, y_tr, classes), (x_te, y_te, _) = parts
    train, val = _split(x_tr, y_tr, (0.9, 0.1))
    return _make(name, train, val, (x_te, y_te), classes)


@register_dataset("mnist", "MNIST 28x28 digits via torchvision, from the data folder")
def _mnist(data_dir: Path, download: bool) -> Dataset:
    return _from_torchvision("mnist", "MNIST", data_dir, download)


@register_dataset("fashion_mnist", "Fashion-MNIST 28x28 clothing via torchvision, from the data folder")
def _fashion(data_dir: Path, download: bool) -> Dataset:
    return _from_torchvision("fashion_mnist", "FashionMNIST", data_dir, download)


@register_dataset("cifar10", "CIFAR-10 32x32 colour images via torchvision, from the data folder")
def _cifar(data_dir: Path, download: bool) -> Dataset:
    return _from_torchvision("cifar10", "CIFAR10", data_dir, download)


def from_examples(data, *, name: str = "custom", val_fraction: float = 0.1, class_names=None,
                  max_samples: int = 200_000) -> Dataset:
    """Any DataLoader, Dataset or (x, y) pair that yields (input, label) -> the in-memory Dataset the
    techniques train and calibrate on. The inputs are taken as they come (no re-normalisation: the caller's
    transforms already did that); a seeded split keeps `val_fraction` for validation, and the test split is
    the same as validation (the model-first API does not score models, the labs do)."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        xs, ys = data[0], torch.as_tensor(data[1])
    else:
        try:
            batches = iter(data)
        except TypeError:
            raise LabError(f"Expected a DataLoader, a Dataset or an (x, y) pair of tensors, got {type(data).__name__}") from None
        x_parts, y_parts, seen = [], [], 0
        for item in batches:
            if not (isinstance(item, (tuple, list)) and len(item) >= 2):
                raise LabError("The data must yield (input, label) pairs")
            x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
            if x.ndim == 3 and y.ndim == 0:  # a torch Dataset yields single samples
                x, y = x.unsqueeze(0), y.unsqueeze(0)
            x_parts.append(x.float())
            y_parts.append(y.long().reshape(-1))
            seen += len(y_parts[-1])
            if seen >= max_samples:
                break
        if not x_parts:
            raise LabError("The data is empty")
        xs, ys = torch.cat(x_parts), torch.cat(y_parts)
    ys = ys.long()
    n_val = max(1, round(val_fraction * len(ys))) if len(ys) > 1 else 0
    order = torch.randperm(len(ys), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val, train = order[:n_val], order[n_val:] if len(ys) > n_val else order
    classes = class_names or [str(c) for c in range(int(ys.max()) + 1 if len(ys) else 1)]
    return Dataset(name, xs[train].contiguous(), ys[train], xs[val].contiguous(), ys[val],
                   xs[val].contiguous(), ys[val], tuple(classes))
