"""Barcodes fused with OCR in the harness (report.json ``sources``), and crops=auto images that the
engine decides itself, through :func:`vin_ocr.evaluation.evaluate.run_eval`."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from vin_ocr.data.sample import Sample
from vin_ocr.data.synth import render_sample
from vin_ocr.evaluation.evaluate import run_eval
from vin_ocr.reading import Reading

from .conftest import VINS, draw_line, draw_scene

CLEAN = {"kind": "scene", "looks": ["sticker"], "augment": {"strength": 0}}


class Answers:
    """An engine double that answers given texts (the fusion rules are under test here, not
    a model), and records the crop flags it was given."""

    name = "answers"

    def __init__(self, texts):
        self.texts, self.flags = list(texts), []

    def read(self, images, crops=None):
        self.flags += list(crops)
        return [Reading(self.texts.pop(0)) for _ in images]


@pytest.fixture(scope="module")
def stickers(tmp_path_factory):
    """Four synthetic door stickers (clean renders: their Code 39 barcode decodes) as photos."""
    root = tmp_path_factory.mktemp("stickers")
    out = []
    for i in range(4):
        image, vin, _ = render_sample(i, seed=3, cfg=CLEAN)
        image.save(root / f"s{i}.png")
        out.append(Sample(image=root / f"s{i}.png", vin=vin, crop=False))
    return out


def test_barcode_only_agree_disagree_are_counted(stickers, tmp_path):
    _, b, c, d = (s.vin for s in stickers)
    wrong = c[:-1] + ("1" if c[-1] != "1" else "2")
    engine = Answers(["", b, wrong, d])
    report = run_eval(engine, stickers, tmp_path, warmup=False, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["barcode", "agree", "disagree", "agree"]
    assert rows[2]["pred"] == c and rows[2]["alternative"] == wrong, "the OCR reading is kept"
    assert report["exact_match"] == 1.0
    assert report["sources"] == {
        "ocr": 0, "barcode": 1, "agree": 2, "disagree": 1, "none": 0, "disagree_right": 1,
    }  # fmt: skip


def test_barcodes_off_and_line_crops_are_not_searched(stickers, tmp_path):
    engine = Answers(["", ""])
    report = run_eval(
        engine, stickers[:2], tmp_path / "off", warmup=False, progress=False, barcodes=False
    )
    assert report["exact_match"] == 0.0 and report["sources"] is None
    crop = Sample(image=stickers[0].image, vin=stickers[0].vin, crop=True)
    report = run_eval(Answers([""]), [crop], tmp_path / "crop", warmup=False, progress=False)
    assert report["exact_match"] == 0.0, "a line crop is never searched for a barcode"


def test_unflagged_images_are_left_to_the_engine(tmp_path):
    line, scene = tmp_path / "line.png", tmp_path / "scene.png"
    draw_line(VINS[0]).save(line)
    draw_scene(VINS[1]).save(scene)
    samples = [
        Sample(image=line, vin=VINS[0]),  # no flag, no box: the engine decides
        Sample(image=scene, vin=VINS[1], box=(40, 180, 500, 230)),  # a box: a scene
        Sample(image=line, vin=VINS[0], crop=True),
    ]
    engine = Answers(VINS[:1] * 3)
    report = run_eval(engine, samples, tmp_path / "out", warmup=False, progress=False)
    assert sorted(engine.flags, key=str) == sorted([None, False, True], key=str)
    assert set(report["by_kind"]) == {"auto", "scene", "crop"}


def test_rapidocr_decides_per_image(tmp_path):
    from vin_ocr.evaluation.engines import build_engine

    engine = build_engine("rapidocr")
    scene = draw_scene(VINS[3])
    margin = Image.new("RGB", (1150, 450), "white")
    margin.paste(draw_line(VINS[2]), (300, 190))
    readings = engine.read([draw_line(VINS[0]), scene, margin], [None, None, None])
    assert [r.text for r in readings] == [VINS[0], VINS[3], VINS[2]]
    assert readings[0].box is None and readings[1].box is not None
    assert readings[2].box is not None, "a line with a wide margin goes through detection"
