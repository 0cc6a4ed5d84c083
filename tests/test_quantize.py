"""Quantization and pipelines: real int8 layers, smaller files, close outputs, honest unavailability."""
import zipfile

import pytest
import torch
from torch import nn

from compression import (LabError, PipelineLabConfig, QuantizeLabConfig, RunStore, TrainConfig, build_model,
                         load_dataset, run_pipeline, run_quantize, train)
from compression.core.measure import serialized_size
from compression.labs.io.export import export_run
from compression.labs.stages import parse_steps
from compression.store.artifacts import load_run_model
from compression.techniques.quantize import METHODS, availability, quantize_model

from conftest import quick_ctx


@pytest.fixture(scope="module")
def trained(synthetic):
    torch.manual_seed(0)
    model = build_model("cnn:width=16", synthetic.input_shape, synthetic.num_classes)
    train(model, synthetic, TrainConfig(epochs=3))
    return model.eval()


@pytest.fixture(scope="module")
def mlp(synthetic):
    torch.manual_seed(0)
    model = build_model("mlp:hidden=128-128", synthetic.input_shape, synthetic.num_classes)
    train(model, synthetic, TrainConfig(epochs=3))
    return model.eval()


def test_dynamic_int8_layers_are_really_int8(mlp, synthetic):
    quantized, report = quantize_model(mlp, synthetic, "dynamic_int8")
    linears = [m for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(linears) == 3 and all(m.weight().dtype == torch.qint8 for m in linears)
    assert report["real_int8"] and len(report["quantized_layers"]) == 3
    assert serialized_size(quantized)[0] < 0.3 * serialized_size(mlp)[0]


def test_static_int8_quantizes_convs_and_linears(trained, synthetic):
    quantized, report = quantize_model(trained, synthetic, "static_int8", calibration_batches=4)
    fused = [m for m in quantized.modules() if isinstance(m, torch.ao.nn.intrinsic.quantized.ConvReLU2d)]
    assert len(fused) == 4  # conv + BN + ReLU fused, then int8
    int8 = [r for r in report["quantized_layers"] if r["dtype"] == "qint8"]
    assert len(int8) == 5  # four convs and the classifier
    assert all("quantized" in r["module"] for r in int8)
    # int8 weights are a quarter of fp32; per-channel scales and graph metadata add some on a small model
    assert serialized_size(quantized)[0] < 0.5 * serialized_size(trained)[0]


@pytest.mark.parametrize("method", ["dynamic_int8", "static_int8", "weight_only_int8", "fp16", "bf16"])
def test_outputs_stay_close_to_the_float_model(method, mlp, synthetic):
    quantized, report = quantize_model(mlp, synthetic, method)
    x = synthetic.x_train[:64]
    with torch.no_grad():
        reference = torch.softmax(mlp(x), 1)
        out = torch.softmax(quantized(x.to(METHODS[method].input_dtype)).float(), 1)
    assert (out - reference).abs().max() < 0.05
    assert (out.argmax(1) == reference.argmax(1)).float().mean() >= 0.95
    if method == "weight_only_int8":
        assert {r["dtype"] for r in report["quantized_layers"]} == {"int8"} and not report["real_int8"]
    assert mlp.state_dict()["1.weight"].dtype == torch.float32  # the input model is untouched


def test_unavailable_methods_say_why(trained, synthetic):
    assert availability("dynamic_int8", "cpu") is None
    assert "no CUDA kernels" in availability("dynamic_int8", "cuda")
    if not torch.cuda.is_available():
        assert availability("fp16", "cuda") == "no CUDA device is available here"
        with pytest.raises(LabError, match="fp16 is unavailable: no CUDA device"):
            quantize_model(trained, synthetic, "fp16", device="cuda")
    with pytest.raises(LabError, match="has none; use static_int8"):
        quantize_model(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()), synthetic, "dynamic_int8")
    with pytest.raises(LabError, match="at least 1"):
        quantize_model(trained, synthetic, "static_int8", calibration_batches=0)
    with pytest.raises(LabError, match="Unknown quantization method"):
        availability("int3")
    quantized, _ = quantize_model(trained, synthetic, "static_int8")
    with pytest.raises(LabError, match="already quantized"):
        quantize_model(quantized, synthetic, "dynamic_int8")


