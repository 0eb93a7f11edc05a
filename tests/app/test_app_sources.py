"""The app says where a VIN came from: the printed text, the VIN barcode, both (agreeing or not)."""

from __future__ import annotations

import pytest

from vin_ocr.app import explain, read_image
from vin_ocr.data.synth import render_sample
from vin_ocr.reading import Reading

CLEAN = {"kind": "scene", "looks": ["sticker"], "augment": {"strength": 0}}


class Answers:
    """An engine double answering one fixed text (the fusion is under test, not a model)."""

    name = "answers"

    def __init__(self, text: str) -> None:
        self.text = text

    def read(self, images, crops=None):
        return [Reading(self.text) for _ in images]


@pytest.mark.parametrize(
    ("ocr", "source", "said"),
    [
        ("", "barcode", "the VIN barcode alone"),
        (None, "agree", "which agree"),
        (
            "1M8GDM9AXKP042788",
            "disagree",
            "**disagree**; the other reading was `1M8GDM9AXKP042788`",
        ),
    ],
)
def test_a_sticker_photo_says_where_its_vin_came_from(ocr, source, said):
    image, vin, _ = render_sample(0, seed=3, cfg=CLEAN)  # its Code 39 barcode decodes
    result = read_image(image, Answers(vin if ocr is None else ocr), None)
    assert result.vin == vin and result.reading.source == source
    assert "- **Source:** " in explain(result) and said in explain(result)
    assert result.line_crop is False


def test_a_line_crop_is_not_searched_for_a_barcode():
    image, _, _ = render_sample(0, seed=3, cfg=CLEAN)
    result = read_image(image, Answers(""), True)
    assert result.vin == "" and result.reading.source is None and "Source" not in explain(result)
