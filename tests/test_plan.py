"""The plan lab: a target in, the best model that meets it out, verified; its compressed file and its page.

Small real runs (digits or synthetic data, a few trials of one or two epochs); every figure checked against an
independent recomputation (the stored runs, the written file, the reloaded model), never a hard-coded value.
"""
import subprocess
import sys

import pytest
import torch
from streamlit.testing.v1 import AppTest

from compression import LabError, RunStore, build_model, load_compressed, load_dataset
from compression.core.pareto import pareto_mask
from compression.core.train import predict
from compression.labs.io.compressed import file_header, rebuild
from compression.labs.io.export import export_run
from compression.labs.plan import (PlanConfig, Recipe, Space, Tuning, _why, bound_for, build, open_study,
                                   parse_target, run_plan, seed_params, verdict)
from compression.techniques.codec import decode_state_dict
from conftest import ROOT, cli_env, quick_ctx

SIZE_PLAN = dict(dataset="digits", model="mlp:hidden=32", epochs=3, latency_batch=16, target="size=0.05", max_drop=2.0,
                 trials=3, finetune_epochs=2, quantize=[], share_bits=[4])


def oracle_best(trials, ratio, max_drop, base_accuracy):
    """The winner by the documented rule, recomputed from the trial list: meeting trials by accuracy; else the
    cheapest within the accuracy bound; else the most accurate."""
    done = [t for t in trials if t["status"] == "complete" and t.get("run_id")]
    drop = {t["run_id"]: 100 * (base_accuracy - t["accuracy"]) for t in done}
    within = [t for t in done if drop[t["run_id"]] <= max_drop]
    meeting = [t for t in within if t["cost"] <= ratio]
    if meeting:
        return sorted(meeting, key=lambda t: (-t["accuracy"], t["cost"]))[0]["run_id"]
    if within:
        return sorted(within, key=lambda t: t["cost"])[0]["run_id"]
    return sorted(done, key=lambda t: (-t["accuracy"], t["cost"]))[0]["run_id"]


def test_targets_parse_and_bad_ones_say_how_to_write_them():
    target = parse_target("latency=0.4")
    assert (target.kind, target.ratio, target.phrase()) == ("latency", 0.4, "2.5x faster")
    assert parse_target(" size=0.025").phrase() == "40x smaller"
    assert target.phrase(1.25) == "1.25x slower" and target.phrase(0.002) == "500x faster"
    for text, words in (("speed=0.4", "Unknown plan target 'speed'. Known: latency, size, params, macs"),
                        ("latency", "write KIND=RATIO"), ("latency=x", "'x' is not a number"),
                        ("size=1.5", "between 0 and 1"), ("size=0", "between 0 and 1")):
        with pytest.raises(LabError, match=words):
            parse_target(text)
    with pytest.raises(LabError, match="between 0 and 1"):
        PlanConfig(target="macs=2")


def test_bad_targets_exit_2_with_one_error_line(lab_home, capsys):
    from compression.cli import main
    args = ["plan", "--dataset", "digits", "--json", "--target"]
    # one real process (the interpreter's exit code, nothing else on stderr), the other targets in this process
    result = subprocess.run([sys.executable, "-m", "compression", *args, "speed=0.4"], cwd=ROOT,
                            env=cli_env(lab_home), capture_output=True, text=True, timeout=120)
    outcomes = [(result.returncode, result.stdout, result.stderr)]
    for target in ("latency=3", "size"):
        capsys.readouterr()
        code = main([*args, target])
        outcomes.append((code, *capsys.readouterr()))
    for code, out, err in outcomes:
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert "Traceback" not in err and out == ""
    assert not (lab_home / "runs.db").exists() or RunStore().list_runs() == []  # nothing trained


