"""Model files that are safe to load from a shared artifact store (#24): tensors plus the lab's own description of
the architecture, read with weights_only, so pruned shapes, quantized layers and language models load with no
spec, and a pickle planted in the store is refused with a sentence while its payload never runs."""
import copy
import io
import pickle

import pytest
import torch
from torch import nn

import compression
from compression import LabError, RunStore
from compression.labs.io.export import export_run
from compression.store import model_file
from compression.store.artifacts import KEY_PREFIX, SAFE_SUFFIX, get_bytes, load_run_model, save_model


class Payload:
    """What a hostile file would carry: unpickling it calls exec, which here only leaves a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        out_a, out_b = a.eval()(x), b.eval()(x)
    out_a, out_b = (getattr(o, "logits", o) for o in (out_a, out_b))
    return torch.equal(out_a, out_b)


@pytest.fixture(scope="module")
def digits():
    return compression.load_dataset("digits")


@pytest.mark.parametrize("arch, method", [("cnn", "channel_l1"), ("mlp", "dynamic_int8"), ("mlp", "weight_only_int8"),
                                          ("resnet_tiny", "fp16")])
def test_pruned_and_quantized_image_models_load_back_from_a_safe_file(lab_home, digits, arch, method):
    base = compression.build_model(arch, digits.input_shape, digits.num_classes)
    if method == "channel_l1":
        model = compression.prune(base, digits, method=method, sparsity=0.5)
        assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in base.parameters())  # it shrank
    else:
        model = compression.quantize(base, digits, method=method)
    x = digits.x_test[:8].to(torch.float16 if method == "fp16" else torch.float32)
    key = save_model(model, x)
    assert key.endswith(SAFE_SUFFIX)
    assert _same_outputs(model, load_run_model(key), x)


def test_a_language_model_with_tied_weights_and_its_tokenizer_loads_back(lab_home):
    from compression.text.models import gpt
    model = gpt(layers=2, width=32, heads=4, context=32)
    model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    ids = torch.randint(0, 256, (2, 16))
    loaded = load_run_model(save_model(model, ids))
    assert _same_outputs(model, loaded, ids)
    assert loaded.tokenizer.decode(loaded.tokenizer.encode("héllo")) == "héllo"


def test_a_hugging_face_model_keeps_its_tied_head_and_attention(lab_home):
    from transformers import LlamaConfig, LlamaForCausalLM
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))
    ids = torch.randint(0, 64, (2, 8))
    loaded = load_run_model(save_model(model, ids))
    assert _same_outputs(model, loaded, ids)  # the causal mask follows the stored attention implementation
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


def test_a_pickle_planted_in_the_store_is_refused_and_never_runs(lab_home, tmp_path, digits):
    """A file that another machine (or an attacker with write access to the bucket) put in place of a run's
    model file: loading the run, exporting it or re-timing it must not run what it carries."""
    store = RunStore()
    run = compression.get_baseline(compression.BaselineConfig(dataset="digits", model="mlp", epochs=1),
                                   compression.RunContext(store=store))[1]
    key = run["weights_path"]
    assert key.startswith(KEY_PREFIX) and key.endswith(SAFE_SUFFIX)
    marker = tmp_path / "payload-ran"
    hostile = io.BytesIO()
    torch.save({"format": model_file.FORMAT, "manifest": Payload(marker), "tensors": {}}, hostile)
    whole_module = io.BytesIO()
    pickle.dump(Payload(marker), whole_module)
    path = lab_home / "weights" / key[len(KEY_PREFIX):]
    for planted in (hostile.getvalue(), whole_module.getvalue(), b"not a model at all"):
        path.write_bytes(planted)
        assert get_bytes(key) == planted
        with pytest.raises(LabError) as refused:
            load_run_model(key)
        assert "\n" not in str(refused.value) and key[len(KEY_PREFIX):] in str(refused.value)
        with pytest.raises(LabError):
            export_run(store, run["id"], "state_dict", tmp_path / "out.pt")
    assert not marker.exists()


def test_a_manifest_naming_a_class_outside_the_allowed_packages_is_refused(lab_home):
    data = model_file.encode(nn.Sequential(nn.Linear(2, 2)))
    payload = torch.load(io.BytesIO(data), weights_only=True)
    for foreign in ("os.system", "subprocess.Popen", "builtins.eval"):
        tampered = dict(payload, manifest=payload["manifest"].replace("torch.nn.modules.container.Sequential",
                                                                      foreign))
        buffer = io.BytesIO()
        torch.save(tampered, buffer)
        with pytest.raises(LabError, match="does not describe a model this lab can build"):
            model_file.decode(buffer.getvalue())


def test_a_model_with_a_part_the_file_cannot_describe_is_refused_when_it_is_saved(lab_home):
    model = nn.Sequential(nn.Linear(2, 2))
    model[0].scale = lambda x: x * 2  # a closure: no import path, so no safe description
    with pytest.raises(LabError, match="cannot be stored as a safe model file"):
        save_model(model, torch.zeros(1, 2))
    hooked = copy.deepcopy(nn.Sequential(nn.Linear(2, 2)))
    hooked.register_forward_hook(lambda module, inputs, output: output * 0)
    with pytest.raises(LabError, match="hooks"):
        save_model(hooked, torch.zeros(1, 2))


@pytest.mark.parametrize("tamper", ["function_as_class", "method_replaced", "reached_through_torch"])
def test_a_manifest_cannot_plant_a_function_or_replace_a_method(lab_home, tamper):
    import json
    data = model_file.encode(nn.Sequential(nn.Linear(2, 2)))
    payload = torch.load(io.BytesIO(data), weights_only=True)
    manifest = json.loads(payload["manifest"])
    layer = manifest["children"]["0"]
    if tamper == "function_as_class":
        layer["class"] = "torch.nn.functional.relu"
    elif tamper == "method_replaced":
        layer["attrs"]["forward"] = {"ref": "torch.nn.modules.linear.Identity"}
    else:
        layer["attrs"]["act"] = {"ref": "torch.os.system"}  # torch imports os: a path under torch. is not enough
    buffer = io.BytesIO()
    torch.save(dict(payload, manifest=json.dumps(manifest)), buffer)
    with pytest.raises(LabError, match="does not describe a model this lab can build"):
        model_file.decode(buffer.getvalue())
