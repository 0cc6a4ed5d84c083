"""Where a queued job runs: a placer, chosen by the scheme of the cluster URL (`COMPRESSION_LAB_CLUSTER` or a verb's
`--cluster`). Without one, the lab folder's own worker (queue.py) takes it, as it always did; `ray://HOST:PORT`
submits it as a Ray task (ray_cluster.py, imported only then: a lab without a cluster never imports Ray).

Every placer keeps the job's row in the `jobs` table: progress, the job panel, Cancel and the "ran on MACHINE" line
read the row, whoever runs the job."""
from __future__ import annotations

from typing import Callable, Protocol

from ..errors import LabError
from ..paths import CLUSTER_ENV, cluster_url
from ..registry import Registry
from ..store import RunStore
from .queue import ensure_worker, validate_job


class Placer(Protocol):
    url: str | None

    def place(self, store: RunStore, job_id: int, start_worker: bool = True, cpus: int | None = None) -> None:
        """Make sure someone runs the queued job `job_id` (with `cpus` CPUs where the placer schedules by them); a
        LabError (one sentence) when it cannot."""

    def describe(self) -> str:
        """Where jobs go, in a few words (the sidebar's line)."""


class LocalPlacer:
    """The lab folder's worker on this machine, or any `worker` process that reaches the same database."""
    url = None

    def place(self, store: RunStore, job_id: int, start_worker: bool = True, cpus: int | None = None) -> None:
        if start_worker:  # one job at a time here: `cpus` is the machine's
            ensure_worker(store)

    def describe(self) -> str:
        return "Jobs run on this machine (the lab folder's worker)."


def _ray_placer(url: str) -> Placer:
    from .ray_cluster import RayPlacer  # imports ray: only when a ray:// cluster is asked for
    return RayPlacer(url)


# URL scheme -> placer(url); the empty scheme is "no cluster"
PLACERS: Registry[Callable[[str | None], Placer]] = Registry("cluster scheme")
PLACERS.register("", lambda url: LocalPlacer(), about="this machine")
PLACERS.register("ray", _ray_placer, about="a Ray cluster: ray://HOST:PORT, its client server's address")


def placer_for(url: str | None) -> Placer:
    scheme = url.split("://", 1)[0] if url and "://" in url else ("" if not url else None)
    if scheme is None or scheme not in PLACERS.names():
        known = ", ".join(f"{s}://" for s in PLACERS.names() if s)
        raise LabError(f"Bad cluster URL '{url}': write ray://HOST:PORT (known schemes: {known}), or leave "
                       f"{CLUSTER_ENV} unset to run jobs on this machine.")
    return PLACERS.get(scheme)(url)


def where_jobs_go(explicit: str | None = None) -> str:
    """One line for the sidebar: where a job submitted now would run (never connects, so it costs nothing)."""
    try:
        return placer_for(cluster_url(explicit)).describe()
    except LabError as err:
        return f"Jobs cannot be placed: {err}"


def submit(store: RunStore, kind: str, params: dict, start_worker: bool = True, cluster: str | None = None,
           cpus: int | None = None) -> int:
    """Validate now (bad input is reported at once), queue, and place the job (placers.py): by default make sure
    this lab folder's worker runs (`start_worker`); with a cluster (`cluster`, else $COMPRESSION_LAB_CLUSTER)
    submit it there, taking `cpus` CPUs. A cluster that is misspelt or cannot be reached is one sentence, and
    the job stays queued here, where a worker of this queue can still run it."""
    params = validate_job(kind, params)
    url = cluster_url(cluster)
    job_id = store.submit_job(kind, params)
    try:
        placer_for(url).place(store, job_id, start_worker, cpus=cpus)
    except LabError as err:
        raise LabError(f"{str(err).rstrip('.')}; job {job_id} stays queued here, for a worker of this queue "
                       f"(python -m compression worker) or jobs cancel {job_id}.") from None
    return job_id
