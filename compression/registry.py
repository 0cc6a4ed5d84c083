"""One small registry class for every "name -> thing" table (data sets, models, methods, stages, strategies,
objectives, export formats, labs), so each is registered once and read by the CLI, the UI and job validation.

Unknown names fail early with the list of known ones (as timm's `create_model` does).
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # "pruning method", used in error messages
        self._items: dict[str, T] = {}
        self._about: dict[str, str] = {}
        self._labels: dict[str, str] = {}

    def register(self, name: str, item: T | None = None, *, about: str = "", label: str | None = None):
        """`registry.register(name, item)`, or `@registry.register(name)` on a function or class."""
        def add(obj: T) -> T:
            self._items[name] = obj
            self._about[name] = about
            self._labels[name] = label or name
            return obj
        return add(item) if item is not None else add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownNameError(self.what, str(name), self.names())
        return self._items[name]

    def check(self, name: str) -> str:
        self.get(name)
        return name

    def names(self) -> list[str]:
        return list(self._items)

    def about(self, name: str) -> str:
        return self._about.get(name, "")

    def label(self, name: str) -> str:
        """The human name for legends and pickers ("Channel pruning (L1)"), the id when none was given."""
        return self._labels.get(name, name)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._items.items())

    def values(self) -> Iterator[T]:
        return iter(self._items.values())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)


def choices_of(registry: Registry | Callable[[], list[str]] | tuple) -> list[str]:
    """The allowed values of a config field: a registry's names, a callable's result, or a tuple."""
    if isinstance(registry, Registry):
        return registry.names()
    return list(registry() if callable(registry) else registry)
