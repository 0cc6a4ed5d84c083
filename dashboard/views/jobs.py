"""The live job panel: progress, ETA, Cancel and the queue, with a running job's curves drawn by its own task's
view (a text job's steps and perplexity, an image job's epochs and accuracy), whichever data set the sidebar shows."""
from __future__ import annotations

import socket
import time

import streamlit as st

from compression.jobs import needs_cuda, recover_interrupted

from ..display import plot
from ..state import get_store
from .registry import view_of


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA estimating..."
    return f"ETA {seconds:.0f} s" if seconds < 120 else f"ETA {seconds / 60:.1f} min"


def _on_host(job: dict) -> str:
    """The machine that runs (or ran) the job, as ' on HOST' (or ' on this machine'), from its worker's "host:pid"
    ('' while it waits): with workers on several machines sharing one database, it says where a job's timings were
    taken."""
    worker = job.get("worker") or ""
    host = worker.rpartition(":")[0]
    ray = host.startswith("ray:")  # a Ray task's row: ray:HOST:PID (compression/jobs/ray_cluster.py)
    host = host[len("ray:"):] if ray else host
    on = "" if not host else " on this machine" if host == socket.gethostname() else f" on {host}"
    return f"{on} (Ray)" if on and ray else on


def _render_job(job: dict, store) -> None:
    status, jid, on = job["status"], job["id"], _on_host(job)
    if status in ("queued", "running"):
        pct = job["progress"] or 0.0
        waits = " for a CUDA worker" if needs_cuda(job) else ""  # CPU-only workers leave it: it may wait long
        text = (f"Job {jid} ({job['kind']}) is waiting in the queue{waits}" if status == "queued" else
                f"Job {jid} ({job['kind']}){on}: {job.get('message') or 'starting'} · {pct:.0%} · "
                f"{_eta_text(job['eta_s'])}")
        col, button = st.columns([6, 1])
        col.progress(min(max(pct, 0.0), 1.0), text=text)
        if button.button("Cancel", key=f"cancel-{jid}", disabled=bool(job["cancel_requested"])):
            store.request_cancel(jid)
            st.rerun(scope="fragment")
        return
    kept = store.count_runs(job_id=jid)
    took = (job["finished_at"] or 0) - (job["started_at"] or job["finished_at"] or 0)
    if status == "done" and kept == 0 and job.get("message"):  # a re-timing stores a speed-up, not a run
        st.success(f"Job {jid} ({job['kind']}) finished in {took:.1f} s{on}: {job['message']}.")
    elif status == "done":
        st.success(f"Job {jid} ({job['kind']}) finished in {took:.1f} s{on}; {kept} run(s) stored.")
    elif status == "failed":
        st.error(f"Job {jid} ({job['kind']}) failed{on}: {job['error']}  \n{kept} finished run(s) were kept.")
    else:  # cancelled or interrupted
        st.warning(f"Job {jid} ({job['kind']}) {status}{on}: {job['error']}  \n{kept} finished run(s) were kept.")


REDRAW_EVERY_S = 6.0


# every 2 s: each poll is a server rerun and a browser redraw, CPU that the worker timing models on the same
# cores would lose (a 1 s poll slowed the browser demo by a tenth)
@st.fragment(run_every=2.0)
def job_panel(kinds: tuple[str, ...], key: str, show_curves: bool = True, show_queue: bool = True) -> None:
    """The latest job of these kinds with progress, ETA and Cancel, plus the queue (`show_queue`: a page with two
    panels shows it once). Polls the store, so a reload or a second tab shows the same; reruns the page when new
    results land."""
    store = get_store()
    recover_interrupted(store)  # reads and marks dead workers' jobs; starting workers is submit's job
    active = store.list_jobs(("queued", "running"))
    if show_queue and len(active) > 1:
        st.caption("Queue: " + " · ".join(f"#{j['id']} {j['kind']} ({j['status']}{_on_host(j)})"
                                          for j in reversed(active)))
    latest = next((j for j in store.list_jobs(limit=100) if j["kind"] in kinds), None)
    if latest is None:
        return
    _render_job(latest, store)
    if show_curves and latest["status"] == "running" and latest.get("events"):
        plot(view_of(latest.get("params") or {}).run.live_curves(latest["events"]), f"curves-{key}")
    signature = (latest["id"], latest["status"], store.count_runs(job_id=latest["id"]))
    previous = st.session_state.get(f"job-signature-{key}")
    st.session_state[f"job-signature-{key}"] = signature
    token = st.session_state.get("page_run_token")
    timer_rerun = st.session_state.get(f"job-token-{key}") == token  # same full run: the fragment's timer
    st.session_state[f"job-token-{key}"] = token
    if timer_rerun and previous is not None and previous != signature and previous[0] == signature[0]:
        # a run landed or the job ended: redraw the page's charts. Only from the timer: a full run
        # already reads fresh data, and rerunning it would swallow the click that started it. While the job
        # runs, at most every REDRAW_EVERY_S: each redraw takes CPU from the worker timing models beside it.
        since = time.monotonic() - st.session_state.get(f"job-redrawn-{key}", 0.0)
        if signature[1] != "running" or since >= REDRAW_EVERY_S:
            st.session_state[f"job-redrawn-{key}"] = time.monotonic()
            st.rerun(scope="app")
        st.session_state[f"job-signature-{key}"] = previous  # not yet: the change stays pending for a later poll
