"""A zip of an image folder uploaded as a data set: real zips of real PNGs, hostile zips written byte by byte,
the CLI verb, and the sidebar's uploader through AppTest."""
import io
import json
import stat
import zipfile

import pytest

from pathlib import Path

from compression import LabError, RunStore, load_dataset
from compression.labs.io import data_upload
from compression.labs.io.data_upload import (import_image_zip, run_import_data, save_zip, upload_label,
                                          uploaded_datasets, uploads_dir)

from conftest import ROOT
from test_image_folder import write_folder


def zip_of(folder, prefix="", extra=()):
    """The folder's files zipped under `prefix`, plus (name, bytes) extras."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + str(path.relative_to(folder)))
        for name, data in extra:
            archive.writestr(name, data)
    return buffer.getvalue()


def nothing_left_behind():
    return not uploads_dir().exists() or not any(uploads_dir().iterdir())


@pytest.fixture()
def folder(tmp_path):
    return write_folder(tmp_path / "pics", per_class=10)


def test_a_zipped_folder_becomes_a_data_set_once(folder, lab_home):
    blob = zip_of(folder, "flowers/", extra=[("__MACOSX/flowers/._0.png", b"resource fork"),
                                             ("flowers/.DS_Store", b"finder"), ("flowers/README.txt", b"notes")])
    name = import_image_zip(blob, "My Flowers.zip")
    data = load_dataset(name)
    assert data.class_names == ("class_0", "class_1", "class_2", "class_3")
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 40
    root = data_upload._data_root(uploads_dir() / name.split("/datasets/")[1].split("/")[0])
    written = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert len(written) == 40 and all(n.endswith(".png") for n in written)  # only the images were unpacked
    assert import_image_zip(blob, "My Flowers.zip") == name  # the same zip again: the same data set
    assert uploaded_datasets()[0] == name and upload_label(name).startswith("upload: My_Flowers (")
    assert upload_label("digits") == "digits"


@pytest.mark.parametrize("member, why", [("../evil.png", "outside the folder"), ("/etc/evil.png", "outside"),
                                         ("C:/evil.png", "outside")])
def test_a_zip_that_writes_outside_its_folder_is_refused(folder, lab_home, member, why):
    blob = zip_of(folder, extra=[(member, b"x")])
    with pytest.raises(LabError, match=why):
        import_image_zip(blob, "slip.zip")
    assert nothing_left_behind()


def test_links_bombs_and_junk_are_refused_with_one_sentence(folder, lab_home, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("class_0/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(LabError, match="holds a link"):
        import_image_zip(buffer.getvalue(), "link.zip")
    with pytest.raises(LabError, match="not a zip file"):
        import_image_zip(b"PK\x03\x04 but not really", "fake.zip")
    with pytest.raises(LabError, match="is empty"):
        import_image_zip(b"", "empty.zip")
    with pytest.raises(LabError, match="holds no images"):
        import_image_zip(zip_of(folder.parent / "absent", extra=[("a.txt", b"text")]), "text.zip")
    monkeypatch.setattr(data_upload, "MAX_UNPACKED_BYTES", 1000)  # the header's sizes say too big
    with pytest.raises(LabError, match="would unpack to"):
        import_image_zip(zip_of(folder), "big.zip")
    monkeypatch.undo()
    # a header that lies: one member's recorded size patched down in the central directory (a zip bomb's trick)
    blob = bytearray(zip_of(folder))
    archive = zipfile.ZipFile(io.BytesIO(bytes(blob)))
    info = archive.infolist()[0]
    central = bytes(blob).index(b"PK\x01\x02")
    size_at = central + 24  # uncompressed size in the first central directory record
    assert int.from_bytes(blob[size_at:size_at + 4], "little") == info.file_size
    blob[size_at:size_at + 4] = (10).to_bytes(4, "little")
    with pytest.raises(LabError, match="cannot be unpacked|more than its header"):
        import_image_zip(bytes(blob), "liar.zip")
    blob = bytearray(zip_of(folder))  # a member marked encrypted: refused, no password asked for
    central = bytes(blob).index(b"PK\x01\x02")
    blob[central + 8] |= 1
    with pytest.raises(LabError, match="'class_0/0.png' is encrypted; unpack it without a password."):
        import_image_zip(bytes(blob), "locked.zip")
    clash = zip_of(folder, extra=[("class_0/0.png/inner.png", b"x")])  # a file where a folder must go
    with pytest.raises(LabError, match="cannot be unpacked"):
        import_image_zip(clash, "clash.zip")
    assert nothing_left_behind()


def test_a_zip_of_images_that_do_not_load_is_not_kept(folder, lab_home):
    (folder / "class_2" / "3.png").write_bytes(b"not a png")
    with pytest.raises(LabError, match=r"bad.zip does not hold a usable image folder: .*3.png is not an image"):
        import_image_zip(zip_of(folder), "bad.zip")
    assert nothing_left_behind()


def test_the_cli_imports_a_zip_and_refuses_a_bad_one_in_one_line(folder, lab_home, tmp_path, capsys):
    from test_cli import in_process
    good = tmp_path / "pics.zip"
    good.write_bytes(zip_of(folder, "pics/"))
    code, out, err = in_process(capsys, "import-data", str(good), "--json", "--quiet")
    assert code == 0, err
    info = json.loads(out)
    assert info["dataset"].startswith("imagefolder:") and info["num_classes"] == 4 and info["streamed"] is False
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"garbage")
    code, out, err = in_process(capsys, "import-data", str(bad), "--json")
    assert code == 2 and err.strip() == "error: bad.zip is not a zip file."


def test_an_import_job_reports_progress_can_be_cancelled_and_removes_the_saved_zip(folder, lab_home):
    from compression.errors import CancelledError
    from compression.labs.configs import ImportDataConfig
    from compression.labs.context import RunContext

    blob = zip_of(folder, "pics/")
    with pytest.raises(LabError, match="not a zip file"):  # the page's instant check: nothing saved
        save_zip(b"garbage", "garbage.zip")
    events = []
    saved = save_zip(blob, "pics.zip")
    with pytest.raises(CancelledError):
        run_import_data(ImportDataConfig(path=saved, filename="pics.zip"),
                        RunContext(progress=events.append, should_cancel=lambda: bool(events)))
    assert nothing_left_behind() and not Path(saved).exists()  # cancelled after the first report
    events.clear()
    saved = save_zip(blob, "pics.zip")
    out = run_import_data(ImportDataConfig(path=saved, filename="pics.zip"), RunContext(progress=events.append))
    assert out["dataset"] in uploaded_datasets() and out["classes"] == ["class_0", "class_1", "class_2", "class_3"]
    assert out["label"].startswith("upload: pics (") and not Path(saved).exists()
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("Decoding each of the 40 images" in e["message"] for e in events)


def test_the_sidebar_adds_an_uploaded_zip_and_selects_it(folder, lab_home):
    from streamlit.testing.v1 import AppTest

    from conftest import wait_for

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    at.sidebar.selectbox(key="dataset").set_value("image folder...").run()
    assert any("until then the labs use digits" in c.value for c in at.sidebar.caption)
    uploader = next(u for u in at.sidebar.get("file_uploader") if u.label.startswith("Or upload a zip"))
    uploader.set_value(("broken.zip", b"not a zip", "application/zip")).run()
    at.sidebar.button(key="add_image_zip").click().run()
    assert "broken.zip is not a zip file." in [e.value for e in at.sidebar.error]
    assert nothing_left_behind()
    uploader = next(u for u in at.sidebar.get("file_uploader") if u.label.startswith("Or upload a zip"))
    uploader.set_value(("pics.zip", zip_of(folder), "application/zip")).run()
    at.sidebar.button(key="add_image_zip").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job_id = at.session_state["import_job"]
    store = RunStore()
    assert wait_for(lambda: store.get_job(job_id)["status"] in ("done", "failed"), timeout=120)
    assert store.get_job(job_id)["status"] == "done", store.get_job(job_id)["error"]
    at.run()  # the next rerun (the job panel's, in the app) selects what the job added
    chosen = at.sidebar.selectbox(key="dataset")
    assert chosen.value.startswith("imagefolder:") and chosen.value in uploaded_datasets()
    assert not at.sidebar.error and any("4 classes" in c.value for c in at.sidebar.caption)
