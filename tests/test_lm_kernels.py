"""Language models, part 2b: weight-only kernels (int8_packed, int4_packed, bf16_linear). Each kernel checked against
its own dequantized weights, perplexity within bounds of the run's fp32 parent, the stored child reloaded with the
same logits, and every refusal one sentence with exit code 2, made before a parent is trained."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compression import RunStore
from compression.store.artifacts import load_run_model
from compression.techniques import quantize
from compression.techniques import quantize_kernels as kernels
from test_lm import TINY, run_cli, tiny_lm

INT8_BOUND, INT4_BOUND = 0.01, 0.05  # the issue's: +1% perplexity for int8 weights, +5% for int4 in groups


@pytest.mark.parametrize("make", [kernels.Int8WeightLinear, lambda linear: kernels.Int4WeightLinear(linear, 32),
                                  lambda linear: kernels.Int4WeightLinear(linear, 64), kernels.Bf16WeightLinear],
                         ids=["int8", "int4-g32", "int4-g64", "bf16"])
def test_each_kernel_multiplies_its_own_dequantized_weights(make):
    """The packed kernel (few rows) and the dequantized GEMM (many) against F.linear on the weights the module
    stores, in fp32; 300 outputs are not a multiple of int4's 16-row blocks."""
    torch.manual_seed(0)
    linear = nn.Linear(128, 300)
    module = make(linear)
    weights = module.dequantized()
    assert weights.shape == linear.weight.shape
    step = (linear.weight.abs().amax(1, keepdim=True) / 7 if module.storage == "int4" else
            linear.weight.abs().amax(1, keepdim=True) / 127 if module.storage == "int8" else
            linear.weight.abs() / 128)
    assert ((weights - linear.weight).abs() <= step * 1.01).all()  # within one quantization step of the fp32 weights
    for rows in (1, module.packed_rows + 7):
        x = torch.randn(2, rows, 128)
        with torch.no_grad():
            got, want = module(x), F.linear(x, weights, linear.bias)
        assert got.dtype == x.dtype and got.shape == want.shape
        assert (got - want).abs().max() <= 0.02 * want.abs().max()  # bf16 activations: ~3 significant digits


def test_packed_int8_and_int4_keep_perplexity_near_the_parent_and_reload_with_the_same_logits(lab_home, capsys):
    _, parent = tiny_lm(steps=200)  # perplexity ~13 on bytes: at 30 steps (~33) it is too near unigram to tell
    code, out, err = run_cli(capsys, "quantize", "--from", str(parent["id"]), "--method", "int8_packed",
                             "int4_packed", "--json")
    assert code == 0, err
    result = json.loads(out)
    rows = {r["method"]: r for r in result["results"]}
    dense = result["baseline"]["perplexity"]  # the parent measured in this process, as each child was
    assert rows["int8_packed"]["perplexity"] <= dense * (1 + INT8_BOUND)
    assert rows["int4_packed"]["perplexity"] <= dense * (1 + INT4_BOUND)
    assert all(row["perplexity"] != dense for row in rows.values())  # the weights really changed
    linears = [m for m in load_run_model(parent["weights_path"]).modules() if type(m) is nn.Linear]
    weights = sum(m.weight.numel() for m in linears)
    for method, bits in (("int8_packed", 8), ("int4_packed", 4)):
        row = rows[method]
        assert len(row["quantized_layers"]) == len(linears)  # the blocks' projections and the output head
        assert row["weight_bytes"] < row["float_weight_bytes"] == 4 * weights
        assert bits < row["bits_per_weight"] == pytest.approx(8 * row["weight_bytes"] / weights, abs=1e-3)
        assert row["kernel"] in row["speed_note"] and not row["real_int8"]
        assert row["size_bytes"] < parent["record"]["size_bytes"]
    assert rows["int4_packed"]["group_size"] == 32 and "groups of 32" in rows["int4_packed"]["speed_note"]
    assert rows["int4_packed"]["label"].endswith("group 32")
    # the stored child, reloaded from its safe model file, is the same model as quantizing the parent again here
    store = RunStore()
    for method, row in rows.items():
        stored = load_run_model(store.get_run(row["run_id"])["weights_path"])
        again, _ = quantize.quantize_model(load_run_model(parent["weights_path"]), None, method, "cpu", 0)
        ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert torch.equal(stored(ids), again(ids))
            assert torch.equal(stored.decode_step(ids[:1, :3])[0], again.decode_step(ids[:1, :3])[0])
        assert [s["batch_size"] for s in store.list_speedups(run_a=parent["id"], run_b=row["run_id"])] == [8, 1]


def test_a_hugging_face_llama_is_quantized_by_every_kernel(tmp_path):
    """quantize_model on the lab's wrapper of a transformers Llama with tied embeddings: the head becomes its own
    quantized copy, the embedding table stays the fp32 one, and the logits stay near the float model's."""
    from hf_tiny import build_family
    from compression.text.models import load_hf
    model = load_hf(str(build_family("llama", tmp_path)))
    ids = torch.randint(0, model.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(ids)
    linears = sum(type(m) is nn.Linear for m in model.modules())
    for method in ("int8_packed", "int4_packed", "bf16_linear"):
        quantized, report = quantize.quantize_model(model, None, method, "cpu", 0)
        inner = quantized.model
        assert isinstance(inner.lm_head, kernels.WeightOnlyLinear) and len(report["quantized_layers"]) == linears
        assert inner.get_input_embeddings().weight.dtype == torch.float32
        with torch.no_grad():
            logits = quantized(ids)
            step, cache = quantized.decode_step(ids[:, :4])
        assert (logits - reference).abs().max() < 0.25 * reference.abs().max()
        assert torch.allclose(step[:, -1], logits[:, 3], atol=0.05 * reference.abs().max().item())


def expect_refusal(capsys, *args, says: str) -> str:
    code, out, err = run_cli(capsys, "quantize", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], err
    return lines[0]


def test_methods_that_cannot_run_on_a_language_model_are_refused_before_any_training(lab_home, capsys, monkeypatch,
                                                                                        tmp_path):
    fresh = ("--dataset", "pydoc", "--model", TINY, "--train-steps", "5")
    expect_refusal(capsys, *fresh, "--method", "static_int8", says="use dynamic_int8")
    monkeypatch.setattr(quantize, "kernel_probe", lambda: {"native_bf16": False, "int8_packed": None,
                                                           "int4_packed": None, "bf16_linear": None})
    expect_refusal(capsys, *fresh, "--method", "bf16_linear", says="no native bf16")
    # a kernel that crashes its probe process is recorded as unavailable here, and the lab lives on to say so
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(quantize, "KERNEL_PROBE_CODE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    expect_refusal(capsys, *fresh, "--method", "int8_packed", says="crashed a probe process")
    expect_refusal(capsys, *fresh, "--method", "int4_packed", "--group-size", "48", says="48")
    assert RunStore().list_runs() == []  # nothing was trained for any of them


def test_int4_groups_that_do_not_divide_a_layer_are_refused_naming_the_width_and_what_fits(lab_home, capsys):
    _, parent = tiny_lm(steps=30)  # width 32
    line = expect_refusal(capsys, "--from", str(parent["id"]), "--method", "int4_packed", "--group-size", "64",
                          says="a multiple of 64")
    assert "takes 32" in line and "group sizes that fit every layer: 32" in line
    assert [r["id"] for r in RunStore().list_runs()] == [parent["id"]]  # refused before anything was measured
