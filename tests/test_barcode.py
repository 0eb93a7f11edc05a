"""VIN barcodes: payload rules, decoding rendered and synthetic barcodes, fusion with OCR."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vin_ocr import vin as vinlib
from vin_ocr.barcode import (
    BARCODE_CONF,
    BarcodeVin,
    barcode_vin,
    fuse,
    read_barcodes,
    vin_from_barcode,
)
from vin_ocr.data import synth
from vin_ocr.reading import Reading

NA = "1M8GDM9AXKP042788"  # 49 CFR 565.15's worked example: check digit X, mandatory
EU = "WVWZZZ1JZXW000001"  # Europe: check digit optional


def _code39_image(payload: str) -> Image.Image:
    """A python-barcode Code 39 (no check character) on white, as a label printer would."""
    import barcode
    from barcode.writer import ImageWriter

    buf = io.BytesIO()
    barcode.Code39(payload, add_checksum=False, writer=ImageWriter()).write(
        buf, options={"module_width": 0.25, "quiet_zone": 4.0, "write_text": False}
    )
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


# --- payload rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (NA, NA),  # the VIN alone
        (EU, EU),
        ("I" + NA, NA),  # the import marker
        ("I" + EU, EU),
        (NA + "7", NA),  # 18: one stray trailing character (what remains validates)
        ("W" + NA, NA),  # 18: drop the first
        ("X" + NA + "7", NA),  # 19: the first and the last
        ("AB" + NA + "7", NA),  # 20: the first two and the last
        (" " + NA.lower() + "\n", NA),  # lower case and white space: the same VIN
        ("VIN:" + NA, NA),  # a field of a QR / Data Matrix payload
        ("[)>\x1e06\x1dI" + EU + "\x1e\x04", EU),  # ISO 15434 field: I + VIN
    ],
)
def test_payloads_that_carry_a_vin(payload, expected):
    assert vin_from_barcode(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        "E00397409",  # Code 128 part number on the same sticker
        "",
        "1M8GDM9A3KP042788",  # 17 characters, wrong mandatory check digit
        "I1M8GDM9A3KP042788",  # I + an invalid VIN: never stripped blindly
        "X1M8GDM9A3KP042788Z",  # 19: what remains fails
        "AB1M8GDM9A3KP042788Z",  # 20: what remains fails
        # 20: what remains ('M8G...', '8GD...', '039...') validates where the check digit is
        # optional, but its check digit is wrong: a strip needs it
        "I" + NA + "77",
        NA + "123",
        "E00397409E00397409XX",
        "1M8GDM9AXKPO42788",  # forbidden letter O
        "A" * 21,  # longer than any rule
        NA + " " + "1HGCM82633A004352",  # two different VINs in one payload: ambiguous
        # ISO 15434 parts label (seen on a real photo): a lot number 'T' + 16 characters is no
        # VIN although it validates as a European one; fields need the check digit
        "[)>\x1e06\x1dY1220000000000X\x1dP25187045\x1d12V631065646\x1dTB1132713A8SX0201\x1e\x04",
        "VIN:" + EU,  # a field whose (optional) check digit is wrong
    ],
)
def test_payloads_that_are_not_a_vin(payload):
    assert vin_from_barcode(payload) is None


def test_strips_other_than_the_import_marker_need_the_check_digit():
    # EU's check digit (optional in Europe) is wrong: the plain VIN and I + VIN are fine ...
    assert vinlib.is_valid(EU) and not vinlib.check_digit_ok(EU)
    assert vin_from_barcode("I" + EU) == EU
    # ... but a strip of 18-20 characters is not taken on validation alone
    assert vin_from_barcode("W" + EU) is None
    assert vin_from_barcode("X" + EU + "7") is None
    assert vin_from_barcode("W" + NA) == NA


# --- decoding ----------------------------------------------------------------------------------


def test_decodes_a_python_barcode_rendered_vin():
    img = _code39_image("I" + NA)
    found = read_barcodes(img)
    assert [(b.text, b.format) for b in found] == [("I" + NA, "Code39")]
    x0, y0, x1, y1 = found[0].box
    assert 0 <= x0 < x1 <= img.width and 0 <= y0 < y1 <= img.height
    got = barcode_vin(np.asarray(img))  # an RGB array works as well as a PIL image
    assert got is not None and (got.vin, got.payload, got.format) == (NA, "I" + NA, "Code39")


def test_a_part_number_barcode_is_read_but_is_no_vin():
    img = _code39_image("E00397409")
    assert [b.text for b in read_barcodes(img)] == ["E00397409"]
    assert barcode_vin(img) is None


def test_matrix_codes_and_the_best_vin_of_several():
    import zxingcpp

    def sym(text, fmt):
        im = zxingcpp.create_barcode(text, fmt).to_image(scale=4, add_quiet_zones=True)
        return Image.fromarray(np.asarray(im)).convert("RGB")

    parts = [
        sym("VIN:" + NA, zxingcpp.BarcodeFormat.QRCode),
        sym("E00397409", zxingcpp.BarcodeFormat.Code128),
        sym(NA, zxingcpp.BarcodeFormat.DataMatrix),
    ]
    canvas = Image.new("RGB", (sum(p.width for p in parts) + 40, 400), "white")
    x = 10
    for p in parts:
        canvas.paste(p, (x, 10))
        x += p.width + 10
    assert {b.format for b in read_barcodes(canvas)} == {"QRCode", "Code128", "DataMatrix"}
    got = barcode_vin(canvas)
    assert got is not None and got.vin == NA and got.format == "DataMatrix"


def test_bad_image_is_a_clear_error():
    with pytest.raises(ValueError, match="read_barcodes: expected a PIL image"):
        read_barcodes(np.zeros((4, 4), dtype=np.float32))


CLEAN = {"kind": "scene", "looks": ["sticker"], "augment": {"strength": 0}}


@pytest.mark.parametrize("index", range(6))
def test_synthetic_sticker_barcode_decodes_on_a_clean_render(index):
    img, vin, _ = synth.render_sample(index, seed=3, cfg=CLEAN)
    got = barcode_vin(img)
    assert got is not None and got.vin == vin and got.format.startswith("Code39")
    assert got.payload in (vin, "I" + vin)


def test_augmentations_decide_when_the_sticker_barcode_is_unreadable():
    from vin_ocr.data import augment

    img, vin, _ = synth.render_sample(0, seed=3, cfg=CLEAN)
    for readable in (augment.jpeg(img, 60), augment.gaussian_blur(img, 0.5)):
        got = barcode_vin(readable)
        assert got is not None and got.vin == vin
    assert barcode_vin(augment.gaussian_blur(img, 3.0)) is None  # bars melt together


# --- fusion ------------------------------------------------------------------------------------


def _bc(vin: str) -> BarcodeVin:
    return BarcodeVin(vin=vin, payload="I" + vin, format="Code39", box=(5, 200, 300, 240))


def test_fuse_agree_raises_confidence_and_keeps_the_ocr_reading():
    ocr = Reading(NA, char_conf=(0.5,) + (0.999,) * 16, box=(5, 100, 300, 130))
    r = fuse(ocr, _bc(NA))
    assert (r.text, r.source, r.alternative, r.box) == (NA, "agree", None, ocr.box)
    assert r.char_conf == (BARCODE_CONF,) + (0.999,) * 16
    assert fuse(Reading(NA), _bc(NA)).char_conf == (BARCODE_CONF,) * 17


def test_fuse_disagree_barcode_wins_and_the_ocr_reading_is_kept():
    misread = NA[:5] + "8" + NA[6:]
    r = fuse(Reading(misread, unconstrained=misread, char_conf=(0.9,) * 17), _bc(NA))
    assert (r.text, r.source, r.alternative) == (NA, "disagree", misread)
    assert r.box == (5, 200, 300, 240) and r.char_conf == (BARCODE_CONF,) * 17
    assert not r.repaired  # the OCR's own search did not produce this text


def test_fuse_barcode_only():
    r = fuse(Reading(""), _bc(EU))
    assert (r.text, r.source, r.alternative) == (EU, "barcode", None)


def test_fuse_ocr_only():
    r = fuse(Reading(NA, char_conf=(0.8,) * 17), None)
    assert (r.text, r.source, r.char_conf) == (NA, "ocr", (0.8,) * 17)
    assert fuse(Reading(""), None).source is None  # nothing read by either


def test_fuse_invalid_barcode_vin_loses_to_ocr_but_is_reported():
    bad = NA[:8] + "3" + NA[9:]  # wrong mandatory check digit
    r = fuse(Reading(NA), _bc(bad))
    assert (r.text, r.source, r.alternative) == (NA, "disagree", bad)


def test_fuse_on_synthetic_stickers_agree_disagree_barcode_only():
    img, vin, _ = synth.render_sample(1, seed=3, cfg=CLEAN)
    bc = barcode_vin(img)
    assert fuse(Reading(vin), bc).source == "agree"
    wrong = vin[:-1] + str((int(vin[-1]) + 1) % 10)
    r = fuse(Reading(wrong), bc)
    assert (r.text, r.source, r.alternative) == (vin, "disagree", wrong)
    assert fuse(Reading(""), bc).text == vin


def test_reading_json_reports_source_and_alternative():
    r = Reading(NA, box=(1, 2, 3, 4), source="disagree", alternative=EU)
    assert r.to_json() == {"text": NA, "box": [1, 2, 3, 4], "source": "disagree", "alternative": EU}
    assert "source" not in Reading(NA).to_json()
    with pytest.raises(ValueError, match="source='both'"):
        Reading(NA, source="both")
