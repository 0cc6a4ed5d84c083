"""A text of the user's, uploaded in the sidebar: a binary file gets one sentence; a good one becomes the selected
data set, and the model picker switches to language models (once, this raised StreamlitWidgetAlreadyInstantiated)."""
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


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
