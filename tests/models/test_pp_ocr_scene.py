"""Whole photos with PP-OCR (vin_ocr/models/pp_ocr_scene.py): the general reader finds the VIN
line, the VIN model reads its span; photos train on their VIN line; crops=auto; EXIF photos; and
a handful of the real shared photos end to end (the real converted PP-OCRv6-small models)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import vin_ocr
from vin_ocr.data.sample import Sample, read_manifest
from vin_ocr.models.pp_ocr import VIN_CHARSET, PPOCRFamily
from vin_ocr.models.pp_ocr_scene import (
    LineReading,
    cut_span,
    fuse_line,
    label_line,
    retry_views,
    span_box,
    vin_span,
)
from vin_ocr.reading import Reading
from vin_ocr.training.loop import evaluate_model

SAMPLES = read_manifest(vin_ocr.SAMPLES_DIR / "manifest.jsonl")
SCENES = [s for s in SAMPLES if s.crop is False]
CROPS = [s for s in SAMPLES if s.crop]
SHARED = vin_ocr.REPO_ROOT.parent / "shared" / "vin-detection"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pretrained():
    """The converted pretrained recogniser with the VIN head (no training); the general reader
    and the detector load on the first scene."""
    family = PPOCRFamily()
    model, _ = family.build(None, None)
    return family, model.eval()


def _line(text: str, width: float = 10.0) -> LineReading:
    return LineReading(
        text, (0.9,) * len(text), tuple((width * i, width * i + 8) for i in range(len(text)))
    )


# -- the pieces ----------------------------------------------------------------------------------


def test_vin_span_finds_the_vin_after_a_label_and_through_safe_letters():
    line = _line("VIN: 1HGCM82633AO04352")  # O read for 0
    assert vin_span(line, "1HGCM82633A004352") == (50, 218)
    assert vin_span(line, "WVWZZZ1JZXW000001") is None


def test_cut_span_keeps_room_for_a_character_the_general_reader_lost():
    image = Image.new("RGB", (400, 40))
    tight = cut_span(image, (100, 270), 17)
    short = cut_span(image, (100, 260), 16)  # one character lost: one more character a side
    assert tight.size[0] == 170 + 2 * 8
    assert short.size[0] == 160 + 2 * 18  # 10 px per character: 0.8 + 1 characters a side


def test_span_box_follows_a_tilted_line():
    quad = np.array([[0, 0], [100, 20], [100, 40], [0, 20]], dtype=float)
    left, top, right, bottom = span_box(quad, 100, (50, 100))
    assert (left, right) == (50, 100) and top == 10 and bottom == 40


def test_fuse_line_prefers_the_vin_model_unless_the_general_reading_is_the_better_vin():
    valid = "1HGCM82633A004352"
    broken = "1HGCM82633A004353"  # wrong mandatory check digit
    assert fuse_line(Reading(valid), broken, None).text == valid
    assert fuse_line(Reading(broken), valid, (0.9,) * 17).text == valid
    assert fuse_line(Reading("WVWZZZ1JZXW000001"), "WVWZZZ1JZXW000007", None).text == (
        "WVWZZZ1JZXW000001"
    ), "a tie goes to the VIN model"
    assert fuse_line(Reading(""), valid, None).text == valid


def test_label_line_matches_the_label_or_gives_none():
    lines = [type("L", (), {"image": Image.new("RGB", (300, 20))})() for _ in range(2)]
    readings = [_line("TIRE PRESSURE 240 KPA"), _line("VIN 1HGCM82633A004352")]
    cut = label_line(lines, readings, "1HGCM82633A004352")
    assert cut is not None and cut.size[0] < 300
    assert label_line(lines, readings[:1], "1HGCM82633A004352") is None


def test_retry_views_darken_against_glare():
    bright = Image.new("RGB", (10, 10), (200, 200, 200))
    views = list(retry_views(bright))
    assert views[0] is bright
    assert np.asarray(views[1]).max() == round(255 * (200 / 255) ** 2)


# -- whole photos with the real models -----------------------------------------------------------


def test_scenes_read_through_the_general_reader_box_on_the_vin(pretrained):
    family, model = pretrained
    readings = family.read(model, [s.load_image() for s in SCENES], [False] * len(SCENES))
    exact = sum(r.text == s.vin for r, s in zip(readings, SCENES, strict=True))
    assert exact >= 7, [r.text for r in readings]
    for r, s in zip(readings, SCENES, strict=True):
        if r.text == s.vin:
            assert r.box is not None
            assert r.box[0] >= s.box[0] - 30, "the box is the VIN's span, not its label's"


def test_general_checkpoint_none_reads_every_line_with_the_vin_model(pretrained):
    family, model = pretrained
    alone = PPOCRFamily({"name": "pp_ocr", "general_checkpoint": "none"})
    alone._detector = family._detector  # same detector, no general reader
    scene = SCENES[0]
    assert alone.general_reader() is None
    assert alone.read(model, [scene.load_image()], [False])[0].text == scene.vin


def test_crops_auto_decides_per_image_as_the_flags_would(pretrained):
    family, model = pretrained
    picked = CROPS[::8] + SCENES[::2]
    images = [s.load_image() for s in picked]
    auto = family.read(model, images, [None] * len(picked))
    flagged = family.read(model, images, [s.crop for s in picked])
    assert [r.text for r in auto] == [r.text for r in flagged]
    assert [r.box is None for r in auto] == [bool(s.crop) for s in picked]


def test_a_line_photo_with_a_wide_margin_is_read_with_detection(pretrained):
    family, model = pretrained
    crop = CROPS[0].load_image()
    photo = Image.new("RGB", (crop.width * 2, crop.height * 6), (90, 90, 90))
    photo.paste(crop, (crop.width // 2, crop.height * 3))
    read = family.read(model, [photo], [None])[0]
    assert read.box is not None, "a margin around the line means detection first"
    assert read.text == CROPS[0].vin


def test_an_exif_rotated_photo_reads_upright(pretrained, tmp_path):
    family, model = pretrained
    scene = SCENES[0]
    upright = scene.load_image()
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    sample = Sample(image=path, vin=scene.vin, crop=False)
    assert sample.load_image().size == upright.size
    assert family.read(model, [sample.load_image()], [False])[0].text == scene.vin


# -- training and validation on photos -----------------------------------------------------------


def test_photos_train_on_their_vin_line(pretrained, caplog):
    family, model = pretrained
    scene = SCENES[0]
    line = family.training_image(scene)  # has a box: the box with a margin
    assert line.size[0] < scene.load_image().size[0] / 1.5
    unboxed = replace(scene, box=None)
    cut = family.training_image(unboxed)  # the detected line that matches the label
    assert cut.size[1] < 120 and family.read(model, [cut])[0].text == scene.vin
    wrong = replace(scene, box=None, vin="1M8GDM9AXKP042788", image=SCENES[1].image)
    with caplog.at_level(logging.WARNING):
        whole = family.training_image(wrong)
    assert whole.size == wrong.load_image().size and "no text line matches" in caplog.text
    batch = family.collate([CROPS[0], scene])
    assert batch["pixel_values"].shape[0] == 2


def test_validation_reads_photos_the_way_the_engine_will(pretrained):
    family, model = pretrained
    images = [s.load_image() for s in SCENES[:3]]
    summary, preds = evaluate_model(family, model, SCENES[:3], batch_size=2)
    assert preds == [r.text for r in family.read(model, images, [False] * 3)]
    assert preds != family.predict(model, images), "not read as line crops"
    assert summary["exact_match"] >= 2 / 3


# -- a handful of the real shared photos ---------------------------------------------------------

# Chosen for what they exercise, not for being easy: glare, a logo read into the VIN's line
# ("KIA"), characters spaced apart (split boxes), an asterisk eating the first character.
REAL = ["image_1441_jpg", "image_867_jpg", "599afa1b", "077b864f", "aJACzniL0pSmisIQ"]


@pytest.mark.slow
def test_real_dev_photos_end_to_end(pretrained):
    if not (SHARED / "vin_labels.jsonl").is_file():
        pytest.skip(f"{SHARED} is not here (CI has it)")
    rows = [json.loads(line) for line in (SHARED / "vin_labels.jsonl").read_text().splitlines()]
    picked = [next(r for r in rows if key in r["image"]) for key in REAL]
    family, model = pretrained
    images = [Sample(image=SHARED / r["image"], vin=r["vin"]).load_image() for r in picked]
    readings = family.read(model, images, [False] * len(images))
    assert [r.text for r in readings] == [r["vin"] for r in picked]


def test_first_character_search_repairs_a_lost_l_and_leaves_europe_alone():
    from vin_ocr.decoding.ctc import ctc_read

    def spelled(text: str, lost_first: float | None = None) -> np.ndarray:
        frames = []
        for k, c in enumerate(text):
            p = np.full(len(VIN_CHARSET), 1e-4)
            if k == 0 and lost_first is not None:
                p[0], p[VIN_CHARSET.index(c)] = 1 - lost_first, lost_first
            else:
                p[VIN_CHARSET.index(c)] = 1.0
            frames += [p / p.sum(), np.eye(len(VIN_CHARSET))[0] * 0.999 + 1e-5]
        return np.array(frames)

    vin = "LVVDB24B7MD268406"
    lost = ctc_read(spelled(vin, lost_first=0.2), VIN_CHARSET)  # greedy: VVDB24B7MD268406
    assert lost.unconstrained == vin[1:] and lost.text == vin
    gone = ctc_read(spelled(vin, lost_first=1e-6), VIN_CHARSET)
    assert gone.text == vin[1:], "no probability for the repair: the reading is kept"
    europe = "WVWZZZ1JZXW000001"
    assert ctc_read(spelled(europe), VIN_CHARSET).text == europe
    assert ctc_read(spelled(europe), VIN_CHARSET).unconstrained is None
    off = ctc_read(spelled(vin, lost_first=0.2), VIN_CHARSET, first_char_margin=None)
    assert off.text == vin[1:]
