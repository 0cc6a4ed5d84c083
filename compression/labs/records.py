"""The flat record the CLI prints and every chart reads: a stored run's metadata plus its measurement."""
from __future__ import annotations

from ..core.models import format_spec
from ..tasks import task_of


def as_record(run: dict) -> dict:
    out = {"run_id": run["id"], "kind": run["kind"], "parent_id": run["parent_id"], "job_id": run.get("job_id"),
           "status": run["status"],
           "dataset": run["dataset"], "model": run["model"], "model_name": format_spec(run["model"]),
           "method": run.get("method"), "label": run.get("label"), "config": run["config"]}
    out.update(run.get("record") or {})
    out["task"] = task_of(run).name  # every record says its task; one stored before records did, its data set's
    # the stored test-set answers (up to n_test x classes numbers) stay in the store: `diff` reads them there
    extra = run.get("extra") or {}
    out.update({k: v for k, v in extra.items() if k != "predictions"})
    # answers can be compared (Compare's behaviour section) when stored, or recomputable from stored weights
    out["has_answers"] = bool(run.get("weights_path") or extra.get("has_answers") or extra.get("predictions"))
    if run.get("error"):
        out["error"] = run["error"]
    return out


def run_ids(records: list[dict]) -> list[int]:
    return [r["run_id"] for r in records]
