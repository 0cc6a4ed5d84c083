"""Every family the lab adapts (Llama, Qwen2, GPT-NeoX, OPT, GPT-2; tests/hf_tiny.py builds each tiny), through the
lab as a user takes it: trained (`hf:PATH`, Pythia included), pruned with SparseGPT 50% and Wanda 2:4 on every
projection (GPT-2's Conv1D too), quantized with dynamic int8, exported with `--format hf` and reloaded by
transformers. The oracles are the weights themselves (read back from the exported safetensors) and transformers'
own loader; one baseline and its children per family, made once for the file."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from compression import BaselineConfig, LabError, RunStore, get_baseline, load_dataset
from compression.cli import main
from compression.labs.configs import PruneLabConfig, QuantizeLabConfig
from compression.labs.io.export import FORMATS
from compression.labs.prune import run_prune
from compression.labs.quantize import run_quantize
from compression.store.artifacts import load_run_model
from compression.techniques.quantize import conv1d_as_linear, quantize_model
from compression.text.measure import sequence_losses
from compression.text.families import family_of, head_dim, heads, kv_heads, projections
from compression.text.prune import LMPruneConfig, prune_language_model
from conftest import quick_ctx
from hf_tiny import FAMILY_NAMES, build_family, build_model, hf_family_folders  # noqa: F401 (a fixture)

CONTEXT = 32
KV_HEADS = {"llama": 2, "qwen2": 2, "gpt_neox": 4, "opt": 4, "gpt2": 4}  # as hf_tiny configures them


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request, tmp_path_factory):
    """(name, folder, lab home, runs): one family's baseline (4 steps) and its SparseGPT 50% child, made through the
    lab once, in a lab folder of its own; GPT-2's dynamic int8 child too (its Conv1D blocks are the new path of the
    store). The other methods run on the stored baseline without the lab around them: the lab's loop is the same."""
    name = request.param
    folder = build_family(name, tmp_path_factory.mktemp(f"hf-{name}"))
    home = tmp_path_factory.mktemp(f"lab-{name}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPRESSION_LAB_HOME", str(home))
        patch.delenv("COMPRESSION_LAB_DB", raising=False)
        patch.setenv("COMPRESSION_LAB_QUIET_WAIT_S", "0")
        _, parent = get_baseline(BaselineConfig(dataset="pydoc", model=f"hf:{folder}", train_steps=4, batch_size=4,
                                                context=CONTEXT), quick_ctx())
        runs = {"baseline": parent["id"]}
        runs["sparsegpt"] = run_prune(PruneLabConfig(from_run=parent["id"], method="sparsegpt", sparsities=[0.5],
                                                     calibration=4), quick_ctx())["results"][0]["run_id"]
        if name == "gpt2":
            runs["int8"] = run_quantize(QuantizeLabConfig(from_run=parent["id"], methods=["dynamic_int8"]),
                                        quick_ctx())["results"][0]["run_id"]
    return name, folder, home, runs


@pytest.fixture
def lab(family, monkeypatch):
    """This test works in its family's lab folder (conftest gave it an empty one): (name, folder, store, runs)."""
    name, folder, home, runs = family
    monkeypatch.setenv("COMPRESSION_LAB_HOME", str(home))
    return name, folder, RunStore(), runs


