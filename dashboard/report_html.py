"""The stakeholder report as one self-contained HTML file (plotly.js inlined: opens offline)."""
from __future__ import annotations

import datetime
import html

import plotly.io as pio

from .display import IMAGE_EXPORT  # each chart's camera button saves a 3x PNG: slide-ready
from .charts import runs_frame, tradeoff_chart
from .components import human_bytes, human_count
from .views import VIEWS, view_of


def _what_changed(rows, changes: dict) -> str:
    """Per compared run: flips, most hurt classes, ECE, and a few flipped examples as inline PNGs (image runs); next-
    token flips, the loss change, completions side by side and a sample with its flipped tokens (language models)."""
    parts, kinds = [], set()
    for run, ref, _ in rows:
        change = changes.get(run["run_id"])
        if ref is None or change is None:
            continue
        head = f"<h3>{html.escape(run.get('label') or str(run['run_id']))} vs #{ref['run_id']}</h3>"
        if isinstance(change, str):  # why no comparison was possible (e.g. the weights are gone)
            parts.append(f"{head}<p class=note>{html.escape(change)}</p>")
            continue
        diff, images = change
        view = view_of(diff)  # the task of the runs it compares (a diff names their data set)
        kinds.add(view.name)
        parts.append(head + view.change.html(diff, images, (f"#{ref['run_id']}", f"#{run['run_id']}")))
    if not parts:
        return ""
    # each kind of diff's paragraph that introduces them, then one section per run
    return ("<h2>What changed</h2>" + "".join(f"<p>{VIEWS[kind].change.intro}</p>" for kind in sorted(kinds))
            + "".join(parts))


def build_report(rows: list[tuple[dict, dict | None, str]], title: str = "Compression report",
                 changes: dict | None = None) -> str:
    """`rows`: (run, its reference run or None, the verdict text) as the Report page shows them. `changes`:
    run id -> (diff of its reference and it, gallery thumbnails), or a sentence saying why there is none."""
    what = _what_changed(rows, changes or {})
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
    chart_html = "".join(pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, config=IMAGE_EXPORT)
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
li{{margin:.3em 0}}.gallery{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0;width:150px;font-size:12px}}figure img{{image-rendering:pixelated;display:block}}
.note{{color:#b91c1c}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {stamp}. Each run is compared with its reference (its lineage root unless chosen otherwise).
Accuracy is on the held-out test split with a 95% Wilson interval. Speed-ups come only from the two models
timed together, interleaved, with a 95% CI, the other processes' load and the machine; "noisy" marks a
timing taken under load or with a wide spread.</p>
<h2>Summary</h2><ul>{items or '<li>Only the baseline was selected.</li>'}</ul>
{what}<h2>Charts</h2>{chart_html}
<h2>Runs</h2><table><tr><th>id</th><th>label</th><th>model</th><th>accuracy [95% CI]</th><th>params</th>
<th>size</th><th>gzip</th><th>MACs</th><th>CPU ms</th></tr>{rows}</table></body></html>"""
