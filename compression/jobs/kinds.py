"""The built-in job kinds: one per lab, made from the lab catalogue. A job's params are the lab's config as a
dict, checked by the same dataclass as the CLI's flags at submit time (an unknown key is an error)."""
from __future__ import annotations

from ..labs.catalog import LABS, Lab
from .queue import JobContext, register_job, submit


def job_result(lab: Lab, out: dict, follow_ups: list[int] = ()) -> dict:
    """What a finished job keeps: the run ids its lab stored, the lab's summary, and the jobs it queued after it."""
    result = {"run_ids": lab.created(out), **lab.summary(out)}
    if follow_ups:  # the demo's re-timings: the panel shows them after it
        result["follow_up_jobs"] = list(follow_ups)
    return result


def _register(name: str, lab: Lab) -> None:
    def validate(params: dict) -> dict:
        return lab.config.from_dict(params).to_dict()

    def run(params: dict, ctx: JobContext) -> dict:
        out = lab.run(lab.config.from_dict(params), ctx.run_context())
        # placed like their job (a cluster's job's follow-ups go to the cluster); here, the worker running it
        # takes them next
        follow_ups = [submit(ctx.store, kind, follow, start_worker=False) for kind, follow in lab.follow_ups(out)]
        return job_result(lab, out, follow_ups)

    register_job(name, validate=validate)(run)


for _name, _lab in LABS.items():
    _register(_name, _lab)
