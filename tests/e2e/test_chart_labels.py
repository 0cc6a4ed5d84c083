"""In the browser: the Prune page's accuracy-vs-sparsity chart names methods as the Compare page does (the
registry's display name, not the id) and, with one sparsity, its axis still runs 0-100% (not 0-150%)."""
import pytest

from compression import PruneLabConfig, RunContext, run_prune
from compression.techniques.prune import METHODS

from .conftest import app_store

pytestmark = pytest.mark.e2e


def test_prune_chart_shows_display_names_and_a_0_to_100_percent_axis_with_one_sparsity(page, app_server,
                                                                                        monkeypatch):
    monkeypatch.setenv("COMPRESSION_LAB_HOME", str(app_server["home"]))  # weights land in the app's lab too
    ctx = RunContext(store=app_store(app_server), latency_time=0.02)
    run_prune(PruneLabConfig(dataset="synthetic", model="mlp:hidden=16", epochs=1, latency_batch=8,
                             method="global_l1", sparsities=[0.9], finetune_epochs=0), ctx)

    page.goto(f"{app_server['url']}/prune?dataset=synthetic")
    page.get_by_text("Accuracy vs sparsity").first.wait_for(timeout=90_000)
    page.wait_for_selector(".main-svg")
    chart = "document.querySelector('.js-plotly-plot')"  # the first chart on the page: accuracy vs sparsity
    assert "Accuracy vs sparsity" in page.evaluate(f"{chart}._fullLayout.title.text")
    texts = "sel => [...{chart}.querySelectorAll(sel)].map(e => e.textContent)"
    legend = page.evaluate(texts.format(chart=chart), ".legendtext")
    assert METHODS.label("global_l1") in legend, legend
    assert "global_l1" not in legend, legend
    lo, hi = page.evaluate(f"{chart}._fullLayout.xaxis.range")
    assert -0.05 <= lo <= 0 and 1 <= hi <= 1.05, (lo, hi)
    ticks = page.evaluate(texts.format(chart=chart), ".xtick text")
    assert ticks[-1] == "100%", ticks
