"""A crashing int8 kernel is contained in a probe process and recorded as unavailable, losing nothing."""
import json

from compression.techniques import quantize


def test_a_segfaulting_probe_is_recorded_as_unavailable_not_raised():
    crashed = quantize.run_probe("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert crashed["engine"] is None and "signal 11" in crashed["reason"]
    hung_free = quantize.run_probe("import json; print(json.dumps({'engine': 'x86'}))")
    assert hung_free == {"engine": "x86"}


def test_int8_methods_say_why_they_are_unavailable_after_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("COMPRESSION_LAB_INT8_ENGINE", raising=False)
    quantize._probe_cache().write_text(json.dumps(quantize.run_probe("import os; os.abort()")))
    reason = quantize.availability("static_int8", "cpu")
    assert reason and "crashed a probe process (signal 6)" in reason
    assert quantize.availability("fp16", "cpu") is None  # other methods still run


def test_the_real_probe_picks_a_supported_engine_once_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = quantize.engine_probe()
    assert first["engine"] in first["supported"]
    assert json.loads(quantize._probe_cache().read_text()) == first == quantize.engine_probe()
