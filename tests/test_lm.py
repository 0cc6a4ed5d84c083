"""Language models, part 1: text data, the gpt model, its training, its measurement, generate, and bad input.

Tiny configs (a one-layer gpt of width 32 on contexts of 32 bytes, tens of steps): every figure is checked against
an independent recomputation or a property that a wrong implementation breaks, never a hard-coded value.
"""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from compression import BaselineConfig, LabError, RunStore, get_baseline, load_dataset
from compression.cli import main
from compression.text.generate import generate
from compression.text import corpus
from compression.text.corpus import ByteTokenizer
from compression.text.models import GPT
from conftest import quick_ctx

TINY = "gpt:layers=1,width=32,heads=2,context=32"


def tiny_lm(steps=30, **config):
    return get_baseline(BaselineConfig(**{"dataset": "pydoc", "model": TINY, "train_steps": steps, "batch_size": 8,
                                          **config}), quick_ctx())


def run_cli(capsys, *args):
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_pydoc_is_split_by_topic_with_a_fingerprint_and_serves_fixed_windows():
    data = load_dataset("pydoc")
    from pydoc_data.topics import topics
    texts = [data.train_text, data.val_text, data.test_text]
    assert sum(len(t) for t in texts) >= sum(len(v) for v in topics.values())  # every topic, in one split
    placed = [sum(text in part for part in texts) for text in list(topics.values())[:20]]
    assert placed == [1] * 20  # each topic in exactly one split
    assert data.fingerprint["documents"] == len(topics) and len(data.fingerprint["sha256"]) == 16
    inputs, targets = data.windows(ByteTokenizer(), "test", 32)
    again = load_dataset("pydoc").windows(ByteTokenizer(), "test", 32)[0]
    assert torch.equal(inputs, again) and inputs.shape == targets.shape and inputs.shape[1] == 32
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are the next tokens
    assert data.x_test.shape == data.y_test.shape  # the image sets' test interface


def test_the_kv_cache_gives_the_same_logits_as_a_full_forward():
    torch.manual_seed(0)
    model = GPT(256, layers=2, width=32, heads=4, context=16).eval()
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        full = model(ids)
        logits, cache = model.decode_step(ids[:, :5])
        steps = [logits[:, -1]]
        for t in range(5, 12):
            logits, cache = model.decode_step(ids[:, t:t + 1], cache)
            steps.append(logits[:, -1])
    assert torch.allclose(torch.stack(steps[:-1], 1), full[:, 4:11], atol=1e-5)


def test_a_tiny_gpt_trains_on_pydoc_and_its_record_is_measured(lab_home, capsys):
    model, run = tiny_lm(steps=40)
    rec, history = run["record"], run["extra"]["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]  # it learned something
    inputs, targets = load_dataset("pydoc").windows(model.tokenizer, "test", 32)
    with torch.no_grad():
        loss = F.cross_entropy(model(inputs).reshape(-1, 256), targets.reshape(-1), reduction="sum").item()
    assert rec["perplexity"] == pytest.approx(math.exp(loss / targets.numel()), rel=1e-4)
    assert rec["bits_per_byte"] == pytest.approx(loss / math.log(2) / targets.numel(), rel=1e-4)  # bytes = tokens
    lo, hi = rec["perplexity_ci95"]
    assert lo < rec["perplexity"] < hi and rec["bits_per_byte"] < 8  # better than a uniform guess over bytes
    a_lo, a_hi = rec["next_token_accuracy_ci"]
    assert a_lo < rec["next_token_accuracy"] < a_hi
    assert rec["params"] == sum(p.numel() for p in model.parameters())
    phases = {e["phase"]: e for e in rec["latency"]}
    assert set(phases) == {"prefill", "decode"} and all(e["tokens_per_s"] > 0 for e in phases.values())
    assert rec["macs_per_token"] > 0 and rec["corpus"]["source"] == "pydoc_data.topics"
    # the same config is reused, not trained again
    _, again = tiny_lm(steps=40)
    assert again["id"] == run["id"]
    # generate: greedy is deterministic; sampling is seeded
    assert generate(model, "The for statement", 12) == generate(model, "The for statement", 12)
    assert generate(model, "x", 12, temperature=1.0, seed=3) == generate(model, "x", 12, temperature=1.0, seed=3)
    code, out, err = run_cli(capsys, "generate", str(run["id"]), "--prompt", "The for statement", "--tokens", "12")
    assert code == 0 and out == "The for statement" + generate(model, "The for statement", 12) + "\n"
    code, out, err = run_cli(capsys, "generate", str(run["id"]), "--prompt", "The", "--tokens", "12", "--json")
    assert code == 0 and len(json.loads(out)["completion"].encode()) == 12  # bytes: one per token
    code, out, err = run_cli(capsys, "generate", str(run["id"]), "--tokens", "40")
    assert code == 2 and err.strip().startswith("error: 40 new tokens do not fit this model's context of 32")


def test_text_path_reads_a_file_or_a_folder_and_refuses_bad_text(lab_home, tmp_path, monkeypatch, capsys):
    paragraphs = "\n\n".join(f"Paragraph {i}: " + "some words here. " * 20 for i in range(12))
    (tmp_path / "book.txt").write_text(paragraphs, encoding="utf-8")
    data = load_dataset(f"text:{tmp_path / 'book.txt'}")
    assert data.fingerprint["documents"] == 12 and data.test_text and data.val_text
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(4):
        (folder / f"n{i}.md").write_text(f"# Note {i}\n" + "text " * 100, encoding="utf-8")
    assert load_dataset(f"text:{folder}").fingerprint["documents"] == 4
    bad = {"empty.txt": b"  \n", "binary.txt": b"abc\0def" * 10, "latin1.txt": "caf\xe9 ".encode("latin-1") * 10}
    expected = {"empty.txt": "is empty", "binary.txt": "looks binary", "latin1.txt": "is not UTF-8 text"}
    for name, raw in bad.items():
        (tmp_path / name).write_bytes(raw)
        code, out, err = run_cli(capsys, "train", "--dataset", f"text:{tmp_path / name}", "--model", TINY, "--quiet")
        assert code == 2 and err.count("\n") == 1 and expected[name] in err and "Traceback" not in err, err
    monkeypatch.setattr(corpus, "MAX_TEXT_BYTES", 1000)
    (tmp_path / "big.txt").write_text("word " * 400, encoding="utf-8")
    with pytest.raises(LabError, match="the cap for a text is"):
        corpus.load_text_path(f"text:{tmp_path / 'big.txt'}")
    short = tmp_path / "short.txt"
    short.write_text("a\n\nb\n\nc\n\nd", encoding="utf-8")
    code, out, err = run_cli(capsys, "train", "--dataset", f"text:{short}", "--model", TINY, "--train-steps", "2", "--quiet")
    assert code == 2 and "fewer than one context of 32" in err, err


@pytest.mark.parametrize("args, message", [
    (["--dataset", "pydoc", "--model", "lenet5"], "lenet5 is an image model, and 'pydoc' is text"),
    (["--dataset", "digits", "--model", "gpt"], "gpt is a language model, and 'digits' is an image data set"),
    (["--dataset", "pydoc", "--model", TINY, "--context", "64"], "A context of 64 tokens is longer than this "
                                                               "model's 32 positions"),
    (["--dataset", "pydoc", "--model", "gpt:width=30,heads=4"], "does not build"),
])
def test_mismatched_models_and_contexts_get_one_sentence(lab_home, capsys, args, message):
    code, out, err = run_cli(capsys, "train", *args, "--train-steps", "1", "--quiet")
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
