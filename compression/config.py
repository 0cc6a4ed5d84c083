"""Typed configs: each lab declares its parameters once, as a dataclass, and the CLI, the job queue and the
pages all read that declaration.

A field's metadata holds what a user needs to know about it: help text, range, choices (a registry), the CLI
flag. `from_dict` turns loose input (JSON, `key=value` strings, widget values) into a checked config: an
unknown key, a value of the wrong type or out of range is a LabError that names the key. Configs round-trip
through `to_dict`, so the exact config is stored with every run (as torchao's configs do).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, get_args, get_origin

from .errors import LabError
from .registry import Registry, choices_of


def param(default: Any = dataclasses.MISSING, *, help: str = "", min: float | None = None,
          max: float | None = None, below: float | None = None, above: float | None = None,
          choices: Any = None, flag: str | None = None, cli: bool = True, required: bool = False):
    """A config field with its range and help. `below`/`above` are exclusive bounds, `min`/`max` inclusive."""
    meta = {"help": help, "min": min, "max": max, "below": below, "above": above, "choices": choices,
            "flag": flag, "cli": cli, "required": required}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def field_type(hint):
    """(base type, is_list, optional) of an annotation such as `list[float]` or `int | None`."""
    optional = False
    args = get_args(hint)
    if type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
    if get_origin(hint) in (list, tuple):
        inner = get_args(hint)[0] if get_args(hint) else str
        return inner, True, optional
    return hint, False, optional


def _type_name(base, is_list) -> str:
    name = {int: "a whole number", float: "a number", bool: "true or false", str: "text",
            dict: "a mapping"}.get(base, getattr(base, "__name__", str(base)))
    return f"a list of {name.replace('a ', '', 1)}s" if is_list else name


def _coerce_scalar(key: str, value, base):
    if base is Any or base is dict:
        return value
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError
    if base is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if base is float:
        if isinstance(value, bool):
            raise ValueError
        number = float(str(value).strip().rstrip("%")) / (100 if str(value).strip().endswith("%") else 1)
        if not math.isfinite(number):
            raise ValueError
        return number
    if base is str:
        if isinstance(value, (dict, list)):
            raise ValueError
        return str(value)
    return value


def coerce(key: str, value, hint):
    """Turn loose input into the annotated type; a bad value is a LabError naming the key."""
    base, is_list, optional = field_type(hint)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        if optional or value is None:
            return None
    try:
        if is_list:
            if isinstance(value, str):
                items = value.replace(",", " ").split()
            elif isinstance(value, (list, tuple)):
                items = list(value)
            else:
                items = [value]  # one value where a list is expected: a list of one
            return [_coerce_scalar(key, v, base) for v in items]
        return _coerce_scalar(key, value, base)
    except (TypeError, ValueError):
        raise LabError(f"{_words(key)} must be {_type_name(base, is_list)}, got {value!r}") from None


def _check_range(key: str, value, meta: dict) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is None or isinstance(v, (str, bool, dict)):
            continue
        lo, hi, below, above = meta.get("min"), meta.get("max"), meta.get("below"), meta.get("above")
        ok = ((lo is None or v >= lo) and (hi is None or v <= hi) and (below is None or v < below)
              and (above is None or v > above))
        if not ok:
            left = f"[{lo:g}" if lo is not None else f"({above:g}" if above is not None else "(-inf"
            right = f"{hi:g}]" if hi is not None else f"{below:g})" if below is not None else "inf)"
            if right == "inf)" and lo is not None:
                raise LabError(f"{_words(key)} must be at least {lo:g}, got {v:g}")
            raise LabError(f"{_words(key)} must be in {left}, {right}, got {v:g}")


def _check_choices(key: str, value, meta: dict) -> None:
    if meta.get("choices") is None or value is None:
        return
    if isinstance(meta["choices"], Registry):  # the registry's own lookup: it knows prefixed families too
        for v in value if isinstance(value, list) else [value]:
            meta["choices"].get(v)
        return
    allowed = choices_of(meta["choices"])
    for v in value if isinstance(value, list) else [value]:
        if v not in allowed:
            raise LabError(f"Unknown {_words(key).rstrip('s')} '{v}'. "
                           f"Known: {', '.join(str(a) for a in allowed if a is not None)}")


def _words(key: str) -> str:
    """'latency_batch' -> 'latency batch': messages name the parameter as the CLI and the pages do."""
    return key.replace("_", " ")


class LabConfig:
    """Base of every lab's config dataclass. Subclasses are `@dataclasses.dataclass` with `param()` fields and
    may add cross-field checks in `check()`."""

    lab: typing.ClassVar[str] = "lab"

    def __post_init__(self):
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = coerce(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            _check_range(f.name, value, f.metadata)
            _check_choices(f.name, value, f.metadata)
        self.check()

    def check(self) -> None:
        """Cross-field rules; raise LabError."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict | None):
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise LabError(f"Unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                           f"for {cls.lab}. Known: {', '.join(cls.field_names())}")
        missing = [f.name for f in dataclasses.fields(cls) if f.metadata.get("required") and data.get(f.name) is None]
        if missing:
            raise LabError(f"{cls.lab} needs {', '.join(missing)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes):
        return type(self).from_dict({**self.to_dict(), **changes})

    def subset(self, cls):
        """The fields this config shares with another config class (e.g. its baseline part)."""
        names = set(cls.field_names())
        return cls.from_dict({k: v for k, v in self.to_dict().items() if k in names})


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    return value
