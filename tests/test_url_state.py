"""The sidebar's set-up (data set, model, device) lives in the URL's query string, so a reload or a link opens
the same view: read on a session's first run, written back after every run."""
from urllib.parse import parse_qs, urlencode

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture(autouse=True)
def no_prewarm(monkeypatch):
    monkeypatch.setenv("COMPRESSION_LAB_PREWARM", "0")  # no job worker: nothing here runs a job


def open_app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def sidebar(at: AppTest) -> tuple:
    return (at.sidebar.selectbox(key="dataset").value, at.sidebar.selectbox(key="model_name").value,
            at.sidebar.text_input(key="model_args").value, at.sidebar.selectbox(key="device").value)


def test_the_url_seeds_the_sidebar():
    at = open_app(dataset="synthetic", model="mlp:hidden=16", device="cpu", present="1")
    assert sidebar(at) == ("synthetic", "mlp", "hidden=16", "cpu")
    assert not at.warning and not at.sidebar.warning
    assert at.query_params["dataset"] == "synthetic" and at.query_params["model"] == "mlp:hidden=16"
    assert at.query_params["present"] == "1"  # other params are kept
    at.switch_page("app_pages/prune.py").run()  # a page switch keeps the set-up, and the URL
    assert sidebar(at)[:2] == ("synthetic", "mlp") and at.query_params["dataset"] == "synthetic"


def test_a_changed_choice_is_written_to_the_url():
    at = open_app()
    assert sidebar(at) == ("digits", "lenet5", "", "cpu")
    assert not {"dataset", "model", "device"} & set(at.query_params)  # defaults are left out
    at.sidebar.selectbox(key="dataset").set_value("synthetic")
    at.sidebar.selectbox(key="model_name").set_value("cnn").run()
    assert at.query_params["dataset"] == "synthetic" and at.query_params["model"] == "cnn"
    at.sidebar.text_input(key="model_args").input("width=8").run()
    assert at.query_params["model"] == "cnn:width=8"
    at.sidebar.selectbox(key="dataset").set_value("digits").run()  # back to the default: out of the URL
    assert "dataset" not in at.query_params and at.query_params["model"] == "cnn:width=8"
    # what was written opens the same set-up in a new session
    again = open_app(**at.query_params)
    assert sidebar(again) == ("digits", "cnn", "width=8", "cpu")


def test_an_image_folder_with_options_round_trips(tmp_path):
    folder = tmp_path / "images"
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
    name = f"imagefolder:{folder}?size=24&stream=1"
    at = open_app(dataset=name)
    assert at.sidebar.selectbox(key="dataset").value == "image folder..."
    assert at.sidebar.text_input(key="image_folder").value == f"{folder}?size=24&stream=1"
    assert at.query_params["dataset"] == name  # encoded and decoded whole: its ? & = are not split off
    assert set(at.query_params) == {"dataset"}
    assert parse_qs(urlencode({"dataset": name}))["dataset"] == [name]


@pytest.mark.parametrize("query, what", [({"dataset": "no_such_set"}, "data set 'no_such_set'"),
                                         ({"model": "no_such_model:x=1"}, "model 'no_such_model:x=1'"),
                                         ({"device": "tpu"}, "device 'tpu'")])
def test_an_unknown_value_falls_back_to_the_default(query, what):
    at = open_app(**query)
    assert sidebar(at) == ("digits", "lenet5", "", "cpu")
    assert [w.value for w in at.sidebar.warning] == [f"The link's {what} is not known here; using the default."]
    assert not at.error and not set(query) & set(at.query_params)  # the unknown value leaves the URL
    at.sidebar.selectbox(key="dataset").set_value("synthetic").run()  # said once, not on every rerun
    assert not at.sidebar.warning and not at.exception
