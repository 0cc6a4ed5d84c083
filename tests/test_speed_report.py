"""Speed-ups only from paired timings: the store's speedups table, the Report's words, and refusals."""
from streamlit.testing.v1 import AppTest

from compression.core.timing import machine_fingerprint
from compression.labs.speed import latest_speedup, relation, speed_text
from compression.labs.summary import versus_baseline
from conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")
HERE = machine_fingerprint("cpu")["id"]


def _record(run_id, size, acc, ms):
    return {"run_id": run_id, "size_bytes": size, "gzip_bytes": size // 2, "accuracy": acc,
            "latency": [{"device": "cpu", "batch_size": 256, "median_ms": ms, "machine": HERE}]}


def _timing(speedup, lo, hi, *, noisy=False, load=0.0, machine=HERE, imprecise=False):
    """A paired timing as core.timing returns it; `noisy` alone means loaded, as a timing under load is."""
    return {"device": "cpu", "batch_size": 256, "mode": "eager", "speedup": speedup, "ci95": [lo, hi], "rounds": 7,
            "load": load, "noisy": noisy or imprecise, "loaded": noisy, "imprecise": imprecise, "machine": machine,
            "threads": 2, "latency_a_ms": 2.0, "latency_b_ms": 2.0 / speedup}


def _lineage(store):
    """baseline -> pruned -> quantized, plus an unrelated baseline."""
    rec = {"accuracy": 0.98, "accuracy_ci": [0.96, 0.99], "size_bytes": 4000, "gzip_bytes": 3000, "params": 1000,
           "nonzero_params": 1000, "macs": 10, "latency": [{"device": "cpu", "batch_size": 256, "median_ms": 4.0}]}
    spec = {"name": "mlp", "args": {}}
    base = store.add_run("train", "digits", spec, {}, record=rec, label="base")
    pruned = store.add_run("prune", "digits", spec, {}, parent_id=base, record={**rec, "size_bytes": 1000},
                           label="pruned")
    quant = store.add_run("quantize", "digits", spec, {}, parent_id=pruned, record={**rec, "size_bytes": 500},
                          label="int8")
    other = store.add_run("train", "digits", spec, {}, record=rec, label="other")
    return base, pruned, quant, other


def test_speed_comes_only_from_a_paired_timing_never_from_stored_latencies():
    base, fast = _record(1, 4000, 0.98, 8.0), _record(2, 1000, 0.97, 1.0)  # latencies say 8x
    summary = versus_baseline(fast, base)
    assert summary["speed_ratio"] is None and "not timed together" in summary["text"]
    assert "8.0x" not in summary["text"]
    paired = versus_baseline(fast, base, {**_timing(2.3, 2.1, 2.5), "relation": "parent"}, HERE)
    assert paired["speed_ratio"] == 2.3 and "2.3x faster [2.1, 2.5]" in paired["text"]
    assert "4.0x smaller" in paired["text"] and "\u22121.0 pt accuracy" in paired["text"]


def test_a_timing_from_another_machine_is_never_a_headline_here():
    base, fast = _record(1, 4000, 0.98, 8.0), _record(2, 1000, 0.98, 1.0)
    summary = versus_baseline(fast, base, _timing(3.0, 2.8, 3.2, machine="0123456789ab"), HERE)
    assert summary["speed_ratio"] is None
    assert "another machine" in summary["text"] and "3.0x" not in summary["text"]


def test_noisy_timings_say_so_next_to_the_number():
    text = speed_text(_timing(226.0, 150.0, 300.0, noisy=True, load=1.8), HERE)
    assert text == "226.0x faster [150.0, 300.0] (noisy: timed while other programs were busy, load 1.8 cores)"
    wide = speed_text(_timing(2.0, 1.5, 2.6, imprecise=True), HERE)  # quiet, but the budget ran out
    assert wide == "2.0x faster [1.5, 2.6] (noisy: not enough rounds for a tight interval in 7)"
    both = speed_text(_timing(2.0, 1.5, 2.6, noisy=True, load=0.9, imprecise=True), HERE)
    assert "busy, load 0.9 cores; not enough rounds" in both
    slower = speed_text(_timing(0.5, 0.4, 0.6), HERE)
    assert slower.startswith("2.0x slower [1.7, 2.5]")
    # no difference either way: said so, not "1.0x slower [1.0, 1.1]"
    assert speed_text(_timing(0.97, 0.93, 1.02), HERE) == "about as fast [0.93, 1.02]"
    assert speed_text(_timing(1.04, 1.01, 1.08), HERE).startswith("1.0x faster")  # the CI says faster


