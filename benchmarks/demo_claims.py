"""Can a presenter quote the Report after a demo? For each teaching demo (image, then language model): `make run`'s
server on a fresh lab folder, the demo clicked on Home in Chromium, then its follow-up re-timing jobs waited for, as
a presenter would wait for the job panel to empty. Then:

- the Report's opening claims (the runs it opens on, each against its lineage root, per timed phase) are read from
  the page: none may be flagged noisy or left untimed;
- every claim is compared with a fresh `speedup` of the same pair, run from the CLI once the server is gone (the
  issue's bar: within 15%);
- a language model's fine-tuned children are compared with their fair controls: none may be called better unless
  its paired CI says so.

Prints one JSON line per demo (`met` true when all three hold). Takes ~6 minutes on 2 cores: run it alone.
Usage: python benchmarks/demo_claims.py [image|text ...]"""
import _common  # noqa: F401  (a throwaway lab folder)

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from compression import RunStore
from compression.core.timing import LoadSampler, machine_fingerprint
from compression.labs.records import as_record
from compression.labs.speed import latest_speedup
from compression.labs.summary import default_report_runs, reference_of
from compression.tasks import TASKS
from lm_demo_browser import FLAGS, PORT, serve  # make run's server on this process's lab folder

ROOT = Path(__file__).resolve().parents[1]
BUTTONS = {"image": "Run the teaching demo", "text": "Run the language-model demo"}
AGREEMENT = 0.15  # a claim within 15% of a fresh speedup of the same pair


def jobs_open(store: RunStore) -> int:
    return sum(j["status"] in ("queued", "running") for j in store.list_jobs())


def claims(store: RunStore, task) -> list[dict]:
    """The Report's opening claims, as its page computes them."""
    records = [r for r in map(as_record, store.list_runs(status="done")) if r.get("task") == task.name]
    rows = []
    for run_id in default_report_runs(records):
        reference = reference_of(store, run_id)
        for phase in task.phases:
            row = latest_speedup(store, run_id, reference, phase=phase)
            rows.append({"run_a": reference, "run_b": run_id, "phase": phase,
                         "speedup": row and row["speedup"], "ci95": row and row["ci95"],
                         "noisy": bool(row and row["noisy"]), "processes": row and row["detail"].get("processes"),
                         "batch_size": row and row["batch_size"]})
    return rows


def fresh_speedup(claim: dict) -> float:
    args = [sys.executable, "-m", "compression", "speedup", str(claim["run_a"]), str(claim["run_b"]), "--json"]
    args += ["--batch-size", str(claim["batch_size"])] if claim["batch_size"] else []
    args += ["--phase", claim["phase"]] if claim["phase"] else []
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout)["speedup"] if done.returncode == 0 else float("nan")


def better_than_control(store: RunStore) -> list[str]:
    """Fine-tuned children the Report would call better than their fair control without a paired CI to say so."""
    wrong = []
    for record in map(as_record, store.list_runs(status="done")):
        paired = record.get("paired_vs_control")
        if record.get("control_perplexity") is not None and record["perplexity"] < record["control_perplexity"] \
                and not (paired and paired["significant"]):
            wrong.append(record["label"])
    return wrong


def run(task_name: str) -> dict:
    # a fresh lab folder per demo: the server, its worker and this process all read it from the environment
    os.environ["COMPRESSION_LAB_HOME"] = tempfile.mkdtemp(prefix=f"demo-claims-{task_name}-")
    store = RunStore()
    out = {"benchmark": "demo_claims", "demo": task_name}
    server = serve()
    try:
        with sync_playwright() as p, LoadSampler() as sampler:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{PORT}")
            page.get_by_role("button", name=BUTTONS[task_name]).wait_for(timeout=60_000)
            page.get_by_role("button", name=BUTTONS[task_name]).click()
            start = time.perf_counter()
            page.get_by_text("(demo) finished in").wait_for(timeout=600_000)
            out["demo_s"] = round(time.perf_counter() - start, 1)
            while jobs_open(store):  # the follow-up re-timings, as the job panel shows them
                time.sleep(1)
            out["with_retimes_s"] = round(time.perf_counter() - start, 1)
            page.locator('[data-testid="stSidebarNav"] a', has_text="Report").click()
            page.get_by_text("What changed").first.wait_for(timeout=120_000)
            time.sleep(2)
            text = page.locator('[data-testid="stMain"]').inner_text()
            claim_lines = [line for line in text.splitlines() if " vs #" in line]
            out["report_claim_lines"] = len(claim_lines)
            out["report_noisy_lines"] = sum("noisy" in line for line in claim_lines)
            out["report_untimed_lines"] = sum("not timed together" in line for line in claim_lines)
            out["errors"] = page.locator('[data-testid="stException"]').count()
            if os.environ.get("DEMO_CLAIMS_SHOTS"):
                page.screenshot(path=f"{os.environ['DEMO_CLAIMS_SHOTS']}/{task_name}-report.png", full_page=True)
            browser.close()
        out["other_load_cores"] = round(sampler.load, 2)
    finally:
        server.terminate()
        server.wait(timeout=20)
    rows = claims(store, TASKS[task_name])
    for row in rows:  # each claim against a fresh paired timing of the same pair, the server gone
        row["fresh"] = fresh_speedup(row)
        row["agrees"] = abs(row["speedup"] / row["fresh"] - 1) <= AGREEMENT if row["speedup"] else False
    out["claims"] = rows
    out["claims_flagged"] = sum(r["noisy"] or not r["speedup"] for r in rows)
    out["claims_disagreeing"] = sum(not r["agrees"] for r in rows)
    out["better_than_control_without_ci"] = better_than_control(store)
    out["met"] = (not out["claims_flagged"] and not out["claims_disagreeing"] and not out["report_noisy_lines"]
                  and not out["better_than_control_without_ci"] and not out["errors"])
    out["machine"] = machine_fingerprint("cpu")["id"]
    return out


if __name__ == "__main__":
    for name in sys.argv[1:] or ["image", "text"]:
        _common.emit(run(name))
