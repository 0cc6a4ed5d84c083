"""Background jobs: the queue and worker (queue.py), the built-in kinds, one per lab (kinds.py), and where a job runs
(placers.py: this machine's worker, or a Ray cluster by URL, ray_cluster.py, imported only then)."""
from . import kinds  # noqa: F401  (registers the built-in kinds)
from .placers import submit
from .queue import (JOB_KINDS, JobContext, Serves, ensure_worker, job_kinds, needs_cuda, recover_interrupted,
                    register_job, run_job, worker_loop, worker_running)

__all__ = ["JOB_KINDS", "JobContext", "Serves", "ensure_worker", "job_kinds", "needs_cuda", "recover_interrupted",
           "register_job", "run_job", "submit", "worker_loop", "worker_running"]
