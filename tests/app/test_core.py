"""The app's pure functions: uploads, engines, reading, explanations (no browser)."""

from __future__ import annotations

import io
import shutil

import pytest
from hydra.errors import ConfigCompositionException
from PIL import Image

from vin_ocr.app import (
    EngineCache,
    Result,
    UploadError,
    compare_panels,
    confidence_table,
    explain,
    load_image,
    open_engine,
    read_panel,
    to_dict,
)
from vin_ocr.evaluation.engines import EngineUnavailable
from vin_ocr.reading import Reading
from vin_ocr.vin import normalize, validate

from .conftest import LINE, SCENE, app_cfg


def png(size=(40, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, format="PNG")
    return buf.getvalue()


def test_load_image_accepts_bytes_paths_and_pil(tmp_path):
    (tmp_path / "a.png").write_bytes(png())
    for source in (png(), tmp_path / "a.png", str(tmp_path / "a.png"), Image.new("L", (4, 2))):
        image = load_image(source)
        assert image.mode == "RGB" and image.size[0] > 0


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (b"", {}, "bad.png is empty"),
        (b"VIN 1HGCM82633A004352\n", {}, "bad.png is not an image"),
        (png()[:60], {}, "bad.png: the image data is damaged"),
        (b"\x89PNG" + bytes(3 * 1024**2), {"max_mb": 1}, "bad.png is 3.0 MB; the limit is 1 MB"),
        (png((2000, 1000)), {"max_megapixels": 1}, "2000x1000 pixels (2.0 megapixels)"),
    ],
)
def test_bad_uploads_name_the_file_and_the_problem(tmp_path, data, kwargs, message):
    path = tmp_path / "bad.png"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(UploadError) as err:
            load_image(source, name="bad.png", **kwargs)
        assert message in str(err.value)


def test_open_engine_errors_are_clear(tmp_path):
    with pytest.raises(EngineUnavailable, match="'nonsense' is not an engine"):
        open_engine("nonsense")
    with pytest.raises(EngineUnavailable, match=r"no run\.json"):
        open_engine(str(tmp_path))  # an existing folder that is not a run
    with pytest.raises(EngineUnavailable, match="could not download someone/vin-model"):
        open_engine("someone/vin-model")  # HF_HUB_OFFLINE=1 in the tests


def test_engine_cache_builds_once_and_can_be_restricted(cache):
    assert cache.get("baseline") is cache.get(" baseline ")
    locked = EngineCache(allowed=["baseline"])
    with pytest.raises(EngineUnavailable, match="offers only these engines: baseline"):
        locked.get(".")
    with pytest.raises(EngineUnavailable, match="choose an engine"):
        locked.get("")


@pytest.mark.slow  # RapidOCR text detection on a scene
def test_read_panel_shows_what_the_engine_reads(cache):
    cfg = app_cfg()
    engine = cache.get("baseline")
    for path, line_crop in ((LINE, True), (SCENE, False)):
        image = load_image(path)
        expected = normalize(engine.read([image], [line_crop])[0].text)
        vin, details, conf, region = read_panel(str(path), None, "auto", "baseline", cache, cfg)
        assert len(expected) == 17 and vin == expected
        verdict = "is a valid VIN" if validate(vin).valid else "is not a valid VIN"
        assert f"`{vin}` {verdict}" in details
        assert f"WMI `{vin[:3]}`" in details
        assert "n/a (the rapidocr engine does not give it)" in conf  # RapidOCR gives none
        if line_crop:
            assert region.size == image.size and "the whole image" in details
        else:  # the scene's VIN line, found by detection
            assert region.size[0] < image.size[0] and "the line at (" in details
    # The uploaded file wins over the pasted/sample image; both panels of Compare agree.
    both = compare_panels(str(LINE), str(SCENE), "auto", "baseline", "baseline", cache, cfg)
    assert both[0] == both[4] == read_panel(str(LINE), None, "auto", "baseline", cache, cfg)[0]


