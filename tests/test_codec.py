"""Deep-Compression storage: trained weight sharing, a bit-exact compressed file, and safe decoding."""
import ast
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from compression.techniques import codec
from compression.techniques.codec import (compressed_size, decode_state_dict, encode_state_dict, fold_shared,
                                          share_weights)


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def _linears(model):
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _prune_global(model, amount, layerwise=False):
    """Zero the smallest `amount` of all Linear/Conv weights together (global magnitude), return the masks.

    layerwise=True ranks each layer separately (so no layer of a randomly initialised model is emptied).
    """
    weights = [m.weight for m in _linears(model)]
    groups = [[w] for w in weights] if layerwise else [weights]
    with torch.no_grad():
        for group in groups:
            threshold = torch.cat([w.abs().flatten() for w in group]).quantile(amount)
            for w in group:
                w.mul_(w.abs() > threshold)
    return [w != 0 for w in weights]


def _fit(model, x, y, steps, lr, masks=None, optimizer=torch.optim.Adam):
    opt = optimizer([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if masks:  # keep pruned weights at zero while retraining (the paper's prune -> retrain)
            with torch.no_grad():
                for m, mask in zip(_linears(model), masks):
                    m.weight.mul_(mask)


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is ~40x faster than two contended ones on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_xy():
    from sklearn.datasets import load_digits  # bundled with scikit-learn: 1797 8x8 digits, no download
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)


@pytest.fixture(scope="module")
def lenet_like(digits_xy):
    """LeNet-300-100 on 64 inputs, trained, pruned 92% by global magnitude, retrained, shared at 5 bits, folded."""
    x, y = digits_xy
    torch.manual_seed(0)
    dense = _mlp()
    _fit(dense, x, y, steps=200, lr=1e-3)
    pruned = _mlp()
    pruned.load_state_dict(dense.state_dict())
    masks = _prune_global(pruned, 0.92)
    _fit(pruned, x, y, steps=150, lr=1e-3, masks=masks)
    shared, report = share_weights(pruned, bits=5)
    _fit(shared, x, y, steps=30, lr=1e-2, optimizer=torch.optim.SGD)
    folded = fold_shared(shared)
    return {"dense": dense, "pruned": pruned, "folded": folded, "report": report,
            "accuracy": {"dense": _accuracy(dense, x, y), "pruned": _accuracy(pruned, x, y),
                         "folded": _accuracy(folded, x, y)}}


def _pruned_mlp(seed=0, amount=0.9):
    torch.manual_seed(seed)
    model = _mlp()
    _prune_global(model, amount, layerwise=True)
    return model


def _assert_bit_exact(decoded, original):
    assert list(decoded) == list(original)
    for name, tensor in original.items():
        got = decoded[name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape, name
        if tensor.is_floating_point():  # compare bit patterns: catches -0.0 vs 0.0 and NaN payloads
            view = {8: torch.int64, 4: torch.int32, 2: torch.int16}[tensor.element_size()]
            assert torch.equal(got.view(view), tensor.contiguous().view(view)), name
        else:
            assert torch.equal(got, tensor), name


# ------------------------------------------------------------------------------------------------- sharing

def test_share_weights_leaves_the_callers_model_unchanged():
    model = _pruned_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shared, _ = share_weights(model, bits=4)
    fold_shared(shared)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert not any(hasattr(m, "parametrizations") for m in model.modules())


@pytest.mark.parametrize("bits", [2, 5])
def test_folded_layers_hold_at_most_2_to_the_bits_values(bits):
    model = _pruned_mlp()
    shared, report = share_weights(model, bits=bits, min_numel=5000)  # the 10x100 output layer stays unshared
    assert [r["layer"] for r in report["layers"]] == ["0", "2"]
    for r in report["layers"]:
        weight = dict(model.named_modules())[r["layer"]].weight
        assert r["bits"] == bits and r["numel"] == weight.numel()
        assert r["nonzero"] == int((weight != 0).sum()) and 1 <= r["clusters"] <= 2 ** bits
    folded = fold_shared(shared)
    assert not any(hasattr(m, "parametrizations") for m in folded.modules())
    for name in ("0", "2"):
        weight = dict(folded.named_modules())[name].weight
        assert isinstance(weight, nn.Parameter) and weight.requires_grad
        assert torch.unique(weight[weight != 0]).numel() <= 2 ** bits
    assert torch.unique(folded[4].weight).numel() > 2 ** bits  # untouched


def test_pruned_zeros_stay_zero_while_the_centroids_train():
    model = _pruned_mlp()
    zeros = [m.weight == 0 for m in _linears(model)]
    shared, _ = share_weights(model, bits=5)
    assert [torch.equal(m.weight == 0, z) for m, z in zip(_linears(shared), zeros)] == [True] * 3
    centroids = [m.parametrizations.weight[0].centroids for m in _linears(shared)]
    start = [c.detach().clone() for c in centroids]
    torch.manual_seed(1)
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    _fit(shared, x, y, steps=20, lr=0.1, optimizer=torch.optim.SGD)
    assert all(not torch.equal(c.detach(), s) for c, s in zip(centroids, start))  # the codebooks trained
    assert [torch.equal(m.weight == 0, z) for m, z in zip(_linears(shared), zeros)] == [True] * 3
    fold_shared(shared)
    assert [torch.equal(m.weight == 0, z) for m, z in zip(_linears(shared), zeros)] == [True] * 3


@pytest.mark.parametrize("bits", [0, 9, -1, 2.5])
def test_bits_out_of_range_are_refused(bits):
    with pytest.raises(ValueError, match="bits must be an integer from 1 to 8"):
        share_weights(_mlp(), bits=bits)
    with pytest.raises(ValueError, match="bits must be an integer from 1 to 8"):
        encode_state_dict({"w": torch.zeros(3)}, bits=bits)


def test_unknown_layer_names_are_refused():
    with pytest.raises(ValueError, match="unknown layer"):
        share_weights(_mlp(), layers=["fc9"])


# ------------------------------------------------------------------------------------------------ the file

@pytest.mark.parametrize("entropy", ["auto", "huffman", "lzma", "none"])
def test_pruned_shared_mlp_round_trips_bit_exact(lenet_like, entropy):
    state = lenet_like["folded"].state_dict()
    blob = encode_state_dict(state, entropy=entropy, header={"model": "mlp", "bits": 5})
    decoded, meta = decode_state_dict(blob)
    _assert_bit_exact(decoded, state)
    assert meta == {"model": "mlp", "bits": 5}


def test_tiny_cnn_with_batchnorm_round_trips_and_predicts_the_same():
    def cnn():
        return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3),
                             nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    torch.manual_seed(0)
    model = cnn()
    x = torch.randn(8, 3, 12, 12)
    for _ in range(3):  # running statistics and num_batches_tracked move away from their defaults
        model(x)
    _prune_global(model, 0.7)
    shared, report = share_weights(model, bits=4)
    assert [r["layer"] for r in report["layers"]] == ["0", "3", "8"]
    state = fold_shared(shared).eval().state_dict()
    assert state["1.num_batches_tracked"].dtype == torch.int64 and state["1.num_batches_tracked"].item() == 3
    decoded, _ = decode_state_dict(encode_state_dict(state, bits=4))
    _assert_bit_exact(decoded, state)
    restored = cnn().eval()
    restored.load_state_dict(decoded)
    assert torch.equal(restored(x), shared(x))


@pytest.mark.parametrize("entropy", ["auto", "huffman", "lzma", "none"])
def test_special_tensors_round_trip_bit_exact(entropy):
    g = torch.Generator().manual_seed(0)
    lonely = torch.zeros(100_000)
    lonely[-1] = 0.25  # one non-zero after 99,999 zeros: 392 filler gaps
    signed_zero = torch.zeros(200)
    signed_zero[::7] = -0.0
    signed_zero[3] = 1.5
    state = {
        "zeros": torch.zeros(64, 64),
        "lonely": lonely,
        "first_only": torch.cat([torch.tensor([3.0]), torch.zeros(999)]),
        "random": torch.randn(40, 30, generator=g),  # unshared: raw float32
        "half_exact": torch.randn(500, generator=g).half().float(),  # raw, stored as float16 losslessly
        "signed_zero": signed_zero,
        "nan_inf": torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0] * 20),
        "float64_shared": torch.randint(-3, 4, (300,), generator=g).double() / 3,
        "bf16": torch.randn(100, generator=g).bfloat16(),
        "fp16": torch.randn(7, 9, generator=g).half(),
        "ints": torch.randint(-1000, 1000, (50,), generator=g),
        "int8": torch.randint(-128, 127, (33,), generator=g, dtype=torch.int8),
        "mask": torch.rand(70, generator=g) > 0.5,
        "scalar": torch.tensor(7, dtype=torch.int64),
        "float_scalar": torch.tensor(0.1),
        "empty": torch.zeros(0, 5),
        "strided": torch.randn(20, 20, generator=g).t(),
    }
    blob = encode_state_dict(state, bits=3, entropy=entropy)
    decoded, meta = decode_state_dict(blob)
    _assert_bit_exact(decoded, state)
    assert meta == {}
    entries = {e["n"]: e for e in _header(blob)["tensors"]}
    assert entries["zeros"]["e"] == entries["lonely"]["e"] == entries["float64_shared"]["e"] == "shared"
    assert entries["random"]["e"] == "raw" and "a" not in entries["random"]
    assert entries["half_exact"].get("a") == "float16"
    assert entries["lonely"]["ng"] == 99_999 // 255 + 1
    assert len(blob) < 200 + sum(t.numel() * t.element_size() for t in state.values()) - 4 * 100_000


