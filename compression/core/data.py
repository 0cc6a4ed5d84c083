"""Dataset registry: every data set comes back with a fixed, seeded split, as in-memory tensors -- except an image
folder larger than memory, whose splits stay on disk and are decoded by batch (core/stream.py).

`digits` (scikit-learn's 1,797 real 8x8 handwritten digits) is the default because it ships
inside scikit-learn and works offline. MNIST, Fashion-MNIST and CIFAR-10 go through
torchvision's own dataset classes and download only when asked to.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..errors import DatasetNotFoundError, LabError
from ..paths import default_data_dir
from ..registry import Registry
from .stream import LOADER_BATCH, FolderImages, Split, in_batches, loader_workers, read_image

SPLIT_SEED = 0  # the split never depends on the training seed, so every run sees the same test set


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: Split             # a tensor, or FolderImages for a folder streamed from disk
    y_train: torch.Tensor
    x_val: Split
    y_val: torch.Tensor
    x_test: Split
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
                "val": len(self.y_val), "test": len(self.y_test), "streamed": self.streamed}

    @property
    def streamed(self) -> bool:
        """Read from disk by batch (a folder larger than memory), not held in memory."""
        return isinstance(self.x_train, FolderImages)


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


# ---------------------------------------------------------------- image folders: imagefolder:PATH[?size=N&stream=1]

IMAGEFOLDER = "imagefolder:"
DEFAULT_SIDE = 32
SPLITS = ("train", "val", "test")
FOLDER_FRACTIONS = (0.7, 0.1, 0.2)    # a folder without train/val/test subfolders: as digits is split
MAX_IN_MEMORY_BYTES = 4 * 2**30       # above this (or half the free memory) a folder streams from disk
STATS_SAMPLE = 2000                   # training images the standardisation statistics are taken from
MIN_WORKER_IMAGES = 2000              # decoding a folder whole: fewer images than this decode in-process


@dataclass(frozen=True)
class FolderSpec:
    root: Path
    side: int = DEFAULT_SIDE
    stream: bool = False              # ?stream=1: decode from disk by batch even when the folder would fit


def parse_image_folder(name: str) -> FolderSpec:
    """`imagefolder:/data/flowers?size=64&stream=1` -> the folder, the side (32 by default) and whether to stream."""
    path, _, query = name[len(IMAGEFOLDER):].partition("?")
    options = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key == "size" and value.isdigit() and 4 <= int(value) <= 1024:
            options["side"] = int(value)
        elif key == "stream" and value in ("0", "1"):
            options["stream"] = value == "1"
        else:
            raise LabError(f"Bad image folder option '{item}' in '{name}': write ?size=N with N from 4 to 1024, "
                           "and &stream=1 to read the images from disk by batch")
    return FolderSpec(Path(path).expanduser(), **options)


def _folder_stamp(name: str) -> tuple:
    """Modification times of the folder and its subfolders: adding or deleting a file changes its folder's."""
    root = parse_image_folder(name).root
    if not root.is_dir():
        return ()
    return tuple(sorted((d, os.stat(d).st_mtime_ns) for d, _, _ in os.walk(root)))


def _image_folder_loader(name: str):
    def load(data_dir: Path, download: bool) -> Dataset:
        return load_image_folder(name)
    return load


DATASETS.register_family(IMAGEFOLDER, _image_folder_loader,
                         about="your images: imagefolder:PATH holds one subfolder per class (or train/, val/ and "
                               "test/ with class subfolders); resized to 32x32, or ?size=N; folders larger than "
                               "memory (or &stream=1) are read from disk by batch", label="Image folder")


def _folder_samples(folder: Path, classes: list[str] | None = None) -> tuple[list[str], torch.Tensor, list[str]]:
    """(image paths, labels, class names) of one ImageFolder-style folder; nothing is decoded yet."""
    import torchvision

    try:
        ds = torchvision.datasets.ImageFolder(str(folder), loader=read_image)
    except FileNotFoundError as err:  # no class subfolders, or no images in them
        raise LabError(f"{folder} is not an image folder: {str(err).splitlines()[0][:160]}. Put each class's "
                       "images in a subfolder named after the class.") from None
    if classes is not None and ds.classes != classes:
        raise LabError(f"{folder} has classes {', '.join(ds.classes)}; the train folder has {', '.join(classes)}. "
                       "Every split needs the same class subfolders.")
    return [p for p, _ in ds.samples], torch.tensor(ds.targets, dtype=torch.long), list(ds.classes)


def _stratified_indices(y: torch.Tensor, fractions: tuple[float, ...]) -> list[torch.Tensor]:
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
    return [torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.long) for chosen in parts]


