"""Background jobs: a queue in the run store, a worker process that runs them one at a time,
progress with an ETA, cancel, and recovery of jobs whose worker died.

The queue is shared by every worker that reaches the database: the lab folder's own (started by the dashboard) and
`python -m compression worker --db URL` on other machines, each taking the kinds and devices it was started for
(`Serves`) and timing on its own machine. A job that asks for CUDA waits for a worker that has a GPU.

Why a process, not a thread: it can be cancelled or killed without touching the web server, and a
crash in it cannot take the server down. The store is the only channel, so a reload or a second
browser tab sees the same job.
"""
from __future__ import annotations

import fcntl
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import psutil

from ..errors import CancelledError, LabError
from ..labs.context import RunContext
from ..paths import PROJECT_ROOT, cluster_url, lab_home
from ..registry import Registry
from ..store import RunStore, worker_alive

if TYPE_CHECKING:
    from ..labs.catalog import Lab

HEARTBEAT_S = 2.0
STALE_AFTER_S = 20.0  # no heartbeat for this long: the worker is gone
IDLE_EXIT_S = float(os.environ.get("COMPRESSION_LAB_WORKER_IDLE_S", 600))  # idle worker exits; next submit starts one
log = logging.getLogger("compression.jobs")

JobFn = Callable[[dict, "JobContext"], dict]


@dataclass(frozen=True)
class JobKind:
    run: JobFn                                           # run(params, ctx) -> result dict
    validate: Callable[[dict], dict | None] | None = None  # params -> normalised params (or None: keep)


JOB_KINDS: Registry[JobKind] = Registry("job kind")


def register_job(kind: str, validate: Callable[[dict], dict | None] | None = None):
    """A job kind: `fn(params, ctx) -> result dict`; `validate(params)` runs at submit time and may return the
    normalised params (a lab's config.to_dict()), which are what the queue stores."""
    def wrap(fn):
        JOB_KINDS.register(kind, JobKind(fn, validate))
        return fn
    return wrap


def job_kinds() -> list[str]:
    return JOB_KINDS.names()


@dataclass
class JobContext:
    """What a running job gets: progress reporting, cancel checks and the store."""
    store: RunStore
    job_id: int
    started: float = field(default_factory=time.perf_counter)
    _last_write: float = 0.0
    _last_cancel_check: float = 0.0
    _cancelled: bool = False
    exclusive: bool = True  # one worker per lab folder: no other job runs while latency is measured

    def progress(self, info: dict) -> None:
        """Write fraction, message and ETA (throttled); every epoch also becomes a curve event."""
        fraction = float(info.get("fraction", 0.0))
        elapsed = time.perf_counter() - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.02 else None
        now = time.perf_counter()
        if "epoch" in info:
            event = {k: v for k, v in info.items() if isinstance(v, (int, float, str)) or v is None}
            self.store.append_job_event(self.job_id, event)
        if now - self._last_write > 0.25 or fraction >= 1.0 or "epoch" in info:
            self.store.update_job(self.job_id, progress=min(fraction, 1.0), message=info.get("message"),
                                  eta_s=eta, heartbeat_at=time.time())
            self._last_write = now
        self.check_cancel()

    def run_context(self) -> RunContext:
        """What every lab takes from the job: store, progress, cancel, job id, exclusivity."""
        return RunContext(store=self.store, progress=self.progress, should_cancel=self.should_cancel,
                          job_id=self.job_id, exclusive=self.exclusive)

    def should_cancel(self) -> bool:
        now = time.perf_counter()
        if not self._cancelled and now - self._last_cancel_check > 0.3:
            self._last_cancel_check = now
            self._cancelled = bool(self.store.get_job(self.job_id)["cancel_requested"])
        return self._cancelled

    def check_cancel(self) -> None:
        if self.should_cancel():
            raise CancelledError("cancelled by the user")


