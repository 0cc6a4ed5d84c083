"""The measurement record, checked against hand-computed values and PyTorch itself."""
import gzip
import io
import math

import pytest
import torch
from torch import nn

from compression import build_model, measure, wilson_interval
from compression.core.measure import count_macs, count_params, quiet_wait_limit, quiet_wait_s, serialized_size


def test_wilson_interval_matches_the_formula():
    lo, hi = wilson_interval(90, 100)
    # hand-computed: p=0.9, z=1.96 -> centre 0.8846, half-width 0.0587
    assert math.isclose(lo, 0.8256, abs_tol=1e-3) and math.isclose(hi, 0.9448, abs_tol=1e-3)
    lo, hi = wilson_interval(100, 100)
    assert math.isclose(hi, 1.0) and math.isclose(lo, 100 / (100 + 1.96**2))  # never the degenerate [1, 1] of the normal approximation


def test_params_and_nonzero_follow_the_weights():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    total, nonzero = count_params(model)
    assert total == sum(p.numel() for p in model.parameters()) == 10 * 20 + 20 + 20 * 3 + 3
    with torch.no_grad():
        model[0].weight[:5].zero_()
    assert count_params(model) == (total, total - 50)


def test_batchnorm_statistics_are_not_parameters():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    assert count_params(model)[0] == 4 * 9 + 4 + 4 + 4


def test_size_is_the_saved_state_dict_and_gzip_sees_sparsity():
    model = nn.Linear(256, 256)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    size, gz = serialized_size(model)
    assert size == len(buffer.getvalue())
    assert gz == len(gzip.compress(buffer.getvalue(), compresslevel=6))
    with torch.no_grad():
        model.weight.view(-1)[: int(0.9 * model.weight.numel())] = 0
    size_sparse, gz_sparse = serialized_size(model)
    assert size_sparse == size and gz_sparse < 0.3 * gz


def test_macs_match_hand_counts():
    assert count_macs(nn.Linear(64, 10), (64,)) == 640
    # 3x3 conv, 1->4 channels, 'same' padding on 8x8: 8*8 outputs * 4 channels * 9 MACs
    assert count_macs(nn.Conv2d(1, 4, 3, padding=1, bias=False), (1, 8, 8)) == 8 * 8 * 4 * 9


def test_measure_record_is_complete_and_sane(synthetic):
    model = build_model("cnn:width=8", synthetic.input_shape, synthetic.num_classes)
    record = measure(model, synthetic, batch_sizes=(1, 32))
    with torch.no_grad():  # an independent count: the model's own forward pass on the test split, in eval mode
        hits = (model.eval()(synthetic.x_test).argmax(1) == synthetic.y_test)
    assert record["n_test"] == len(synthetic.y_test) and record["correct"] == int(hits.sum())
    assert record["accuracy"] == int(hits.sum()) / len(hits)
    lo, hi = record["accuracy_ci"]
    assert lo <= record["accuracy"] <= hi
    assert record["nonzero_params"] <= record["params"] == sum(p.numel() for p in model.parameters())
    assert record["gzip_bytes"] < record["size_bytes"]
    assert record["macs"] > 0
    batches = {(e["device"], e["batch_size"]) for e in record["latency"]}
    assert ("cpu", 1) in batches and ("cpu", 32) in batches
    for entry in record["latency"]:
        assert entry["median_ms"] > 0 and entry["iqr_ms"] >= 0 and entry["threads"] >= 1
        assert entry["repeats"] >= 7 and entry["torch"] == torch.__version__


@pytest.mark.timing
def test_latency_grows_with_batch(synthetic):
    """Interleaved (b1, b256, b1, ...): a competing load that inflates batch 1 200x (OpenMP oversubscription)
    hits both sizes alike, so the comparison holds on a shared machine."""
    import statistics
    from compression.core.measure import measure_latency
    model = build_model("cnn:width=32", synthetic.input_shape, synthetic.num_classes)
    record = measure(model, synthetic, batch_sizes=(1, 256))
    assert {e["batch_size"] for e in record["latency"] if e["device"] == "cpu"} == {1, 256}
    timings = {1: [], 256: []}
    for _ in range(3):
        for batch in timings:
            timings[batch].append(measure_latency(model, synthetic.input_shape, "cpu", batch, min_run_time=0.05)["median_ms"])
    assert statistics.median(timings[256]) > 2 * statistics.median(timings[1])


def test_a_job_can_cap_the_quiet_wait_but_never_lengthen_it(monkeypatch):
    monkeypatch.setenv("COMPRESSION_LAB_QUIET_WAIT_S", "10")
    with quiet_wait_limit(1.0):
        assert quiet_wait_s() == 1.0
    assert quiet_wait_s() == 10.0  # only inside
    monkeypatch.setenv("COMPRESSION_LAB_QUIET_WAIT_S", "0.5")
    with quiet_wait_limit(1.0):
        assert quiet_wait_s() == 0.5
