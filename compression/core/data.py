"""Dataset registry: every data set comes back as in-memory tensors with a fixed, seeded split.

`digits` (scikit-learn's 1,797 real 8x8 handwritten digits) is the default because it ships
inside scikit-learn and works offline. MNIST, Fashion-MNIST and CIFAR-10 go through
torchvision's own dataset classes and download only when asked to.
"""
from __future__ import annotations

import functools
import os
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
    """Load a registered data set; cached per process because pages and jobs reload often. An image folder's
    cache entry is keyed by its folders' modification times too, so added or removed images are seen."""
    DATASETS.check(name)
    stamp = _folder_stamp(name) if name.startswith(IMAGEFOLDER) else None
    return _load_cached(name, str(data_dir or default_data_dir()), download, stamp)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, data_dir: str, download: bool, stamp=None) -> Dataset:
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


# ---------------------------------------------------------------- image folders: imagefolder:PATH[?size=N]

IMAGEFOLDER = "imagefolder:"
DEFAULT_SIDE = 32
SPLITS = ("train", "val", "test")
FOLDER_FRACTIONS = (0.7, 0.1, 0.2)    # a folder without train/val/test subfolders: as digits is split
MAX_IN_MEMORY_BYTES = 4 * 2**30       # the in-memory trainer holds every image as float32


def parse_image_folder(name: str) -> tuple[Path, int]:
    """`imagefolder:/data/flowers?size=64` -> (folder, side). The side defaults to 32."""
    text = name[len(IMAGEFOLDER):]
    path, _, query = text.partition("?")
    side = DEFAULT_SIDE
    if query:
        key, _, value = query.partition("=")
        if key != "size" or not value.isdigit() or not 4 <= int(value) <= 1024:
            raise LabError(f"Bad image folder option '?{query}' in '{name}': write ?size=N with N from 4 to 1024")
        side = int(value)
    return Path(path).expanduser(), side


def _folder_stamp(name: str) -> tuple:
    """Modification times of the folder and its subfolders: adding or deleting a file changes its folder's."""
    root, side = parse_image_folder(name)
    if not root.is_dir():
        return (side,)
    return (side,) + tuple(sorted((d, os.stat(d).st_mtime_ns) for d, _, _ in os.walk(root)))


def _image_folder_loader(name: str):
    def load(data_dir: Path, download: bool) -> Dataset:
        return load_image_folder(name)
    return load


DATASETS.register_family(IMAGEFOLDER, _image_folder_loader,
                         about="your images: imagefolder:PATH holds one subfolder per class (or train/, val/ and "
                               "test/ with class subfolders); resized to 32x32, or ?size=N", label="Image folder")


def _read_image(path: str):
    """torchvision's PIL loader, with a sentence naming the file when one is not an image (module level: the
    DataLoader's worker processes must be able to import it)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        raise LabError(f"{path} is not an image PIL can read (corrupt, or another format).") from None


def _read_folder(folder: Path, side: int, classes: list[str] | None = None):
    """(x, y, class names) from one ImageFolder-style folder, every image resized to side x side, in [0, 1]."""
    import torchvision
    from torchvision import transforms

    try:
        ds = torchvision.datasets.ImageFolder(str(folder), loader=_read_image, transform=transforms.Compose(
            [transforms.Resize((side, side)), transforms.ToTensor()]))
    except FileNotFoundError as err:  # no class subfolders, or no images in them
        raise LabError(f"{folder} is not an image folder: {str(err).splitlines()[0][:160]}. Put each class's "
                       "images in a subfolder named after the class.") from None
    if classes is not None and ds.classes != classes:
        raise LabError(f"{folder} has classes {', '.join(ds.classes)}; the train folder has {', '.join(classes)}. "
                       "Every split needs the same class subfolders.")
    if len(ds) * 3 * side * side * 4 > MAX_IN_MEMORY_BYTES:
        raise LabError(f"{folder} holds {len(ds):,} images: {len(ds) * 3 * side * side * 4 / 2**30:.1f} GiB at "
                       f"{side}x{side}, more than the {MAX_IN_MEMORY_BYTES // 2**30} GiB the in-memory trainer "
                       "takes. Choose a smaller ?size=N or fewer images.")
    workers = 0 if len(ds) < 2000 else min(4, os.cpu_count() or 1)  # decoding dominates big folders
    try:
        batches = list(torch.utils.data.DataLoader(ds, batch_size=256, num_workers=workers))
    except LabError as err:  # from a worker, the message carries the worker's traceback: keep the sentence
        last = [line for line in str(err).splitlines() if line.strip()][-1]
        raise LabError(last.split("LabError: ", 1)[-1]) from None
    x = torch.cat([b[0] for b in batches]) if batches else torch.empty(0, 3, side, side)
    y = torch.cat([b[1] for b in batches]) if batches else torch.empty(0, dtype=torch.long)
    return x, y, list(ds.classes)


def _stratified_split(x: torch.Tensor, y: torch.Tensor, fractions: tuple[float, ...]):
    """Each class cut in the same proportions (seeded), so a small folder still has every class in every split
    (when a class has enough images)."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for c in torch.unique(y):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        bounds = np.cumsum([0] + [round(f * len(idx)) for f in fractions[:-1]] + [len(idx)])
        bounds = np.minimum(bounds, len(idx))
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            parts[k].append(idx[a:b])
    out = []
    for chosen in parts:
        idx = torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.long)
        out.append((x[idx], y[idx]))
    return out


def load_image_folder(name: str) -> Dataset:
    """`imagefolder:PATH`: class subfolders read with torchvision's ImageFolder, resized and standardised with the
    training split's per-channel statistics. train/, val/ and test/ subfolders are used when present (a missing
    val or test split is cut from train, stratified); otherwise the whole folder is split 70/10/20, stratified."""
    root, side = parse_image_folder(name)
    if not root.is_dir():
        raise DatasetNotFoundError(f"Image folder {root} not found.")
    if (root / "train").is_dir():
        x, y, classes = _read_folder(root / "train", side)
        given = {s: _read_folder(root / s, side, classes)[:2] for s in SPLITS[1:] if (root / s).is_dir()}
        missing = [s for s in SPLITS[1:] if s not in given]
        cut = _stratified_split(x, y, (1 - 0.1 * len(missing),) + (0.1,) * len(missing))
        splits = {"train": cut[0], **dict(zip(missing, cut[1:])), **given}
    else:
        x, y, classes = _read_folder(root, side)
        splits = dict(zip(SPLITS, _stratified_split(x, y, FOLDER_FRACTIONS)))
    if min(len(splits[s][1]) for s in SPLITS) == 0:
        raise LabError(f"{root} has too few images to fill train, val and test: "
                       f"{', '.join(f'{s} {len(splits[s][1])}' for s in SPLITS)}. Add images (10 per class is a "
                       "minimum).")
    return _make(name, splits["train"], splits["val"], splits["test"], classes)


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