def export_hf(capsys, run_id: int, out) -> dict:
    """`export RUN --format hf --out DIR --json`, in process: the CLI's JSON."""
    capsys.readouterr()
    assert main(["export", str(run_id), "--format", "hf", "--out", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def exported_projections(name: str, folder) -> dict[str, torch.Tensor]:
    """The blocks' projection weights as saved, each as (out, in): GPT-2 stores its Conv1D weights in x out, so they
    are transposed here (by what GPT-2's format is, not by the lab's helpers)."""
    tensors = load_file(str(folder / "model.safetensors"))
    model = build_model(name)  # which saved keys are projections: the architecture's own modules
    keys = {f"{path}.weight" for path, m in model.named_modules()
            if (".layers." in path or ".h." in path) and type(m).__name__ in ("Linear", "Conv1D")}
    assert keys and keys <= set(tensors), sorted(keys - set(tensors))
    return {key: tensors[key].T if name == "gpt2" else tensors[key] for key in keys}


def test_the_family_is_recognised_with_its_heads_and_every_projection(lab):
    name, folder, store, runs = lab
    model = load_run_model(store.get_run(runs["baseline"])["weights_path"])  # Pythia too: stored as a safe file
    family = family_of(model)
    assert family.name == name
    config = model.model.config
    assert (heads(config), kv_heads(config), head_dim(config)) == (4, KV_HEADS[name], 8)
    for block in family.block_list(model.model):
        found = projections(block, family)
        by_type = [m for m in block.modules() if type(m).__name__ in ("Linear", "Conv1D")]
        assert sorted(map(id, found.values())) == sorted(map(id, by_type))  # every projection, each once
        assert {"o", "up", "down"} <= set(found) and ({"q", "k", "v"} <= set(found) or "qkv" in found)


def test_sparsegpt_half_the_weights_are_zero_in_the_exported_checkpoint(lab, tmp_path, capsys):
    name, folder, store, runs = lab
    run = store.get_run(runs["sparsegpt"])
    out = export_hf(capsys, run["id"], tmp_path / "sparse")
    assert out["run_id"] == run["id"] and out["format"] == "hf" and out["path"] == str(tmp_path / "sparse")
    assert out["bytes"] == sum(f.stat().st_size for f in (tmp_path / "sparse").iterdir())
    weights = exported_projections(name, tmp_path / "sparse")
    rows = {f"{row['layer'].removeprefix('model.')}.weight": row for row in run["extra"]["layers"]}
    assert set(rows) == set(weights)  # the record names every projection of every block, and only those
    for key, weight in weights.items():
        zeros = int((weight == 0).sum())
        assert zeros == rows[key]["params_before"] - rows[key]["nonzero_after"], key
        assert zeros / weight.numel() == pytest.approx(rows[key]["sparsity"]) and zeros >= weight.numel() // 2, key


def test_wanda_2_4_keeps_at_most_2_of_every_4_inputs_of_each_output(lab, tmp_path):
    name, folder, store, runs = lab
    parent = load_run_model(store.get_run(runs["baseline"])["weights_path"])
    calibration = load_dataset("pydoc").windows(parent.tokenizer, "train", CONTEXT, limit=4)[0]
    pruned, report = prune_language_model(parent, calibration, LMPruneConfig("wanda", pattern="2:4"))
    assert report["pattern"] == "2:4" and report["block_sparsity"] == 0.5
    pruned.model.save_pretrained(tmp_path / "wanda")  # what export --format hf writes
    for key, weight in exported_projections(name, tmp_path / "wanda").items():
        out_features, in_features = weight.shape
        kept = (weight != 0).reshape(out_features, in_features // 4, 4).sum(-1)
        assert int(kept.max()) <= 2 and float((weight == 0).float().mean()) >= 0.5, key


def test_dynamic_int8_quantizes_every_projection_in_the_blocks(lab, tmp_path):
    name, folder, store, runs = lab
    parent = load_run_model(store.get_run(runs["baseline"])["weights_path"])
    quantized, report = quantize_model(parent, None, "dynamic_int8")
    child = dict(quantized.named_modules())
    paths = [path for block in family_of(parent).block_list(parent.model)
             for path, m in parent.named_modules() if any(m is p for p in projections(block).values())]
    assert len(paths) >= 8 and set(paths) <= {row["layer"] for row in report["quantized_layers"]}
    for path in paths:  # GPT-2's Conv1D included: before, torch.ao saw no nn.Linear in its blocks
        assert isinstance(child[path], torch.ao.nn.quantized.dynamic.Linear), (path, type(child[path]))
    inputs, targets = load_dataset("pydoc").windows(parent.tokenizer, "test", CONTEXT, limit=16)
    losses = [sum(sequence_losses(model, inputs, targets)[0]) for model in (parent, quantized)]
    assert math.exp((losses[1] - losses[0]) / targets.numel()) < 1.05  # int8 is close to the float model
    # a quantized model is not a transformers checkpoint: refused in one sentence naming what works
    with pytest.raises(LabError, match="module or state_dict") as refused:
        FORMATS.get("hf")(quantized, {"id": 7, "model": {"name": "hf"}}, tmp_path / "int8")
    assert "\n" not in str(refused.value) and not (tmp_path / "int8").exists()


@pytest.mark.parametrize("family", ["gpt2"], indirect=True)  # the one family whose int8 run is stored
def test_a_stored_gpt2_int8_run_is_refused_by_export_hf_in_one_line(lab, tmp_path, capsys):
    name, folder, store, runs = lab
    int8 = store.get_run(runs["int8"])
    assert len(int8["extra"]["quantized_layers"]) == 9  # 8 block projections and the output head
    code = main(["export", str(int8["id"]), "--format", "hf", "--out", str(tmp_path / "int8")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "module or state_dict" in err, err
    assert not (tmp_path / "int8").exists()


@pytest.mark.parametrize("which", ["baseline", "sparsegpt"])
def test_an_exported_folder_loads_in_transformers_with_the_record_s_params_and_perplexity(lab, tmp_path, capsys,
                                                                                          which):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    name, folder, store, runs = lab
    run = store.get_run(runs[which])
    export_hf(capsys, run["id"], tmp_path / which)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / which, local_files_only=True).eval()
    assert model.config.model_type == json.loads((folder / "config.json").read_text())["model_type"]
    assert sum(p.numel() for p in model.parameters()) == run["record"]["params"]
    # its own tokenizer, read back from the folder, encodes text as the run's did
    lab_tokenizer = load_run_model(run["weights_path"]).tokenizer
    data = load_dataset("pydoc")
    sample = data.test_text[:2000]
    assert AutoTokenizer.from_pretrained(tmp_path / which)(sample, add_special_tokens=False)["input_ids"] == \
        lab_tokenizer.encode(sample)
    inputs, targets = data.windows(lab_tokenizer, "test", run["record"]["context"])
    with torch.no_grad():
        logits = torch.cat([model(input_ids=inputs[i:i + 16]).logits for i in range(0, len(inputs), 16)])
    perplexity = math.exp(float(F.cross_entropy(logits.transpose(1, 2).float(), targets)))
    assert perplexity == pytest.approx(run["record"]["perplexity"], rel=0.01)


# ---------------------------------------------------------------- without the lab around it

def test_a_conv1d_swapped_for_linear_gives_the_same_outputs():
    model = build_model("gpt2")
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        assert conv1d_as_linear(model) == 8  # c_attn, c_proj, c_fc, c_proj in each of two blocks
        after = model(input_ids=ids).logits
    assert not any(type(m).__name__ == "Conv1D" for m in model.modules())
    assert torch.allclose(before, after, atol=1e-5)


def test_an_unknown_layout_is_pruned_through_the_generic_fallback_or_refused_in_one_sentence():
    model = build_model("llama")
    model.config.model_type = "mystery"  # no adapter names it: the blocks are found by their layout
    assert family_of(model).name == "generic" and family_of(model).block_list(model) is model.model.layers
    ids = torch.randint(0, model.config.vocab_size, (4, 16))
    pruned, report = prune_language_model(model, ids, LMPruneConfig("wanda", 0.5))
    assert len(report["layers"]) == 14 and all(r["sparsity"] == 0.5 for r in report["layers"])
    assert all(float((p.weight == 0).float().mean()) == 0.5 for b in pruned.model.layers for p in projections(b).values())
    model.model.layers = nn.Sequential(*model.model.layers)  # no ModuleList of blocks left to find
    with pytest.raises(LabError) as refused:
        prune_language_model(model, ids, LMPruneConfig("wanda", 0.5))
    message = str(refused.value)
    assert "mystery model has no list of transformer blocks" in message and "\n" not in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_a_method_with_nothing_to_quantize_is_refused():
    convs = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    for method in ("dynamic_int8", "weight_only_int8"):
        with pytest.raises(LabError, match=f"{method} quantizes Linear layers and this model has none"):
            quantize_model(convs, None, method)


def test_an_export_transformers_cannot_load_is_refused_in_one_line(lab_home, capsys, tmp_path):
    from test_lm import tiny_lm
    _, gpt = tiny_lm(steps=1)
    code = main(["export", str(gpt["id"]), "--format", "hf", "--out", str(tmp_path / "gpt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: Run {gpt['id']} is a gpt model") and "state_dict, module or onnx" in err
    assert not (tmp_path / "gpt").exists()


def test_pythia_is_stored_as_a_safe_model_file_and_saves_back_under_its_checkpoint_s_names(tmp_path):
    """transformers 5 attaches its key renamings (Pythia's `embed_out.` -> `lm_head.`) to a loaded GPT-NeoX, and its
    GELUActivation holds `act = nn.functional.gelu`: the model file leaves the first out and names the second from a
    fixed table of activations, refusing any other function a tampered manifest names."""
    import io
    from transformers import AutoModelForCausalLM
    from compression.store import model_file
    folder = build_family("gpt_neox", tmp_path)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    assert model._weight_conversions  # what the model file refused before
    back = model_file.decode(model_file.encode(model))
    assert back.gpt_neox.layers[0].mlp.act.act is F.gelu
    ids = torch.randint(0, model.config.vocab_size, (1, 8))
    with torch.no_grad():
        assert torch.equal(back(input_ids=ids).logits, model(input_ids=ids).logits)
    back.save_pretrained(tmp_path / "again")  # without the renamings: the family's default ones, the same names
    assert set(load_file(str(tmp_path / "again" / "model.safetensors"))) == \
        set(load_file(str(folder / "model.safetensors")))
    data = model_file.encode(nn.Sequential(nn.GELU()))
    payload = torch.load(io.BytesIO(data), weights_only=True)
    for planted in ({"function": "torch.os.system"}, {"function": "builtins.eval"},
                    {"partial": [{"function": "subprocess.Popen"}, {"list": []}, {"dict": {}}]}):
        manifest = json.loads(payload["manifest"])
        manifest["children"]["0"]["attrs"]["act"] = planted
        buffer = io.BytesIO()
        torch.save(dict(payload, manifest=json.dumps(manifest)), buffer)
        with pytest.raises(LabError, match="does not describe a model this lab can build"):
            model_file.decode(buffer.getvalue())
