"""Uploaded whole models: TorchScript and torch.export archives become measured runs after one forward batch on
the chosen data; files that do not load, do not run, or give the wrong number of scores are refused, and nothing
is kept."""
import io
import os

import pytest
import torch
from torch import nn

from compression import LabError, RunStore, build_model
from compression.labs.io.upload import check_upload, import_weights, upload_format

from conftest import quick_ctx


def _torchscript(model, example) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(model.eval(), example), buffer)
    return buffer.getvalue()


def _exported(model, example, dynamic=True) -> bytes:
    buffer = io.BytesIO()
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None
    torch.export.save(torch.export.export(model.eval(), (example,), dynamic_shapes=shapes), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("pack,kind", [(_torchscript, "torchscript"), (_exported, "exported")])
def test_a_whole_model_upload_becomes_a_run_that_computes_what_the_model_did(lab_home, synthetic, pack, kind):
    torch.manual_seed(0)
    model = build_model("cnn:width=8", synthetic.input_shape, synthetic.num_classes).eval()
    blob = pack(model, synthetic.x_test[:2])
    record = import_weights(blob, f"mine.{'pt2' if kind == 'exported' else 'pt'}", "lenet5", "synthetic",
                            ctx=quick_ctx(latency_time=0.01))
    assert record["kind"] == "upload" and record["model"]["args"]["format"] == kind
    assert record["params"] == sum(p.numel() for p in model.parameters())
    from compression.store.artifacts import load_run_model
    stored = load_run_model(RunStore().get_run(record["run_id"])["weights_path"])
    with torch.no_grad():  # the oracle: the model the user saved
        assert torch.allclose(stored(synthetic.x_test[:5]), model(synthetic.x_test[:5]), atol=1e-5)


def test_formats_are_told_apart_by_content_not_name(tmp_path, synthetic):
    model = build_model("mlp:hidden=8", synthetic.input_shape, synthetic.num_classes)
    for name, blob, kind in [("a.pt2", _torchscript(model, synthetic.x_test[:2]), "torchscript"),
                             ("b.pt", _exported(model, synthetic.x_test[:2]), "exported")]:
        (tmp_path / name).write_bytes(blob)
        assert upload_format(tmp_path / name) == kind
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    (tmp_path / "c.pt2").write_bytes(buffer.getvalue())
    assert upload_format(tmp_path / "c.pt2") == "state_dict"


def _uploads(lab_home):
    folder = lab_home / "uploads"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_a_model_for_other_data_or_a_broken_archive_is_refused_and_not_kept(lab_home, synthetic):
    wrong_classes = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))  # synthetic has 4 classes
    with pytest.raises(LabError, match=r"gives \(8, 3\).*one score per class"):
        check_upload(_torchscript(wrong_classes, synthetic.x_test[:2]), "three.pt", "lenet5", "synthetic")
    wrong_input = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    with pytest.raises(LabError, match="does not run on synthetic"):
        check_upload(_exported(wrong_input, torch.randn(2, 3, 32, 32)), "cifar.pt2", "lenet5", "synthetic")
    fixed = _exported(build_model("mlp:hidden=8", synthetic.input_shape, 4), synthetic.x_test[:2], dynamic=False)
    with pytest.raises(LabError, match="export with a dynamic batch"):
        check_upload(fixed, "fixed.pt2", "lenet5", "synthetic")
    blob = bytearray(_torchscript(build_model("mlp:hidden=8", synthetic.input_shape, 4), synthetic.x_test[:2]))
    blob[len(blob) // 2:] = bytes(len(blob) - len(blob) // 2)  # the archive's second half zeroed
    with pytest.raises(LabError, match="truncated.pt: it is not a valid PyTorch state dict"):  # not a zip any more
        check_upload(bytes(blob), "truncated.pt", "lenet5", "synthetic")
    assert _uploads(lab_home) == []
