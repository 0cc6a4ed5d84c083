"""Import a user's model file as a run, safely: an upload is untrusted input.

Three formats, told apart by the archive's contents, not by the file name:
- a state dict for a named architecture (`model`), read with torch.load(weights_only=True), which never runs
  pickled code, so a hostile file is refused, not executed;
- a TorchScript archive (torch.jit.save): its code is TorchScript, run by TorchScript's interpreter, and its
  data is read by TorchScript's own restricted unpickler, not Python's pickle;
- a torch.export program (.pt2, torch.export.save): a graph in JSON and weights, no pickled Python.
Every upload must run one batch of the chosen data and give one score per class, or it is refused and
nothing is kept. The web process only checks the file (`check_upload`) and saves it; measuring it is a job
(`run_upload`), because timing a model in the web process would slow every page and time it under the
server's own load.
"""
from __future__ import annotations

import io
import uuid
import warnings
import zipfile
from pathlib import Path

import torch

from ...core.data import load_dataset
from ...core.measure import measure
from ...core.models import build_model, format_spec, parse_spec
from ...errors import LabError
from ...paths import lab_home
from ...store.artifacts import load_state_dict_file, save_model
from ..configs import UploadConfig
from ..context import RunContext
from ..records import as_record

MAX_UPLOAD_BYTES = 200 * 1024 * 1024


def upload_format(path: Path) -> str:
    """'torchscript', 'exported' or 'state_dict', from the archive's member names (all three are zip files)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "state_dict"  # torch.load's legacy format is not a zip; weights_only reading decides
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("archive_format") or n.endswith("/models/model.json") for n in names):
        return "exported"
    return "state_dict"


def _load_program(path: Path, filename: str, kind: str) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notes
            if kind == "torchscript":
                return torch.jit.load(str(path), map_location="cpu").eval()
            program = torch.export.load(io.BytesIO(path.read_bytes())).module()  # it wants a .pt2 name or a buffer
            # torch.export makes train()/eval() raise; the graph is fixed in the mode it was exported in, so
            # nn.Module's own (which only flips flags) is safe, and measuring calls eval()
            del program.train, program.eval
            return program
    except Exception as err:
        detail = (str(err).strip().splitlines() or ["unreadable"])[0][:160]
        raise LabError(f"{filename} looks like a {_FORMAT_NAMES[kind]} file but does not load: {detail}") from None


_FORMAT_NAMES = {"torchscript": "TorchScript", "exported": "torch.export (.pt2)", "state_dict": "state dict"}


def _forward_check(net: torch.nn.Module, filename: str, dataset: str) -> None:
    """One batch of the chosen data must run and give one finite score per class."""
    data = load_dataset(dataset)
    batch = data.x_test[:8]
    try:
        with torch.no_grad():
            out = net(batch)
    except Exception as err:
        detail = (str(err).strip().splitlines() or ["it failed"])[0][:160]
        if "Guard failed" in detail and "size()[0]" in detail:  # a torch.export program fixed to one batch size
            detail += (". The lab runs batches of 1 to 256: export with a dynamic batch, e.g. dynamic_shapes="
                       "{'x': {0: torch.export.Dim('batch')}}")
        raise LabError(f"{filename} does not run on {dataset} (input {tuple(batch.shape[1:])}): {detail}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(batch), data.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise LabError(f"{filename} gives {shape} for a batch of {len(batch)}; {dataset} needs "
                       f"({len(batch)}, {data.num_classes}): one score per class.")
    if not torch.isfinite(out).all():
        raise LabError(f"{filename} gives NaN or Inf scores on {dataset}.")


def _load_checked(path: Path, filename: str, model: str, dataset: str) -> tuple[torch.nn.Module, dict]:
    kind = upload_format(path)
    if kind != "state_dict":  # a whole program: the architecture comes with it
        net = _load_program(path, filename, kind)
        _forward_check(net, filename, dataset)
        return net, {"name": "uploaded", "args": {"format": kind, "file": Path(filename).name[:80]}}
    spec = parse_spec(model)
    data = load_dataset(dataset)
    net = build_model(spec, data.input_shape, data.num_classes)
    state = load_state_dict_file(path, filename)
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
    _forward_check(net.eval(), filename, dataset)
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
