"""Language models, part 2: distillation. A student trained alone and distilled from the teacher with the same
seed, text and steps (the gap closed said in perplexity), and the Minitron recipe: a student pruned from the
teacher then distilled, against the same shapes distilled from random initialisation."""
import json

import torch

from compression import RunStore
from compression.text.recipes import _reinitialised
from compression.text.models import GPT
from test_lm import run_cli, tiny_lm


def test_a_student_alone_and_distilled_and_the_gap_closed_in_perplexity(lab_home, capsys):
    _, teacher = tiny_lm(steps=60)
    code, out, err = run_cli(capsys, "distill", "--dataset", "pydoc", "--teacher", str(teacher["id"]), "--student",
                             "gpt:layers=1,width=16,heads=2,context=32", "--student-steps", "20", "--temperature",
                             "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    plain, kd = result["student_plain"][0], result["student_kd"][0]
    assert plain["parent_id"] == kd["parent_id"] == teacher["id"] and plain["seed"] == kd["seed"] == 0
    assert plain["params"] == kd["params"] < teacher["record"]["params"]
    assert len(plain["history"]) == len(kd["history"]) and plain["history"][-1]["steps"] == 20  # same steps
    gap = (plain["perplexity"] - kd["perplexity"]) / (plain["perplexity"] - teacher["record"]["perplexity"])
    assert result["gap_closed"] == gap  # from the stored figures, in perplexity
    assert RunStore().list_speedups(run_a=teacher["id"], run_b=kd["run_id"])  # timed with its teacher


def test_minitron_a_pruned_student_is_distilled_next_to_the_same_shapes_from_random_init(lab_home, capsys):
    _, teacher = tiny_lm(steps=60)
    code, out, err = run_cli(capsys, "distill", "--dataset", "pydoc", "--teacher", str(teacher["id"]), "--student",
                             "pruned:heads_mlp=0.5", "--student-steps", "20", "--json")
    assert code == 0, err
    result = json.loads(out)
    pruned, fresh = result["student_pruned_kd"][0], result["student_kd"][0]
    assert pruned["params"] == fresh["params"] < teacher["record"]["params"] and not result["student_plain"]
    assert result["minitron"] == {"pruned_then_distilled": pruned["perplexity"],
                                  "random_init_distilled": fresh["perplexity"]}
    assert pruned["perplexity"] < fresh["perplexity"]  # the teacher's weights are a head start
    code, out, err = run_cli(capsys, "distill", "--dataset", "pydoc", "--teacher", str(teacher["id"]), "--student",
                             "pruned:width=0.5", "--json")
    assert code == 2 and err.startswith("error: Write the pruned student as pruned:heads_mlp=0.5")


def test_the_random_init_control_has_the_pruned_shapes_and_none_of_its_weights():
    torch.manual_seed(0)
    model = GPT(256, layers=2, width=32, heads=4, context=16)
    fresh = _reinitialised(model, seed=1)
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in model.parameters()]
    assert not any(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters()) if a.dim() == 2)


def test_image_models_named_for_a_text_distillation_are_one_line(lab_home, capsys):
    for args, words in ((["--teacher", "gpt", "--student", "mlp"], "mlp is an image model"),
                        (["--teacher", "lenet5", "--student", "gpt"], "lenet5 is an image model")):
        code, out, err = run_cli(capsys, "distill", "--dataset", "pydoc", *args, "--quiet")
        assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err
