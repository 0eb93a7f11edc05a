"""PP-OCR on onnxruntime (vin_ocr/models/pp_ocr_onnx.py): the VIN recogniser, the general reader
and the text detector exported and read back give the readings torch gives (same texts, the
probabilities within ATOL), a run folder reads through its graphs, and lines that cannot hold a
VIN are not read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vin_ocr
from vin_ocr.data.sample import read_manifest
from vin_ocr.models.pp_ocr import PPOCRFamily
from vin_ocr.models.pp_ocr_det import TextDetector, TextLine
from vin_ocr.models.pp_ocr_onnx import ATOL, OnnxNet, export_det_onnx, export_onnx, onnx_bytes
from vin_ocr.models.pp_ocr_scene import MIN_LINE_ASPECT, vin_shaped
from vin_ocr.run_folder import DET_ONNX_FILE, ONNX_FILE, load_run, write_info

SAMPLES = read_manifest(vin_ocr.SAMPLES_DIR / "manifest.jsonl")
SCENES = [s for s in SAMPLES if s.crop is False][:3]
CROPS = [s for s in SAMPLES if s.crop][8:14]
TINY = {"tiny": True, "min_width": 64}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _tiny() -> tuple[PPOCRFamily, torch.nn.Module]:
    torch.manual_seed(0)
    family = PPOCRFamily(TINY)
    model, _ = family.build(None, None)
    return family, model.eval()


def test_vin_graph_reads_line_crops_as_torch_does():
    family, model = _tiny()
    images = [s.load_image() for s in CROPS]
    want = family.line_probs(model, images)
    onnx = PPOCRFamily(TINY)
    onnx.use_onnx(onnx_bytes(family.export_onnx, model))
    got = onnx.line_probs(model, images)
    assert max(float(np.abs(a - b).max()) for a, b in zip(got, want, strict=True)) < ATOL
    assert [r.text for r in onnx.read(model, images)] == [
        r.text for r in family.read(model, images)
    ]


def test_general_reader_graph_keeps_the_full_dictionary(tmp_path):
    family, model = _tiny()  # a stand-in full-dictionary reader: its whole head, no slicing
    path = tmp_path / "general.onnx"
    assert export_onnx(model, path) < ATOL
    pixels = family.pixel_values([s.load_image() for s in CROPS[:2]])
    with torch.no_grad():
        want = family.vin_logits(model, pixels).softmax(-1).numpy()
    got = OnnxNet(path)(pixels)
    assert got.shape == want.shape and np.abs(got - want).max() < ATOL


def test_detector_graph_finds_the_lines_torch_finds(tmp_path):
    torch_det = TextDetector()
    path = tmp_path / "det.onnx"
    assert export_det_onnx(torch_det.model, path) < ATOL
    assert not path.with_name("det.onnx.tmp").exists()
    onnx_det = TextDetector(net=OnnxNet(path))
    assert onnx_det.model is None  # the torch detector is not loaded
    for sample in SCENES:
        image = sample.load_image()
        ours, theirs = onnx_det.detect(image), torch_det.detect(image)
        assert len(ours) == len(theirs) > 0, sample.image.name
        for a, b in zip(ours, theirs, strict=True):
            assert np.abs(a.quad - b.quad).max() <= 1.0 and abs(a.score - b.score) < 1e-3


def test_scenes_read_the_same_on_onnxruntime_as_in_torch():
    family, model = _tiny()
    onnx = PPOCRFamily(TINY)
    onnx.use_onnx(onnx_bytes(family.export_onnx, model))  # detector, reader: into memory
    images = [s.load_image() for s in SCENES]
    want = family.read(model, images, [False] * len(images))
    got = onnx.read(model, images, [False] * len(images))
    assert [r.text for r in got] == [r.text for r in want]
    assert [r.box for r in got] == [r.box for r in want]
    for a, b in zip(got, want, strict=True):
        assert a.char_conf is None or np.allclose(a.char_conf, b.char_conf, atol=1e-3)


def test_a_run_folder_reads_through_its_graphs(tmp_path):
    torch.manual_seed(0)
    family = PPOCRFamily(TINY)
    model, processor = family.build(None, None)
    run = tmp_path / "run"
    model.save_pretrained(run / "model")
    processor.save_pretrained(run / "model")
    family.export_onnx(model, run / ONNX_FILE)
    write_info(run, {"family": "pp_ocr", "model": {"family": "pp_ocr", **TINY}, "seed": 0})
    images = [s.load_image() for s in CROPS]
    torch_engine, onnx_engine = load_run(run), load_run(run, onnx=True)
    assert torch_engine.family._vin_net is None
    assert onnx_engine.family._vin_net is not None
    assert onnx_engine.predict(images) == torch_engine.predict(images)
    assert not (run / DET_ONNX_FILE).exists()  # reading never writes into the run


def test_a_broken_graph_fails_naming_the_file(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(ValueError, match=r"model\.onnx: not a readable ONNX model"):
        OnnxNet(bad)


def test_lines_too_narrow_for_a_vin_are_not_read():
    def line(width: int, height: int) -> TextLine:
        return TextLine(np.zeros((4, 2), np.float32), 0.9, Image.new("RGB", (width, height)))

    lines = [line(300, 30), line(20, 30), line(int(MIN_LINE_ASPECT * 30), 30)]
    assert vin_shaped(lines) == [lines[0], lines[2]]


def test_training_exports_the_scene_graphs_only_for_a_real_model(tmp_path):
    assert PPOCRFamily(TINY).export_scene_onnx(tmp_path / "d.onnx", tmp_path / "g.onnx") == {}
    assert not any(tmp_path.iterdir())