def test_size_plan_on_digits_stores_verified_runs_and_files_that_reload_exactly(lab_home, tmp_path):
    config = PlanConfig(**SIZE_PLAN)
    out = run_plan(config, quick_ctx())
    store, base = RunStore(), out["baseline"]
    assert store.get_run(base["run_id"])["kind"] == "train"
    finished = [t for t in out["trials"] if t["status"] == "complete"]
    assert len(out["trials"]) >= 3 and finished
    for t in finished:  # each trial a stored child of the baseline, its cost its file against the baseline's
        run = store.get_run(t["run_id"])
        assert run["kind"] == "plan" and run["parent_id"] == base["run_id"]
        assert t["cost"] == pytest.approx(run["record"]["size_bytes"] / base["size_bytes"])
    shared = [t for t in finished if t["recipe"]["bits"]]
    assert shared, "the size prior shares weights"
    data = load_dataset("digits")
    for t in shared:
        path = tmp_path / f"run{t['run_id']}.cldc"
        info = export_run(store, t["run_id"], "compressed", path)
        assert info["bytes"] == path.stat().st_size == t["size_bytes"]  # the run's size is its file
        model = load_compressed(path)
        correct = int((predict(model, data.x_test).argmax(1) == data.y_test).sum())
        assert correct == t["correct"] and correct / len(data.y_test) == t["accuracy"]  # exactly the recorded one
        state, meta = decode_state_dict(path.read_bytes())
        assert meta["model"] == "mlp:hidden=32" and meta["input"] == [1, 8, 8] and meta["classes"] == 10
        weights = [v for k, v in state.items() if k.endswith("weight") and v.numel() >= 256]
        assert all(torch.unique(w[w != 0]).numel() <= 16 for w in weights)  # 4-bit codebooks

    best = out["best"]
    assert best["run_id"] == oracle_best(out["trials"], 0.05, 2.0, base["accuracy"])
    assert best["accuracy_drop_pt"] == pytest.approx(100 * (base["accuracy"] - best["accuracy"]))
    assert best["size_ratio"] == pytest.approx(best["size_bytes"] / base["size_bytes"])
    assert best["meets"] == (best["size_ratio"] <= 0.05 and best["accuracy_drop_pt"] <= 2.0)
    assert (best["why"] is None) == best["meets"]
    # which branch applies, from the trial list: with this seed no trial stays within 2 pt of the baseline (3 trials
    # of 2 fine-tuning epochs lose 2.8 pt and more at 8x-12x smaller), so the plan must say so, naming the most
    # accurate trial; the meeting branch (why None) is the `(why is None) == meets` line above
    drops = {t["run_id"]: 100 * (base["accuracy"] - t["accuracy"]) for t in finished}
    assert min(drops.values()) > 2.0, drops
    most_accurate = max(finished, key=lambda t: (t["accuracy"], -t["cost"]))
    assert best["meets"] is False and best["run_id"] == most_accurate["run_id"]
    assert best["why"] == (f"No trial stayed within 2 pt of the baseline's accuracy: the most accurate, run "
                           f"{best['run_id']}, lost {drops[best['run_id']]:.1f} pt and is "
                           f"{parse_target('size=0.05').phrase(best['size_ratio'])}.")
    lo, hi = best["ci95"]
    timed = store.list_speedups(run_a=base["run_id"], run_b=best["run_id"])
    assert timed and timed[-1]["speedup"] == pytest.approx(best["speedup"]) and lo <= best["speedup"] <= hi
    # the front: exactly the finished trials that no other beats on accuracy and cost
    mask = pareto_mask([t["cost"] for t in finished], [t["accuracy"] for t in finished])
    assert {f["run_id"] for f in out["front"]} == {t["run_id"] for t, m in zip(finished, mask) if m}


def test_an_unreachable_target_returns_the_closest_with_one_sentence(lab_home):
    out = run_plan(PlanConfig(**{**SIZE_PLAN, "dataset": "synthetic", "model": "mlp:hidden=16", "epochs": 2,
                                 "target": "size=0.001", "trials": 2, "max_drop": 100.0}), quick_ctx())
    best = out["best"]
    assert best["meets"] is False and best["size_ratio"] > 0.001
    assert best["run_id"] == oracle_best(out["trials"], 0.001, 100.0, out["baseline"]["accuracy"])
    assert best["why"].startswith("No trial within 100 pt reached 1,000x smaller: the closest, run ")
    assert best["why"].count(". ") == 0 and best["why"].endswith(".")


def test_a_trial_that_cannot_win_stops_before_fine_tuning_and_a_second_process_shares_the_budget(lab_home):
    """Trial 0 (the target's prior) meets the size bound; trial 1 compresses nothing, so it stops before training.
    The study is the run database's: a second call with the same study name counts the first one's trials."""
    config = PlanConfig(**{**SIZE_PLAN, "dataset": "synthetic", "model": "mlp:hidden=16", "epochs": 2,
                           "target": "size=0.3", "trials": 2, "max_drop": 100.0, "study": "shared-plan"})
    space = Space(2, (), (4,))
    study = open_study(config, space, RunStore().url)
    study.enqueue_trial({**seed_params({}, space), "bits": 0})  # dense fp32: costs 1.0 of the baseline
    first = run_plan(config, quick_ctx())
    stopped = [t for t in first["trials"] if t["status"] == "pruned"]
    assert [t["number"] for t in stopped] == [1] and stopped[0]["run_id"] is None
    assert stopped[0]["note"].startswith("stopped before fine-tuning") and stopped[0]["cost"] == pytest.approx(1.0, 0.05)
    assert len(RunStore().list_runs(kind="plan")) == 1
    second = run_plan(config.replace(trials=3), quick_ctx())
    assert len(second["trials"]) == 3 and [t["number"] for t in second["trials"]] == [0, 1, 2]


