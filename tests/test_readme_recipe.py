"""The README's CIFAR-10 recipe, run as written (one epoch instead of 200, this machine's device) on tiny
CIFAR-10 files, so the documented command keeps working when the flags change."""
import json
import shlex

import torch

from compression.cli import main

from conftest import ROOT
from test_data import write_tiny_cifar


def readme_recipe() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    line = next(line for line in lines if line.startswith("$py -m compression train --dataset cifar10"))
    return shlex.split(line)[3:]  # after "$py -m compression"


def with_value(args: list[str], flag: str, value: str) -> list[str]:
    at = args.index(flag)
    return args[:at + 1] + [value] + args[at + 2:]


def test_the_readme_cifar_recipe_runs_as_written(tmp_path, monkeypatch, lab_home, capsys):
    write_tiny_cifar(tmp_path, monkeypatch, per_batch=8)
    args = with_value(with_value(readme_recipe(), "--epochs", "1"), "--data-dir", str(tmp_path))
    if not torch.cuda.is_available():
        args = with_value(args, "--device", "cpu")
    assert main([*args, "--latency-batch", "2", "--quiet"]) == 0
    run = json.loads(capsys.readouterr().out)
    config = run["config"]
    assert run["dataset"] == "cifar10" and run["model"]["name"] == "resnet18" and run["n_test"] == 6
    assert (config["optimizer"], config["lr"], config["weight_decay"], config["batch_size"], config["augment"],
            config["schedule"]) == ("sgd", 0.1, 5e-4, 128, True, "cosine")
    assert 0 <= run["accuracy"] <= 1
