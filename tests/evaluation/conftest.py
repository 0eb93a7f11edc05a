"""Fixture images for the evaluation tests: VIN lines and one scene, drawn with PIL."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image, ImageDraw, ImageFont

import vin_ocr
from vin_ocr.config import register_configs
from vin_ocr.evaluation.evaluate import evaluate

#: Valid VINs (check digit correct), drawn as line crops; the last one also inside a scene.
VINS = ["1M8GDM9AXKP042788", "1HGCM82633A004352", "JH4KA7561PC008269", "5YJSA1E23HF176351"]


def _font(size: int) -> ImageFont.FreeTypeFont:
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"
    return ImageFont.truetype(str(ttf), size)


def draw_line(text: str) -> Image.Image:
    font = _font(40)
    im = Image.new("RGB", (500, 64), "white")
    ImageDraw.Draw(im).text((12, 8), text, fill="black", font=font)
    return im


def draw_scene(vin: str) -> Image.Image:
    """A label with the VIN between two other lines, so "the first line" would be wrong."""
    font = _font(40)
    im = Image.new("RGB", (720, 420), (215, 215, 210))
    draw = ImageDraw.Draw(im)
    draw.text((40, 40), "VEHICLE INFO", fill="black", font=font)
    draw.text((40, 180), vin, fill="black", font=font)
    draw.text((40, 320), "MADE IN USA 2019", fill="black", font=font)
    return im


@pytest.fixture(scope="session")
def fixture_manifest(tmp_path_factory) -> Path:
    """A manifest of 4 line crops, 1 scene (with a box, no crop flag) and 1 unlabelled crop."""
    root = tmp_path_factory.mktemp("fixture_set")
    rows = []
    for i, vin in enumerate(VINS):
        draw_line(vin).save(root / f"line{i}.png")
        rows.append({"image": f"line{i}.png", "vin": vin, "source": "test", "crop": True})
    draw_scene(VINS[-1]).save(root / "scene.png")
    rows.append(
        {"image": "scene.png", "vin": VINS[-1], "source": "test", "box": [40, 180, 470, 230]}
    )
    draw_line(VINS[0]).save(root / "unlabelled.png")
    rows.append({"image": "unlabelled.png", "vin": "", "crop": True})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def eval_cfg(*overrides: str):
    register_configs()
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR / "eval"), version_base="1.3"):
        return compose("eval", overrides=["progress=false", *overrides])


@pytest.fixture(scope="session")
def rapidocr_run(fixture_manifest, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run_rapidocr")
    cfg = eval_cfg(
        "data=manifest", f"data.path={fixture_manifest}", f"out_dir={out}", "batch_size=3"
    )
    return out, evaluate(cfg)