def validate_job(kind: str, params: dict) -> dict:
    """The params as the queue stores them: checked (and normalised) by the kind's config now, so bad input is
    reported at submit time, not minutes later in the worker."""
    validate = JOB_KINDS.get(kind).validate
    checked = validate(params) if validate else None
    return params if checked is None else checked


def job_result(lab: Lab, out: dict, follow_ups: list[int] = ()) -> dict:
    """What a finished job keeps: the run ids its lab stored, the lab's summary, and the jobs it queued after it."""
    result = {"run_ids": lab.created(out), **lab.summary(out)}
    if follow_ups:  # the demo's re-timings: the panel shows them after it
        result["follow_up_jobs"] = list(follow_ups)
    return result


def run_job(store: RunStore, job: dict, exclusive: bool = True, run: JobFn | None = None) -> str:
    """Run one claimed job to its end; returns the final status. Never raises for job errors. `exclusive`: no other
    job runs beside it on this machine (its latencies say so); `run` replaces the kind's run (a cluster's search
    runs its trials as tasks)."""
    ctx = JobContext(store, job["id"], exclusive=exclusive)
    beating = threading.Event()

    def heartbeat():  # proves the worker is alive even inside one long epoch
        while not beating.wait(HEARTBEAT_S):
            store.update_job(job["id"], heartbeat_at=time.time())
    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        result = (run or JOB_KINDS.get(job["kind"]).run)(job["params"], ctx)
        store.finish_job(job["id"], "done", result=result)
        return "done"
    except CancelledError:
        store.finish_job(job["id"], "cancelled", error="Cancelled by the user. Finished results are kept.")
        return "cancelled"
    except LabError as err:
        store.finish_job(job["id"], "failed", error=str(err))
        return "failed"
    except Exception as err:  # a bug: the user sees one line, the log keeps the traceback
        log.error("job %s crashed:\n%s", job["id"], traceback.format_exc())
        first = (str(err).strip().splitlines() or ["no message"])[0][:200]
        store.finish_job(job["id"], "failed", error=f"The job stopped on an internal error ({first}); "
                                                     f"details are in {lab_home() / 'worker.log'} on "
                                                     f"{socket.gethostname()}.")  # maybe another machine
        return "failed"
    finally:
        beating.set()


def _worker_alive(job: dict) -> bool:
    """A job claimed by a process on this host whose pid is gone is dead now, not in 20 s."""
    return worker_alive(job.get("worker") or "")


def recover_interrupted(store: RunStore) -> list[int]:
    return store.mark_interrupted(STALE_AFTER_S, alive=_worker_alive)


def needs_cuda(job: dict) -> bool:
    """A job whose lab config asks for a CUDA device ("cuda", "cuda:1"); "auto", "cpu" or none run anywhere."""
    return str((job.get("params") or {}).get("device") or "").startswith("cuda")


@dataclass(frozen=True)
class Serves:
    """What a worker takes from the shared queue: jobs of these kinds (None: any), and jobs that ask for CUDA only
    when it was started with a GPU, so a GPU job never lands on a CPU-only machine to fail there."""
    kinds: tuple[str, ...] | None = None
    cuda: bool = False

    def accepts(self, job: dict) -> bool:
        return self.cuda or not needs_cuda(job)

    def describe(self) -> str:
        return f"kinds: {', '.join(self.kinds) if self.kinds else 'any'}; device: {'cuda' if self.cuda else 'cpu'}"


def this_machine_serves() -> Serves:
    """The lab folder's own worker (the one the dashboard starts): any kind, CUDA jobs when this machine has a GPU."""
    import torch
    return Serves(cuda=torch.cuda.is_available())


def _lock_worker() -> tuple[object | None, str]:
    """The lab folder's worker lock, held open (None when another process holds it), and the holder's pid."""
    lock_file = open(lab_home() / "worker.lock", "a+")  # not "w": that would erase the holder's pid
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().strip()
        lock_file.close()
        return None, holder
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(str(os.getpid()))
    lock_file.flush()
    return lock_file, str(os.getpid())


