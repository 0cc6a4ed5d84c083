"""Import a user's state-dict file as a run, safely: an upload is untrusted input.

torch.load(weights_only=True) never runs pickled code, so a hostile file is refused, not executed. The web
process only checks the file (`check_upload`) and saves it; measuring it is a job (`run_upload`), because
timing a model in the web process would slow every page and time it under the server's own load.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import torch

from ..core.data import load_dataset
from ..core.measure import measure
from ..core.models import build_model, format_spec, parse_spec
from ..errors import LabError
from ..paths import lab_home
from ..store.artifacts import load_state_dict_file, save_model
from .configs import UploadConfig
from .context import RunContext
from .records import as_record

MAX_UPLOAD_BYTES = 200 * 1024 * 1024


def _load_checked(path: Path, filename: str, model: str, dataset: str) -> tuple[torch.nn.Module, dict]:
    spec = parse_spec(model)
    data = load_dataset(dataset)
    net = build_model(spec, data.input_shape, data.num_classes)
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
    return net.eval(), spec


def check_upload(blob: bytes, filename: str, model: str, dataset: str = "digits") -> str:
    """Check an uploaded state dict against the architecture and save it under the lab folder; returns the
    saved path, for an upload job. Bad files raise LabError and leave nothing behind."""
    if len(blob) == 0:
        raise LabError(f"{filename} is empty.")
    if len(blob) > MAX_UPLOAD_BYTES:
        raise LabError(f"{filename} is {len(blob) / 2**20:.0f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB.")
    folder = lab_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.pt"
    path.write_bytes(blob)
    try:
        _load_checked(path, filename, model, dataset)
    except LabError:
        path.unlink(missing_ok=True)
        raise
    return str(path)


def run_upload(config: UploadConfig, ctx: RunContext | None = None) -> dict:
    """Measure a checked upload and store it as an 'upload' run."""
    ctx = ctx or RunContext()
    net, spec = _load_checked(Path(config.path), config.filename, config.model, config.dataset)
    data = load_dataset(config.dataset)
    ctx.report(0.3, "Measuring the uploaded model")
    record = measure(net, data, latency_batch=config.latency_batch, min_run_time=ctx.latency_time,
                     exclusive=ctx.exclusive)
    run_id = ctx.store.add_run("upload", config.dataset, spec, {**config.to_dict()}, record=record,
                               method="uploaded", label=f"{format_spec(spec)} uploaded ({config.filename[:40]})",
                               job_id=ctx.job_id, weights_path=save_model(net, data.x_test[:1]))
    ctx.report(1.0, f"Stored upload run {run_id}")
    return as_record(ctx.store.get_run(run_id))


def import_weights(blob: bytes, filename: str, model: str, dataset: str = "digits",
                   ctx: RunContext | None = None) -> dict:
    """Check, save, measure and store in one call (scripts and tests; the UI splits it into check + job)."""
    path = check_upload(blob, filename, model, dataset)
    return run_upload(UploadConfig(dataset=dataset, model=model, path=path, filename=filename), ctx)
