"""Jobs on a Ray cluster (`COMPRESSION_LAB_CLUSTER=ray://HOST:PORT`): each queued job becomes a Ray task.

Imported only when such a URL is given (placers.py), so a lab without a cluster never imports Ray.

- The `jobs` row stays the record: the task claims it with the same conditional UPDATE as a worker (so a job runs
  once, whoever else serves the queue), writes progress, heartbeats and its end there, and names its machine as
  `ray:HOST:PID`, so the job panel's "on MACHINE" line, Cancel and recovery work as they do for workers.
- A detached actor (JobRunner) submits the tasks and owns them: a short-lived client (`jobs submit` exits at once)
  would take its tasks down with it. It watches them: a task whose worker or node died is retried by Ray up to
  MAX_RETRIES times (the retry takes the row over from its dead attempt), then marked "interrupted" with Ray's
  reason; a Cancel in the row (from any page or machine) stops the task at its next progress check, and, if it
  does not, reaches it through ray.cancel.
- Resources: CPUs as asked (default 1, torch gets as many threads), a GPU for a job whose config asks for CUDA, and
  a node pin where a job's inputs live on one machine: a re-time runs where its runs' latencies were measured,
  an upload where its file was uploaded (when that node is still in the cluster).
- A search's trials run as tasks too: the search job's own task runs trials while JOINERS_PER_SEARCH tasks join
  its study in the database, each taking trials until the study holds the budget.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import warnings
from typing import Callable

import ray
import sqlalchemy as sa

from ..errors import LabError
from ..paths import artifacts_url
from ..store import RunStore
from ..store.runs import jobs_table

NAMESPACE = "compression_lab"
RUNNER = "compression-lab-jobs"        # the detached actor that owns every job task
MAX_RETRIES = 2                        # a task whose worker or node died is run again this many times at most
RETRIES_ENV = "COMPRESSION_LAB_RAY_RETRIES"  # ... or as many as this says (0: a dead worker's job is interrupted)
CONNECT_TIMEOUT_S = 3.0                # an unreachable cluster is said in seconds, not after Ray's long retries
CONNECT_ATTEMPTS = 3  # a client server that fails to start a client's process is asked again
CANCEL_GRACE_S = 2.0                   # a cancelled job stops at its own progress check; ray.cancel after this
FORCE_AFTER_S = 6.0                    # ... and kills its worker after this
JOIN_WAIT_S = 120.0                    # a search's trial task waits this long for its study to be created
WORKER_PREFIX = "ray:"                 # the `worker` column of a job a Ray task claimed: ray:HOST:PID
CANCELLED = "Cancelled by the user. Finished results are kept."
_URL = re.compile(r"^ray://(?P<host>[A-Za-z0-9.\-_\[\]:]+?):(?P<port>\d{1,5})/?$")
log = logging.getLogger("compression.jobs.ray")
_connecting = threading.Lock()
_connected: list[str] = []  # the cluster URL this process's client is connected to


def _client_mode() -> bool:
    """True in a process connected through ray:// (a CLI, the dashboard); False in a cluster's own worker."""
    return ray.util.client.ray.is_connected()


def parse_url(url: str) -> tuple[str, int]:
    match = _URL.match(url or "")
    if not match or not 0 < int(match["port"]) < 65536:
        raise LabError(f"Bad cluster URL '{url}': write ray://HOST:PORT, the address of the Ray head's client server "
                       "(ray start --head --ray-client-server-port PORT).")
    return match["host"].strip("[]"), int(match["port"])


def ray_worker_name() -> str:
    return f"{WORKER_PREFIX}{socket.gethostname()}:{os.getpid()}"


def worker_host(worker: str | None) -> str:
    """The machine of a job's worker, `HOST:PID` or `ray:HOST:PID` ('' before one claimed it)."""
    host = (worker or "").rpartition(":")[0]
    return host[len(WORKER_PREFIX):] if host.startswith(WORKER_PREFIX) else host


