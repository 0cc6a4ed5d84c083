"""Every lab, registered once: its config class, the function that runs it, and how its result lists the runs
it stored. The job queue makes one job kind per lab and the CLI one verb per lab from this table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry
from .baseline import run_train
from .configs import (BaselineConfig, DemoConfig, DistillLabConfig, ImportDataConfig, PipelineLabConfig,
                      PruneLabConfig, QuantizeLabConfig, RetimeConfig, SearchConfig, UploadConfig)
from .io.data_upload import run_import_data
from .demo import run_demo
from .distill import run_distill
from .pipeline import run_pipeline
from .plan import PlanConfig, plan_created, plan_rows, plan_summary, run_plan
from .prune import run_prune
from .quantize import run_quantize
from .search import run_search
from .speed import run_retime
from .io.upload import run_upload


def _ids(records: list[dict]) -> list[int]:
    return [r["run_id"] for r in records if r.get("run_id") is not None]


@dataclass(frozen=True)
class Lab:
    config: type
    run: Callable                                  # run(config, ctx) -> result dict
    rows: Callable[[dict], list[dict]]             # the records the CLI prints as a table (parent first)
    created: Callable[[dict], list[int]]           # the run ids the result stored
    summary: Callable[[dict], dict] = lambda out: {}   # what a finished job keeps besides run ids
    follow_ups: Callable[[dict], list[tuple[str, dict]]] = lambda out: []  # (job kind, params) queued after it


def _students(out: dict) -> list[dict]:
    """A distill study's student runs: alone, distilled, and (language models) pruned from the teacher, distilled."""
    return out["student_plain"] + out["student_kd"] + out.get("student_pruned_kd", [])


LABS: Registry[Lab] = Registry("lab")
LABS.register("train", Lab(BaselineConfig, run_train, lambda out: [out], lambda out: [out["run_id"]]),
              about="train (or load) a baseline")
LABS.register("prune", Lab(PruneLabConfig, run_prune, lambda out: [out["baseline"]] + out["results"],
                           lambda out: _ids(out.get("controls", []) + out["results"]),  # a child's fair control too
                           lambda out: {"sensitivity": out.get("sensitivity")}),
              about="pruning sweep")
LABS.register("quantize", Lab(QuantizeLabConfig, run_quantize, lambda out: [out["baseline"]] + out["results"],
                              lambda out: _ids(out["results"]), lambda out: {"unavailable": out["unavailable"]}),
              about="quantization methods")
LABS.register("pipeline", Lab(PipelineLabConfig, run_pipeline, lambda out: [out["baseline"]] + out["stages"],
                              lambda out: _ids(out["stages"])), about="a chain of techniques")
LABS.register("distill", Lab(DistillLabConfig, run_distill,
                             lambda out: [out["teacher"]] + _students(out),
                             lambda out: _ids(out.get("control", []) + _students(out)),
                             lambda out: {"gap_closed": out["gap_closed"], "sweep": out["sweep"]}),
              about="KD students next to plain ones")
LABS.register("search", Lab(SearchConfig, run_search, lambda out: [t for t in out["trials"] if "accuracy" in t],
                            lambda out: _ids(out["trials"]),
                            lambda out: {k: out[k] for k in ("study", "pareto", "hypervolume", "zoo_hypervolume")}),
              about="architecture search")
LABS.register("demo", Lab(DemoConfig, run_demo, lambda out: out["stages"], lambda out: out["run_ids"],
                          lambda out: {"stages": out["stages"], "wall_s": out["wall_s"],
                                       "retimed_pairs": len(out["retime"])},
                          lambda out: [("speedup", params) for params in out["retime"]]),
              about="the teaching demo: every lab on digits")
LABS.register("upload", Lab(UploadConfig, run_upload, lambda out: [out], lambda out: [out["run_id"]]),
              about="measure an uploaded model")
LABS.register("import_data", Lab(ImportDataConfig, run_import_data, lambda out: [out], lambda out: [],
                                 lambda out: {"dataset": out["dataset"], "label": out["label"]}),
              about="unpack and check an uploaded zip of an image folder")
LABS.register("speedup", Lab(RetimeConfig, run_retime, lambda out: [out], lambda out: [],
    lambda out: {k: out[k] for k in ("speedup", "ci95", "noisy", "loaded", "imprecise", "load", "processes",
                                     "machine", "relation", "run_a", "run_b")}),
    about="re-time two runs together on this machine")
LABS.register("plan", Lab(PlanConfig, run_plan, plan_rows, plan_created, plan_summary), about="name a target, get a model")
