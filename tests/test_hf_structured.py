"""Structured pruning (heads_mlp, depth) of `hf:` checkpoints of the five families (tests/hf_tiny.py: tiny models
built from configs, a few thousand parameters), through the prune lab: the child is smaller by what its rewritten
config says, and transformers' own loader, given the child saved with save_pretrained, builds a model with the same
logits (the oracle that the config describes the weights). Bad shares are one sentence."""
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from compression import BaselineConfig, LabError, RunStore, get_baseline
from compression.cli import main
from compression.labs.configs import PruneLabConfig
from compression.labs.prune import run_prune
from compression.store.artifacts import load_run_model
from conftest import quick_ctx
from hf_tiny import FAMILY_NAMES, hf_family_folders  # noqa: F401 (a session fixture: name -> folder)

# the families whose config has a head_dim field their attention reads: only they can lose heads
HEADS_REMOVED = {"llama", "qwen2"}
LAYERS_KEY = {"gpt2": "n_layer"}
HEADS_KEY = {"gpt2": "n_head"}
MLP_KEY = {"gpt2": "n_inner", "opt": "ffn_dim"}


def _baseline(folder) -> dict:
    return get_baseline(BaselineConfig(dataset="pydoc", model=f"hf:{folder}", train_steps=2, batch_size=4,
                                       context=32), quick_ctx())[1]


def _expected_config(parent_config, name: str, method: str):
    """The parent's config with what a 50% cut should change, built by transformers from a dict (not by the lab)."""
    fields = parent_config.to_dict()
    if method == "depth":
        fields[LAYERS_KEY.get(name, "num_hidden_layers")] //= 2
        if fields.get("layer_types"):
            fields["layer_types"] = fields["layer_types"][:fields[LAYERS_KEY.get(name, "num_hidden_layers")]]
    else:
        mlp_key = MLP_KEY.get(name, "intermediate_size")
        fields[mlp_key] = (fields.get(mlp_key) or 4 * parent_config.hidden_size) // 2
        if name in HEADS_REMOVED:  # one of two KV groups, with its two query heads
            fields["head_dim"] = parent_config.hidden_size // parent_config.num_attention_heads  # made explicit
            fields["num_attention_heads"] //= 2
            fields["num_key_value_heads"] //= 2
    return AutoConfig.for_model(**fields)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_half_the_heads_and_mlp_and_half_the_layers_leave_a_model_its_config_describes(hf_family_folders, name,
                                                                                         tmp_path, capsys):
    parent = _baseline(hf_family_folders[name])
    parent_config = load_run_model(parent["weights_path"]).model.config
    store = RunStore()
    # heads_mlp fine-tuned with the parent as teacher (Minitron) on one family, depth one-shot: both paths of the
    # lab (the fine-tune does not depend on the family once the structure is removed)
    tuned = {"finetune_steps": 2, "distill": True} if name == "llama" else {}
    for method, options in (("heads_mlp", tuned), ("depth", {})):
        row = run_prune(PruneLabConfig(from_run=parent["id"], method=method, sparsities=[0.5], calibration=4,
                                       **options), quick_ctx())["results"][0]
        child = load_run_model(store.get_run(row["run_id"])["weights_path"])  # as the store gives it back
        expected = _expected_config(parent_config, name, method)
        for key in ("num_hidden_layers", "num_attention_heads", "intermediate_size", "ffn_dim", "n_inner",
                    "num_key_value_heads", "head_dim", "layer_types"):
            if hasattr(expected, key):
                assert getattr(child.model.config, key) == getattr(expected, key), (method, key)
        # the parameter count transformers gives a fresh model of the expected config: the record's, and smaller
        fresh = sum(p.numel() for p in AutoModelForCausalLM.from_config(expected).parameters())
        assert row["params"] == fresh < parent["record"]["params"], method
        assert row["structured"] and row["speedup_reference"] == parent["id"]
        assert {t["phase"] for t in row["latency"]} == {"prefill", "decode"}
        if method == "heads_mlp" and name not in HEADS_REMOVED:  # never silently: the record says why heads stay
            assert "heads stay" in row["notes"] and "head_dim" in row["notes"] and "heads stay" in row["speed_note"]
        if method == "heads_mlp":
            assert bool(row["finetune_history"]) == bool(tuned) and ("distilled" in row["label"]) == bool(tuned)
        else:
            assert len(row["kept_layers"]) == 1 and sum(r["params_after"] == 0 for r in row["layers"]) > 0
        # export --format hf, then transformers' own loader: the record's parameter count, the child's logits
        capsys.readouterr()
        assert main(["export", str(row["run_id"]), "--format", "hf", "--out", str(tmp_path / method)]) == 0
        _assert_round_trip(child, tmp_path / method, saved=True)
        assert sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tmp_path / method).parameters()) == \
            row["params"]
    if name == "llama":  # through the lab, a share that removes every KV group is refused before anything is stored
        with pytest.raises(LabError, match="removes all 2 KV group"):
            run_prune(PruneLabConfig(from_run=parent["id"], method="heads_mlp", sparsities=[0.75]), quick_ctx())
        assert len(store.list_runs(kind="prune")) == 2


