"""Your own Hugging Face checkpoint on the dashboard (AppTest): the sidebar names the family it recognised from the
folder's config.json, the Prune page offers heads + MLP and depth and says what they do to that family, and the
Compare page hands an hf: run back as a zipped Hugging Face folder (or says in one sentence why it cannot)."""
import io
import json
import zipfile

from compression import BaselineConfig, RunStore, get_baseline
from conftest import quick_ctx
from hf_tiny import hf_family_folders  # noqa: F401 (a session fixture: name -> folder)
from test_lm_pages import open_page


def with_model(at, folder) -> None:
    at.sidebar.selectbox(key="model_name").set_value("hf").run()
    at.sidebar.text_input(key="model_args").set_value(str(folder)).run()
    assert not at.exception, [e.value for e in at.exception]


def sidebar_lines(at) -> list[str]:
    return [c.value for c in at.sidebar.caption] + [e.value for e in at.sidebar.error]


def test_the_sidebar_names_the_family_it_recognised_in_an_hf_folder(lab_home, hf_family_folders, tmp_path):
    at = open_page("home", "pydoc")
    with_model(at, hf_family_folders["llama"])
    line = next(c for c in sidebar_lines(at) if c.startswith("Family:"))
    assert "**llama**" in line and "'llama'" in line and "whole KV groups" in line
    with_model(at, hf_family_folders["gpt2"])
    line = next(c for c in sidebar_lines(at) if c.startswith("Family:"))
    assert "**gpt2**" in line and "its heads stay: only MLP channels go" in line
    unknown = tmp_path / "mystery"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "mystery"}))
    with_model(at, unknown)
    line = next(c for c in sidebar_lines(at) if c.startswith("Family:"))
    assert "'mystery'" in line and "generic fallback" in line and "int8 only" in line
    with_model(at, tmp_path / "nowhere")
    assert any(e.value.startswith("No Hugging Face model folder") for e in at.sidebar.error)
    assert not any(c.startswith("Family:") for c in sidebar_lines(at))


def test_the_prune_page_offers_structured_methods_for_an_hf_model(lab_home, hf_family_folders):
    at = open_page("prune", "pydoc")
    with_model(at, hf_family_folders["gpt2"])
    method = at.selectbox[0]
    assert {"Heads + MLP units (structured)", "Whole layers (structured)"} <= set(method.options)
    method.set_value("heads_mlp")
    next(b for b in at.button if b.label == "Prune").click().run()
    assert not at.exception and not at.error
    assert any("On this gpt2 checkpoint: its heads stay: only MLP channels go" in c.value for c in at.caption)
    job = RunStore().list_jobs()[0]  # queued for the hf model, not refused by the page
    assert job["params"]["method"] == "heads_mlp" and job["params"]["model"] == f"hf:{hf_family_folders['gpt2']}"
    RunStore().request_cancel(job["id"])
    at.selectbox[0].set_value("depth")
    next(b for b in at.button if b.label == "Prune").click().run()
    assert any("On this gpt2 checkpoint: whole blocks go" in c.value for c in at.caption)
    RunStore().request_cancel(RunStore().list_jobs()[0]["id"])


def test_the_compare_page_offers_an_hf_run_as_a_hugging_face_folder(lab_home, hf_family_folders):
    folder = hf_family_folders["llama"]
    _, run = get_baseline(BaselineConfig(dataset="pydoc", model=f"hf:{folder}", train_steps=2, batch_size=4,
                                         context=32), quick_ctx())
    at = open_page("compare", "pydoc")
    assert not at.get("download_button")  # lazy: nothing exported until asked
    assert at.selectbox(key="hf-export-run").value["run_id"] == run["id"]
    at.button(key="hf-export-prepare").click().run()
    assert not at.exception and not at.error
    download = at.get("download_button")
    assert len(download) == 1 and f"run-{run['id']}-hf.zip" in download[0].proto.label
    data = at.session_state[f"hf-zip-{run['id']}"]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert f"run-{run['id']}-hf/config.json" in names and f"run-{run['id']}-hf/model.safetensors" in names
    assert any(n.endswith("tokenizer.json") for n in names)
    # an int8 child transformers cannot load: the export's own sentence, no download, no traceback
    from compression.labs.configs import QuantizeLabConfig
    from compression.labs.quantize import run_quantize
    child = run_quantize(QuantizeLabConfig(from_run=run["id"], methods=["dynamic_int8"]), quick_ctx())["results"][0]
    at = open_page("compare", "pydoc")
    assert at.selectbox(key="hf-export-run").value["run_id"] == child["run_id"]  # newest first
    at.button(key="hf-export-prepare").click().run()
    assert not at.exception and not at.get("download_button")
    assert any(f"Run {child['run_id']} is quantized to int8" in i.value and "module or state_dict" in i.value
               for i in at.info)