def test_read_panel_turns_every_failure_into_a_message(tmp_path, cache):
    cfg = app_cfg()
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert read_panel(str(text), None, "auto", "baseline", cache, cfg) == (
        "",
        "⚠️ notes.png is not an image (expected PNG, JPEG, WebP, BMP or TIFF)",
        "",
        None,
    )
    assert "upload a photo" in read_panel(None, None, "auto", "baseline", cache, cfg)[1]
    assert "is not an engine" in read_panel(str(LINE), None, "auto", "bogus", cache, cfg)[1]

    class Broken:
        name = "broken"

        def read(self, images, crops=None):
            raise RuntimeError("CUDA out of memory")

    broken = EngineCache()
    broken._engines["broken"] = Broken()
    vin, details, _, region = read_panel(str(LINE), None, "auto", "broken", broken, cfg)
    assert (vin, region) == ("", None)
    assert details == "⚠️ engine broken failed on this image (RuntimeError: CUDA out of memory)"


def _result(text: str, **reading) -> Result:
    image = Image.new("RGB", (100, 20))
    vin = normalize(text)
    return Result("test", Reading(text, **reading), vin, validate(vin), image, True, 0.5)


def test_explain_gives_the_reasons():
    bad = explain(_result("1M8GDM9A3KP042788"))  # 49 CFR 565 example with a wrong check digit
    assert "### ❌ `1M8GDM9A3KP042788` is not a valid VIN" in bad
    assert "check digit is '3', expected 'X' (mandatory in north_america)" in bad
    assert "Model year** (position 10, `K`): 1989" in bad
    good = explain(_result("WVWZZZ1JZXW000001"))  # optional check digit fails: a note only
    assert "is a valid VIN" in good and "**Note:** check digit is 'Z'" in good
    assert "europe, Germany, Volkswagen" in good
    assert "### ❌ No VIN read" in explain(_result(""))
    repaired = explain(_result("1HGCM82633A004352", unconstrained="1HGCM82633AO04352"))
    assert "Repaired** by VIN-constrained decoding from `1HGCM82633AO04352`" in repaired


def test_confidence_table_per_character():
    conf = tuple(i / 20 for i in range(17))
    table = confidence_table(_result("1HGCM82633A004352", char_conf=conf))
    rows = table.splitlines()
    assert rows[0].startswith("| position | 1 | 2 |") and rows[0].endswith("| 17 |")
    assert "| `1` | `H` | `G` |" in rows[2]
    assert rows[3] == "| confidence | " + " | ".join(f"{c:.2f}" for c in conf) + " |"
    assert to_dict(_result("1HGCM82633A004352", char_conf=conf))["reading_char_conf"][1] == 0.05


def test_app_config_schema_and_page():
    gr = pytest.importorskip("gradio")
    from vin_ocr.app import build_app

    cfg = app_cfg("model=tesseract")
    assert cfg.model == "tesseract" and cfg.port == 0 and cfg.host == "127.0.0.1"
    with pytest.raises(ConfigCompositionException):
        app_cfg("max_upload=3")  # a typo fails, naming the key
    demo = build_app(cfg)
    assert isinstance(demo, gr.Blocks)
    ids = {b.elem_id for b in demo.blocks.values()}
    assert {"upload-read", "btn-read", "vin-read", "btn-compare", "vin-a", "vin-b"} <= ids
    menus = [b for b in demo.blocks.values() if b.elem_id == "engine-read"]
    assert menus[0].value == "tesseract" and menus[0].allow_custom_value


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="apt-get install tesseract-ocr")
def test_tesseract_engine_in_a_panel(cache):
    engine = cache.get("tesseract")
    expected = normalize(engine.read([load_image(LINE)], [True])[0].text)
    assert read_panel(str(LINE), None, "line crop", "tesseract", cache, app_cfg())[0] == expected