def _folder_splits(root: Path) -> tuple[dict[str, tuple[list[str], torch.Tensor]], list[str]]:
    """{split: (paths, labels)} and the class names. train/, val/ and test/ subfolders are used when present (a
    missing val or test split is cut from train, stratified); otherwise the whole folder is split 70/10/20."""
    if (root / "train").is_dir():
        paths, y, classes = _folder_samples(root / "train")
        given = {s: _folder_samples(root / s, classes)[:2] for s in SPLITS[1:] if (root / s).is_dir()}
        missing = [s for s in SPLITS[1:] if s not in given]
        cut = _stratified_indices(y, (1 - 0.1 * len(missing),) + (0.1,) * len(missing))
        splits = {"train": cut[0], **dict(zip(missing, cut[1:]))}
        return {**{s: ([paths[i] for i in idx.tolist()], y[idx]) for s, idx in splits.items()}, **given}, classes
    paths, y, classes = _folder_samples(root)
    cut = dict(zip(SPLITS, _stratified_indices(y, FOLDER_FRACTIONS)))
    return {s: ([paths[i] for i in idx.tolist()], y[idx]) for s, idx in cut.items()}, classes


def in_memory_limit() -> int:
    """Bytes of decoded images a folder may take before it streams: 4 GiB, or half the free memory if less."""
    import psutil

    return min(MAX_IN_MEMORY_BYTES, psutil.virtual_memory().available // 2)


def _statistics_rows(n: int) -> list[int]:
    """The training images the standardisation statistics come from: all of them up to STATS_SAMPLE, else a
    seeded sample of that many. The same rule streamed or not, so the mode never changes a split's numbers."""
    if n <= STATS_SAMPLE:
        return list(range(n))
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))[:STATS_SAMPLE].tolist())


def _statistics(batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (3x1x1) of raw [0, 1] images, summed batch by batch in float64: a streamed
    folder's sample never sits in memory whole, and both modes sum the same batches, so they agree exactly."""
    total, squares, count = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
    for batch in batches:
        wide = batch.double()
        total += wide.sum(dim=(0, 2, 3))
        squares += wide.square().sum(dim=(0, 2, 3))
        count += wide.numel() // 3
    mean = total / max(count, 1)
    variance = (squares - count * mean.square()) / max(count - 1, 1)
    return mean.float().reshape(3, 1, 1), variance.clamp_min(0).sqrt().float().clamp_min(1e-6).reshape(3, 1, 1)


def _workers_for(paths: list[str]) -> int:
    return loader_workers(len(paths), MIN_WORKER_IMAGES)


def _checked_splits(spec: FolderSpec) -> tuple[dict[str, tuple[list[str], torch.Tensor]], list[str]]:
    if not spec.root.is_dir():
        raise DatasetNotFoundError(f"Image folder {spec.root} not found.")
    splits, classes = _folder_splits(spec.root)
    if min(len(splits[s][1]) for s in SPLITS) == 0:
        raise LabError(f"{spec.root} has too few images to fill train, val and test: "
                       f"{', '.join(f'{s} {len(splits[s][1])}' for s in SPLITS)}. Add images (10 per class is a "
                       "minimum).")
    return splits, classes


def _streams(spec: FolderSpec, images: int) -> bool:
    return spec.stream or images * 3 * spec.side ** 2 * 4 > in_memory_limit()


def describe_image_folder(name: str) -> dict:
    """What `imagefolder:PATH` holds, from its file listing alone (nothing is decoded: a page can call it):
    classes, images per split, the side, and whether it would stream."""
    spec = parse_image_folder(name)
    classes, counts = _listing(spec, _folder_stamp(name))
    return {"name": name, "classes": list(classes), **dict(counts), "side": spec.side,
            "streamed": _streams(spec, sum(n for _, n in counts))}


@functools.lru_cache(maxsize=32)
def _listing(spec: FolderSpec, stamp: tuple) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """Class names and images per split, kept while the folders' modification times (`stamp`) stay: the sidebar
    describes the chosen folder on every page run, and listing a big folder reads every file name."""
    splits, classes = _checked_splits(spec)
    return tuple(classes), tuple((s, len(splits[s][1])) for s in SPLITS)


def load_image_folder(name: str) -> Dataset:
    """`imagefolder:PATH`: class subfolders listed with torchvision's ImageFolder, resized, and standardised with
    the training split's per-channel statistics. A folder whose decoded images would take more than
    in_memory_limit() (or one named with &stream=1) stays on disk: its splits are FolderImages, decoded by batch."""
    spec = parse_image_folder(name)
    splits, classes = _checked_splits(spec)
    train_paths = splits["train"][0]
    if _streams(spec, sum(len(y) for _, y in splits.values())):
        sample = [train_paths[i] for i in _statistics_rows(len(train_paths))]
        sample_images = FolderImages(sample, spec.side, workers=_workers_for(sample))
        mean, std = _statistics(in_batches(sample_images, LOADER_BATCH))
        xs = {s: FolderImages(splits[s][0], spec.side, mean, std) for s in SPLITS}
    else:
        raw = {s: FolderImages(splits[s][0], spec.side, workers=_workers_for(splits[s][0])).load() for s in SPLITS}
        mean, std = _statistics(in_batches(raw["train"][_statistics_rows(len(train_paths))], LOADER_BATCH))
        xs = {s: ((raw[s] - mean) / std).contiguous() for s in SPLITS}  # as FolderImages computes each image
    return Dataset(name, xs["train"], splits["train"][1], xs["val"], splits["val"][1], xs["test"],
                   splits["test"][1], tuple(classes))


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
