import os
import uuid
from pathlib import Path

import pytest

from compression.jobs.queue import stop_workers

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def lab_home(tmp_path, monkeypatch):
    """Every test gets its own lab folder and database: nothing leaks between tests, and no worker outlives
    the test that started it."""
    home = tmp_path / "lab"
    monkeypatch.setenv("COMPRESSION_LAB_HOME", str(home))
    monkeypatch.delenv("COMPRESSION_LAB_DB", raising=False)
    monkeypatch.delenv("COMPRESSION_LAB_CLUSTER", raising=False)  # a developer's cluster never takes a test's jobs
    monkeypatch.setenv("COMPRESSION_LAB_WORKER_IDLE_S", "5")  # workers started by tests do not linger
    # measuring waits up to 10 s for other processes to go quiet; a test run is never quiet (its own workers,
    # the next subprocess), so probe once and time: the assertions never depend on a quiet machine
    monkeypatch.setenv("COMPRESSION_LAB_QUIET_WAIT_S", "0")
    monkeypatch.setenv("COMPRESSION_LAB_PREWARM", "0")  # Home warms up a worker: not for each page test
    yield home
    if (home / "worker.log").exists():  # ensure_worker writes it before it starts a worker
        stop_workers(home)


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


@pytest.fixture(scope="session")
def s3_server():
    """One S3-compatible server (SeaweedFS, tests/s3_server.py) per test process, started by the first test that
    asks. Skipped without its `weed` binary; COMPRESSION_LAB_REQUIRE_S3 (CI) makes that a failure."""
    from s3_server import S3Server
    try:
        server = S3Server()
    except (FileNotFoundError, RuntimeError) as err:
        if os.environ.get("COMPRESSION_LAB_REQUIRE_S3"):
            pytest.fail(f"the S3 test server is required here (CI) but could not start: {err}")
        pytest.skip(f"no S3 test server here: {err}")
    yield server
    server.stop()


@pytest.fixture
def s3_artifacts(s3_server, monkeypatch, request):
    """(url, env): an s3:// artifact store of this test's own (a fresh prefix in the server's bucket) and the AWS_*
    variables that reach it. This process gets them (every inherited AWS_* variable removed); a subprocess needs
    `env` too."""
    import s3fs
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec caches a filesystem per arguments: not per AWS_* variables
    yield s3_server.url(f"{request.node.name.split('[')[0][:40]}-{uuid.uuid4().hex[:8]}"), dict(s3_server.env)
    s3fs.S3FileSystem.clear_instance_cache()


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


# What a skipped test needed, by a word its skip reason contains, and the package that brings it.
SKIP_NEEDS = {"chromium": ("browser", "chromium"), "PostgreSQL": ("PostgreSQL", "postgresql")}
SKIP_LINE = pytest.StashKey[str]()


# The modules that take longest, first. `make test` hands whole modules to its two pytest-xdist processes (--dist
# loadscope) in collection order (--no-loadscope-reorder; xdist would otherwise order them by their number of
# tests): a long module that starts last leaves the other process idle until it ends (measured: ~2 minutes of one
# idle core at the end of a 12-minute run). Longest first, the last modules to start are short ones.
LONGEST_FIRST = ("tests/e2e/test_labs.py", "tests/test_ray.py", "tests/test_concurrency.py", "tests/e2e/test_shell.py",
                 "tests/test_lm_plan.py", "tests/test_lm_demo.py", "tests/test_lm_prune.py", "tests/test_lm_pages.py",
                 "tests/e2e/test_behaviour.py", "tests/test_postgres.py", "tests/test_search.py",
                 "tests/test_workers.py", "tests/test_search_resume.py", "tests/test_lm_hf.py", "tests/test_plan.py")


def pytest_collection_modifyitems(config, items):
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order


def pytest_terminal_summary(terminalreporter, config):
    """Count what was skipped for want of a program; pytest_unconfigure prints it after pytest's own last line."""
    missing: dict[str, list] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        for word, (what, package) in SKIP_NEEDS.items():
            if word in reason:
                missing.setdefault(package, [what, 0])[1] += 1
    if missing:
        counts = " and ".join(f"{n} {what} test{'s' * (n != 1)}" for what, n in missing.values())
        config.stash[SKIP_LINE] = (f"SKIPPED {counts}: not installed here. Install with: "
                                   f"sudo apt-get install -y {' '.join(missing)}")


def pytest_unconfigure(config):
    """The very last line of a run, so a green run without a browser or a database does not pass for a full one."""
    line = config.stash.get(SKIP_LINE, None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if line and reporter is not None:
        reporter.write_line(line, yellow=True, bold=True)
