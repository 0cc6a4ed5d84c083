"""The Compare page for image classifiers: every run's accuracy against a cost (filtered, with a lineage drawn),
the table to select, delete and export runs, and the behaviour of two runs: answers changed, per class, calibration
and the flipped examples."""
from __future__ import annotations

import json

import streamlit as st

from compression import LabError

from ..charts import COST_AXES, lineage_ids, runs_frame, tradeoff_chart
from ..charts_behaviour import (FLIP_AXIS, confusion_delta_heatmap, flip_tradeoff_chart, per_class_delta_chart,
                                reliability_chart, what_changed, with_flip_rate)
from ..components import behaviour_of, flip_gallery
from ..display import plot
from ..state import get_store


def image_compare(all_records: list[dict]) -> None:
    _runs(all_records)
    _behaviour(all_records)


def _runs(all_records: list[dict]) -> None:
    """A cost axis and filters, the chart with a lineage drawn, and the table to select, delete and export runs."""
    latency_keys = sorted({(e["device"], e["batch_size"]) for r in all_records for e in r.get("latency", [])})
    c1, c2, c3 = st.columns([2, 2, 1])
    axes = {**COST_AXES, "flip_rate": FLIP_AXIS}
    cost = c1.selectbox("Cost axis", list(axes), index=list(axes).index("nonzero_params"),
                        format_func=axes.get, help="non-zero parameters show unstructured pruning; "
                        "parameters and latency show what really got smaller and faster; the flip rate shows how "
                        "many answers changed although accuracy barely moved")
    device, batch = c2.selectbox("Latency on", latency_keys or [("cpu", 256)], index=max(0, len(latency_keys) - 1),
                                 format_func=lambda k: f"{k[0]}, batch {k[1]}", disabled=cost != "latency_ms")
    log_x = c3.checkbox("log x", value=True)
    everything = with_flip_rate(runs_frame(all_records, device, batch), all_records)
    frame = everything

    f1, f2, f3, f4 = st.columns(4)
    filters = {"kind": f1, "dataset": f2, "model": f3, "technique": f4}
    for column, col in filters.items():
        options = sorted(frame[column].dropna().unique().tolist())
        picked = col.multiselect(column.capitalize(), options, key=f"filter-{column}")
        if picked:
            frame = frame[frame[column].isin(picked)]

    labels_by_id = dict(zip(frame["run_id"], frame["label"]))
    lineage_of = st.selectbox("Draw the lineage of", [None] + frame["run_id"].tolist()[::-1],
                              format_func=lambda i: "(none)" if i is None else f"#{i} {labels_by_id[i]}")
    highlight = lineage_ids(everything, lineage_of) if lineage_of is not None else None
    if highlight and len(highlight) > 1:
        labels = everything.set_index("run_id").loc[highlight, "label"]
        st.caption("Lineage: " + " → ".join(labels))
    plot(flip_tradeoff_chart(frame, log_x, highlight) if cost == "flip_rate" else
         tradeoff_chart(frame, cost, log_x=log_x, highlight=highlight), "compare-chart")

    shown = frame[["run_id", "label", "technique", "dataset", "model", "parent_id", "accuracy", "acc_lo", "acc_hi",
                   "flip_rate", "params", "nonzero_params", "size_bytes", "gzip_bytes", "macs", "latency_ms"]]
    table = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs-table",
                         column_config={"run_id": st.column_config.NumberColumn("id", format="%d"),
                                        "parent_id": st.column_config.NumberColumn("parent", format="%d"),
                                        "accuracy": st.column_config.NumberColumn(format="%.4f"),
                                        "acc_lo": st.column_config.NumberColumn("CI low", format="%.3f"),
                                        "acc_hi": st.column_config.NumberColumn("CI high", format="%.3f"),
                                        "flip_rate": st.column_config.NumberColumn(
                                            "answers changed", format="percent",
                                            help="share of test answers that differ from the parent's"),
                                        "latency_ms": st.column_config.NumberColumn(f"ms ({device}, b{batch})",
                                                                                    format="%.3f")})
    # the selection is by row position: rows past the end (the table shrank since) select nothing
    chosen = shown.iloc[[i for i in table.selection.rows if i < len(shown)]]["run_id"].tolist()
    d1, d2, d3 = st.columns(3)
    if d1.button(f"Delete {len(chosen)} selected", disabled=not chosen):
        get_store().delete_runs(chosen)
        # forget the selection: its row positions would point at other runs once these are gone
        st.session_state.pop("runs-table", None)
        st.toast(f"Deleted {len(chosen)} run(s)")
        st.rerun()
    d2.download_button("Export CSV", frame.to_csv(index=False), "runs.csv", "text/csv")
    kept = set(frame["run_id"])
    d3.download_button("Export JSON",
                       json.dumps([r for r in all_records if r["run_id"] in kept], indent=1, default=str),
                       "runs.json", "application/json")


