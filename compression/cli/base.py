"""The CLI's plumbing: the parser, flags made from a lab's config, the progress bar on stderr, JSON output.

With --json, stdout holds one JSON document and nothing else; progress goes to stderr.
Bad input exits 2 with one line, `error: ...` (set COMPRESSION_LAB_DEBUG=1 for tracebacks).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import typing

from ..config import field_type
from ..errors import LabError
from ..registry import Registry, choices_of

# name -> add(parser): each verb adds its arguments and sets `handler`
VERBS: Registry = Registry("verb")
ARTIFACTS_ENV = "COMPRESSION_LAB_ARTIFACTS"  # read by paths.artifacts_url


def verb(name: str, help: str):
    def wrap(fn):
        return VERBS.register(name, fn, about=help)
    return wrap


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        raise LabError(f"{self.prog}: {message}")


class ProgressBar:
    """A tqdm bar on stderr fed by the backend's progress(info) callback."""

    def __init__(self, enabled: bool, desc: str):
        self.enabled, self.desc, self.bar = enabled, desc, None

    def __call__(self, info: dict):
        if self.enabled and self.bar is None:  # created on first use: an early error prints no bar
            from tqdm import tqdm
            self.bar = tqdm(total=100, desc=self.desc, file=sys.stderr, leave=False,
                            bar_format="{desc} {bar} {percentage:3.0f}% [{elapsed}<{remaining}] {postfix}")
        if self.bar is not None:
            self.bar.n = round(100 * info.get("fraction", 0))
            self.bar.set_postfix_str(info.get("message", "")[:60], refresh=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def add_config_arguments(p: argparse.ArgumentParser, config_cls) -> None:
    """One flag per config field, from its declaration. Values are checked by the config itself (same
    messages as a job or a page gets), so the flags take text and leave types and ranges to `from_dict`."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        own = "--" + f.name.replace("_", "-")
        # a singular flag for a list (--sparsity 0.5 0.9) also answers to the field's own name (--sparsities)
        flags = [meta.get("flag") or own] + ([own] if meta.get("flag") and meta["flag"] != own else [])
        base, is_list, _ = field_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = meta.get("help", "")
        if meta.get("choices") is not None:
            help_text += f"; one of: {', '.join(str(c) for c in choices_of(meta['choices']) if c is not None)}"
        required = bool(meta.get("required"))
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS,
                      help=f"{help_text} ({'required' if required else f'default: {default}'})")
        if base is bool:
            p.add_argument(*flags, action="store_true", **kwargs)
        else:
            p.add_argument(*flags, nargs="+" if is_list else None, required=required, **kwargs)


def config_from_args(config_cls, args: argparse.Namespace):
    given = {name: getattr(args, name) for name in config_cls.field_names() if hasattr(args, name)}
    return config_cls.from_dict(given)


def output_args(p: argparse.ArgumentParser):
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--db", default=None, help="database URL (default: sqlite file in the lab folder)")
    p.add_argument("--artifacts", default=None, metavar="URL",
                   help="artifact store for model files: a folder, a shared mount or any fsspec URL (default: "
                        "$COMPRESSION_LAB_ARTIFACTS, else the lab folder's weights/)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


@contextlib.contextmanager
def global_options(args: argparse.Namespace):
    """--artifacts sets COMPRESSION_LAB_ARTIFACTS while the verb runs: every save and load (and a worker's every job)
    reads the store from there. Put back afterwards, for callers of main() in a longer-lived process (tests)."""
    url = getattr(args, "artifacts", None)
    if not url:
        yield
        return
    before = os.environ.get(ARTIFACTS_ENV)
    os.environ[ARTIFACTS_ENV] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ARTIFACTS_ENV, None)
        else:
            os.environ[ARTIFACTS_ENV] = before


def _clean(obj):
    """JSON has no NaN/Inf: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def emit(args, payload, table_rows: list[dict] | None = None):
    if args.json:
        json.dump(_clean(payload), sys.stdout, default=str)
        sys.stdout.write("\n")
        return
    from .table import format_table
    print(format_table(table_rows if table_rows is not None else [payload]))
