"""The engines on real images (RapidOCR always; Tesseract where installed; PaddleOCR skips)."""

from __future__ import annotations

import shutil
import sys

import pytest
from hydra import compose, initialize_config_dir

import vin_ocr
from vin_ocr.config import register_configs
from vin_ocr.evaluation.engines import (
    ENGINES,
    CheckpointEngine,
    Engine,
    EngineUnavailable,
    PaddleOCREngine,
    RapidOCREngine,
    TesseractEngine,
    build_engine,
)

from .conftest import VINS, draw_line, draw_scene


@pytest.fixture(scope="module")
def rapidocr() -> RapidOCREngine:
    return RapidOCREngine(threads=2)


def test_rapidocr_reads_line_crops_in_one_batch(rapidocr):
    preds = rapidocr.predict([draw_line(v) for v in VINS])
    assert isinstance(rapidocr, Engine)
    assert len(preds) == len(VINS)
    assert sum(p.replace(" ", "") == v for p, v in zip(preds, VINS, strict=True)) >= 3


def test_rapidocr_scene_picks_the_vin_not_the_first_line(rapidocr):
    crop, scene = rapidocr.read([draw_line(VINS[0]), draw_scene(VINS[1])], [True, False])
    assert scene.text == VINS[1]
    assert crop.text.replace(" ", "") == VINS[0] and crop.box is None
    # the box of the line read: draw_scene writes the VIN at (40, 180) in a 40 px font
    left, top, right, bottom = scene.box
    assert 20 <= left <= 60 and 160 <= top <= 200 and 400 <= right <= 720 and bottom <= 260
    assert scene.char_conf is None  # RapidOCR scores lines, not characters: none invented


def test_crop_flags_must_match_images(rapidocr):
    with pytest.raises(ValueError, match="2 images but 1 crop flags"):
        rapidocr.predict([draw_line(VINS[0])] * 2, [True])


def test_rapidocr_missing_model_file(tmp_path):
    with pytest.raises(EngineUnavailable, match=r"nope\.onnx"):
        RapidOCREngine(path=str(tmp_path / "nope.onnx"))


@pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract is not installed: apt-get install tesseract-ocr",
)
def test_tesseract_reads_crops_and_scene():
    engine = TesseractEngine(workers=2)
    images = [draw_line(v) for v in VINS[:2]] + [draw_scene(VINS[2])]
    preds = engine.predict(images, [True, True, False])
    assert preds[:2] == VINS[:2]
    assert preds[2] == VINS[2]
    assert engine.version.startswith("tesseract")


def test_tesseract_missing_binary_says_what_to_install():
    with pytest.raises(EngineUnavailable, match="apt-get install tesseract-ocr"):
        TesseractEngine(binary="no-such-tesseract-binary")


def test_paddleocr_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "paddleocr", None)  # import fails
    with pytest.raises(EngineUnavailable, match=r"pip install 'vin-ocr\[paddle\]'"):
        PaddleOCREngine()


def test_paddleocr_real_or_skip():
    try:
        engine = PaddleOCREngine()
    except EngineUnavailable as e:
        assert "paddleocr" in str(e)
        pytest.skip(f"paddleocr unavailable here: {e}")
    assert engine.predict([draw_line(VINS[0])])[0].replace(" ", "") == VINS[0]


def test_checkpoint_engine_errors_name_the_folder(tmp_path):
    with pytest.raises(EngineUnavailable, match="does not exist"):
        CheckpointEngine(str(tmp_path / "missing-run"))
    with pytest.raises(EngineUnavailable, match="not a finished training run folder"):
        CheckpointEngine(str(tmp_path))


def test_registry_by_name():
    assert set(ENGINES) == {"rapidocr", "tesseract", "paddleocr", "checkpoint"}
    with pytest.raises(ValueError, match="unknown engine 'easyocr'; known: checkpoint"):
        build_engine("easyocr")
    with pytest.raises(EngineUnavailable, match="apt-get"):
        build_engine("tesseract", binary="no-such-tesseract-binary")


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_engine_config_composes_and_names_its_class(name, tmp_path):
    register_configs()
    overrides = [f"engine={name}"] + ([f"engine.path={tmp_path}"] if name == "checkpoint" else [])
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR / "eval"), version_base="1.3"):
        cfg = compose("eval", overrides=overrides)
    assert cfg.engine._target_.rsplit(".", 1)[1] == ENGINES[name].__name__
    if name == "rapidocr":
        engine = build_engine(cfg.engine)
        assert engine.name == "rapidocr"
    elif name == "checkpoint":  # Hydra's wrapper is removed: the reason comes through as is
        with pytest.raises(EngineUnavailable, match="not a finished training run folder"):
            build_engine(cfg.engine)
