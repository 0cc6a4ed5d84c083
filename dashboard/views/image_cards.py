"""An image classifier's widgets: its metric cards (accuracy with its interval and the answers that changed, size,
MACs, paired speed) and the expander that imports one's own trained model."""
from __future__ import annotations

import streamlit as st

from compression import LabError
from compression.core.measure import latency_of
from compression.labs.io.upload import MAX_UPLOAD_BYTES, check_upload

from ..components import human_bytes, human_count, submit_job


def _ratio_delta(value, base) -> str | None:
    """'4.10x smaller' or '1.30x larger': a ratio below 1 is said the other way round."""
    if not value or not base:
        return None
    ratio = base / value
    return f"{ratio:.2f}x smaller" if ratio >= 1 else f"{1 / ratio:.2f}x larger"


def flip_text(record: dict, baseline: dict | None) -> str | None:
    """'but 4.2% of answers changed': the record's stored flip rate, said only against the run it was counted
    against (its parent), never against another baseline."""
    rate = record.get("flip_rate")
    if rate is None or baseline is None or baseline.get("run_id") != record.get("parent_id"):
        return None
    return "no answer changed" if rate == 0 else f"but {rate:.1%} of answers changed"


def paired_speed_text(record: dict, batch: int | None, device: str = "cpu") -> str | None:
    """'2.3x faster [2.1, 2.5]' from the record's paired timing against its parent, with a noisy badge."""
    key = f"speedup_{device}_b{batch}"
    ratio, ci = record.get(key), record.get(f"{key}_ci95")
    if not ratio or not ci:
        return None
    text = (f"{ratio:.2f}x faster [{ci[0]:.2f}, {ci[1]:.2f}]" if ratio >= 1 else
            f"{1 / ratio:.2f}x slower [{1 / ci[1]:.2f}, {1 / ci[0]:.2f}]")
    return text + (" (noisy)" if record.get(f"{key}_noisy") else "")


def metric_cards(record: dict, baseline: dict | None = None) -> None:
    """Accuracy +- CI, params, size, MACs and latency as cards; deltas against a baseline if given."""
    lo, hi = record["accuracy_ci"]
    cols = st.columns(5)
    acc_delta = None if baseline is None else f"{100 * (record['accuracy'] - baseline['accuracy']):+.1f} pt"
    flips = flip_text(record, baseline)
    if flips:  # the delta's leading sign still colours it; the churn behind it follows
        acc_delta += f", {flips}"
    cols[0].metric("Accuracy", f"{record['accuracy']:.3f}", acc_delta,
                   help=f"95% Wilson CI [{lo:.3f}, {hi:.3f}] on {record.get('n_test', '?')} test images")
    cols[0].caption(f"95% CI [{lo:.3f}, {hi:.3f}]")
    cols[1].metric("Parameters", human_count(record["params"]),
                   None if baseline is None else _ratio_delta(record["params"], baseline["params"]),
                   delta_color="off")
    cols[1].caption(f"non-zero: {human_count(record['nonzero_params'])}")
    cols[2].metric("Size", human_bytes(record["size_bytes"]),
                   None if baseline is None else _ratio_delta(record["size_bytes"], baseline["size_bytes"]),
                   delta_color="off")
    cols[2].caption(f"gzip: {human_bytes(record['gzip_bytes'])}")
    cols[3].metric("MACs / sample", human_count(record["macs"]))
    batches = sorted({e["batch_size"] for e in record["latency"]})
    big = latency_of(record, record["latency"][0]["device"] if record["latency"] else "cpu")
    one = latency_of(record, "cpu", 1)
    speed = paired_speed_text(record, batches[-1] if batches else None) if baseline is not None else None
    cols[4].metric(f"Latency, batch {batches[-1] if batches else '?'}", f"{big:.2f} ms" if big else "-", speed,
                   delta_color="off", help="Speed-ups come only from the child and its parent timed together, "
                   "interleaved, with a 95% CI; a bare latency from another moment is never divided.")
    noisy = any(e.get("noisy") for e in record["latency"])
    cols[4].caption((f"batch 1: {one:.3f} ms" if one else "batch 1: -") + (" · :orange[noisy]" if noisy else ""))


def upload_model(params: dict) -> None:
    """A trained model of the user's (a state dict, TorchScript or torch.export), checked here, measured by a job."""
    with st.expander("Or upload a trained model"):
        st.caption(f"A state dict (.pt) for {params['model']}, read with torch.load(weights_only=True) so no code in "
                   "the file can run; or a whole model: TorchScript (torch.jit.save) or torch.export (.pt2, with a "
                   f"dynamic batch). It must run one batch of {params['dataset']} and give one score per class; up "
                   f"to {MAX_UPLOAD_BYTES // 2**20} MiB.")
        upload = st.file_uploader("Model file", type=["pt", "pth", "bin", "pt2"])
        if upload is not None and st.button("Import and measure"):
            try:
                path = check_upload(upload.getvalue(), upload.name, params["model"], params["dataset"])
            except LabError as err:
                st.error(str(err))
            else:  # measuring is a job: the web process never times a model
                submit_job("upload", {"dataset": params["dataset"], "model": params["model"], "path": path,
                                      "filename": upload.name, "latency_batch": params["latency_batch"],
                                      "device": params["device"]})
