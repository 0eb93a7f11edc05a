"""The RapidOCR ONNX -> native transformers conversion, proved against onnxruntime and RapidOCR.

Tolerances (float32 on CPU; measured differences are about 10x smaller):
- recognition logits (pre-softmax): max |torch - onnxruntime| < 2e-3 (logits reach ~+-30);
- recognition probabilities: max difference < 1e-4, identical greedy-decoded strings;
- detection probability map: max difference < 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from vin_ocr.models.pp_ocr import ctc_logits, greedy_decode, preprocess
from vin_ocr.models.pp_ocr_convert import (
    DET_ONNX,
    REC_ONNX,
    ConversionError,
    load_rapidocr_det,
    load_rapidocr_rec,
    rapidocr_model_path,
)

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
LINES = [
    ("1M8GDM9AXKP042788", "DejaVuSans.ttf", 32),
    ("WVWZZZ1JZXW000001", "DejaVuSansMono.ttf", 30),
    ("LSGJA52U17H012345", "DejaVuSans-Bold.ttf", 28),
    ("Vehicle Identification", "DejaVuSans.ttf", 30),
    ("VIN: 5YJ3E1EA7KF317000", "DejaVuSerif.ttf", 26),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def render_line(text: str, font_name: str, size: int) -> Image.Image:
    font = ImageFont.truetype(str(FONTS / font_name), size)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 24, bottom - top + 16), (245, 245, 240))
    ImageDraw.Draw(image).text((12 - left, 8 - top), text, font=font, fill=(20, 20, 30))
    return image


@pytest.fixture(scope="module")
def rec():
    return load_rapidocr_rec()


@pytest.fixture(scope="module")
def lines() -> list[Image.Image]:
    return [render_line(*line) for line in LINES]


def _softmax_input_exposed(path: Path) -> onnx.ModelProto:
    """The rec graph with the input of its final Softmax (the logits) as a second output."""
    model = onnx.load(str(path))
    softmax = next(n for n in reversed(model.graph.node) if n.op_type == "Softmax")
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(softmax.input[0], onnx.TensorProto.FLOAT, None)
    )
    return model


def test_rec_conversion_matches_onnxruntime(rec, lines):
    model, charset = rec
    assert len(charset) == model.config.head_out_channels == 18710
    assert charset[0] == "" and charset[-1] == " "
    onnx_model = _softmax_input_exposed(rapidocr_model_path(REC_ONNX))
    session = ort.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    pixels = preprocess(lines)
    want_probs, want_logits = session.run(None, {"x": pixels.numpy()})
    with torch.no_grad():
        logits = ctc_logits(model, pixels)
        probs = model(pixels).last_hidden_state
    assert logits.shape == want_logits.shape == (len(lines), pixels.shape[-1] // 8, 18710)
    assert np.abs(logits.numpy() - want_logits).max() < 2e-3
    assert np.abs(probs.numpy() - want_probs).max() < 1e-4
    texts = greedy_decode(logits, charset)
    assert texts == greedy_decode(torch.from_numpy(want_logits), charset)
    # The converted model reads the rendered lines (a wrong mapping would not).
    assert texts == [text for text, _, _ in LINES]


def test_rec_conversion_reads_like_rapidocr(rec, lines):
    from rapidocr import RapidOCR
    from rapidocr.ch_ppocr_rec.typings import TextRecInput

    model, charset = rec
    recognizer = RapidOCR(params={"Global.log_level": "error"})._load_rec_model()
    bgr = [np.ascontiguousarray(np.asarray(image)[:, :, ::-1]) for image in lines]
    theirs = list(recognizer(TextRecInput(img=bgr)).txts)
    with torch.no_grad():
        ours = greedy_decode(ctc_logits(model, preprocess(lines)), charset)
    assert ours == theirs


def test_det_conversion_matches_onnxruntime():
    model = load_rapidocr_det()
    scene = Image.new("RGB", (640, 320), (250, 250, 250))
    boxes = []
    for i, (text, font_name, size) in enumerate(LINES[:3]):
        line = render_line(text, font_name, size)
        xy = (40 + 60 * i, 30 + 95 * i)
        scene.paste(line, xy)
        boxes.append((xy[0] + 12, xy[1] + 8, xy[0] + line.width - 12, xy[1] + line.height - 8))
    # RapidOCR's detection input: BGR, (x / 255 - 0.5) / 0.5, sides a multiple of 32.
    bgr = np.asarray(scene, dtype=np.float32)[:, :, ::-1] / 127.5 - 1.0
    pixels = torch.from_numpy(bgr.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()
    session = ort.InferenceSession(
        str(rapidocr_model_path(DET_ONNX)), providers=["CPUExecutionProvider"]
    )
    want = session.run(None, {"x": pixels.numpy()})[0]
    with torch.no_grad():
        got = model(pixels).last_hidden_state.numpy()
    assert got.shape == want.shape == (1, 1, 320, 640)
    assert np.abs(got - want).max() < 1e-4
    # The map marks the text and nothing else.
    inside = np.zeros(got.shape[-2:], dtype=bool)
    for x0, y0, x1, y1 in boxes:
        inside[y0:y1, x0:x1] = True
        # DB maps are shrunk text kernels: a large part of each line box is text.
        assert (got[0, 0, y0:y1, x0:x1] > 0.3).mean() > 0.3
    assert got[0, 0][~inside].max() < 0.05


def test_missing_onnx_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx"):
        load_rapidocr_rec(missing)


def test_corrupt_onnx_file_names_the_path(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(rapidocr_model_path(REC_ONNX).read_bytes()[:5000])
    with pytest.raises(ConversionError, match=r"broken\.onnx"):
        load_rapidocr_rec(broken)


def test_mismatched_weights_are_listed(tmp_path):
    model = onnx.load(str(rapidocr_model_path(REC_ONNX)))
    # Shrink the first SVTR block's MLP input projection: fc1 no longer fits.
    init = next(i for i in model.graph.initializer if i.name == "linear_2.w_0")
    value = onnx.numpy_helper.to_array(init)[:, :200]
    init.CopyFrom(onnx.numpy_helper.from_array(value, init.name))
    path = tmp_path / "shrunk.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ConversionError, match=r"head\.encoder\.svtr_block\.0\.mlp\.fc1\.weight"):
        load_rapidocr_rec(path)


def test_unused_onnx_weight_is_reported(tmp_path):
    model = onnx.load(str(rapidocr_model_path(REC_ONNX)))
    extra = onnx.numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "stray_weight")
    model.graph.initializer.append(extra)
    path = tmp_path / "extra.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ConversionError, match=r"not used: \['stray_weight \[4, 4\]'\]"):
        load_rapidocr_rec(path)
