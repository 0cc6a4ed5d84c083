import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def lab_home(tmp_path, monkeypatch):
    """Every test gets its own lab folder and database: nothing leaks between tests."""
    home = tmp_path / "lab"
    monkeypatch.setenv("COMPRESSION_LAB_HOME", str(home))
    monkeypatch.delenv("COMPRESSION_LAB_DB", raising=False)
    monkeypatch.setenv("COMPRESSION_LAB_WORKER_IDLE_S", "5")  # workers started by tests do not linger
    # measuring waits up to 10 s for other processes to go quiet; a test run is never quiet (its own workers,
    # the next subprocess), so probe once and time: the assertions never depend on a quiet machine
    monkeypatch.setenv("COMPRESSION_LAB_QUIET_WAIT_S", "0")
    monkeypatch.setenv("COMPRESSION_LAB_PREWARM", "0")  # Home warms up a worker: not for each page test
    return home


@pytest.fixture
def store(lab_home):
    from compression import RunStore
    return RunStore()


@pytest.fixture(scope="session")
def digits():
    from compression import load_dataset
    return load_dataset("digits")


@pytest.fixture(scope="session")
def synthetic():
    from compression import load_dataset
    return load_dataset("synthetic")


def cli_env(home) -> dict:
    env = dict(os.environ, COMPRESSION_LAB_HOME=str(home))
    env.pop("COMPRESSION_LAB_DB", None)
    return env


def wait_for(predicate, timeout=120.0, every=0.2):
    """Poll until predicate() is truthy; returns its value or fails the test."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout}s waiting for {predicate}")


QUICK_LATENCY_S = 0.02  # seconds of timing per latency entry: enough to fill a record, fast for tests


def quick_ctx(**changes):
    """A RunContext for tests: the default store (this test's lab folder) and short latency timing."""
    from compression import RunContext
    return RunContext(**{"latency_time": QUICK_LATENCY_S, **changes})


def baseline(ctx=None, **config):
    """get_baseline on a tiny default (a 2-epoch mlp:hidden=16 on synthetic data); returns (model, run)."""
    from compression import BaselineConfig, get_baseline
    defaults = dict(dataset="synthetic", model="mlp:hidden=16", epochs=2, latency_batch=16)
    return get_baseline(BaselineConfig(**{**defaults, **config}), ctx or quick_ctx())