def _assert_round_trip(child, folder, saved: bool = False) -> None:
    """save_pretrained (unless exported there already), then transformers' own from_pretrained: the same logits as
    the child, and its KV-cache decode (indexed by the renumbered layer_idx) agrees with the full forward."""
    if not saved:
        child.model.save_pretrained(folder)
    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, child.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = child(ids)
        torch.testing.assert_close(reloaded(input_ids=ids, use_cache=False).logits, logits)
        _, cache = child.decode_step(ids[:, :8])
        step, _ = child.decode_step(ids[:, 8:9], cache)
    torch.testing.assert_close(step[:, -1], logits[:, 8], atol=1e-4, rtol=1e-4)


def test_a_share_that_removes_every_kv_group_or_layer_is_one_sentence(hf_family_folders):
    from compression.text.models import load_hf
    from compression.text.structured_hf import prune_hf_depth, prune_hf_heads_mlp
    llama = load_hf(str(hf_family_folders["llama"]))  # 4 query heads in 2 KV groups, 2 layers
    calibration = torch.randint(0, llama.vocab_size, (2, 16))
    for prune, share, words in ((prune_hf_heads_mlp, 0.75, "removes all 2 KV group"),
                                (prune_hf_depth, 0.75, "removes every one"), (prune_hf_depth, 0.2, "removes none")):
        with pytest.raises(LabError, match=words) as err:
            prune(llama, calibration, share)
        assert "\n" not in str(err.value)


def test_minitrons_control_arm_redraws_every_weight_of_an_hf_student(hf_family_folders, tmp_path):
    """pruned:heads_mlp=0.5 for an hf: teacher: the pruned student's control arm has its shapes, fresh weights (drawn
    by the family's own init, which skips weights flagged as loaded unless the flags are cleared), tied embeddings
    still tied, and a config that from_pretrained loads."""
    from compression.text.models import load_hf
    from compression.text.recipes import _reinitialised
    from compression.text.structured_hf import prune_hf_heads_mlp
    teacher = load_hf(str(hf_family_folders["llama"]))
    pruned, _ = prune_hf_heads_mlp(teacher, torch.randint(0, teacher.vocab_size, (2, 16)), 0.5)
    fresh = _reinitialised(pruned, seed=0)
    before, after = dict(pruned.model.named_parameters()), dict(fresh.model.named_parameters())
    assert {k: v.shape for k, v in before.items()} == {k: v.shape for k, v in after.items()}
    assert all(not torch.equal(before[k], after[k]) for k in before if "norm" not in k)  # norms start at ones
    assert fresh.model.lm_head.weight is fresh.model.model.embed_tokens.weight
    _assert_round_trip(fresh, tmp_path / "fresh")


def test_structured_removal_of_a_model_of_no_known_family_is_one_sentence():
    """BLOOM has no adapter: the generic fallback finds its blocks (weight pruning works) but not which projection
    is q or the MLP's, so heads_mlp and depth name what is missing; a gpt passes the same check."""
    from transformers import BloomConfig, BloomForCausalLM

    from compression.text.models import GPT, HFCausalLM
    from compression.text.structured_hf import check_structured
    from hf_tiny import bpe_tokenizer
    bloom = HFCausalLM(BloomForCausalLM(BloomConfig(vocab_size=300, hidden_size=32, n_layer=2, n_head=4)),
                       bpe_tokenizer(), "bloom")
    with pytest.raises(LabError, match="model_type is 'bloom', whose attention and MLP") as err:
        check_structured(bloom)
    assert "\n" not in str(err.value)
    check_structured(GPT(layers=1, width=32, heads=2, context=16))
