"""Where results live: runs, jobs and model files. Used by labs and jobs, never by core or techniques."""
from .runs import RunStore, worker_alive, worker_name

__all__ = ["RunStore", "worker_alive", "worker_name"]
