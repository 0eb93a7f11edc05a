"""PP-OCR -> Paddle inference format, read back by the official paddleocr package (offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw, ImageFont

from vin_ocr.models import pp_ocr_paddle as pp
from vin_ocr.models.pp_ocr import TINY_CHARSET, tiny_rec_model, vin_class_index
from vin_ocr.training import export_paddle

paddleocr = pytest.importorskip("paddleocr", reason="the paddle extra (paddleocr) is missing")
pytestmark = pytest.mark.usefixtures("one_thread")

VINS = ["1M8GDM9AXKP042788", "1HGCM82633A004352", "JH4KA7561PC008269"]


def font(size: int) -> ImageFont.FreeTypeFont:
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"
    return ImageFont.truetype(str(ttf), size)


def line(text: str, width: int = 420) -> Image.Image:
    image = Image.new("RGB", (width, 48), "white")
    ImageDraw.Draw(image).text((8, 8), text, fill="black", font=font(28))
    return image


def crops() -> list[Image.Image]:
    return [line(v) for v in VINS] + [line("VIN 1M8GDM9AXKP042788", 520)]


def test_tiny_recogniser_round_trip(tmp_path):
    model = tiny_rec_model(len(TINY_CHARSET))
    index = vin_class_index(TINY_CHARSET)  # a masked head: only the VIN classes are exported
    report = pp.export_rec(model, TINY_CHARSET, tmp_path / "rec", crops(), class_index=index)
    folder = tmp_path / "rec"
    assert report["texts_equal"] == report["crops"] == 4
    assert report["max_prob_diff"] < 1e-3
    assert report["classes"] == 34
    assert {p.name for p in folder.iterdir()} == {
        "inference.json", "inference.pdiparams", "inference.yml", "export.json"
    }  # fmt: skip
    assert json.loads((folder / "export.json").read_text())["texts_equal"] == 4
    assert not (tmp_path / "rec.tmp").exists()
    # PaddleOCR's own loader, as a user calls it; its output is the sliced head, 34 classes
    rec = paddleocr.TextRecognition(model_name=pp.REC_MODEL_NAME, model_dir=str(folder))
    texts = [r["rec_text"] for r in rec.predict(input=pp._bgr(crops()[0]))]
    assert len(texts) == 1 and set(texts[0]) <= set("0123456789ABCDEFGHJKLMNPRSTUVWXYZ ")


def test_verification_fails_when_paddle_and_torch_disagree(tmp_path):
    model = tiny_rec_model(len(TINY_CHARSET))
    pp.export_rec(model, TINY_CHARSET, tmp_path / "rec", crops())
    other = tiny_rec_model(len(TINY_CHARSET))
    with torch.no_grad():
        other.head.head.bias.add_(torch.linspace(0, 5, len(TINY_CHARSET)))  # another model
    with pytest.raises(pp.PaddleExportError, match=r"paddleocr read \d/4 crops as torch does"):
        pp.verify_rec(tmp_path / "rec", other, TINY_CHARSET, crops())
    # the right model, but no float difference allowed: Paddle's kernels are not torch's
    with pytest.raises(pp.PaddleExportError, match="differ from torch"):
        pp.verify_rec(tmp_path / "rec", model, TINY_CHARSET, crops(), atol=1e-12)


def test_failed_verification_leaves_no_folder_and_existing_folders_stay(tmp_path, monkeypatch):
    model = tiny_rec_model(len(TINY_CHARSET))

    def disagree(*_args, **_kwargs):
        raise pp.PaddleExportError("paddleocr read 0/4 crops as torch does")

    monkeypatch.setattr(pp, "verify_rec", disagree)
    with pytest.raises(pp.PaddleExportError, match="0/4"):
        pp.export_rec(model, TINY_CHARSET, tmp_path / "rec", crops())
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "mine.txt").write_text("keep")
    with pytest.raises(pp.PaddleExportError, match="exists"):
        pp.export_rec(model, TINY_CHARSET, tmp_path / "rec", crops())
    assert (tmp_path / "rec" / "mine.txt").read_text() == "keep"


def test_charset_must_match_the_head(tmp_path):
    model = tiny_rec_model(len(TINY_CHARSET))
    with pytest.raises(pp.PaddleExportError, match="37 characters for a 38-class head"):
        pp.export_rec(model, TINY_CHARSET[:-1], tmp_path / "rec", crops())


def test_inference_yml_is_what_paddleocr_reads():
    yml = pp.rec_yml(["", "A", "B", " "])
    assert yml["Global"]["model_name"] == "PP-OCRv6_small_rec"
    assert yml["PostProcess"] == {"name": "CTCLabelDecode", "character_dict": ["A", "B"]}


@pytest.fixture
def pretrained():
    """The pretrained models converted into the session's $VIN_OCR_CACHE (tests/conftest.py),
    where the paddleocr engine's default finds them too: converted once per session."""
    return pp.pretrained_dir("rec"), pp.pretrained_dir("det")


def test_pretrained_models_convert_offline_and_read_vins(pretrained):
    rec_dir, det_dir = pretrained
    assert json.loads((rec_dir / "export.json").read_text())["classes"] == 18710
    assert json.loads((det_dir / "export.json").read_text())["max_map_diff"] < 1e-4
    rec = paddleocr.TextRecognition(model_name=pp.REC_MODEL_NAME, model_dir=str(rec_dir))
    texts = [r["rec_text"] for r in rec.predict(input=[pp._bgr(c) for c in crops()])]
    assert texts[:3] == VINS
    assert pp.pretrained_dir("rec", rec_dir) == rec_dir  # cached: not converted again


def test_paddleocr_engine_offline_reads_crops_and_a_scene(pretrained):
    from vin_ocr.evaluation.engines import PaddleOCREngine

    rec_dir, det_dir = pretrained
    engine = PaddleOCREngine(path=str(rec_dir), det_path=str(det_dir))
    scene = Image.new("RGB", (900, 500), "white")
    draw = ImageDraw.Draw(scene)
    draw.text((40, 60), "MFD 06/19  GVWR 2155 KG", fill="black", font=font(34))
    draw.text((40, 220), f"VIN {VINS[1]}", fill="black", font=font(34))
    draw.text((40, 380), "TIRE 225/65R17 102H", fill="black", font=font(34))
    preds = engine.predict([line(VINS[0]), scene], [True, False])
    assert preds == [VINS[0], VINS[1]]


def test_export_run_errors_name_the_problem(tmp_path):
    cfg = OmegaConf.structured(export_paddle.PaddleExportConf)
    with pytest.raises(pp.PaddleExportError, match="run=RUN is required"):
        export_paddle.export_run(cfg)
    cfg.run = str(tmp_path / "missing")
    with pytest.raises(pp.PaddleExportError, match="not a finished training run folder"):
        export_paddle.export_run(cfg)
    (tmp_path / "run" / "paddle" / "rec").mkdir(parents=True)
    cfg.run = str(tmp_path / "run")
    with pytest.raises(pp.PaddleExportError, match="exists"):
        export_paddle.export_run(cfg)


def test_command_line_error_is_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "vin_ocr.training.export_paddle"], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: run=RUN is required (a finished PP-OCR training run folder)"
    )


def test_probabilities_match_on_random_input(tmp_path):
    import paddle

    model = tiny_rec_model(len(TINY_CHARSET)).eval()
    layer = pp.to_paddle(model)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 160)).astype("float32")
    with torch.no_grad():
        want = model(torch.from_numpy(x)).last_hidden_state.numpy()
    got = layer.head(layer.model(paddle.to_tensor(x))).numpy()
    assert np.abs(got - want).max() < 1e-5
