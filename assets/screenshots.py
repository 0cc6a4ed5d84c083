"""The README's pictures, made from a real run: `make screenshots` (or `python assets/screenshots.py [OUTDIR]`).

Serves the app as `make run` does (a throwaway lab folder, a free port), clicks the teaching demo in Chromium,
waits for it to finish, runs a three-trial plan and the language-model demo beside it, then saves each page the
README shows into OUTDIR (default: this folder); the language-model pages are opened with the demo's data set and
model in the URL, as a shared link opens them. Needs Debian's chromium. Prints one JSON line: the demo's seconds
and the pictures written.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from compression.jobs.queue import stop_workers
from compression.labs.demo import lm_demo_params

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# the language-model demo's data set and model, as the sidebar writes them into the URL
LM_QUERY = "?" + urllib.parse.urlencode({k: lm_demo_params()[k] for k in ("dataset", "model")})
# picture -> (page path, text that says the page has drawn what the picture is for)
PICTURES = {
    "home.png": ("", "Hardware: CPU"),
    "compare.png": ("compare", "Pareto front"),
    "behaviour.png": ("compare", "Flipped examples, newly wrong first"),
    "report.png": ("report", "What changed"),
    "plan.png": ("plan", "The winner"),
    "lm-prune.png": ("prune" + LM_QUERY, "Structured: a smaller dense model"),
    "lm-report.png": ("report" + LM_QUERY, "What changed"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = dict(os.environ, COMPRESSION_LAB_HOME=str(home))
    env.pop("COMPRESSION_LAB_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the app did not start")


def full_page(page, path: Path) -> None:
    """Streamlit scrolls inside its main section: grow the viewport to fit it, then shoot."""
    size = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=stMain]')?.scrollHeight || 0")
    if height > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": min(height + 50, 6000)})
        page.wait_for_timeout(1000)  # plotly re-lays out on resize
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


def small_plan(home: Path) -> None:
    """A three-trial size plan on the demo's lenet5 baseline, so the Plan picture shows trials and a winner."""
    os.environ["COMPRESSION_LAB_HOME"] = str(home)  # this process writes into the served app's lab folder
    from compression import RunContext
    from compression.labs.plan import PlanConfig, run_plan
    run_plan(PlanConfig(dataset="digits", model="lenet5", epochs=10, latency_batch=256, target="size=0.3",
                        max_drop=1.0, trials=3, finetune_epochs=2), RunContext(latency_time=0.05))


def wait_for_jobs(home: Path, timeout_s: float = 600) -> None:
    """Until the image demo's follow-up re-timings are done: a timing beside a training would be a noisy claim."""
    os.environ["COMPRESSION_LAB_HOME"] = str(home)
    from compression import RunStore
    store, deadline = RunStore(), time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(j["status"] in ("queued", "running") for j in store.list_jobs()):
        time.sleep(2)


def lm_demo(home: Path) -> None:
    """The language-model demo (Home's second button) run in this process into the served app's lab folder."""
    os.environ["COMPRESSION_LAB_HOME"] = str(home)
    from compression import RunContext
    from compression.labs.configs import DemoConfig
    from compression.labs.demo import run_demo
    run_demo(DemoConfig.from_dict(lm_demo_params()), RunContext(latency_time=0.05))


def main(outdir: Path) -> dict:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("error: no chromium on PATH: sudo apt-get install -y chromium")
    outdir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="screenshots-lab-"))
    proc, url = serve(home)
    written = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("button", name="Run the teaching demo").click()
            start = time.monotonic()
            page.get_by_text("(demo) finished in").wait_for(timeout=600_000)
            demo_s = time.monotonic() - start
            small_plan(home)
            wait_for_jobs(home)
            lm_demo(home)
            for name, (path, ready) in PICTURES.items():
                page.goto(f"{url}/{path}")
                page.get_by_text(ready).first.wait_for(timeout=120_000)
                if page.locator(".js-plotly-plot").count():
                    page.wait_for_selector(".main-svg")
                if name == "behaviour.png":  # the Behaviour view sits below the trade-off chart
                    page.get_by_text(ready).first.scroll_into_view_if_needed()
                    page.wait_for_timeout(1500)
                    page.screenshot(path=str(outdir / name))
                else:
                    page.wait_for_timeout(1500)  # charts finish their transitions
                    full_page(page, outdir / name)
                written.append(name)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        stop_workers(home)  # the app's worker runs in its own session: it outlives the server unless stopped
        shutil.rmtree(home, ignore_errors=True)
    return {"demo_s": round(demo_s, 1), "pictures": written, "outdir": str(outdir)}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)))