def test_latency_plan_times_every_trial_with_the_baseline(lab_home):
    out = run_plan(PlanConfig(dataset="synthetic", model="cnn:width=8", epochs=1, latency_batch=16,
                              target="latency=0.8", trials=2, finetune_epochs=1, share_bits=[4]), quick_ctx())
    store, base = RunStore(), out["baseline"]
    completed = [t for t in out["trials"] if t["status"] == "complete"]
    assert completed, out["trials"]  # else the loop below checks nothing
    for t in completed:
        speed = store.list_speedups(run_a=base["run_id"], run_b=t["run_id"])[0]  # the trial's own paired timing
        assert t["cost"] == pytest.approx(1 / speed["speedup"]) and speed["batch_size"] == 16
    best = out["best"]
    assert best["cost"] == pytest.approx(1 / best["speedup"])  # verified: timed again, not the trial's figure
    verified = store.list_speedups(run_a=base["run_id"], run_b=best["run_id"])[-1]
    assert verified["detail"]["processes"] == 3 and verified["speedup"] == pytest.approx(best["speedup"])
    # meets only when the whole verified interval clears the target (and the accuracy held)
    assert best["meets"] == (best["ci95"][0] >= 1 / 0.8 and best["accuracy_drop_pt"] <= 1.0)


@pytest.mark.parametrize("bound, limit_text", [
    (bound_for({"accuracy": 0.9}, max_drop=1.0, max_ppl_increase=0.1), "1 pt"),
    (bound_for({"perplexity": 6.0}, max_drop=1.0, max_ppl_increase=0.1), "10% perplexity")])
@pytest.mark.parametrize("ci95, expected", [((2.1, 2.4), "meets"), ((1.6, 1.9), "misses"),
                                            ((1.8, 2.5), "too close to call"), ((2.0, 2.6), "meets")])
def test_a_latency_verdict_comes_from_where_the_verified_interval_lies(ci95, expected, bound, limit_text):
    target = parse_target("latency=0.5")  # 2x faster
    best = {"run_id": 9, "baseline_run": 1, "speedup": sum(ci95) / 2, "ci95": list(ci95), "cost": 2 / sum(ci95),
            "quality_loss": 0.8 * bound.limit}  # within the bound, for images (pt) and language models (%)
    best["verdict"] = verdict(best, target)
    assert best["verdict"] == expected
    why = _why(best, target, bound, trial_cost=0.55)
    if expected == "meets":
        assert why is None
        return
    # the sentence quotes the interval and never contradicts it
    assert f"[{ci95[0]:.2f}, {ci95[1]:.2f}]" in why
    if expected == "too close to call":
        assert why.startswith("Too close to call") and "spans 2x faster" in why and "speedup 1 9" in why
    else:
        assert "reached 2x faster" in why and why.startswith(f"No trial within {limit_text}")
        assert bound.change(best["quality_loss"]) in why  # the loss in the bound's own unit


@pytest.mark.parametrize("spec", ["cnn:width=8", "mobilenet_tiny:width=8", "resnet_tiny:width=8"])
def test_structurally_pruned_shared_models_rebuild_from_the_file_alone(spec, synthetic):
    torch.manual_seed(0)
    model = build_model(spec, synthetic.input_shape, synthetic.num_classes).eval()
    built = build(model, Recipe(structured=0.5, structured_late=0.25, unstructured=0.5, epochs=1, bits=4),
                  Tuning(synthetic), file_header(spec, synthetic.input_shape, synthetic.num_classes, "synthetic"))
    assert sum(p.numel() for p in built.model.parameters()) < sum(p.numel() for p in model.parameters())
    state, meta = decode_state_dict(built.blob)
    rebuilt = rebuild(meta["model"], meta["input"], meta["classes"], state)
    assert torch.equal(rebuilt(synthetic.x_test), built.model(synthetic.x_test))


def test_load_compressed_refuses_foreign_files(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, path)
    with pytest.raises(LabError, match="not a Compression Lab compressed file"):
        load_compressed(path)
    with pytest.raises(LabError, match="Cannot read"):
        load_compressed(tmp_path / "missing.cldc")


def test_plan_page_queues_a_target_and_shows_trials_and_the_winner(lab_home):
    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    app.run()
    app.switch_page("app_pages/plan.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("No plans yet" in i.value for i in app.info)
    next(b for b in app.button if b.label == "Plan").click().run()
    job = RunStore().list_jobs()[0]
    assert job["kind"] == "plan" and job["params"]["target"] == "latency=0.4" and job["params"]["trials"] == 12
    RunStore().request_cancel(job["id"])
    out = run_plan(PlanConfig(**{**SIZE_PLAN, "dataset": "synthetic", "model": "mlp:hidden=16", "epochs": 2,
                                 "trials": 2, "max_drop": 100.0}), quick_ctx())
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(app.get("plotly_chart")) == 1
    labels = [m.label for m in app.metric]
    assert labels == ["Speed-up (verified)", "Size", "Accuracy", "Answers changed"]
    assert app.metric[0].value == f"{out['best']['speedup']:.2f}x"
    assert len(app.get("download_button")) == 1  # Export: the winner's compressed file
