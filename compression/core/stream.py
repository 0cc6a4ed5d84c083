"""Image splits decoded from disk on demand, for folders larger than memory, and the batch walks that serve both
kinds of split.

`FolderImages` indexes like the in-memory tensors (x[i], x[a:b], x[index tensor], x[bool mask]), so every lab reads
a streamed split unchanged. Whole passes (an epoch, an evaluation) go through `in_batches` / `in_order`, which walk
a tensor by slicing and a `FolderImages` through a DataLoader whose worker processes decode the files: on a big
folder the decoding, not a small model, is the cost.

Bottom layer: imports only torch, torchvision, PIL and the standard library.
"""
from __future__ import annotations

import numbers
import os
import threading
from typing import Iterator, Sequence

import torch

from ..errors import LabError

LOADER_BATCH = 256            # images per DataLoader batch when a split is decoded whole or evaluated
# a whole pass over a streamed split decodes at most this much per batch: each worker keeps two batches in
# flight, so predict()'s 1,024-image batches of 224x224 images would hold 5 GB, the folder memory it streams to spare
PASS_BATCH_BYTES = 16 * 2**20


def read_image(path: str):
    """torchvision's PIL loader, with a sentence naming the file when one is not an image (module level: the
    DataLoader's worker processes must be able to import it)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        raise LabError(f"{path} is not an image PIL can read (corrupt, or another format).") from None


def loader_workers(images: int, min_images: int = 0) -> int:
    """Decoding processes for a pass over `images` files. None below `min_images` (forking costs more than it
    saves), and none off the main thread: forking a threaded process (a Streamlit page runs its script in a
    thread) can copy a lock that another thread holds, and hang the child."""
    if images < max(min_images, 1) or threading.current_thread() is not threading.main_thread():
        return 0
    return min(4, os.cpu_count() or 1)


def worker_sentence(err: LabError) -> str:
    """A LabError raised in a DataLoader worker arrives with the worker's traceback in its text: keep the
    sentence."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1].split("LabError: ", 1)[-1] if lines else "A decoding worker failed."


class FolderImages(torch.utils.data.Dataset):
    """One split of an image folder, kept as file paths: each image is decoded when asked for, resized to
    side x side, scaled to [0, 1], then standardised with the training split's per-channel `mean` and `std`
    (shape 3x1x1; 0 and 1 give the raw pixels) -- the same arithmetic as the in-memory split, so a streamed
    split holds the same numbers."""

    def __init__(self, paths: Sequence[str], side: int, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None, dtype: torch.dtype = torch.float32, workers: int | None = None):
        self.paths = tuple(paths)
        self.side = side
        self.mean = torch.zeros(3, 1, 1) if mean is None else mean.reshape(3, 1, 1)
        self.std = torch.ones(3, 1, 1) if std is None else std.reshape(3, 1, 1)
        self.dtype = dtype
        self.workers = workers   # None: loader_workers() decides per pass

    # ------------------------------------------------------------------ the tensor face the labs index
    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.paths), 3, self.side, self.side))

    ndim = 4

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key) -> torch.Tensor:
        if _is_one_index(key):
            return self._decode(self.paths[int(key)])
        chosen = self._indices(key)
        if not chosen:
            return torch.empty(0, 3, self.side, self.side, dtype=self.dtype)
        return torch.stack([self._decode(self.paths[i]) for i in chosen])

    def subset(self, key) -> FolderImages:
        """The chosen rows as another streamed split (x[mask] would decode them all into memory)."""
        return self._with(paths=[self.paths[i] for i in self._indices(key)])

    def to(self, target=None, **_ignored) -> FolderImages:
        """A dtype changes what each decoded batch becomes; a device does not move anything: batches are decoded
        on the CPU and whoever runs the model moves them (as predict() and the trainer do)."""
        return self._with(dtype=target) if isinstance(target, torch.dtype) else self

    def float(self) -> FolderImages:
        return self.to(torch.float32)

    def contiguous(self) -> FolderImages:
        return self

    def cpu(self) -> FolderImages:
        return self

    # ------------------------------------------------------------------ whole passes
    def stream(self, chunks: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The batches of these index chunks, in this order, decoded by DataLoader worker processes."""
        workers = loader_workers(len(self)) if self.workers is None else self.workers
        loader = torch.utils.data.DataLoader(self, batch_sampler=[c.tolist() for c in chunks], num_workers=workers,
                                             persistent_workers=False)
        try:
            yield from loader
        except LabError as err:
            raise LabError(worker_sentence(err)) from None

    def load(self) -> torch.Tensor:
        """Every image of the split, decoded into one tensor."""
        return torch.cat(list(in_batches(self, LOADER_BATCH))) if len(self) else self[[]]

    # ------------------------------------------------------------------ inside
    def _decode(self, path: str) -> torch.Tensor:
        from torchvision.transforms import functional as TF

        image = TF.to_tensor(TF.resize(read_image(path), [self.side, self.side]))
        return ((image - self.mean) / self.std).to(self.dtype)

    def _indices(self, key) -> list[int]:
        if isinstance(key, slice):
            return list(range(*key.indices(len(self))))
        if isinstance(key, torch.Tensor) and key.dtype == torch.bool:
            return key.nonzero().flatten().tolist()
        if hasattr(key, "tolist"):
            key = key.tolist()
        return [int(i) for i in key]

    def _with(self, **changes) -> FolderImages:
        fields = {"paths": self.paths, "side": self.side, "mean": self.mean, "std": self.std, "dtype": self.dtype,
                  "workers": self.workers, **changes}
        return FolderImages(**fields)


def _is_one_index(key) -> bool:
    """An int, a numpy integer or a 0-d integer tensor: one image, not a batch."""
    if isinstance(key, torch.Tensor):
        return key.ndim == 0 and not key.is_floating_point() and key.dtype != torch.bool
    return isinstance(key, numbers.Integral) and not isinstance(key, bool)


Split = torch.Tensor | FolderImages


def rows(x: Split, key) -> Split:
    """x[key] as the same kind of split: a streamed split stays streamed."""
    return x.subset(key) if isinstance(x, FolderImages) else x[key]


def in_batches(x: Split, batch_size: int) -> Iterator[torch.Tensor]:
    """x in order, `batch_size` rows at a time (fewer for a streamed split of big images: PASS_BATCH_BYTES)."""
    if isinstance(x, FolderImages):
        per_image = 3 * x.side ** 2 * x.dtype.itemsize
        yield from x.stream(list(torch.arange(len(x)).split(max(1, min(batch_size, PASS_BATCH_BYTES // per_image)))))
    else:
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size]


def in_order(x: Split, order: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(indices, inputs) for consecutive `batch_size` chunks of `order`; the inputs are on x's device (the CPU for
    a streamed split, whose batches the caller moves)."""
    chunks = list(order.split(batch_size))
    if isinstance(x, FolderImages):
        yield from zip(chunks, x.stream([c.cpu() for c in chunks]))
    else:
        for idx in chunks:
            yield idx, x[idx]
