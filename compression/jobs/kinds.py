"""The built-in job kinds: one per lab, made from the lab catalogue. A job's params are the lab's config as a
dict, checked by the same dataclass as the CLI's flags at submit time (an unknown key is an error)."""
from __future__ import annotations

from ..labs.catalog import LABS, Lab
from .placers import submit
from .queue import JobContext, job_result, register_job


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