def test_compression_ratio_against_dense_torch_save(lenet_like):
    buffer = io.BytesIO()
    torch.save(lenet_like["dense"].state_dict(), buffer)
    dense = len(buffer.getvalue())
    state = lenet_like["folded"].state_dict()
    sizes = {e: len(encode_state_dict(state, entropy=e)) for e in ("none", "huffman", "lzma", "auto")}
    assert compressed_size(state) == sizes["auto"]
    ratios = {e: round(dense / size, 1) for e, size in sizes.items()}
    print(f"\ndense torch.save {dense} B; compressed {sizes}; ratio {ratios}; "
          f"accuracy {lenet_like['accuracy']}; layers {lenet_like['report']['layers']}")
    assert ratios["auto"] >= 25
    assert sizes["auto"] <= min(sizes["huffman"], sizes["lzma"]) < sizes["none"]
    assert lenet_like["accuracy"]["folded"] > 0.6  # a working model, not a degenerate all-zero one


# ----------------------------------------------------------------------------------------- hostile input

def _header(blob):
    (length,) = struct.unpack_from("<I", blob, 5)
    return json.loads(blob[9:9 + length])


def _reseal(head, payload):
    """A structurally modified file with a VALID checksum: only the decoder's own checks can catch it."""
    raw = json.dumps(head, separators=(",", ":")).encode()
    body = codec.MAGIC + struct.pack("<I", len(raw)) + raw + payload
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.fixture(scope="module")
def valid_blob():
    model = _pruned_mlp(amount=0.8)
    shared, _ = share_weights(model, bits=5)
    return encode_state_dict(fold_shared(shared).state_dict(), header={"run": 1})