def _behaviour(all_records: list[dict]) -> None:
    """Two runs on the same data set (default: a run and its parent): what changed in their answers."""
    st.header("Behaviour: what did compression change?")
    st.write("Accuracy hides churn: two models with the same accuracy can disagree on many answers, and the damage "
             "gathers in a few classes. Pick two runs on the same data set; the default is a run and its parent.")
    done = [r for r in all_records if r["status"] == "done" and r.get("has_answers")]
    done_by_id = {r["run_id"]: r for r in done}
    newest = [r["run_id"] for r in done][::-1]
    name_of = lambda i: f"#{i} {done_by_id[i]['label']}"  # noqa: E731
    with_parent = [i for i in newest if done_by_id[i].get("parent_id") in done_by_id]
    b1, b2 = st.columns(2)
    run_b = b1.selectbox("Run (B)", newest, index=newest.index(with_parent[0]) if with_parent else 0,
                         format_func=name_of, key="behaviour-b") if newest else None
    parent = done_by_id[run_b].get("parent_id") if run_b is not None else None
    others = [i for i in newest if i != run_b]
    # keyed by B, so picking another B resets A to that run's parent
    run_a = b2.selectbox("Compared with (A)", others, index=others.index(parent) if parent in others else 0,
                         format_func=name_of, key=f"behaviour-a-{run_b}") if others else None
    if run_a is None or run_b is None:
        st.info("Behaviour needs two finished runs: compress a baseline on a lab page first.")
        return
    try:
        diff, images = behaviour_of(run_a, run_b)
    except LabError as err:
        st.error(str(err))
        return
    names = (f"A #{run_a}", f"B #{run_b}")
    words = what_changed(diff)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Answers changed", f"{diff['flip_rate']:.1%}", help=f"{len(diff['flipped'])} of {diff['n_test']} test "
              "answers differ between A and B (agreement " f"{diff['agreement']:.1%})", delta_color="off",
              delta=f"{100 * (diff['accuracy_b'] - diff['accuracy_a']):+.1f} pt accuracy")
    m2.metric("Newly wrong", diff["newly_wrong"], help="A answered right, B wrong")
    m3.metric("Newly right", diff["newly_right"], help="A answered wrong, B right")
    m4.metric("ECE (15 bins)", f"{diff['ece_b']:.3f}", f"{diff['ece_b'] - diff['ece_a']:+.3f} vs A",
              delta_color="inverse",
              help="expected calibration error of the top-1 confidence (Guo et al. 2017); lower is more honest")
    st.caption(f"{words['flips']}. {words['hurt']}.")
    plot(per_class_delta_chart(diff, names), "behaviour-classes")
    left, right = st.columns(2)
    plot(confusion_delta_heatmap(diff, names), "behaviour-confusion", left)
    plot(reliability_chart(diff, names), "behaviour-reliability", right)
    st.subheader("Flipped examples, newly wrong first")
    if diff["gallery"]:
        shown = f"The first {len(diff['gallery'])} of" if len(diff["flipped"]) > len(diff["gallery"]) else "All"
        st.caption(f"{shown} {len(diff['flipped'])} changed answers, with each model's answer and its confidence. "
                   "Each image is stretched to its own range: the data set's normalisation is not stored.")
        flip_gallery(diff, images, names)
    else:
        st.success("No answer changed: A and B agree on every test example.")
