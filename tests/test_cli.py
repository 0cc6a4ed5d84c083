"""`python -m compression` as a user runs it: a real process, real stdout and stderr."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, cli_env

FIELDS = ["run_id", "kind", "parent_id", "dataset", "model", "config", "accuracy", "accuracy_ci", "params",
          "nonzero_params", "size_bytes", "gzip_bytes", "macs", "latency"]


def cli(home, *args):
    return subprocess.run([sys.executable, "-m", "compression", *args], cwd=ROOT, env=cli_env(home),
                          capture_output=True, text=True, timeout=300)


def test_train_lenet5_on_digits_meets_the_bar_and_prints_the_record(lab_home):
    result = cli(lab_home, "train", "--dataset", "digits", "--model", "lenet5", "--epochs", "10",
                 "--seed", "0", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)  # stdout is the JSON alone
    for field in FIELDS:
        assert field in record
    assert record["accuracy"] >= 0.97
    lo, hi = record["accuracy_ci"]
    assert lo <= record["accuracy"] <= hi
    assert 0 < record["nonzero_params"] <= record["params"]
    assert record["model"] == {"name": "lenet5", "args": {}} and record["kind"] == "train"
    for entry in record["latency"]:
        assert entry["median_ms"] > 0 and {"device", "batch_size", "iqr_ms", "threads"} <= set(entry)
    assert {e["batch_size"] for e in record["latency"]} == {1, 256}

    again = cli(lab_home, "train", "--dataset", "digits", "--model", "lenet5", "--epochs", "10",
                "--seed", "0", "--json")
    assert json.loads(again.stdout)["run_id"] == record["run_id"]  # cached: the stored run comes back

    listed = cli(lab_home, "runs", "list", "--json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [record["run_id"]]
    table = cli(lab_home, "runs", "list")
    assert "lenet5" in table.stdout and "accuracy" in table.stdout


@pytest.mark.parametrize("args,message", [
    (["train", "--model", "vgg99"], "Unknown model 'vgg99'"),
    (["train", "--model", "cnn:depth=2"], "Known: width"),
    (["train", "--dataset", "imagenet"], "Unknown dataset"),
    (["train", "--epochs", "many"], "invalid int value"),
    (["train", "--lr", "-1"], "learning rate"),
    (["train", "--dataset", "mnist"], "files not found"),
    (["runs", "show", "999"], "No run with id 999"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_nonzero_with_one_line(lab_home, args, message):
    result = cli(lab_home, *args, "--json") if args[0] != "frobnicate" else cli(lab_home, *args)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_registry_lists_models_and_datasets(lab_home):
    payload = json.loads(cli(lab_home, "registry", "--json").stdout)
    assert "digits" in payload["datasets"] and payload["models"]["cnn"]["args"] == {"width": 32}
