"""The README's pictures exist, are real screenshots, and are the ones `make screenshots` makes from a real run
(assets/screenshots.py), so none can be a hand-made picture of an interface that has since changed."""
import importlib.util
import re
import struct

from conftest import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def readme_pictures() -> list[str]:
    return re.findall(r"!\[[^\]]*\]\((assets/[^)\s]+)\)", (ROOT / "README.md").read_text())


def script_pictures() -> dict:
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "assets" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PICTURES


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC, "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def test_every_picture_the_readme_names_exists_and_is_made_by_the_screenshot_script():
    pictures = readme_pictures()
    made = script_pictures()
    assert len(pictures) >= 5, pictures  # Home after the demo, Compare, Behaviour, Report, Plan
    for name in pictures:
        path = ROOT / name
        assert path.is_file(), f"the README shows {name}, which does not exist: run `make screenshots`"
        width, height = png_size(path.read_bytes())
        assert width >= 1000 and height >= 600, (name, width, height)  # a browser window, not an icon
        assert path.name in made, f"{name} is not one that assets/screenshots.py makes"
