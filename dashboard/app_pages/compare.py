import json

import streamlit as st

from dashboard.charts import COST_AXES, lineage_ids, runs_frame, tradeoff_chart
from dashboard.state import get_store, records

st.title("Compare")
st.write("Every stored run, measured the same way. Filter, pick the cost axis, and follow a run's lineage.")
all_records = records()
if not all_records:
    st.info("No runs stored yet. Train a baseline or run the teaching demo on Home.")
    st.stop()

latency_keys = sorted({(e["device"], e["batch_size"]) for r in all_records for e in r.get("latency", [])})
c1, c2, c3 = st.columns([2, 2, 1])
cost = c1.selectbox("Cost axis", list(COST_AXES), index=list(COST_AXES).index("nonzero_params"),
                    format_func=COST_AXES.get, help="non-zero parameters show unstructured pruning; "
                    "parameters and latency show what really got smaller and faster")
device, batch = c2.selectbox("Latency on", latency_keys or [("cpu", 256)], index=len(latency_keys) - 1,
                             format_func=lambda k: f"{k[0]}, batch {k[1]}", disabled=cost != "latency_ms")
log_x = c3.checkbox("log x", value=True)
everything = runs_frame(all_records, device, batch)
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
st.plotly_chart(tradeoff_chart(frame, cost, log_x=log_x, highlight=highlight), key="compare-chart")

shown = frame[["run_id", "label", "technique", "dataset", "model", "parent_id", "accuracy", "acc_lo", "acc_hi",
               "params", "nonzero_params", "size_bytes", "gzip_bytes", "macs", "latency_ms"]]
table = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs-table",
                     column_config={"run_id": st.column_config.NumberColumn("id", format="%d"),
                                    "parent_id": st.column_config.NumberColumn("parent", format="%d"),
                                    "accuracy": st.column_config.NumberColumn(format="%.4f"),
                                    "acc_lo": st.column_config.NumberColumn("CI low", format="%.3f"),
                                    "acc_hi": st.column_config.NumberColumn("CI high", format="%.3f"),
                                    "latency_ms": st.column_config.NumberColumn(f"ms ({device}, b{batch})",
                                                                                format="%.3f")})
chosen = shown.iloc[table.selection.rows]["run_id"].tolist() if table.selection.rows else []
d1, d2, d3 = st.columns(3)
if d1.button(f"Delete {len(chosen)} selected", disabled=not chosen):
    get_store().delete_runs(chosen)
    st.toast(f"Deleted {len(chosen)} run(s)")
    st.rerun()
d2.download_button("Export CSV", frame.to_csv(index=False), "runs.csv", "text/csv")
kept = set(frame["run_id"])
d3.download_button("Export JSON", json.dumps([r for r in all_records if r["run_id"] in kept], indent=1, default=str),
                   "runs.json", "application/json")
