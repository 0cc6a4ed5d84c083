"""The artifact store behind a URL (#24): runs keep a key, not a machine's path, so a trial run by a worker in
another lab folder (another machine) loads here once both share the database and the store; an older run's absolute
path still loads. The store is a shared local folder or s3:// on a real S3-compatible server (SeaweedFS, started
by tests/s3_server.py on loopback and reached through the standard AWS_* variables, as a user's machines reach
theirs)."""
import shutil
import subprocess
import sys
import uuid

import pytest
import torch
from torch import nn

from compression import LabError, RunStore, SearchConfig
from compression.labs.configs import RetimeConfig
from compression.labs.diff import diff_runs
from compression.labs.io.export import export_run
from compression.labs.search import create_study, study_summary
from compression.labs.speed import retime
from compression.store.artifacts import KEY_PREFIX, load_run_model, save_model, weights_dir
from conftest import ROOT, cli_env


@pytest.fixture(params=["folder", "s3"])
def shared_store(request, tmp_path):
    """(url, env) of an artifact store two lab folders share: a local folder (a shared mount), or a prefix on the S3
    test server with the AWS_* variables a worker process needs for it."""
    if request.param == "folder":
        return str(tmp_path / "shared-artifacts"), {}
    return request.getfixturevalue("s3_artifacts")


def test_a_search_run_by_a_worker_in_another_lab_folder_is_usable_here_after_that_folder_is_gone(
        lab_home, tmp_path, monkeypatch, shared_store):
    import fsspec
    shared, store_env = shared_store
    monkeypatch.setenv("COMPRESSION_LAB_ARTIFACTS", shared)
    store = RunStore()  # lab folder A: its database is the one both share
    home_b = tmp_path / "lab-b"
    worker = subprocess.Popen([sys.executable, "-m", "compression", "worker", "--study", "across", "--db", store.url,
                               "--wait", "60", "--quiet", "--json"], cwd=ROOT,
                              env={**cli_env(home_b), **store_env, "COMPRESSION_LAB_ARTIFACTS": shared},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    create_study(SearchConfig(dataset="synthetic", space="mlp", strategy="random", objective="params", trials=3,
                              epochs=1, latency_batch=8), store, "across")  # B's worker was waiting for it
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err
    assert home_b.exists() and not list(home_b.rglob("*.pt"))  # B had its own folder, its model files not in it
    shutil.rmtree(home_b)  # ... and it is gone, as when that machine is unreachable
    trials = [t for t in study_summary("across", store)["trials"] if t["status"] == "complete"]
    assert len(trials) == 3
    best = max(trials, key=lambda t: t["val_accuracy"])["run_id"]
    fs, root = fsspec.core.url_to_fs(shared)
    in_store = {path.rsplit("/", 1)[-1] for path in fs.ls(root, detail=False)}
    for t in trials:
        run = store.get_run(t["run_id"])
        assert run["weights_path"].startswith(KEY_PREFIX) and str(home_b) not in run["weights_path"]
        assert run["weights_path"][len(KEY_PREFIX):] in in_store  # B wrote it there
        export_run(store, run["id"], "state_dict", tmp_path / f"run{run['id']}.pt")
        diff = diff_runs(store, best, run["id"])  # needs both models: the best and this one
        assert diff["n_test"] > 0 and (run["id"] != best or diff["flip_rate"] == 0)
        timing = retime(store, RetimeConfig(run_a=best, run_b=run["id"], batch_size=8, time_budget=0, rounds=5))
        assert timing["ci95"][0] <= timing["speedup"] <= timing["ci95"][1]


def test_keys_follow_the_store_url_and_an_older_runs_absolute_path_still_loads(lab_home, tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    monkeypatch.setenv("COMPRESSION_LAB_ARTIFACTS", str(tmp_path / "store-1"))
    key = save_model(model, torch.zeros(1, 3))
    assert key.startswith(KEY_PREFIX) and (tmp_path / "store-1" / key[len(KEY_PREFIX):]).exists()
    assert torch.equal(load_run_model(key).weight, model.weight)
    monkeypatch.setenv("COMPRESSION_LAB_ARTIFACTS", str(tmp_path / "store-2"))  # another store: one sentence
    with pytest.raises(LabError, match="is not in the artifact store .*store-2"):
        load_run_model(key)
    legacy = weights_dir() / "old-run.pt"  # what runs stored before: an absolute name in this lab folder
    torch.save(model, legacy)
    assert torch.equal(load_run_model(str(legacy)).weight, model.weight)


@pytest.mark.parametrize("case", [
    "wrong-secret-write",
    "wrong-secret-read",
    "no-credentials-write",
    "absent-bucket-read",
    "absent-bucket-write",
])
def test_an_s3_store_that_refuses_or_is_absent_is_one_sentence(lab_home, s3_artifacts, monkeypatch, case):
    import s3fs
    url, _ = s3_artifacts
    model = nn.Linear(3, 2)
    monkeypatch.setenv("COMPRESSION_LAB_ARTIFACTS", url)
    key = save_model(model, torch.zeros(1, 3))  # with the right credentials: stored
    if case.startswith("absent-bucket"):
        url = f"s3://absent-{uuid.uuid4().hex[:12]}/runs"
        monkeypatch.setenv("COMPRESSION_LAB_ARTIFACTS", url)
    elif case.startswith("wrong-secret"):
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    else:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    s3fs.S3FileSystem.clear_instance_cache()  # the cached filesystem keeps the credentials it was made with
    with pytest.raises(LabError) as refused:
        if case.endswith("-write"):
            save_model(model, torch.zeros(1, 3))
        else:
            load_run_model(key)
    message = str(refused.value)
    assert "\n" not in message and url in message, message


@pytest.mark.parametrize("verb", [["worker", "--once"], ["worker", "--study", "s1"]])
def test_a_worker_given_an_absent_bucket_says_so_before_it_takes_work(lab_home, s3_artifacts, capsys, verb):
    from test_cli import assert_one_error_line, in_process
    absent = f"s3://absent-{uuid.uuid4().hex[:12]}/runs"
    RunStore().submit_job("train", {"dataset": "digits", "model": "mlp", "epochs": 1})
    assert_one_error_line(*in_process(capsys, *verb, "--artifacts", absent, "--json"), f"has no bucket absent-",
                          lab_home)
    assert RunStore().list_jobs()[0]["status"] == "queued"  # left for a worker that can store its model
