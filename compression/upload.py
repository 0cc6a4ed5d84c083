"""Import a user's state-dict file as a run, safely: an upload is untrusted input.

torch.load(weights_only=True) never runs pickled code, so a hostile file is refused, not executed.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .artifacts import load_state_dict_file, save_model
from .baseline import as_record
from .data import load_dataset
from .errors import LabError
from .measure import DEFAULT_LATENCY_BATCH, measure
from .models import build_model, format_spec, parse_spec
from .store import RunStore

MAX_UPLOAD_BYTES = 200 * 1024 * 1024


def import_weights(blob: bytes, filename: str, model: str | dict, dataset: str = "digits",
                   store: RunStore | None = None, latency_batch: int = DEFAULT_LATENCY_BATCH,
                   latency_time: float = 0.3) -> dict:
    """Load `blob` into a fresh `model` for `dataset`, measure it and store it as an 'upload' run."""
    store = store or RunStore()
    if len(blob) == 0:
        raise LabError(f"{filename} is empty.")
    if len(blob) > MAX_UPLOAD_BYTES:
        raise LabError(f"{filename} is {len(blob) / 2**20:.0f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB.")
    spec = parse_spec(model)
    data = load_dataset(dataset)
    net = build_model(spec, data.input_shape, data.num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.pt"
        path.write_bytes(blob)
        state = load_state_dict_file(path)
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = [f"missing {', '.join(missing[:3])}" if missing else "",
                 f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
                 f"wrong shape for {', '.join(sorted(wrong)[:3])}" if wrong else ""]
        raise LabError(f"{filename} does not fit {format_spec(spec)} on {dataset}: " + "; ".join(p for p in parts if p))
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise LabError(f"{filename} holds NaN or Inf weights.")
    net.load_state_dict(state)
    net.eval()
    record = measure(net, data, latency_batch=latency_batch, min_run_time=latency_time)
    run_id = store.add_run("upload", dataset, spec, {"filename": filename}, record=record, method="uploaded",
                           label=f"{format_spec(spec)} uploaded ({filename[:40]})",
                           weights_path=save_model(net, data.x_test[:1]))
    return as_record(store.get_run(run_id))
