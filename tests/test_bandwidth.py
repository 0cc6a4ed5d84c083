"""The memory floor of a decode step (issue 33): the machine's read bandwidth, measured once and cached by machine
fingerprint; the weight bytes a decode step reads; each decode latency entry's floor; and the Report's words.

Only the first test measures (about a second); the others give the bandwidth through COMPRESSION_LAB_BANDWIDTH_GB_S
or a stand-in measurement, so none pays for one it does not test. (Elsewhere the suite shares the figure cached in
$XDG_CACHE_HOME/compression-lab/, as it shares the int8 probe: measured once per machine, not per test.)"""
import json

import pytest
import torch
from torch import nn

from compression.core import bandwidth
from compression.core.bandwidth import memory_bandwidth, weight_bytes_per_token
from compression.core.timing import machine_fingerprint
from compression.labs.summary import versus_baseline
from compression.text.floor import MEMORY_BOUND_FRACTION, floor_text
from compression.text.measure import lm_latency
from compression.text.models import GPT


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A bandwidth cache of this test's own, no override, and no figure remembered by this process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(bandwidth.ENV_OVERRIDE, raising=False)
    monkeypatch.setattr(bandwidth, "_MEMO", {})
    return tmp_path / "compression-lab" / f"bandwidth-{machine_fingerprint('cpu')['id']}.json"


def stand_in(monkeypatch, gb_s, noisy=False):
    calls = []

    def measure():
        calls.append(1)
        return {"gb_s": gb_s, "method": "stand-in", "noisy": noisy}
    monkeypatch.setattr(bandwidth, "measure_read_bandwidth", measure)
    return calls


def test_bandwidth_is_measured_once_and_read_back_from_its_machines_cache(own_cache, monkeypatch):
    first = memory_bandwidth()
    assert first["gb_s"] > 0 and first["median_gb_s"] <= first["gb_s"]
    assert first["machine"] == machine_fingerprint("cpu")["id"] and first["measured_at"] > 0
    assert f"{torch.get_num_threads()} thread" in first["method"] and "best of" in first["method"]
    assert first["buffer_bytes"] >= bandwidth.MIN_BUFFER  # larger than a cache: memory, not cache, is timed
    assert json.loads(own_cache.read_text()) == first
    calls = stand_in(monkeypatch, first["gb_s"] / 2, noisy=True)
    monkeypatch.setattr(bandwidth, "_MEMO", {})  # a new process: the file, not the memo, answers
    if first["noisy"]:  # measured under load: the next process measures again and keeps the faster figure
        again = memory_bandwidth()
        assert calls == [1] and again["gb_s"] == first["gb_s"] and again["attempts"] == 2
    else:
        assert memory_bandwidth() == first and calls == []


def test_a_corrupt_or_foreign_cache_is_measured_again_and_a_noisy_one_a_few_times(own_cache, monkeypatch):
    own_cache.parent.mkdir(parents=True)
    own_cache.write_text("{half a fi")
    calls = stand_in(monkeypatch, 12.5)
    assert memory_bandwidth()["gb_s"] == 12.5 and len(calls) == 1
    assert memory_bandwidth()["gb_s"] == 12.5 and len(calls) == 1  # once a process
    own_cache.write_text(json.dumps({"gb_s": 99.0, "machine": "another-one"}))
    monkeypatch.setattr(bandwidth, "_MEMO", {})
    assert memory_bandwidth()["gb_s"] == 12.5 and len(calls) == 2
    # measured under load: each new process measures again, keeps the best, and stops after MEASURE_ATTEMPTS
    calls = stand_in(monkeypatch, 8.0, noisy=True)
    own_cache.write_text(json.dumps({"gb_s": 10.0, "noisy": True, "machine": machine_fingerprint("cpu")["id"]}))
    for _ in range(bandwidth.MEASURE_ATTEMPTS + 2):
        monkeypatch.setattr(bandwidth, "_MEMO", {})
        assert memory_bandwidth()["gb_s"] == 10.0
    assert len(calls) == bandwidth.MEASURE_ATTEMPTS - 1
    monkeypatch.setenv(bandwidth.ENV_OVERRIDE, "7.5")
    assert memory_bandwidth()["gb_s"] == 7.5


