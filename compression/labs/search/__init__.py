"""The search lab: small hardware-aware architecture searches on Optuna; the study lives in the run database.

Objectives: a validation quality and one cost (minimise). On image data (image.py) the quality is validation
accuracy (maximise) and the cost one of search.strategies.OBJECTIVES; on text (text.py) it is validation
perplexity (minimise) and the cost one of LM_OBJECTIVES. What differs by task is one DataKind in KINDS, looked up
by the task of the study's data set (kinds.py); the study, its workers, resuming (study.py) and the summary
(run.py) are shared. Every trial is a stored run.

More processes or machines join with `python -m compression worker --study NAME --db URL`; trials spread over
all of them. A study is resumable: a killed worker's trial is failed by the heartbeat and
retried, and `trials` counts finished trials, so a kill -9 costs time, not budget.
"""
from __future__ import annotations

from .kinds import KINDS, DataKind, kind_of
from .run import create_study, list_studies, run_search, study_summary, summarize, work
from .study import (FINISHED, _storage, finished_trials, load_config, optimize_until, reclaim_dead_trials,
                    start_trial, wait_for_study)

__all__ = ["run_search", "create_study", "load_config", "wait_for_study", "finished_trials", "work", "study_summary",
           "list_studies", "summarize", "reclaim_dead_trials", "FINISHED", "DataKind", "start_trial",
           "optimize_until", "KINDS", "kind_of", "_storage"]
