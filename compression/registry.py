"""One small registry class for every "name -> thing" table (data sets, models, methods, stages, strategies,
objectives, export formats, labs), so each is registered once and read by the CLI, the UI and job validation.

Unknown names fail early with the list of known ones (as timm's `create_model` does).

Two extensions keep big or open-ended tables cheap: a *family* accepts every name with a prefix
(`imagefolder:PATH`: one loader per folder, made on demand), and a *lazy loader* fills the table the first
time a name is missing or the whole list is read (torchvision's 80 models: importing torchvision costs seconds,
which a CLI verb that never builds a tv model should not pay).
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # "pruning method", used in error messages
        self._items: dict[str, T] = {}
        self._about: dict[str, str] = {}
        self._labels: dict[str, str] = {}
        self._families: dict[str, Callable[[str], T]] = {}
        self._loaders: list[Callable[["Registry"], None]] = []
        self._loading = threading.Lock()

    def register(self, name: str, item: T | None = None, *, about: str = "", label: str | None = None):
        """`registry.register(name, item)`, or `@registry.register(name)` on a function or class."""
        def add(obj: T) -> T:
            self._items[name] = obj
            self._about[name] = about
            self._labels[name] = label or name
            return obj
        return add(item) if item is not None else add

    def register_family(self, prefix: str, make: Callable[[str], T], *, about: str = "", label: str | None = None):
        """Every name starting with `prefix` is known; `make(name)` gives its item, e.g. a loader for that path.
        Listed (as `prefix` + 'PATH' in messages) by families(), not by names(), which lists concrete names."""
        self._families[prefix] = make
        self._about[prefix] = about
        self._labels[prefix] = label or prefix
        return make

    def add_loader(self, loader: Callable[["Registry"], None]) -> None:
        """`loader(registry)` registers more names, once, when first needed (a miss or a full listing). It may only
        call register(): reading the registry from inside the loader would wait on itself."""
        self._loaders.append(loader)

    def _load(self) -> None:
        if not self._loaders:
            return
        with self._loading:  # the dashboard's sessions are threads: one loads, the others wait for the full table
            while self._loaders:
                self._loaders[0](self)
                self._loaders.pop(0)

    def _family_of(self, name: str) -> str | None:
        return next((p for p in self._families if isinstance(name, str) and name.startswith(p)
                     and len(name) > len(p)), None)

    def families(self) -> list[str]:
        return list(self._families)

    def get(self, name: str) -> T:
        if name not in self._items:
            family = self._family_of(name)
            if family is not None:
                return self._families[family](name)
            self._load()
            if name not in self._items:
                raise UnknownNameError(self.what, str(name), self._known_for(str(name)))
        return self._items[name]

    def _known_for(self, name: str) -> list[str]:
        """The names to suggest: a big dotted group (tv.*: 80 torchvision models) is listed in full only when the
        unknown name is in it, else summed up in one entry, so the message stays one readable line."""
        groups: dict[str, list[str]] = {}
        for n in self.names():
            groups.setdefault(n.split(".", 1)[0] + "." if "." in n else n, []).append(n)
        known = []
        for key, members in groups.items():
            if len(members) > 10 and not name.startswith(key):
                known.append(f"{key}NAME ({len(members)} names, e.g. {members[0]})")
            else:
                known.extend(members)
        return known + [f"{p}PATH" for p in self._families]

    def check(self, name: str) -> str:
        self.get(name)
        return name

    def names(self) -> list[str]:
        self._load()
        return list(self._items)

    def about(self, name: str) -> str:
        family = None if name in self._items else self._family_of(name)
        return self._about.get(family or name, "")

    def label(self, name: str) -> str:
        """The human name for legends and pickers ("Channel pruning (L1)"), the id when none was given."""
        return self._labels.get(name, name)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(self._items.items())

    def values(self) -> Iterator[T]:
        self._load()
        return iter(self._items.values())

    def __contains__(self, name: object) -> bool:
        if name in self._items or self._family_of(name) is not None:
            return True
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(self._items)

    def __len__(self) -> int:
        self._load()
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)


def choices_of(registry: Registry | Callable[[], list[str]] | tuple) -> list[str]:
    """The allowed values of a config field: a registry's names, a callable's result, or a tuple."""
    if isinstance(registry, Registry):
        return registry.names()
    return list(registry() if callable(registry) else registry)
