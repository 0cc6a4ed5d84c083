"""RunContext: what every lab gets from whoever runs it (the CLI, a job, a test), instead of five threaded
arguments: the store, the progress callback, the cancel check, the job id and the machine state.

Progress is always reported as a fraction of the *current slice*: a lab that runs stages gives each stage
`ctx.slice(lo, hi, label)`, so nested work maps onto one bar without copied closures.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import CancelledError
from ..store import RunStore

# seconds of timing per latency entry of a run's record (its quick paired figure takes a sixth of it per block);
# the test suite sets it lower, as it does the wait for quiet, where the figures are not what a test checks
LATENCY_TIME_S = float(os.environ.get("COMPRESSION_LAB_LATENCY_S", 0.3))
EPOCH_FIELDS = ("epoch", "epochs", "train_loss", "val_accuracy", "elapsed_s")


@dataclass(frozen=True)
class RunContext:
    store: RunStore = field(default_factory=RunStore)
    progress: Callable[[dict], None] | None = None     # progress(info): info has "fraction" and "message"
    should_cancel: Callable[[], bool] | None = None
    job_id: int | None = None
    exclusive: bool | None = None                      # True when no other job ran while latency was timed
    latency_time: float = field(default_factory=lambda: LATENCY_TIME_S)  # seconds of timing per latency entry
    span: tuple[float, float] = (0.0, 1.0)             # this context's slice of the overall bar
    label: str = ""

    def report(self, fraction: float, message: str = "", **info) -> None:
        if self.progress is None:
            return
        lo, hi = self.span
        text = f"[{self.label}] {message}" if self.label and message else (message or self.label)
        self.progress({**info, "fraction": lo + (hi - lo) * min(max(float(fraction), 0.0), 1.0), "message": text,
                       **({"stage": info.get("stage") or self.label} if self.label or "stage" in info else {})})

    def forward(self, info: dict) -> None:
        """Pass on a callback's info dict (with its own "fraction") through this slice."""
        rest = {k: v for k, v in info.items() if k not in ("fraction", "message")}
        self.report(info.get("fraction", 0.0), info.get("message", ""), **rest)

    def slice(self, lo: float, hi: float, label: str | None = None) -> RunContext:
        a, b = self.span
        return dataclasses.replace(self, span=(a + (b - a) * lo, a + (b - a) * hi),
                                   label=self.label if label is None else label)

    def with_(self, **changes) -> RunContext:
        return dataclasses.replace(self, **changes)

    def on_epoch(self, lo: float = 0.0, hi: float = 1.0, what: str = "epoch") -> Callable[[dict], None]:
        """A train() callback that reports epochs into [lo, hi] of this slice, with the curve fields."""
        def callback(info: dict) -> None:
            done = info["epoch"] / max(info["epochs"], 1)
            self.report(lo + (hi - lo) * done, f"{what} {info['epoch']}/{info['epochs']}, val acc "
                        f"{info['val_accuracy']:.3f}", **{k: info[k] for k in EPOCH_FIELDS if k in info})
        return callback

    def on_batch(self, lo: float = 0.0, hi: float = 1.0, what: str = "epoch",
                 every_s: float = 1.0) -> Callable[[dict], None]:
        """A train() on_batch callback that reports progress within an epoch into [lo, hi] of this slice, at most
        once per `every_s` (each report is a store write; a digits epoch has 40 batches a second)."""
        last = [time.monotonic()]

        def callback(info: dict) -> None:
            now = time.monotonic()
            if now - last[0] < every_s:
                return
            last[0] = now
            done = (info["epoch"] - 1 + info["batch"] / max(info["batches"], 1)) / max(info["epochs"], 1)
            self.report(lo + (hi - lo) * done, f"{what} {info['epoch']}/{info['epochs']}, batch "
                        f"{info['batch']}/{info['batches']}")
        return callback

    def cancelled(self) -> bool:
        return bool(self.should_cancel and self.should_cancel())

    def check_cancel(self) -> None:
        if self.cancelled():
            raise CancelledError("cancelled by the user")