class RayPlacer:
    """Submits queued jobs to the cluster at `url` (the client connects once per process)."""

    def __init__(self, url: str):
        parse_url(url)  # a bad URL is said before anything is tried
        self.url = url

    def describe(self) -> str:
        return f"Jobs run on the Ray cluster at {self.url}."

    def connect(self) -> None:
        """Connect this process (once); inside a cluster task Ray is already there."""
        with _connecting:
            if ray.is_initialized() and (not _client_mode() or _connected == [self.url]):
                return  # inside a task: its own cluster; or this client is connected here already
            host, port = parse_url(self.url)
            try:  # Ray's client retries for long; a closed port or a wrong host is known in seconds
                socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
            except OSError as err:
                raise LabError(f"Cannot reach the Ray cluster at {self.url} ({err.strerror or err}): its head "
                               f"must run there with --ray-client-server-port {port}") from None
            if ray.is_initialized():  # a client of another cluster (a test, a page told another URL)
                ray.shutdown()
            _connected.clear()
            _runner.clear()  # a handle from an earlier connection is no use on this one
            for attempt in range(CONNECT_ATTEMPTS):
                try:
                    with warnings.catch_warnings():  # its "connection timed out" warning: the error below says it
                        warnings.simplefilter("ignore")
                        ray.init(self.url, namespace=NAMESPACE, logging_level=logging.ERROR, log_to_driver=False)
                    _connected.append(self.url)
                    return
                except Exception as err:  # a port that is not a Ray client server, a version mismatch ...
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                    # the client server starts a process per client; on a loaded machine its start can time out
                    # ("Initialization failure from server"), and the next try usually finds it up
                    if "Initialization failure" not in first or attempt + 1 == CONNECT_ATTEMPTS:
                        raise LabError(f"Cannot connect to the Ray cluster at {self.url}: {first}") from None

    def place(self, store: RunStore, job_id: int, start_worker: bool = True, cpus: int | None = None) -> None:
        self.connect()
        _check_shared_database(store, self.url)
        job = store.get_job(job_id)
        cpus = int(cpus or os.environ.get("COMPRESSION_LAB_TASK_CPUS") or 1)
        options = {"num_cpus": cpus, "num_gpus": 1 if _needs_cuda(job) else 0, "node": pinned_node(store, job),
                   "max_retries": int(os.environ.get(RETRIES_ENV, MAX_RETRIES))}
        env = {"COMPRESSION_LAB_ARTIFACTS": artifacts_url(), "COMPRESSION_LAB_CLUSTER": self.url}
        try:
            try:
                ray.get(runner().place.remote(store.url, job_id, env, options), timeout=60)
            except ray.exceptions.RayActorError:  # the runner is gone (its node went): look it up, once
                _runner.clear()
                ray.get(runner().place.remote(store.url, job_id, env, options), timeout=60)
        except Exception as err:  # e.g. nodes that cannot import the lab: not this checkout's environment
            first = (str(err).strip().splitlines() or [""])[0][:160]
            raise LabError(f"The Ray cluster at {self.url} did not take the job ({type(err).__name__}: {first}); "
                           "its nodes must run this checkout's .venv") from None


def _needs_cuda(job: dict) -> bool:
    from .queue import needs_cuda
    return needs_cuda(job)


_runner: list = []  # this process's handle on it: looking the actor up again costs seconds through a client


def runner():
    """The one detached JobRunner of the cluster (made by the first submit; it outlives every client)."""
    with _connecting:
        if not _runner:
            _runner.append(JobRunner.options(name=RUNNER, namespace=NAMESPACE, lifetime="detached",
                                             get_if_exists=True, num_cpus=0, max_concurrency=16).remote())
        return _runner[0]


def _check_shared_database(store: RunStore, url: str) -> None:
    """A SQLite file is on this machine only: refuse it when the cluster has nodes elsewhere (their jobs could not
    write their rows), instead of letting every job fail there."""
    if not store.url.startswith("sqlite"):
        return
    here = socket.gethostname()
    others = sorted({n["NodeManagerHostname"] for n in ray.nodes() if n["Alive"]} - {here})
    if others:
        raise LabError(f"The Ray cluster at {url} has nodes on other machines ({', '.join(others)}) that cannot "
                       f"open this machine's SQLite database: set COMPRESSION_LAB_DB to a PostgreSQL URL every node "
                       "reaches (README: Running on a Ray cluster).")