def worker_loop(store: RunStore, idle_exit_s: float | None = IDLE_EXIT_S, once: bool = False,
                serves: Serves | None = None, say: Callable[[str], None] | None = None,
                refuse_if_busy: bool = False) -> int:
    """Claim and run jobs (those `serves` allows) until idle for `idle_exit_s` (None: never); `once`: leave at the
    first empty queue after some work. `say` hears when it waits and each job's end. Returns the number of jobs run.

    One worker per lab folder (a file lock), so on CPU one job runs at a time and latency is measured on a quiet
    machine. A second one leaves at once (ensure_worker may race with itself), or, `refuse_if_busy`, says why.
    """
    lock, holder = _lock_worker()
    if lock is None:
        if refuse_if_busy:
            raise LabError(f"Another worker (pid {holder or '?'}) already serves the lab folder {lab_home()}: one "
                           "worker per folder keeps timings quiet. Stop it, or give this one its own "
                           "COMPRESSION_LAB_HOME.")
        return 0
    serves = serves or this_machine_serves()
    say = say or (lambda message: None)
    done, idle_since, waiting = 0, time.monotonic(), False
    with lock:  # held until the loop ends
        while True:
            recover_interrupted(store)
            job = store.claim_next_job(kinds=serves.kinds, accepts=serves.accepts)
            if job is None:
                limit = 0.0 if once and done else idle_exit_s  # --once: the first empty queue after work ends it
                if limit is not None and time.monotonic() - idle_since >= limit:
                    return done
                if not waiting:
                    say(_waiting_line(limit, serves))
                    waiting = True
                time.sleep(0.5)
                continue
            waiting = False
            _run_and_say(store, job, say)
            done += 1
            idle_since = time.monotonic()


def _run_and_say(store: RunStore, job: dict, say: Callable[[str], None]) -> str:
    """run_job, with a line before and after: whoever watches a worker on another machine sees what it does."""
    name, started = f"job {job['id']} ({job['kind']})", time.monotonic()
    say(f"{name} started")
    status = run_job(store, job)
    say(f"{name} {status} after {time.monotonic() - started:.1f} s")
    return status


def _waiting_line(limit: float | None, serves: Serves) -> str:
    how_long = "until stopped" if limit is None else f"up to {limit:g} s"
    return f"no job queued for this worker ({serves.describe()}): waiting {how_long}"


def worker_running() -> bool:
    """True when some process holds the worker lock of this lab folder."""
    path = lab_home() / "worker.lock"
    if not path.exists():
        return False
    with open(path, "a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False


def ensure_worker(store: RunStore, wait: bool = True) -> None:
    """Start a worker process in its own session, so it outlives a restart of the web server. `wait`: return
    once it holds the lock (a second submit then finds it); a page warming one up does not wait. Not with a
    cluster: its tasks run the jobs, and a worker here would race them for every row."""
    if worker_running() or cluster_url():
        return
    log_path = lab_home() / "worker.log"
    env = dict(os.environ, COMPRESSION_LAB_DB=store.url)
    with open(log_path, "a") as out:
        subprocess.Popen([sys.executable, "-m", "compression", "jobs", "work"], cwd=PROJECT_ROOT, env=env,
                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    for _ in range(50 if wait else 0):  # wait until it holds the lock, so a second submit does not start another
        if worker_running():
            return
        time.sleep(0.1)


def stop_workers(home: Path | None = None, timeout: float = 15.0) -> list[int]:
    """Stop every job worker serving the lab folder `home` (SIGTERM, then SIGKILL at the deadline); returns their
    pids. Workers run in their own session so that they outlive a web server: whoever stops the server (a test,
    the screenshot script) stops them too, or they go on loading the machine while later timings run."""
    home = Path(home or lab_home())
    workers = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "jobs" in (proc.info["cmdline"] or []) and proc.environ().get("COMPRESSION_LAB_HOME") == str(home):
                workers.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    for proc in workers:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(workers, timeout=timeout)
    for proc in alive:
        proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in workers]
