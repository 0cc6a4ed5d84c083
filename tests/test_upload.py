"""Uploaded weights: a good file becomes a run; corrupt, hostile and mismatched files get a clear message."""
import io
import os
import pickle
import shlex

import pytest
import torch

from compression import LabError, RunStore, build_model
from compression.jobs import run_job, submit
from compression.labs.io.upload import check_upload, import_weights

from conftest import quick_ctx


def _state_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


class _Exploit:
    """Unpickling it runs `touch TARGET`: a loader that unpickles untrusted bytes creates the file."""
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.target))}",))


def test_the_exploit_is_live_so_its_absence_means_something(tmp_path):
    target = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Exploit(target)))  # the test's own bytes, unpickled on purpose
    assert target.exists()


def test_a_valid_state_dict_becomes_a_measured_run(lab_home, synthetic):
    model = build_model("mlp:hidden=8", synthetic.input_shape, synthetic.num_classes)
    record = import_weights(_state_bytes(model.state_dict()), "mine.pt", "mlp:hidden=8", "synthetic",
                            ctx=quick_ctx(latency_time=0.01))
    assert record["kind"] == "upload" and record["params"] == sum(p.numel() for p in model.parameters())
    assert RunStore().get_run(record["run_id"])["weights_path"]


def test_the_pages_upload_path_checks_then_measures_in_a_job(lab_home, synthetic):
    """What the Baseline page does: check (and save) the file in the web process, then an upload job."""
    model = build_model("mlp:hidden=8", synthetic.input_shape, synthetic.num_classes)
    path = check_upload(_state_bytes(model.state_dict()), "mine.pt", "mlp:hidden=8", "synthetic")
    assert os.path.exists(path) and str(lab_home) in path
    store = RunStore()
    assert store.list_runs() == []  # checking measures nothing
    job_id = submit(store, "upload", {"dataset": "synthetic", "model": "mlp:hidden=8", "path": path,
                                      "filename": "mine.pt", "latency_batch": 4}, start_worker=False)
    assert run_job(store, store.claim_next_job()) == "done", store.get_job(job_id)["error"]
    [run] = store.list_runs(job_id=job_id)
    assert run["kind"] == "upload" and run["record"]["params"] == sum(p.numel() for p in model.parameters())
    assert {e["batch_size"] for e in run["record"]["latency"]} == {1, 4}
    assert store.get_job(job_id)["result"]["run_ids"] == [run["id"]]


@pytest.mark.parametrize("make_blob,message", [
    (lambda target: b"", "empty"),
    (lambda target: b"\x00garbage" * 100, "not a valid PyTorch state dict"),
    (lambda target: pickle.dumps(_Exploit(target)), "not a valid PyTorch state dict"),
], ids=["empty", "garbage", "pickled-exploit"])
def test_corrupt_and_hostile_files_are_refused(lab_home, tmp_path, make_blob, message):
    target = tmp_path / "pwned"
    with pytest.raises(LabError, match=message):
        import_weights(make_blob(target), "bad.pt", "mlp:hidden=8", "synthetic")
    assert not target.exists()
    assert RunStore().list_runs() == []
    assert list(lab_home.glob("uploads/*")) == []  # a refused file leaves nothing behind


def test_a_torch_saved_exploit_is_not_executed(lab_home, tmp_path):
    target = tmp_path / "pwned"
    blob = _state_bytes({"weight": _Exploit(target)})
    with pytest.raises(LabError, match="not a valid PyTorch state dict"):
        import_weights(blob, "evil.pt", "mlp:hidden=8", "synthetic")
    assert not target.exists()


def test_mismatched_and_non_finite_weights_are_refused(lab_home, synthetic):
    other = build_model("mlp:hidden=16", synthetic.input_shape, synthetic.num_classes)
    with pytest.raises(LabError, match="wrong shape"):
        import_weights(_state_bytes(other.state_dict()), "other.pt", "mlp:hidden=8", "synthetic")
    model = build_model("mlp:hidden=8", synthetic.input_shape, synthetic.num_classes)
    state = model.state_dict()
    state["1.weight"][0, 0] = float("nan")
    with pytest.raises(LabError, match="NaN or Inf"):
        import_weights(_state_bytes(state), "nan.pt", "mlp:hidden=8", "synthetic")
    with pytest.raises(LabError, match="missing"):
        import_weights(_state_bytes({"x": torch.zeros(1)}), "x.pt", "mlp:hidden=8", "synthetic")


def test_a_refused_file_is_named_as_the_user_named_it(lab_home):
    with pytest.raises(LabError) as err:
        check_upload(b"\x00garbage" * 100, "my-weights.pt", "mlp:hidden=8", "synthetic")
    assert "my-weights.pt" in str(err.value)