# ---- pins: jobs whose inputs live on one machine ------------------------------------------------------------------

def _runs_host(store: RunStore, params: dict) -> list[str]:
    """A re-time: the machines whose jobs made run B, then run A (where their latencies were measured)."""
    hosts = []
    for key in ("run_b", "run_a"):
        try:
            run = store.get_run(int(params[key]))
            if run.get("job_id"):
                hosts.append(worker_host(store.get_job(run["job_id"]).get("worker")))
        except (LabError, KeyError, TypeError, ValueError):
            continue
    return [h for h in hosts if h]


# job kind -> the machines it should run on, best first (its inputs are there); other kinds run anywhere
PINS: dict[str, Callable[[RunStore, dict], list[str]]] = {
    "speedup": _runs_host,
    "upload": lambda store, params: [socket.gethostname()],       # the uploaded file is in this lab folder
    "import_data": lambda store, params: [socket.gethostname()],
}


def pinned_node(store: RunStore, job: dict) -> str | None:
    """The Ray node id a job must run on, or None. A machine no longer in the cluster pins nothing: the job runs
    anywhere, and its figures name the machine they were taken on."""
    pin = PINS.get(job["kind"])
    if pin is None:
        return None
    alive = [n for n in ray.nodes() if n["Alive"]]
    here = ray.get_runtime_context().get_node_id() if _in_task() else None
    for host in pin(store, job.get("params") or {}):
        nodes = [n["NodeID"] for n in alive if n["NodeManagerHostname"] == host]
        if nodes:  # this task's own node first: a demo's re-timings stay on the node that measured its runs
            return here if here in nodes else nodes[0]
    return None


def _in_task() -> bool:
    try:
        return ray.get_runtime_context().get_task_id() is not None
    except Exception:
        return False


# ---- the task --------------------------------------------------------------------------------------------------

def claim(store: RunStore, job_id: int) -> dict | None:
    """Take the job's row: a queued one, or one whose earlier attempt of this same task died (a Ray retry: only a
    Ray task writes `ray:` into a row, and only this task runs this job on the cluster). None: another worker
    took it, it was cancelled, or it has ended."""
    now = time.time()
    rows = jobs_table.c
    retry = sa.and_(rows.status.in_(("running", "interrupted")), rows.worker.like(f"{WORKER_PREFIX}%"))
    with store.engine.begin() as conn:
        claimed = conn.execute(jobs_table.update()
                               .where(rows.id == job_id, rows.cancel_requested.is_(False),
                                      sa.or_(rows.status == "queued", retry))
                               .values(status="running", worker=ray_worker_name(), started_at=now, heartbeat_at=now,
                                       finished_at=None, error=None)).rowcount
    return store.get_job(job_id) if claimed == 1 else None


def _node_cpus() -> float:
    node = ray.get_runtime_context().get_node_id()
    return next((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["NodeID"] == node), 0.0)


@ray.remote
def run_job_task(db_url: str, job_id: int, env: dict, cpus: int) -> str:
    """One job, on whichever node Ray chose. Returns its final status (or why it did not run)."""
    import torch

    from .queue import run_job
    os.environ.update(env)  # the submitter's artifact store and cluster: a follow-up job goes to the cluster too
    store = RunStore(db_url)
    job = claim(store, job_id)
    if job is None:
        return f"not run here: {store.get_job(job_id)['status']}"
    torch.set_num_threads(max(1, int(cpus)))
    special = CLUSTER_RUNS.get(job["kind"])
    run = special(db_url, job_id, env, cpus) if special else None
    # the latency of a run is "exclusive" only when this task holds every CPU of its node: no other job beside it
    try:
        return run_job(store, job, exclusive=cpus >= _node_cpus(), run=run)
    except KeyboardInterrupt:  # ray.cancel, when the job did not stop at its own cancel check
        store.finish_job(job_id, "cancelled", error=CANCELLED)
        return "cancelled"


