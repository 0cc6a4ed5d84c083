"""Two page sessions reading while two search workers write, on one store: no "database is locked", nothing
lost. Run on SQLite (the default) and on PostgreSQL."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from compression import RunStore
from compression.labs.configs import SearchConfig
from compression.labs.search import create_study
from conftest import ROOT, cli_env

HERE = Path(__file__).resolve().parent
TRIALS = 4  # enough for both workers to take some while the pages read


def _concurrent_search_and_readers(url: str, home) -> dict:
    store = RunStore(url)
    config = SearchConfig(dataset="synthetic", space="mlp", trials=TRIALS, epochs=1, latency_batch=8)
    create_study(config, store, "busy")
    env = {**cli_env(home), "COMPRESSION_LAB_DB": url}
    stop_file = Path(home) / "workers-done"
    start = time.monotonic()
    workers = [subprocess.Popen([sys.executable, "-m", "compression", "worker", "--study", "busy", "--quiet", "--json"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    # readers render until the workers are done (and at least twice a page), so every write has readers beside it
    readers = [subprocess.Popen([sys.executable, str(HERE / "page_reader.py"), str(stop_file)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=600) for p in workers]
        stop_file.parent.mkdir(parents=True, exist_ok=True)
        stop_file.touch()
        outputs += [p.communicate(timeout=600) for p in readers]
    finally:
        for proc in workers + readers:
            proc.kill()
    for proc, (_, err) in zip(workers + readers, outputs):
        assert proc.returncode == 0, err[-2000:]
        assert "database is locked" not in err
    pages = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs[2:]]
    trials = optuna.load_study(study_name="busy", storage=store.url).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    stored = {r["id"] for r in store.list_runs(kind="search_trial")}
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    return {"pages": pages, "complete": complete, "failed": failed, "stored": stored,
            "wall_s": time.monotonic() - start}


def _check(result) -> None:
    assert all(p["renders"] >= 4 and p["stopped"] and p["errors"] == [] for p in result["pages"]), result["pages"]
    # both workers may start a last trial at once (Optuna's budget is checked between trials): 4 or 5
    assert TRIALS <= len(result["complete"]) <= TRIALS + 1
    # no trial lost to the store: two workers creating a fresh database's tables at once once failed trial 0
    assert not result["failed"], [t.system_attrs for t in result["failed"]]
    # every finished trial's run is there, once (a trial that started as the budget ran out and stopped has none)
    assert {t.user_attrs["run_id"] for t in result["complete"]} == result["stored"]
    assert len({t.user_attrs["worker"] for t in result["complete"]}) == 2


def test_sessions_and_workers_share_sqlite(lab_home):
    _check(_concurrent_search_and_readers(RunStore().url, lab_home))


def test_sessions_and_workers_share_postgres(lab_home):
    from postgres_server import PostgresServer
    try:
        server = PostgresServer()
    except (FileNotFoundError, subprocess.CalledProcessError) as err:
        if os.environ.get("COMPRESSION_LAB_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here (CI) but could not start: {err}")
        pytest.skip(f"no PostgreSQL server here ({err})")
    try:
        _check(_concurrent_search_and_readers(server.url, lab_home))
    finally:
        server.stop()
