"""Real-browser fixtures: the app started as `make run` starts it, on a free port, and Chromium.

A test gets its own app server and lab folder, or (a module that asks for it) shares its module's; either way no
test depends on what another stored or on the order they run in: tests find their job's id in the app's store
instead of assuming "Job 1", and read only their own runs.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from compression.jobs.queue import stop_workers

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("COMPRESSION_LAB_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (CI) but was not found on PATH")
        pytest.skip("no chromium on PATH: install Debian's chromium (apt-get install -y chromium) to run "
                    "the browser tests")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def serve_app(tmp_path_factory, prewarm: bool = False):
    """`python -m streamlit run dashboard/app.py` (what `make run` runs) on a free port, own lab folder; stopped,
    with its job worker, when the generator is closed. `prewarm`: the app starts its job worker when a page first
    opens, as `make run` does (a module that runs jobs wants it; one that only reads saves the process)."""
    home = tmp_path_factory.mktemp("e2e-lab")
    port = _free_port()
    # a browser and a server keep the machine busy: the app's worker must not wait 10 s for quiet before each timing
    env = dict(os.environ, COMPRESSION_LAB_HOME=str(home), COMPRESSION_LAB_WORKER_IDLE_S="30",
               COMPRESSION_LAB_QUIET_WAIT_S="0", COMPRESSION_LAB_PREWARM="1" if prewarm else "0")
    env.pop("COMPRESSION_LAB_DB", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py",
                             "--server.port", str(port), "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"the app did not start: {(home / 'server.log').read_text()[-2000:]}")
    try:
        yield {"url": url, "home": home, "proc": proc}
    finally:  # killed, not stopped: its lab folder is thrown away, and a graceful stop took about 2 s
        proc.kill()
        proc.wait(timeout=20)
        log.close()
        stop_workers(home)  # the app's worker runs in its own session: it outlives the server unless stopped


@pytest.fixture
def app_server(tmp_path_factory):
    """A server of the test's own. A module whose tests only read what they stored themselves (by job id) can
    share one instead: `app_server = shared_app_server` in that module."""
    yield from serve_app(tmp_path_factory)


@pytest.fixture(scope="module")
def shared_app_server(tmp_path_factory, request):
    """One server for the module; it prewarms its job worker unless the module says `PREWARM_WORKER = False`."""
    yield from serve_app(tmp_path_factory, prewarm=getattr(request.module, "PREWARM_WORKER", True))


def app_store(app_server):
    """The app's own run store (its lab folder's database), without touching this process's environment."""
    from compression import RunStore
    return RunStore(f"sqlite:///{app_server['home'] / 'runs.db'}")


def job_ids(store, kind: str) -> set[int]:
    return {j["id"] for j in store.list_jobs(limit=1000) if j["kind"] == kind}


def new_job(store, kind: str, before: set[int], timeout: float = 30.0) -> int:
    """The id of the job of `kind` that a click just queued (one that was not there `before`)."""
    from conftest import wait_for  # the suite's conftest (tests/), not this one
    return wait_for(lambda: min(job_ids(store, kind) - before, default=None), timeout=timeout)


@pytest.fixture
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its main section, so grow the viewport to fit it."""
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=stMain]')?.scrollHeight || 0")
    if height > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": min(height + 50, 8000)})
        page.wait_for_timeout(800)  # plotly re-lays out on resize
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path
