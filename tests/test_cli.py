"""`python -m compression` as a user runs it. A handful of cases start a real process (exit code, the one line on
stderr, the console script); the long bad-input table calls `main([...])` in this process with captured stdout
and stderr, since each real process spends 3-5 s importing torch before it says anything."""
import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compression.cli import build_parser, main
from conftest import ROOT, cli_env

FIELDS = ["run_id", "kind", "parent_id", "dataset", "model", "config", "accuracy", "accuracy_ci", "params",
          "nonzero_params", "size_bytes", "gzip_bytes", "macs", "latency"]


def cli(home, *args, timeout=300, program=(sys.executable, "-m", "compression")):
    return subprocess.run([*program, *args], cwd=ROOT, env=cli_env(home),
                          capture_output=True, text=True, timeout=timeout)


def in_process(capsys, *args) -> tuple[int, str, str]:
    """main(args) here: (exit code, stdout, stderr), as the console script would exit with them."""
    capsys.readouterr()  # drop what earlier steps printed
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse's own exits (--help) end this way
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_lenet5_on_digits_meets_the_bar_and_prints_the_record(lab_home, capsys):
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

    # the rest in this process: the same store, read back by the same main()
    code, out, _ = in_process(capsys, "train", "--dataset", "digits", "--model", "lenet5", "--epochs", "10",
                              "--seed", "0", "--json", "--quiet")
    assert code == 0 and json.loads(out)["run_id"] == record["run_id"]  # cached: the stored run comes back

    code, out, _ = in_process(capsys, "runs", "list", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [record["run_id"]]
    code, out, _ = in_process(capsys, "runs", "list")
    assert "lenet5" in out and "accuracy" in out


SYN = ["--dataset", "synthetic"]  # where a bug let a case through, it would train on tiny data, not digits
# what each lab verb needs besides the flag under test
NEEDS = {"train": [], "prune": ["--sparsity", "0.5"], "quantize": ["--method", "dynamic_int8"],
         "pipeline": ["--steps", "finetune:1"], "distill": ["--teacher", "mlp:hidden=8", "--student", "mlp:hidden=4"],
         "search": []}
TRAIN_FLAGS = {"--latency-batch": ("70000", "latency batch must be in [1, 65536], got 70000"),
               "--epochs": ("-3", "epochs must be in [0, 10000], got -3"),
               "--seed": ("-2", "seed must be at least 0, got -2"),
               "--batch-size": ("0", "batch size must be in [1, 65536], got 0"),
               "--lr": ("0", "lr must be in (0, 10], got 0")}
FROM = {"--from": ("0", "from run must be at least 1, got 0")}
# an out-of-range value for every numeric flag of every lab verb
NUMERIC = {
    "train": {**TRAIN_FLAGS, "--latency-batch": ("0", "latency batch must be in [1, 65536], got 0"),
              "--epochs": ("-1", "epochs must be in [0, 10000], got -1")},
    "prune": {**TRAIN_FLAGS, **FROM, "--sparsity": ("1.0", "sparsities must be in [0, 1), got 1"),
              "--finetune-epochs": ("-1", "finetune epochs must be in [0, 1000], got -1"),
              "--steps": ("0", "steps must be in [1, 100], got 0")},
    "quantize": {**TRAIN_FLAGS, **FROM, "--calibration-batches": ("0", "calibration batches must be in [1, 1000], got 0")},
    "pipeline": {**TRAIN_FLAGS, **FROM, "--calibration-batches": ("0", "calibration batches must be in [1, 1000], got 0")},
    "distill": {"--latency-batch": ("0", "latency batch must be in [1, 65536], got 0"),
                "--temperature": ("0", "temperatures must be in (0, 1000], got 0"),
                "--alpha": ("2", "alpha must be in [0, 1], got 2"),
                "--label-fraction": ("0", "label fraction must be in (0, 1], got 0"),
                "--seeds": ("-1", "seeds must be at least 0, got -1"),
                "--epochs": ("0", "epochs must be in [1, 10000], got 0"),
                "--teacher-epochs": ("0", "teacher epochs must be in [1, 10000], got 0")},
    "search": {"--latency-batch": ("0", "latency batch must be in [1, 65536], got 0"),
               "--trials": ("0", "trials must be in [1, 10000], got 0"),
               "--epochs": ("0", "epochs must be in [1, 1000], got 0"),
               "--max-params": ("0", "max params must be at least 1, got 0"),
               "--max-macs": ("-5", "max macs must be at least 1, got -5"),
               "--seed": ("-1", "seed must be at least 0, got -1")},
}
BAD_INPUT = [([verb, flag, value, *([] if flag in NEEDS[verb] else NEEDS[verb]), *SYN], message)
             for verb, flags in NUMERIC.items() for flag, (value, message) in flags.items()] + [
    # unknown names
    (["train", "--model", "vgg99"], "Unknown model 'vgg99'"),
    (["train", "--model", "cnn:depth=2"], "Known: width"),
    (["train", "--dataset", "imagenet"], "Unknown dataset 'imagenet'"),
    (["train", "--optimizer", "lion", *SYN], "Unknown optimizer 'lion'. Known: adam, sgd"),
    (["train", "--device", "tpu", *SYN], "Unknown device 'tpu'"),
    (["search", "--device", "tpu", *SYN], "Unknown device 'tpu'"),
    (["prune", "--sparsity", "0.5", "--method", "magic", *SYN], "Unknown pruning method 'magic'"),
    (["prune", "--sparsity", "0.5", "--schedule", "weekly", *SYN], "Unknown schedule 'weekly'"),
    (["quantize", "--method", "int3", *SYN], "Unknown quantization method 'int3'"),
    (["pipeline", "--steps", "distort:3", *SYN], "Unknown stage 'distort'"),
    (["pipeline", "--steps", "quantize:int3", *SYN], "Unknown quantization method 'int3'"),
    (["distill", "--teacher", "mlp:hidden=8", "--student", "vgg99", *SYN], "Unknown model 'vgg99'"),
    (["distill", "--teacher", "vgg99", "--student", "mlp:hidden=4", *SYN], "Unknown model 'vgg99'"),
    (["search", "--strategy", "annealing", *SYN], "Unknown strategy 'annealing'"),
    (["search", "--objective", "energy", *SYN], "Unknown objective 'energy'"),
    (["search", "--space", "transformer", *SYN], "Unknown space 'transformer'"),
    (["export", "1", "--format", "tflite", "--out", "model.tflite"], "invalid choice: 'tflite'"),
    (["jobs", "submit", "nonsense"], "Unknown job kind 'nonsense'"),
    (["runs", "frobnicate"], "invalid choice: 'frobnicate'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    # unknown ids
    (["runs", "show", "999"], "no run 999"),
    (["runs", "delete", "999"], "no run 999"),
    (["export", "999", "--out", "model.pt"], "no run 999"),
    (["prune", "--sparsity", "0.5", "--from", "999", *SYN], "no run 999"),
    (["quantize", "--method", "dynamic_int8", "--from", "999", *SYN], "no run 999"),
    (["distill", "--teacher", "999", "--student", "mlp:hidden=4", *SYN], "no run 999"),
    (["jobs", "cancel", "999999"], "no job 999999"),
    (["worker", "--study", "no-such-study"], "No study named 'no-such-study'"),
    # malformed values
    (["train", "--epochs", "many"], "epochs must be a whole number, got 'many'"),
    (["train", "--epochs", "2.5"], "epochs must be a whole number, got '2.5'"),
    (["train", "--lr", "nan"], "lr must be a number, got 'nan'"),
    (["train", "--lr", "-1"], "lr must be in (0, 10], got -1"),
    (["prune", "--sparsity", "abc", *SYN], "sparsities must be a list of numbers"),
    (["prune", "--sparsity", "0.5", "-0.1", *SYN], "sparsities must be in [0, 1), got -0.1"),
    (["train", "--model", "cnn:width"], "Bad model argument 'width' in 'cnn:width': write key=value"),
    (["train", "--model", "cnn:width=0"], "Model argument width=0 of 'cnn' must be at least 1"),
    (["train", "--model", "mlp:hidden=64-0"], "of 'mlp' must be at least 1"),
    (["pipeline", "--steps", "quantize:static_int8,prune:global_l1=0.5", *SYN], "Quantize must be the last stage"),
    (["pipeline", "--steps", "finetune:0", *SYN], "write finetune:EPOCHS with EPOCHS >= 1"),
    (["pipeline", "--steps", "prune:global_l1=lots", *SYN], "write prune:METHOD=SPARSITY"),
    (["pipeline", "--steps", "prune:global_l1=1.2", *SYN], "Sparsity must be in [0, 1), got 1.2"),
    (["pipeline", "--steps", ",", *SYN], "The pipeline is empty"),
    (["search", "--early-stop", *SYN], "single-objective"),
    (["search", "--space", "mlp", "--max-params", "10", *SYN], "No architecture in this space satisfies"),
    (["runs", "show", "abc"], "invalid int value: 'abc'"),
    (["jobs", "cancel", "abc"], "'abc' is not a job id"),
    (["jobs", "cancel"], "jobs cancel needs a job id"),
    (["jobs", "submit"], "jobs submit needs a kind"),
    (["jobs", "submit", "prune", "sparsities=1.7"], "sparsities must be in [0, 1), got 1.7"),
    (["jobs", "submit", "train", "epochs_teacher=3"], "Unknown parameter 'epochs_teacher' for train"),
    (["jobs", "submit", "train", "epochs"], "Bad job parameter 'epochs': write key=value"),
    (["jobs", "submit", "search", "trials=0"], "trials must be in [1, 10000], got 0"),
    (["prune", *SYN], "prune needs --sparsity (one or more, e.g. 0.5 0.7 0.9)"),
    (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["export", "1"], "the following arguments are required: --out"),
    (["train", "--dataset", "mnist"], "files not found"),
    (["speedup", "1", "2", "--time-budget", "-1"], "time budget must be in [0, 600], got -1"),
    (["speedup", "1", "2", "--rounds", "4"], "rounds must be in [5, 1000], got 4"),
    (["speedup", "998", "999"], "no run 998"),
    # database URLs
    (["runs", "list", "--db", "mysql://x"], "Unsupported database URL 'mysql://x'"),
    (["runs", "list", "--db", "nonsense"], "Bad database URL 'nonsense'"),
    (["runs", "list", "--db", "postgresql://u@127.0.0.1:1/db"], "Cannot open the database postgresql"),
    pytest.param(["train", "--device", "cuda", *SYN], "no CUDA device is available here",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")),
]
CLASS_NAME = re.compile(r"\w*(Error|Exception)\b")  # TypeError, LabError, KeyError, "Error:", Exception ...


def with_json(args: list[str]) -> list[str]:
    return [*args, *(["--json"] if args[0] != "frobnicate" else [])]


def assert_one_error_line(code: int, out: str, err: str, message: str, home: Path) -> None:
    assert code == 2, (code, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err  # one line, nothing else on stderr
    assert message in lines[0], err
    assert "Traceback" not in err and not CLASS_NAME.search(err), err
    assert not list(home.glob("weights/*")), "bad input must be refused before anything is trained"


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_arguments_exit_2_with_one_line(lab_home, capsys, args, message):
    assert_one_error_line(*in_process(capsys, *with_json(args)), message, lab_home)


# the same promise from real processes: the interpreter's exit code and nothing on stderr but the line (no warning
# or progress bar that an in-process run would hide), through `python -m` and through the installed console script
# (an out-of-range number: the console-script test below)
REAL_PROCESS_CASES = [(["train", "--model", "vgg99"], "Unknown model 'vgg99'"), (["runs", "show", "999"], "no run 999"),
                      (["frobnicate"], "invalid choice: 'frobnicate'"),
                      (["train", "--dataset", "mnist"], "files not found")]


@pytest.mark.parametrize("args,message", REAL_PROCESS_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_real_process_exits_2_with_one_line(lab_home, args, message):
    result = cli(lab_home, *with_json(args), timeout=120)
    assert_one_error_line(result.returncode, result.stdout, result.stderr, message, lab_home)


def test_the_console_script_exits_2_with_one_line_and_runs_a_verb(lab_home):
    script = shutil.which("compression", path=str(Path(sys.executable).parent))
    assert script, "the console script is installed beside this python (pip install -e . makes it)"
    bad = cli(lab_home, "prune", "--sparsity", "1.5", *SYN, program=(script,), timeout=120)
    assert_one_error_line(bad.returncode, bad.stdout, bad.stderr, "sparsities must be in [0, 1), got 1.5", lab_home)
    good = cli(lab_home, "registry", "--json", program=(script,), timeout=120)
    assert good.returncode == 0 and "digits" in json.loads(good.stdout)["datasets"]


def test_the_fuzz_table_is_large_enough():
    assert len(BAD_INPUT) >= 60
    flags = {(a[0], a[1]) for a, _ in BAD_INPUT[:sum(len(f) for f in NUMERIC.values())]}
    assert flags == {(verb, flag) for verb, flags in NUMERIC.items() for flag in flags}


def test_registry_lists_models_and_datasets(capsys):
    code, out, _ = in_process(capsys, "registry", "--json")
    assert code == 0
    payload = json.loads(out)
    assert "digits" in payload["datasets"] and payload["models"]["cnn"]["args"] == {"width": 32}


def test_a_list_flag_answers_to_its_plural_and_help_says_what_is_required():
    parser = build_parser()
    for flag in ("--sparsity", "--sparsities"):
        assert parser.parse_args(["prune", flag, "0.5", "0.9"]).sparsities == ["0.5", "0.9"]
    distill = ["distill", "--teacher", "lenet5", "--student", "mlp", "--temperatures", "2", "4"]
    assert parser.parse_args(distill).temperatures == ["2", "4"]
    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        parser.parse_args(["prune", "--help"])
    help_text = " ".join(text.getvalue().split())
    assert "a sweep (a language model may take --pattern instead)" in help_text and "(default: [0.5])" not in help_text


def test_speedup_times_rounds_until_the_ci_is_tight_or_the_budget_is_spent_and_says_which(lab_home, capsys):
    from conftest import baseline
    _, wide = baseline(model="mlp:hidden=256")
    _, narrow = baseline(model="mlp:hidden=8")
    code, out, err = in_process(capsys, "speedup", str(wide["id"]), str(narrow["id"]), "--batch-size", "64",
                                "--time-budget", "1", "--json", "--quiet")
    assert code == 0, err
    timing = json.loads(out)
    lo, hi = timing["ci95"]
    assert timing["rounds"] >= 8 and lo <= timing["speedup"] <= hi and timing["processes"] == 3
    # the flag says what the CI shows
    assert timing["imprecise"] == ((hi - lo) / timing["speedup"] > timing["target_rel_ci"])
    assert timing["noisy"] == (timing["loaded"] or timing["imprecise"])
    from compression import RunStore
    [stored] = RunStore().list_speedups(run_a=wide["id"], run_b=narrow["id"])
    assert stored["rounds"] == timing["rounds"] and stored["detail"]["imprecise"] == timing["imprecise"]
    assert stored["detail"]["loaded"] == timing["loaded"] and stored["detail"]["budget_s"] == 1.0
