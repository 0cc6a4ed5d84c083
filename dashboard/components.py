"""Shared widgets: metric cards, the live job panel, lab placeholders."""
from __future__ import annotations

import socket
import time

import streamlit as st

from compression import LabError
from compression.core.measure import latency_of
from compression.core.data import load_dataset
from compression.jobs import needs_cuda, recover_interrupted, submit
from compression.labs.diff import diff_runs

from .charts_text import is_text_record, lm_training_curves
from .charts import training_curves
from .charts_behaviour import gallery_captions, thumbnails
from .display import plot
from .state import get_store


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def human_count(n: float | None) -> str:
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


def _ratio_delta(value, base) -> str | None:
    """'4.10x smaller' or '1.30x larger': a ratio below 1 is said the other way round."""
    if not value or not base:
        return None
    ratio = base / value
    return f"{ratio:.2f}x smaller" if ratio >= 1 else f"{1 / ratio:.2f}x larger"


def metric_cards(record: dict, baseline: dict | None = None) -> None:
    """Accuracy +- CI, params, size, MACs and latency as cards; deltas against a baseline if given."""
    if is_text_record(record):
        return text_metric_cards(record)
    lo, hi = record["accuracy_ci"]
    cols = st.columns(5)
    acc_delta = None if baseline is None else f"{100 * (record['accuracy'] - baseline['accuracy']):+.1f} pt"
    flips = flip_text(record, baseline)
    if flips:  # the delta's leading sign still colours it; the churn behind it follows
        acc_delta += f", {flips}"
    cols[0].metric("Accuracy", f"{record['accuracy']:.3f}", acc_delta,
                   help=f"95% Wilson CI [{lo:.3f}, {hi:.3f}] on {record.get('n_test', '?')} test images")
    cols[0].caption(f"95% CI [{lo:.3f}, {hi:.3f}]")
    cols[1].metric("Parameters", human_count(record["params"]),
                   None if baseline is None else _ratio_delta(record["params"], baseline["params"]),
                   delta_color="off")
    cols[1].caption(f"non-zero: {human_count(record['nonzero_params'])}")
    cols[2].metric("Size", human_bytes(record["size_bytes"]),
                   None if baseline is None else _ratio_delta(record["size_bytes"], baseline["size_bytes"]),
                   delta_color="off")
    cols[2].caption(f"gzip: {human_bytes(record['gzip_bytes'])}")
    cols[3].metric("MACs / sample", human_count(record["macs"]))
    batches = sorted({e["batch_size"] for e in record["latency"]})
    big = latency_of(record, record["latency"][0]["device"] if record["latency"] else "cpu")
    one = latency_of(record, "cpu", 1)
    speed = paired_speed_text(record, batches[-1] if batches else None) if baseline is not None else None
    cols[4].metric(f"Latency, batch {batches[-1] if batches else '?'}", f"{big:.2f} ms" if big else "-", speed,
                   delta_color="off", help="Speed-ups come only from the child and its parent timed together, "
                   "interleaved, with a 95% CI; a bare latency from another moment is never divided.")
    noisy = any(e.get("noisy") for e in record["latency"])
    cols[4].caption((f"batch 1: {one:.3f} ms" if one else "batch 1: -") + (" · :orange[noisy]" if noisy else ""))


def text_metric_cards(record: dict) -> None:
    """A language model's cards: perplexity +- CI, bits per byte, next-token accuracy, size, decode speed."""
    lo, hi = record["perplexity_ci95"]
    cols = st.columns(5)
    cols[0].metric("Perplexity", f"{record['perplexity']:.2f}",
                   help=f"lower is better; 95% bootstrap CI over {record['n_test_sequences']} test sequences")
    cols[0].caption(f"95% CI [{lo:.2f}, {hi:.2f}]")
    cols[1].metric("Bits per byte", f"{record['bits_per_byte']:.3f}",
                   help="the loss per byte of text: comparable across tokenizers, where perplexity is not; "
                        "a uniform guess over bytes is 8")
    a_lo, a_hi = record["next_token_accuracy_ci"]
    cols[1].caption(f"next-token accuracy {record['next_token_accuracy']:.1%} [{a_lo:.1%}, {a_hi:.1%}]")
    cols[2].metric("Parameters", human_count(record["params"]))
    cols[2].caption(f"size {human_bytes(record['size_bytes'])} · {human_count(record['macs_per_token'])} MACs/token")
    phases = {e.get("phase"): e for e in record["latency"]}
    prefill, decode = phases.get("prefill"), phases.get("decode")
    cols[3].metric("Prefill", f"{prefill['median_ms']:.1f} ms" if prefill else "-",
                   help="one batch of B x T tokens in one call")
    cols[3].caption(f"{prefill['tokens']} tokens · {prefill['tokens_per_s']:,.0f} tokens/s" if prefill else "")
    cols[4].metric("Decode, tokens/s", f"{decode['tokens_per_s']:,.0f}" if decode else "-",
                   help="greedy generation at batch 1 with a key-value cache")
    noisy = any(e.get("noisy") for e in record["latency"])
    cols[4].caption((f"{decode['tokens']} tokens in {decode['median_ms']:.1f} ms" if decode else "")
                    + (" · :orange[noisy]" if noisy else ""))


def flip_text(record: dict, baseline: dict | None) -> str | None:
    """'but 4.2% of answers changed': the record's stored flip rate, said only against the run it was counted
    against (its parent), never against another baseline."""
    rate = record.get("flip_rate")
    if rate is None or baseline is None or baseline.get("run_id") != record.get("parent_id"):
        return None
    return "no answer changed" if rate == 0 else f"but {rate:.1%} of answers changed"