def test_valid_blob_layout(valid_blob):
    assert valid_blob.startswith(b"CLDC1")
    head = _header(valid_blob)
    assert head["v"] == 1 and head["meta"] == {"run": 1}
    assert {e["e"] for e in head["tensors"]} == {"shared", "raw"}


def test_corrupt_truncated_and_foreign_inputs_raise_value_error(valid_blob):
    rng = np.random.default_rng(0)
    (head_len,) = struct.unpack_from("<I", valid_blob, 5)
    flipped_header = bytearray(valid_blob)
    flipped_header[9 + head_len // 2] ^= 0x01
    flipped_payload = bytearray(valid_blob)
    flipped_payload[9 + head_len + 10] ^= 0x40
    torch_file = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, torch_file)
    bad = {
        "empty": b"", "random": rng.bytes(4096), "magic only": b"CLDC1", "foreign torch.save": torch_file.getvalue(),
        "truncated half": valid_blob[:len(valid_blob) // 2], "truncated by one": valid_blob[:-1],
        "extra byte": valid_blob + b"\0", "flipped header byte": bytes(flipped_header),
        "flipped payload byte": bytes(flipped_payload), "random after magic": b"CLDC1" + rng.bytes(500),
        "not bytes": None,
    }
    for name, blob in bad.items():
        with pytest.raises(ValueError, match="not a Compression Lab compressed file|corrupt") as info:
            decode_state_dict(blob)
        assert type(info.value) is ValueError, name


def test_resealed_structural_damage_raises_value_error(valid_blob):
    (head_len,) = struct.unpack_from("<I", valid_blob, 5)
    payload = valid_blob[9 + head_len:-4]

    def damaged(change):
        head = _header(valid_blob)
        change(head, head["tensors"][1])  # "0.weight", a shared tensor
        return head

    def set_(key, value):
        def change(head, entry):
            entry[key] = value
        return change

    cases = {
        "smaller shape": (damaged(set_("s", [10, 64])), payload),
        "unknown dtype": (damaged(set_("d", "complex64")), payload),
        "unknown encoding": (damaged(set_("e", "magic")), payload),
        "stream too long": (damaged(lambda h, e: e.update(st=e["st"][0] + "9" + e["st"][1:])), payload),
        "bad method": (damaged(lambda h, e: e.update(st="q" + e["st"][1:])), payload),
        "st not a string": (damaged(set_("st", [1, 2])), payload),
        "k too large": (damaged(set_("k", 33)), payload),
        "gap count": (damaged(set_("ng", 5)), payload),
        "bits": (damaged(lambda h, e: h.update(bits=9)), payload),
        "version": (damaged(lambda h, e: h.update(v=2)), payload),
        "meta not a dict": (damaged(lambda h, e: h.update(meta=[1])), payload),
        "missing tensors": (damaged(lambda h, e: h.pop("tensors")), payload),
        "short payload": (_header(valid_blob), payload[:-7]),
    }
    for name, (head, data) in cases.items():
        with pytest.raises(ValueError, match="corrupt") as info:
            decode_state_dict(_reseal(head, data))
        assert type(info.value) is ValueError, name


def test_resealed_random_damage_never_raises_anything_but_value_error(valid_blob):
    """Flipped bytes behind a valid checksum either decode (a packed stream has no redundancy) or raise ValueError."""
    rng = np.random.default_rng(1)
    (head_len,) = struct.unpack_from("<I", valid_blob, 5)
    head_raw, payload = valid_blob[9:9 + head_len], valid_blob[9 + head_len:-4]
    outcomes = {"decoded": 0, "refused": 0}
    for trial in range(200):
        part = bytearray(head_raw if trial % 3 == 0 else payload)
        for at in rng.integers(0, len(part), size=int(rng.integers(1, 4))):
            part[at] = int(rng.integers(0, 256))
        new_head, new_payload = (bytes(part), payload) if trial % 3 == 0 else (head_raw, bytes(part))
        body = codec.MAGIC + struct.pack("<I", len(new_head)) + new_head + new_payload
        try:
            decode_state_dict(body + struct.pack("<I", zlib.crc32(body)))
            outcomes["decoded"] += 1
        except ValueError as e:
            assert type(e) is ValueError and str(e).startswith("corrupt"), e
            outcomes["refused"] += 1
    assert outcomes["refused"] > 60, outcomes


def test_the_codec_never_pickles():
    tree = ast.parse(Path(codec.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom)}
    allowed = {"__future__", "copy", "heapq", "json", "lzma", "math", "struct", "zlib", "numpy", "torch"}
    assert imported <= allowed, imported
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & {"load", "save", "Unpickler"}  # no torch.load / torch.save / pickle machinery
