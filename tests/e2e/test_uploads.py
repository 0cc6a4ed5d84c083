"""Home, and what a user uploads. A text in the sidebar: a binary file gets one sentence; a good one becomes the
selected data set, and the model picker switches to language models (once, this raised
StreamlitWidgetAlreadyInstantiated). A corrupt checkpoint under the baseline: a message, not a traceback. The tests
share one app server (each in its own tab and session): none runs a job, and each reads only what it made."""
import re

import pytest
from playwright.sync_api import expect

from .conftest import app_store, screenshot, shared_app_server

pytestmark = pytest.mark.e2e
app_server = shared_app_server
PREWARM_WORKER = False


def _goto(page, app_server, path=""):
    page.goto(f"{app_server['url']}/{path}")
    page.wait_for_selector("[data-testid='stSidebar']")


def _sidebar(page):
    return page.locator("[data-testid='stSidebar']")


def test_a_text_upload_is_checked_then_selected(page, app_server, tmp_path):
    bad, good = tmp_path / "bad.txt", tmp_path / "notes.txt"
    bad.write_bytes(b"abc\0def" * 50)
    good.write_text("\n\n".join(f"Paragraph {i}: " + "some words " * 30 for i in range(15)), encoding="utf-8")
    page.goto(app_server["url"])
    _sidebar(page).get_by_text("Upload a text (.txt, .md)").click()
    _sidebar(page).locator("input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Add as a data set").click()
    page.get_by_text("bad.txt looks binary (it has NUL bytes), not text.").wait_for(timeout=30_000)
    _sidebar(page).locator("input[type=file]").set_input_files(str(good))
    # the refusal goes once the server has the new file; clicking earlier would add bad.txt again
    expect(page.get_by_text("bad.txt looks binary")).to_have_count(0, timeout=30_000)
    page.get_by_role("button", name="Add as a data set").click()
    dataset = _sidebar(page).get_by_role("combobox", name="Dataset", exact=True)
    expect(dataset).to_have_value("upload: notes.txt", timeout=30_000)
    expect(_sidebar(page).get_by_role("combobox", name="Baseline model", exact=True)).to_have_value("gpt")
    assert page.locator("[data-testid='stException']").count() == 0


def test_home_shows_hardware(page, app_server):
    _goto(page, app_server)
    page.get_by_text("Hardware: CPU").wait_for()
    page.get_by_role("button", name="Run the teaching demo").wait_for()
    screenshot(page, "home")


def test_a_corrupt_upload_gets_a_message_not_a_traceback(page, app_server, tmp_path):
    _goto(page, app_server, "baseline")
    page.get_by_text(re.compile(r"^Or upload")).click()  # the expander under the baseline
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 64)
    page.locator("[data-testid='stMain'] input[type=file]").set_input_files(str(bad))  # the sidebar has one too
    page.get_by_role("button", name="Import and measure").click()
    page.get_by_text("not a valid PyTorch state dict").wait_for(timeout=30_000)
    assert page.get_by_text("Traceback").count() == 0
    assert app_store(app_server).list_jobs() == []  # the file was checked in the web process: no upload job
