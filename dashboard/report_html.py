"""The stakeholder report as one self-contained HTML file (plotly.js inlined: opens offline)."""
from __future__ import annotations

import datetime
import html

import plotly.io as pio

from compression.labs.summary import versus_baseline

from .charts import runs_frame, tradeoff_chart
from .components import human_bytes, human_count


def build_report(selected: list[dict], baseline: dict, title: str = "Compression report") -> str:
    frame = runs_frame([baseline] + [r for r in selected if r["run_id"] != baseline["run_id"]])
    summaries = [versus_baseline(r, baseline) for r in selected if r["run_id"] != baseline["run_id"]]
    items = "".join(f"<li><b>{html.escape(r.get('label') or str(r['run_id']))}</b>: {html.escape(s['text'])}</li>"
                    for r, s in zip([r for r in selected if r["run_id"] != baseline["run_id"]], summaries))
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
<p>Baseline: <b>{html.escape(baseline.get('label') or '')}</b> (run {baseline['run_id']}, {html.escape(baseline['dataset'])}).
Generated {stamp}. Accuracy is on the held-out test split with a 95% Wilson interval; latency is the
median on CPU at the largest measured batch.</p>
<h2>Summary</h2><ul>{items or '<li>Only the baseline was selected.</li>'}</ul>
<h2>Charts</h2>{chart_html}
<h2>Runs</h2><table><tr><th>id</th><th>label</th><th>model</th><th>accuracy [95% CI]</th><th>params</th>
<th>size</th><th>gzip</th><th>MACs</th><th>CPU ms</th></tr>{rows}</table></body></html>"""
