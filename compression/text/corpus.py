"""Text data sets: registered in the same table as the image ones (core.data.DATASETS), split by document, seeded.

- `pydoc`: the embedded default. Python's own reference documentation (`pydoc_data.topics`, 79 topics, about
  465,000 characters on Python 3.11), split by topic. Another Python ships other text, so every run records the
  corpus fingerprint (a hash of the text and the Python version).
- `text:PATH`: a `.txt` file (split by paragraph) or a folder of `.txt`/`.md` files (split by file).

A data set holds text, not tokens: each model reads it with its own tokenizer (bytes for `gpt`, its own for an
`hf:` checkpoint), so `TextDataset.tokens(tokenizer)` encodes, once per tokenizer.
"""
from __future__ import annotations

import functools
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.data import DATASETS, SPLIT_SEED, register_dataset
from ..errors import LabError

TEXT = "text:"
FRACTIONS = (0.8, 0.1, 0.1)
MAX_TEXT_BYTES = 64 * 2**20         # a bigger text would not train in a session on a laptop's CPU
MAX_TEST_SEQUENCES = 128            # test windows evaluated (seeded choice when there are more)
DEFAULT_CONTEXT = 128               # x_test / y_test's window, for code that asks a text set for tensors


class ByteTokenizer:
    """UTF-8 bytes as tokens: 256 symbols, nothing to download, every text encodes, and bits per byte are exact."""
    name = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def byte_count(self, ids) -> int:
        return len(ids)


@dataclass(frozen=True)
class TextDataset:
    name: str
    train_text: str
    val_text: str
    test_text: str
    fingerprint: dict
    kind: str = "text"
    _encoded: dict = field(default_factory=dict, compare=False, repr=False)

    def tokens(self, tokenizer) -> dict[str, torch.Tensor]:
        """{"train", "val", "test"}: each split as one 1-D tensor of token ids, for this tokenizer (cached)."""
        key = getattr(tokenizer, "name", type(tokenizer).__name__)
        if key not in self._encoded:
            self._encoded[key] = {split: torch.tensor(tokenizer.encode(text), dtype=torch.long)
                                  for split, text in (("train", self.train_text), ("val", self.val_text),
                                                      ("test", self.test_text))}
        return self._encoded[key]

    def windows(self, tokenizer, split: str, context: int, limit: int | None = MAX_TEST_SEQUENCES,
                seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed evaluation sequences: non-overlapping windows of `context` inputs and their next tokens, a seeded
        choice of `limit` when there are more. (inputs, targets), both (N, context)."""
        ids = self.tokens(tokenizer)[split]
        count = (len(ids) - 1) // context
        if count < 1:
            raise LabError(f"The {split} split of '{self.name}' has {len(ids)} tokens, fewer than one context of "
                           f"{context} + 1: use a longer text or a smaller context (gpt:context=N).")
        starts = torch.arange(count) * context
        if limit is not None and count > limit:
            pick = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit]
            starts = starts[pick.sort().values]
        rows = torch.stack([ids[s:s + context + 1] for s in starts.tolist()])
        return rows[:, :-1], rows[:, 1:]

    # the image data sets' interface, for code that reads any data set's test split
    @property
    def x_test(self) -> torch.Tensor:
        return self.windows(ByteTokenizer(), "test", DEFAULT_CONTEXT)[0]

    @property
    def y_test(self) -> torch.Tensor:
        return self.windows(ByteTokenizer(), "test", DEFAULT_CONTEXT)[1]

    @property
    def streamed(self) -> bool:
        return False

    def summary(self) -> dict:
        return {"name": self.name, "kind": "text", "train_chars": len(self.train_text),
                "val_chars": len(self.val_text), "test_chars": len(self.test_text), **self.fingerprint}


def split_documents(name: str, documents: list[tuple[str, str]], source: str) -> TextDataset:
    """(id, text) documents shuffled with the split seed and cut 80/10/10 by count (each split gets at least one)."""
    if len(documents) < 3:
        raise LabError(f"'{name}' has {len(documents)} document(s); a text needs at least 3 (files in a folder, or "
                       "paragraphs separated by blank lines in a file) to split into train, validation and test.")
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    n_val = max(1, round(FRACTIONS[1] * len(documents)))
    n_test = max(1, round(FRACTIONS[2] * len(documents)))
    cut = len(documents) - n_val - n_test
    parts = [order[:cut], order[cut:cut + n_val], order[cut + n_val:]]
    joined = ["\n\n".join(documents[i][1] for i in sorted(part)) for part in parts]
    digest = hashlib.sha256("\0".join(text for _, text in documents).encode("utf-8")).hexdigest()[:16]
    fingerprint = {"source": source, "sha256": digest, "documents": len(documents),
                   "python": "%d.%d.%d" % sys.version_info[:3]}
    return TextDataset(name, *joined, fingerprint=fingerprint)


@register_dataset("pydoc", "Python's reference documentation (pydoc_data.topics, ~465,000 characters), "
                           "split by topic; embedded, offline; text for language models")
def _pydoc(data_dir: Path, download: bool) -> TextDataset:
    from pydoc_data.topics import topics
    return split_documents("pydoc", sorted(topics.items()), "pydoc_data.topics")


def read_text_file(path: Path) -> str:
    """A file's text, or one sentence on why it is not usable text (empty, binary, not UTF-8, too big)."""
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise LabError(f"{path.name} is {size / 2**20:.0f} MB; the cap for a text is {MAX_TEXT_BYTES // 2**20} MB.")
    raw = path.read_bytes()
    if not raw.strip():
        raise LabError(f"{path.name} is empty.")
    if b"\0" in raw[:65536]:
        raise LabError(f"{path.name} looks binary (it has NUL bytes), not text.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LabError(f"{path.name} is not UTF-8 text (the byte at offset {err.start} does not decode); "
                       "save it as UTF-8.") from None


def load_text_path(name: str) -> TextDataset:
    path = Path(name[len(TEXT):]).expanduser()
    if not path.exists():
        raise LabError(f"No file or folder at {path} (from '{name}').")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".md"))
        if not files:
            raise LabError(f"The folder {path} has no .txt or .md files.")
        total = sum(p.stat().st_size for p in files)
        if total > MAX_TEXT_BYTES:
            raise LabError(f"The folder {path} holds {total / 2**20:.0f} MB of text; the cap is "
                           f"{MAX_TEXT_BYTES // 2**20} MB.")
        documents = [(str(p.relative_to(path)), read_text_file(p)) for p in files]
        if len(documents) < 3:  # a folder of one or two files: split by paragraph, as a single file is
            documents = _paragraphs("\n\n".join(text for _, text in documents))
    else:
        documents = _paragraphs(read_text_file(path))
    return split_documents(name, documents, str(path))


def _paragraphs(text: str) -> list[tuple[str, str]]:
    parts = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n")]
    return [(str(i), p) for i, p in enumerate(p for p in parts if p)]


@functools.lru_cache(maxsize=4)
def _cached_text(name: str, stamp: float) -> TextDataset:
    return load_text_path(name)


def _text_loader(name: str):
    def load(data_dir: Path, download: bool) -> TextDataset:
        path = Path(name[len(TEXT):]).expanduser()
        return _cached_text(name, path.stat().st_mtime if path.exists() else 0.0)
    return load


DATASETS.register_family(TEXT, _text_loader, about="your own text: a .txt file, or a folder of .txt/.md files "
                                                   "(text:PATH)", label="text:PATH")


TEXT_DATASETS = {"pydoc"}