def test_the_report_shows_the_newest_quotable_timing_and_never_hides_one_behind_a_quick_figure(store):
    base, pruned, quant, other = _lineage(store)
    quotable = dict(processes=3)
    store.add_speedup(base, quant, _timing(4.8, 4.5, 5.1), "ancestor")  # quick, in the lab's process
    assert latest_speedup(store, quant, base)["speedup"] == 4.8
    store.add_speedup(base, quant, {**_timing(5.3, 4.0, 6.0, noisy=True, load=0.9), **quotable}, "ancestor")
    assert latest_speedup(store, quant, base)["speedup"] == 5.3  # a re-timing, flagged, beats the quick figure
    store.add_speedup(base, quant, {**_timing(5.0, 4.7, 5.3), **quotable}, "ancestor")
    store.add_speedup(base, quant, {**_timing(2.0, 0.5, 3.0, noisy=True, load=1.2), **quotable}, "ancestor")
    assert latest_speedup(store, quant, base)["speedup"] == 5.0  # a loaded re-timing never replaces a clean one
    assert latest_speedup(store, pruned, base) is None


def test_speedups_table_round_trip_and_relations(store):
    base, pruned, quant, other = _lineage(store)
    store.add_speedup(base, quant, _timing(4.8, 4.5, 5.1), relation(store, base, quant))
    store.add_speedup(pruned, quant, _timing(1.6, 1.5, 1.7), relation(store, pruned, quant))
    store.add_speedup(other, quant, _timing(9.0, 8.0, 10.0), relation(store, other, quant))
    rows = store.list_speedups(run_b=quant)
    assert [r["relation"] for r in rows] == ["ancestor", "parent", "different model"]
    assert rows[0]["ci95"] == [4.5, 5.1] and rows[0]["machine"] == HERE
    assert latest_speedup(store, quant, pruned)["speedup"] == 1.6
    assert "(different model)" in speed_text(rows[2], HERE)
    store.delete_runs([other])
    assert [r["relation"] for r in store.list_speedups(run_b=quant)] == ["ancestor", "parent"]


def test_report_page_shows_the_ci_and_the_noisy_badge(store):
    base, pruned, quant, _ = _lineage(store)
    store.add_speedup(base, pruned, _timing(2.5, 2.2, 2.9), "parent")
    store.add_speedup(base, quant, _timing(5.0, 3.0, 8.0, noisy=True, load=1.2), "ancestor")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/report.py").run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown)
    assert "2.5x faster [2.2, 2.9]" in text
    assert "5.0x faster [3.0, 8.0] (noisy: timed while other programs were busy, load 1.2 cores)" in text
    assert any("noisy" in w.value for w in at.warning)
    assert "1.0x faster" not in text  # the stored latencies (all 4 ms) are never divided


def test_a_cached_baseline_from_another_machine_is_re_timed_and_keeps_its_weights(store):
    from compression import BaselineConfig, RunContext, get_baseline
    config = BaselineConfig(dataset="synthetic", model="mlp:hidden=16", epochs=1, latency_batch=16)
    model, run = get_baseline(config, RunContext(latency_time=0.02))
    record = run["record"]
    for entry in record["latency"]:
        entry.update(machine="feedfacefeed", median_ms=999.0)
    store.update_run(run["id"], record=record)
    again, rerun = get_baseline(config, RunContext(latency_time=0.02))
    assert rerun["id"] == run["id"] and rerun["weights_path"] == run["weights_path"]
    assert {e["machine"] for e in rerun["record"]["latency"]} == {HERE}
    assert all(e["median_ms"] < 999.0 for e in rerun["record"]["latency"])