def paired_speed_text(record: dict, batch: int | None, device: str = "cpu") -> str | None:
    """'2.3x faster [2.1, 2.5]' from the record's paired timing against its parent, with a noisy badge."""
    key = f"speedup_{device}_b{batch}"
    ratio, ci = record.get(key), record.get(f"{key}_ci95")
    if not ratio or not ci:
        return None
    text = (f"{ratio:.2f}x faster [{ci[0]:.2f}, {ci[1]:.2f}]" if ratio >= 1 else
            f"{1 / ratio:.2f}x slower [{1 / ci[1]:.2f}, {1 / ci[0]:.2f}]")
    return text + (" (noisy)" if record.get(f"{key}_noisy") else "")


def behaviour_of(run_a: int, run_b: int) -> tuple[dict, list]:
    """`diff_runs(A, B)` and its gallery's thumbnails, cached per pair of runs. Instant for runs that stored
    their answers; older runs load their weights once. Raises LabError (different data sets, no weights)."""
    store = get_store()
    stamps = tuple(store.get_run(i)["created_at"] for i in (run_a, run_b))  # a new run under a reused id
    return _behaviour(store.url, run_a, run_b, stamps)


@st.cache_data(show_spinner="Comparing the two runs' answers...", max_entries=64)
def _behaviour(db_url: str, run_a: int, run_b: int, stamps: tuple) -> tuple[dict, list]:
    diff = diff_runs(get_store(), run_a, run_b)
    shown = [g["index"] for g in diff["gallery"]]
    return diff, thumbnails(load_dataset(diff["dataset"]).x_test[shown].numpy())


def flip_gallery(diff: dict, images: list, names: tuple[str, str], limit: int | None = None, per_row: int = 6) -> None:
    """The flipped test examples as images, newly wrong first, each with both answers and confidences."""
    captions = gallery_captions(diff, names)[:limit]
    for start in range(0, len(captions), per_row):
        cols = st.columns(per_row)
        for col, image, caption in zip(cols, images[start:start + per_row], captions[start:start + per_row]):
            col.image(image, caption=caption)


def submit_job(kind: str, params: dict) -> int | None:
    """Queue a job; bad input shows as a message, never a traceback."""
    try:
        job_id = submit(get_store(), kind, params)
    except LabError as err:
        st.error(str(err))
        return None
    st.toast(f"Job {job_id} queued")
    return job_id


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA estimating..."
    return f"ETA {seconds:.0f} s" if seconds < 120 else f"ETA {seconds / 60:.1f} min"


def _on_host(job: dict) -> str:
    """The machine that runs (or ran) the job, as ' on HOST' (or ' on this machine'), from its worker's "host:pid"
    ('' while it waits): with workers on several machines sharing one database, it says where a job's timings were
    taken."""
    host = (job.get("worker") or "").rpartition(":")[0]
    return "" if not host else " on this machine" if host == socket.gethostname() else f" on {host}"


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


@st.cache_data(max_entries=16, show_spinner=False)
def _curves(events: list[dict]):
    """The live curves, built once per new epoch: the panel polls every 2 s, a Plotly figure costs ~0.1 s.
    A language model's points are steps with a validation perplexity."""
    if any("val_perplexity" in e for e in events):
        return lm_training_curves([{**e, "step": e["epoch"]} for e in events if "val_perplexity" in e])
    return training_curves(events)


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
        plot(_curves(latest["events"]), f"curves-{key}")
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


def coming_soon(title: str, what: str) -> None:
    st.title(title)
    st.info(f"**Coming soon.** {what}")
    st.caption("Until then, the Baseline page trains models and the Compare page puts every run side by side.")


@st.cache_resource(max_entries=4, show_spinner=False)
def _language_model(weights_path: str):
    from compression.store.artifacts import load_run_model
    return load_run_model(weights_path)


def sample_panel(record: dict) -> None:
    """A prompt box and the model's completion (greedy, or sampled with a seed): what a language model writes."""
    from compression.labs.lm import generate
    st.subheader("Sample")
    prompt = st.text_area("Prompt", "The for statement", key=f"prompt-{record['run_id']}", height=80)
    context = int(record.get("context") or (record.get("config") or {}).get("context") or 128)
    c1, c2, c3 = st.columns(3)
    tokens = c1.number_input("New tokens", 1, context - 1, min(80, context - 1), key=f"tokens-{record['run_id']}",
                             help=f"this model reads at most {context} tokens: the prompt's last ones make room")
    temperature = c2.number_input("Temperature", 0.0, 2.0, 0.0, 0.1, key=f"temperature-{record['run_id']}",
                                  help="0: greedy (the same text every time); above 0: sampled, with the seed")
    seed = c3.number_input("Seed", 0, 10_000, 0, key=f"sample-seed-{record['run_id']}")
    if st.button("Generate", key=f"generate-{record['run_id']}"):
        try:
            run = get_store().get_run(record["run_id"])
            model = _language_model(run["weights_path"])
            completion = generate(model, prompt, int(tokens), float(temperature), int(seed),
                                  run["config"].get("context"))
        except LabError as err:
            st.error(str(err))
        else:
            st.code(prompt + completion, language=None, wrap_lines=True)  # as written: no Markdown in it
            seen = context - int(tokens)
            if len(model.tokenizer.encode(prompt)) > seen:
                st.caption(f"The model saw only the prompt's last {seen} tokens: its context is {context}, and "
                           f"{int(tokens)} of them are for the new text.")
