"""What compression changed in an image classifier, for the Report: the lines (flips, the classes that lost most,
calibration) and a few flipped test examples, on the page and as HTML in the offline report."""
from __future__ import annotations

import html

import streamlit as st

from ..charts_behaviour import gallery_captions, png_data_uri, what_changed
from ..components import flip_gallery

GALLERY = 6  # a glimpse, kept small (the offline report inlines them); Compare's Behaviour view shows them all

CAPTION = ("Accuracy hides churn: the answers each run gives differently from its reference, the classes that lost "
           "most (95% paired CI), and whether its confidence stayed honest (ECE).")
INTRO_HTML = ("Accuracy hides churn: the answers each run gives differently from its reference, newly wrong first; "
              "the classes that lost most, with 95% paired intervals; and the calibration error of its confidence "
              "(ECE).")


def show_image_change(change: tuple, names: tuple[str, str]) -> None:
    diff, images = change
    st.markdown("\n".join(f"- {line}" for line in what_changed(diff).values()))
    flip_gallery(diff, images, names, limit=GALLERY, per_row=GALLERY)


def image_change_html(diff: dict, images: list, names: tuple[str, str]) -> str:
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in what_changed(diff).values())
    captions = gallery_captions(diff, names)
    figures = "".join(f'<figure><img src="{png_data_uri(image)}" alt="test example {g["index"]}" '
                      f'width="{image.shape[1]}" height="{image.shape[0]}">'
                      f'<figcaption>{html.escape(caption)}</figcaption></figure>'
                      for image, caption, g in zip(images[:GALLERY], captions, diff["gallery"]))
    return f"<ul>{lines}</ul><div class=gallery>{figures}</div>"