# ---- a search: trials as tasks ----------------------------------------------------------------------------------

@ray.remote
def join_search(db_url: str, job_id: int, study: str, env: dict, cpus: int) -> int:
    """Take trials of the job's study (created by the job's own task) until it holds its budget; returns how many
    trials the study has finished."""
    import torch

    from ..labs.context import RunContext
    from ..labs.search import finished_trials, wait_for_study, work
    os.environ.update(env)
    torch.set_num_threads(max(1, int(cpus)))
    store = RunStore(db_url)
    found, config = wait_for_study(study, store, JOIN_WAIT_S)
    last = [0.0, False]

    def cancelled() -> bool:  # the job's Cancel stops this task's trials too
        if not last[1] and time.monotonic() - last[0] > 0.5:
            last[0] = time.monotonic()
            last[1] = store.get_job(job_id)["status"] not in ("queued", "running") or \
                bool(store.get_job(job_id)["cancel_requested"])
        return last[1]
    work(found, config, RunContext(store=store, job_id=job_id, should_cancel=cancelled, exclusive=False))
    return finished_trials(found)


def _search_on_cluster(db_url: str, job_id: int, env: dict, cpus: int):
    """The search job's run: its study named after the job (a Ray retry resumes it), trial tasks beside it once the
    study exists (a task waiting for it would hold a CPU while the job measures the zoo), and the summary written
    once they all finished, so the job's result counts every trial."""
    def run(params: dict, ctx) -> dict:
        from ..labs.catalog import LABS
        from ..labs.search import load_config, study_summary
        from .queue import JOB_KINDS, job_result, needs_cuda
        study = params.get("study") or f"search-job{job_id}"
        params = {**params, "study": study}
        slots = int(ray.cluster_resources().get("CPU", 1) // max(cpus, 1))
        count = max(0, min(slots, params["trials"]) - 1)  # the job's own task runs trials too
        task = join_search.options(num_cpus=cpus, num_gpus=1 if needs_cuda({"params": params}) else 0,
                                   max_retries=MAX_RETRIES)
        joiners, stop = [], threading.Event()

        def start_when_created() -> None:
            while not stop.wait(0.5):
                try:
                    load_config(study, ctx.store)
                except LabError:  # not created yet
                    continue
                joiners.extend(task.remote(db_url, job_id, study, env, cpus) for _ in range(count))
                return
        starter = threading.Thread(target=start_when_created, daemon=True)
        if count:
            starter.start()
        try:
            JOB_KINDS.get("search").run(params, ctx)
        except BaseException:
            stop.set()
            for ref in joiners:
                ray.cancel(ref)
            raise
        finally:
            stop.set()
            if count:
                starter.join()
        if joiners:
            ready, _ = ray.wait(joiners, num_returns=len(joiners), timeout=JOIN_WAIT_S)
            for ref in ready:
                try:
                    ray.get(ref)
                except Exception as err:  # a trial task that died: its trials were retried by the others
                    log.warning("a trial task of job %s ended with %s", job_id, err)
        # the trial tasks it started (the panel and the tests see that trials were spread)
        return {**job_result(LABS["search"], study_summary(study, ctx.store)), "trial_tasks": len(joiners)}
    return run


# job kind -> make(db_url, job_id, env, cpus) -> run(params, ctx): how that kind runs on a cluster when it differs
CLUSTER_RUNS: dict[str, Callable] = {"search": _search_on_cluster}


# ---- the owner -------------------------------------------------------------------------------------------------

@ray.remote
class JobRunner:
    """Submits job tasks, holds their refs, and turns their ends into the jobs table's words: a task that died
    after its retries -> "interrupted" with Ray's reason; a Cancel in the row -> ray.cancel when the job does not
    stop by itself."""

    def __init__(self):
        self.tasks: dict[tuple[str, int], dict] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._watch, daemon=True).start()

    def place(self, db_url: str, job_id: int, env: dict, options: dict) -> str:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        node = options.get("node")
        strategy = NodeAffinitySchedulingStrategy(node, soft=False) if node else "DEFAULT"
        ref = run_job_task.options(num_cpus=options["num_cpus"], num_gpus=options["num_gpus"],
                                   max_retries=options["max_retries"], retry_exceptions=False,
                                   scheduling_strategy=strategy).remote(db_url, job_id, env, options["num_cpus"])
        with self.lock:
            self.tasks[(db_url, job_id)] = {"ref": ref, "cancel_seen": None, "cancelled": 0,
                                            "retries": options["max_retries"]}
        return ref.task_id().hex()

    def placed(self) -> list[int]:
        with self.lock:
            return [job_id for _, job_id in self.tasks]

    def _watch(self) -> None:
        while True:
            with self.lock:
                items = list(self.tasks.items())
            if items:
                try:
                    self._check(items)
                except Exception:  # the watcher must outlive a database hiccup
                    log.exception("job watcher")
            time.sleep(0.5)

    def _check(self, items: list) -> None:
        refs = [t["ref"] for _, t in items]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        done = set(done)
        open_jobs: dict[str, list[int]] = {}
        for (db_url, job_id), task in items:
            if task["ref"] in done:
                self._ended(RunStore(db_url), job_id, task)
                with self.lock:
                    self.tasks.pop((db_url, job_id), None)
            else:
                open_jobs.setdefault(db_url, []).append(job_id)
        for db_url, ids in open_jobs.items():  # one query per database for every job still out there
            with RunStore(db_url).engine.connect() as conn:
                rows = conn.execute(sa.select(jobs_table.c.id, jobs_table.c.status, jobs_table.c.cancel_requested)
                                    .where(jobs_table.c.id.in_(ids), jobs_table.c.cancel_requested.is_(True)))
                for row in rows:
                    self._maybe_cancel(row.id, row.status, self.tasks[(db_url, row.id)])

    def _ended(self, store: RunStore, job_id: int, task: dict) -> None:
        from ray.exceptions import TaskCancelledError
        try:
            ray.get(task["ref"])
            return  # the task wrote the job's end itself
        except TaskCancelledError:
            _end_if_open(store, job_id, "cancelled", CANCELLED)
        except Exception as err:  # its worker or node died, and so did its retries
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            retried = f", and so did its {task['retries']} retries" if task["retries"] else " (no retries asked)"
            _end_if_open(store, job_id, "interrupted", f"The Ray worker running it died{retried} "
                                                       f"({type(err).__name__}: {reason}). Finished results are kept.")

    @staticmethod
    def _maybe_cancel(job_id: int, status: str, task: dict) -> None:
        """A Cancel in the row of job `job_id`: stop its task when the job does not stop by itself."""
        now = time.monotonic()
        task["cancel_seen"] = task["cancel_seen"] or now
        waited = now - task["cancel_seen"]
        if status in ("queued", "cancelled"):
            if not task["cancelled"]:  # still waiting for resources: take it off the cluster's queue
                ray.cancel(task["ref"])
                task["cancelled"] = 1
        elif waited > FORCE_AFTER_S and task["cancelled"] < 2:
            ray.cancel(task["ref"], force=True)  # a job stuck in one long call: stop its worker
            task["cancelled"] = 2
        elif waited > CANCEL_GRACE_S and task["cancelled"] < 1:
            ray.cancel(task["ref"])  # KeyboardInterrupt in the task: it writes "cancelled"
            task["cancelled"] = 1


def _end_if_open(store: RunStore, job_id: int, status: str, error: str) -> None:
    """End a job whose task cannot (it died, or was stopped before it could write): only while the row is still
    open, or marked interrupted by a watcher that knew less (its reason is replaced by Ray's)."""
    with store.engine.begin() as conn:
        conn.execute(jobs_table.update().where(jobs_table.c.id == job_id,
                                               jobs_table.c.status.in_(("queued", "running", "interrupted")))
                     .values(status=status, error=error, finished_at=time.time(), eta_s=0.0))