def test_weight_bytes_count_one_embedding_row_a_tied_table_whole_and_int8_as_stored():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(50, 8), nn.Linear(8, 50, bias=False)
            self.head.weight = self.embed.weight

    assert weight_bytes_per_token(Tied()) == 50 * 8 * 4  # the head reads the whole table, counted once
    untied = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 16))
    assert weight_bytes_per_token(untied) == 8 * 4 + (8 * 16 + 16) * 4
    linear = nn.Sequential(nn.Linear(64, 32))
    with pytest.warns(Warning):
        int8 = torch.ao.quantization.quantize_dynamic(linear, {nn.Linear}, dtype=torch.qint8)
    # int8 weights a byte each, their per-tensor float32 scale and int32 zero point, the fp32 bias, and the 12 bytes
    # of the output's scale (float32) and zero point (int64) that torch.ao's module keeps beside them
    assert weight_bytes_per_token(int8) == 64 * 32 + 8 + 32 * 4 + 12
    assert weight_bytes_per_token(linear.to(torch.bfloat16)) == (64 * 32 + 32) * 2


def test_a_decode_entry_carries_its_memory_floor(monkeypatch):
    monkeypatch.setenv(bandwidth.ENV_OVERRIDE, "20")
    torch.manual_seed(0)
    model = GPT(256, layers=1, width=32, heads=2, context=16)
    prefill, decode = lm_latency(model, 16, 2, 0.02)
    every = sum(p.numel() * p.element_size() for p in model.parameters())
    tables = model.token.weight, model.position.weight  # a token reads one row of each
    expected = every - sum(t.numel() * 4 for t in tables) + sum(t.shape[1] * 4 for t in tables)
    assert decode["weight_bytes_per_token"] == expected and decode["bandwidth_gb_s"] == 20
    assert decode["floor_ms"] == pytest.approx(expected / 20e9 * 1e3)
    per_token = decode["median_ms"] / decode["tokens"]
    assert 0 < decode["floor_fraction"] <= 1
    assert decode["floor_fraction"] == pytest.approx(min(1.0, decode["floor_ms"] / per_token))
    assert "floor_ms" not in prefill  # a prefill batch is not bound by one read of the weights


def _record(run_id, fraction, **fields):
    decode = {"phase": "decode", "median_ms": 32 * 21.0, "tokens": 32, "ms_per_token": 21.0,
              "floor_ms": 21.0 * fraction, "floor_fraction": fraction, "weight_bytes_per_token": 78_000_000,
              "bandwidth_gb_s": 78e6 / (21.0 * fraction * 1e6)}
    return {"run_id": run_id, "task": "text", "perplexity": 10.0, "size_bytes": 1000, "gzip_bytes": 900,
            "latency": [{"phase": "prefill", "median_ms": 5.0, "tokens": 64}, decode], **fields}


def test_the_report_says_memory_bound_or_overhead_bound_by_the_fraction_of_the_floor():
    far, near = MEMORY_BOUND_FRACTION / 2, min(1.0, MEMORY_BOUND_FRACTION * 1.8)
    overhead = floor_text(_record(2, far)["latency"][1])
    assert overhead.startswith("21 ms/token") and "overhead-bound" in overhead and "shallower" in overhead
    assert f"{1 / far:.1f}x the memory floor" in overhead and "78 MB" in overhead
    memory = floor_text(_record(2, near)["latency"][1])
    assert "memory-bound" in memory and "quantize" in memory and f"{1 / near:.1f}x" in memory
    speed = {"speedup": 1.3, "ci95": [1.2, 1.4], "noisy": False, "machine": "m", "batch_size": 1}
    text = versus_baseline(_record(2, far), _record(1, 1.0), speed, "m", decode=speed)["text"]
    assert "decode 1.3x faster [1.2, 1.4]; " + overhead in text
    assert "prefill 1.3x faster [1.2, 1.4], " in text  # the prefill claim has no floor
    older = _record(2, far)
    older["latency"][1] = {"phase": "decode", "median_ms": 5.0, "tokens": 32}  # measured before floors were kept
    assert "floor" not in versus_baseline(older, _record(1, 1.0), speed, "m", decode=speed)["text"]
