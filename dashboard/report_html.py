"""The stakeholder report as one self-contained HTML file (plotly.js inlined: opens offline)."""
from __future__ import annotations

import datetime
import html

import plotly.io as pio

from .charts import runs_frame, tradeoff_chart
from .components import human_bytes, human_count


def build_report(rows: list[tuple[dict, dict | None, str]], title: str = "Compression report") -> str:
    """`rows`: (run, its reference run or None, the verdict text) as the Report page shows them."""
    runs = {r["run_id"]: r for _, r, _ in rows if r is not None}
    runs.update({r["run_id"]: r for r, _, _ in rows})
    frame = runs_frame(list(runs.values()))
    items = []
    for run, ref, text in rows:
        versus = f" vs #{ref['run_id']}" if ref else ""
        items.append(f"<li><b>{html.escape(run.get('label') or str(run['run_id']))}</b>{versus}: "
                     f"{html.escape(text)}</li>")
    items = "".join(items)
    charts = [tradeoff_chart(frame, "params"), tradeoff_chart(frame, "size_bytes"),
              tradeoff_chart(frame, "latency_ms", title="Accuracy vs CPU latency (largest batch)")]
    chart_html = "".join(pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False)
                         for i, fig in enumerate(charts))
    rows = "".join(
        f"<tr><td>{r['run_id']}</td><td>{html.escape(str(r['label']))}</td><td>{html.escape(str(r['model']))}</td>"
        f"<td>{r['accuracy']:.4f} [{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]</td><td>{human_count(r['params'])}</td>"
        f"<td>{human_bytes(r['size_bytes'])}</td><td>{human_bytes(r['gzip_bytes'])}</td>"
        f"<td>{human_count(r['macs'])}</td><td>{'-' if r['latency_ms'] != r['latency_ms'] else f'{r.latency_ms:.2f}'}</td></tr>"
        for _, r in frame.iterrows())
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#111827}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left}}
li{{margin:.3em 0}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {stamp}. Each run is compared with its reference (its lineage root unless chosen otherwise).
Accuracy is on the held-out test split with a 95% Wilson interval. Speed-ups come only from the two models
timed together, interleaved, with a 95% CI, the other processes' load and the machine; "noisy" marks a
timing taken under load or with a wide spread.</p>
<h2>Summary</h2><ul>{items or '<li>Only the baseline was selected.</li>'}</ul>
<h2>Charts</h2>{chart_html}
<h2>Runs</h2><table><tr><th>id</th><th>label</th><th>model</th><th>accuracy [95% CI]</th><th>params</th>
<th>size</th><th>gzip</th><th>MACs</th><th>CPU ms</th></tr>{rows}</table></body></html>"""
