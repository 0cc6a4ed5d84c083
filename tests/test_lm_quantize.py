"""Language models, part 2: quantization. Dynamic int8 (real int8 kernels, its engine recorded), half precision,
and static int8 refused with its reason (exit code 2); every run measured and timed together with its parent. The
weight-only kernels (int8_packed, int4_packed, bf16_linear): test_lm_kernels.py."""
import json

import pytest

from compression import RunStore
from test_lm import run_cli, tiny_lm


def test_a_stored_gpt_is_quantized_and_each_result_says_what_ran(lab_home, capsys):
    _, parent = tiny_lm(steps=30)
    code, out, err = run_cli(capsys, "quantize", "--from", str(parent["id"]), "--method", "dynamic_int8", "bf16",
                             "static_int8", "--json")
    # static int8 does not apply to a language model: one sentence, exit code 2, before anything is measured
    assert code == 2 and err.startswith("error: static_int8") and len(err.strip().splitlines()) == 1
    assert "dynamic_int8" in err  # it says what to use instead
    code, out, err = run_cli(capsys, "quantize", "--from", str(parent["id"]), "--method", "dynamic_int8", "bf16",
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    rows = {r["method"]: r for r in result["results"]}
    assert set(rows) == {"dynamic_int8", "bf16"} and result["unavailable"] == []
    dense = parent["record"]["perplexity"]
    int8 = rows["dynamic_int8"]
    assert int8["real_int8"] and int8["engine"] and f"{int8['engine']} engine" in int8["speed_note"]
    assert {q["dtype"] for q in int8["quantized_layers"]} == {"qint8"} and len(int8["quantized_layers"]) == 7
    assert int8["perplexity"] == pytest.approx(dense, rel=0.05)  # int8 weights barely move a small model
    assert int8["size_bytes"] < 0.6 * parent["record"]["size_bytes"]
    assert int8["macs_per_token"] == parent["record"]["macs_per_token"]
    assert "half the size" in rows["bf16"]["speed_note"]
    store = RunStore()
    for row in rows.values():
        speed = store.list_speedups(run_a=parent["id"], run_b=row["run_id"])
        assert [s["batch_size"] for s in speed] == [8, 1] and row["speedup_cpu_b8"] == speed[0]["speedup"]
        assert row["perplexity_ci95"][0] <= row["perplexity"] <= row["perplexity_ci95"][1]