def test_quantize_runs_are_measured_and_stored(lab_home):
    out = run_quantize(QuantizeLabConfig(methods=["dynamic_int8", "fp16"], dataset="synthetic", model="mlp:hidden=64",
                                         epochs=2, latency_batch=16), quick_ctx())
    store = RunStore()
    assert [r["method"] for r in out["results"]] == ["dynamic_int8", "fp16"]
    for result in out["results"]:
        run = store.get_run(result["run_id"])
        assert run["parent_id"] == out["baseline"]["run_id"] and run["kind"] == "quantize"
        assert result["size_bytes"] < out["baseline"]["size_bytes"] and result["macs"] > 0
        assert "kernels" in result and "speedup_cpu_b16" in result


def test_pipeline_stores_stages_with_lineage(lab_home, tmp_path):
    out = run_pipeline(PipelineLabConfig(steps="prune:channel_l1=0.5,finetune:1,quantize:static_int8",
                                         dataset="synthetic", model="cnn:width=32", epochs=2, latency_batch=16),
                       quick_ctx())
    store = RunStore()
    ids = [s["run_id"] for s in out["stages"]]
    chain = store.lineage(ids[-1])
    assert [r["id"] for r in chain] == [out["baseline"]["run_id"], *ids]
    assert [r["kind"] for r in chain] == ["train", "prune", "finetune", "quantize"]
    sizes = [out["baseline"]["size_bytes"]] + [s["size_bytes"] for s in out["stages"]]
    assert sizes[1] < 0.5 * sizes[0] and sizes[3] < 0.5 * sizes[2]  # channels removed, then int8
    # export: the quantized model as a loadable module; ONNX says clearly when it cannot
    info = export_run(store, ids[-1], "module", tmp_path / "final.pt")
    assert info["bytes"] == (tmp_path / "final.pt").stat().st_size > 0
    # an FX-quantized graph travels as TorchScript (export.py): torch.jit.load reads it without unpickling Python
    # objects, and the loaded module answers as the stored run did, on the test split it was measured on
    names = zipfile.ZipFile(tmp_path / "final.pt").namelist()
    assert any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)
    loaded = torch.jit.load(str(tmp_path / "final.pt"), map_location="cpu").eval()
    final, data = store.get_run(ids[-1]), load_dataset("synthetic")
    with torch.no_grad():
        logits = loaded(data.x_test)
        assert torch.equal(logits, load_run_model(final["weights_path"])(data.x_test))
    assert int((logits.argmax(1) == data.y_test).sum()) == final["record"]["correct"]
    assert export_run(store, ids[1], "onnx", tmp_path / "stage.onnx")["bytes"] > 0
    assert export_run(store, ids[1], "state_dict", tmp_path / "stage.pt")["bytes"] > 0


def test_finetune_keeps_unstructured_zeros(lab_home):
    out = run_pipeline(PipelineLabConfig(steps="prune:global_l1=0.8,finetune:2", dataset="synthetic",
                                         model="mlp:hidden=32", epochs=1, latency_batch=8), quick_ctx())
    pruned, tuned = out["stages"]
    assert tuned["nonzero_params"] <= pruned["nonzero_params"]


@pytest.mark.parametrize("steps,message", [
    ("", "empty"), ("quantize:static_int8,prune:global_l1=0.5", "last stage"),
    ("prune:global_l1=1.2", "Sparsity must be"), ("finetune:x", "finetune:EPOCHS"), ("distort:3", "Unknown stage"),
    ("quantize:int3", "Unknown quantization method"),
])
def test_bad_pipelines_are_refused(steps, message):
    with pytest.raises(LabError, match=message):
        parse_steps(steps)


def test_pipeline_prune_stage_reports_its_own_macs(lab_home):
    out = run_pipeline(PipelineLabConfig(steps="prune:channel_l1=0.5,quantize:dynamic_int8", dataset="synthetic",
                                         model="cnn:width=16", epochs=1, latency_batch=8), quick_ctx())
    pruned, quantized = out["stages"]
    assert pruned["macs"] < 0.5 * out["baseline"]["macs"]  # channels really removed: MACs fall
    assert quantized["macs"] == pruned["macs"]  # int8 does the same multiply-accumulates


def test_the_int8_engine_is_chosen_by_measurement_and_recorded(mlp, synthetic):
    from compression.techniques.quantize import int8_engine
    engine = int8_engine()
    assert engine in torch.backends.quantized.supported_engines
    assert torch.backends.quantized.engine == engine  # set for the process: packed weights belong to it
    _, report = quantize_model(mlp, synthetic, "dynamic_int8")
    assert report["engine"] == engine and engine in report["kernels"]
