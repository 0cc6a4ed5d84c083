"""In the browser: Compare's Behaviour view draws its charts and shows the flipped test examples as images."""
import pytest

from compression import BaselineConfig, PruneLabConfig, RunContext, RunStore, get_baseline, run_prune

from .conftest import screenshot, shared_app_server

pytestmark = pytest.mark.e2e
app_server = shared_app_server  # both tests only read the runs below: one server and one lab for the module
PREWARM_WORKER = False  # and run no job


@pytest.fixture(scope="module")
def pruned_digits(app_server):
    """A digits baseline and its 90% global_l1 child without fine-tuning, stored in the served app's lab."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPRESSION_LAB_HOME", str(app_server["home"]))
        ctx = RunContext(latency_time=0.02)
        _, base = get_baseline(BaselineConfig(dataset="digits", model="mlp:hidden=32", epochs=3, latency_batch=16),
                               ctx)
        child = run_prune(PruneLabConfig(from_run=base["id"], method="global_l1", sparsities=[0.9],
                                         finetune_epochs=0, latency_batch=16), ctx)["results"][0]
        return base, RunStore().get_run(child["run_id"])


def _gallery_widths(page, at_least: int = 1) -> list[int]:
    """naturalWidth of every image in the page's main section, once at least `at_least` are there and all have
    loaded (0: did not decode). The gallery arrives row by row: waiting for the first would count a part."""
    page.wait_for_function("n => { const imgs = [...document.querySelectorAll(\"[data-testid='stMain'] img\")];"
                           " return imgs.length >= n && imgs.every(i => i.complete); }", arg=at_least,
                           timeout=60_000)
    return page.eval_on_selector_all("[data-testid='stMain'] img", "imgs => imgs.map(i => i.naturalWidth)")


def test_flipped_examples_show_as_images_in_compare_and_report(page, app_server, pruned_digits):
    _, child = pruned_digits
    flips = round(child["extra"]["flip_rate"] * len(child["extra"]["predictions"]["label"]))
    assert flips > 0  # 90% of the weights gone without fine-tuning changes answers
    page.goto(f"{app_server['url']}/compare")
    page.get_by_text("Flipped examples, newly wrong first").wait_for(timeout=90_000)
    page.wait_for_selector(".main-svg")
    widths = _gallery_widths(page, min(flips, 24))
    assert len(widths) == min(flips, 24) and all(w == 64 for w in widths), widths  # 8x8 digits, 8x nearest
    assert page.get_by_text("newly wrong · true").count() >= 1  # each image says what changed
    assert page.locator(".main-svg").count() >= 4  # trade-off, per-class deltas, confusion change, reliability
    assert page.get_by_text("Per-class accuracy change").count() >= 1
    screenshot(page, "behaviour")

    page.goto(f"{app_server['url']}/report")
    page.get_by_text("What changed", exact=True).wait_for(timeout=90_000)
    widths = _gallery_widths(page)
    assert 0 < len(widths) <= 6 and all(w == 64 for w in widths), widths
    assert page.get_by_text("of answers changed").count() >= 1
    screenshot(page, "report-what-changed")


def test_the_downloaded_report_opens_offline_with_its_charts_gallery_and_speed_claims(page, app_server, pruned_digits,
                                                                                     browser, tmp_path):
    """The Report's HTML, as a presenter downloads it for a deck: offline, every chart draws, the "What changed"
    gallery's images decode, and each speed claim reads as on the page."""
    page.goto(f"{app_server['url']}/report")
    page.get_by_text("What changed", exact=True).wait_for(timeout=90_000)
    page.wait_for_selector(".main-svg")
    claims = [line.split(": ", 1)[-1] for line in page.locator("[data-testid='stMain'] li").all_inner_texts()
              if " faster [" in line or " slower [" in line or "about as fast [" in line]
    assert claims, "the Report states the pruned run's paired speed"
    charts_on_page = page.locator("[data-testid='stMain'] .js-plotly-plot").count()
    with page.expect_download() as download:
        page.get_by_text("Download HTML report").click()
    path = tmp_path / "deck-report.html"
    download.value.save_as(path)

    offline = browser.new_context(offline=True)
    report = offline.new_page()
    requests = []
    report.on("request", lambda r: requests.append(r.url))
    report.goto(path.as_uri())
    report.wait_for_selector(".main-svg")
    report.wait_for_function("n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n",
                             arg=charts_on_page, timeout=30_000)  # every chart of the page drew
    assert report.get_by_text("What changed", exact=True).count() == 1
    widths = _gallery_widths_in(report)
    assert widths and all(w == 64 for w in widths), widths  # the flipped digits, decoded offline
    text = report.inner_text("body")
    assert all(claim in text for claim in claims), (claims, text[:2000])
    assert [u for u in requests if not u.startswith("file:")] == []  # nothing fetched: it works on a plane
    offline.close()


def _gallery_widths_in(page) -> list[int]:
    page.wait_for_function("() => [...document.images].length > 0 && [...document.images].every(i => i.complete)",
                           timeout=30_000)
    return page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
