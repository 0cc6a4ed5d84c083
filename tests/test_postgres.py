"""The run store (lineage, concurrent writers and job claims) and the CLI, against a real PostgreSQL server."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compression import RunStore

from postgres_server import PostgresServer


@pytest.fixture(scope="module")
def pg_url():
    try:
        server = PostgresServer()
    except (FileNotFoundError, subprocess.CalledProcessError) as err:
        if os.environ.get("COMPRESSION_LAB_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here (CI) but could not start: {err}")
        pytest.skip(f"no PostgreSQL server here ({err}); .ci/run installs Debian's postgresql")
    yield server.url
    server.stop()


def _workers(role, url, *args, count):
    script = Path(__file__).with_name("store_worker.py")
    procs = [subprocess.Popen([sys.executable, str(script), role, url, *map(str, args)], stdout=subprocess.PIPE,
                              text=True) for _ in range(count)]
    return [(p.communicate(timeout=180)[0], p.returncode) for p in procs]


def test_store_on_postgres_round_trips_lineage_and_concurrent_writers(pg_url, tmp_path):
    import json
    store = RunStore(pg_url)
    base = store.add_run("train", "digits", {"name": "lenet5", "args": {}}, {}, record={"accuracy": 0.98})
    child = store.add_run("prune", "digits", {"name": "lenet5", "args": {}}, {}, parent_id=base, record={"accuracy": 0.97})
    assert [r["id"] for r in store.lineage(child)] == [base, child]
    results = _workers("writer", pg_url, 20, count=3)
    assert all(code == 0 for _, code in results)
    ids = [i for out, _ in results for i in json.loads(out)]
    assert len(set(ids)) == 60 and {r["id"] for r in store.list_runs()} >= set(ids)
    jobs = [store.submit_job("train", {"n": i}) for i in range(20)]
    claimers = _workers("claimer", pg_url, tmp_path / "barrier", 3, count=3)  # they start together
    assert all(code == 0 for _, code in claimers)
    parts = [json.loads(out) for out, _ in claimers]
    assert sorted(i for part in parts for i in part) == jobs  # every job once, none twice
    assert sum(1 for part in parts if part) >= 2, parts  # the claims really raced: more than one got jobs


def test_cli_train_takes_the_plain_postgresql_url_the_readme_shows(pg_url, lab_home, capsys):
    """(Two search workers on PostgreSQL, with pages reading beside them: tests/test_concurrency.py.)"""
    import json
    from test_cli import in_process
    assert pg_url.startswith("postgresql://")
    code, out, err = in_process(capsys, "train", "--dataset", "synthetic", "--model", "mlp:hidden=8", "--epochs", "1",
                                "--latency-batch", "8", "--db", pg_url, "--json", "--quiet")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    assert RunStore(pg_url).get_run(run_id)["status"] == "done"
