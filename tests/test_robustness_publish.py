"""Robustness of reading and publishing (issue 12, part B): bad images, bad labels files, the
fine-tuned ONNX in the RapidOCR engine. Each case either works or ends in one clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vin_ocr.data.images import ImageNotFoundError, ImageReadError, open_image, to_rgb
from vin_ocr.data.readers import read_folder, read_jsonl_manifest, read_labels_file
from vin_ocr.data.sample import ManifestError, Sample, read_manifest, write_manifest
from vin_ocr.data.validate import check_image, validate_samples

VIN = "1M8GDM9AXKP042788"


def upright(size=(120, 40)) -> Image.Image:
    """A white card with a black bar on its left edge and a grey dot top right: any rotation
    or flip moves the bar or the dot."""
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, 14, size[1] - 1), fill="black")
    draw.rectangle((size[0] - 10, 0, size[0] - 1, 9), fill=(128, 128, 128))
    return im


def assert_same_picture(got: Image.Image, want: Image.Image) -> None:
    assert got.mode == "RGB" and got.size == want.size
    diff = np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16))
    assert diff.mean() < 4  # JPEG noise only


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "stored"),
    [(6, lambda im: im.transpose(Image.Transpose.ROTATE_90)),  # camera turned right
     (8, lambda im: im.transpose(Image.Transpose.ROTATE_270)),  # camera turned left
     (3, lambda im: im.transpose(Image.Transpose.ROTATE_180))],
)  # fmt: skip
def test_exif_rotated_phone_photo_is_read_upright(tmp_path, orientation, stored):
    want = upright()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    stored(want).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as raw:
        assert raw.size != want.size or orientation == 3  # stored sideways / upside down
    assert_same_picture(open_image(path), want)
    assert_same_picture(Sample(image=path, vin=VIN).load_image(), want)
    from vin_ocr.app.core import load_image

    assert_same_picture(load_image(path), want)  # the app reads it the same way


def sixteen_bit_tiff(path: Path, lo: int = 9000, hi: int = 52000) -> np.ndarray:
    """A 16-bit grey TIFF (values lo..hi) with a dark bar at the left."""
    a = np.full((40, 120), hi, np.uint16)
    a[:, :15] = lo
    Image.fromarray(a).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
        assert im.convert("RGB").getextrema()[0] == (255, 255)  # the old reader: all white
    return a


def test_16bit_tiff_is_scaled_not_clipped_to_white(tmp_path):
    path = tmp_path / "scan.tif"
    sixteen_bit_tiff(path)
    from vin_ocr.app.core import load_image

    for im in (open_image(path), Sample(image=path, vin=VIN).load_image(), load_image(path)):
        a = np.asarray(im)
        assert im.mode == "RGB"
        assert a[:, :15].max() == 0 and a[:, 15:].min() == 255  # bar black, card white
    assert check_image(path).problem is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.fromarray(np.linspace(0, 1, 64 * 16, dtype=np.float32).reshape(16, 64)),
        lambda: Image.fromarray(np.arange(64 * 16, dtype=np.int32).reshape(16, 64) * 1000),
        lambda: upright().convert("P", palette=Image.Palette.ADAPTIVE),
        lambda: upright().convert("CMYK"),
        lambda: upright().convert("LA"),
        lambda: upright().convert("1"),
    ],
    ids=["F", "I", "P", "CMYK", "LA", "1"],
)
def test_every_mode_becomes_8bit_rgb_with_contrast(make):
    im = to_rgb(make())
    assert im.mode == "RGB"
    lo, hi = im.convert("L").getextrema()
    assert lo <= 5 and hi >= 250


def test_transparent_png_goes_on_white():
    im = Image.new("RGBA", (32, 16), (0, 0, 0, 0))
    im.putpixel((0, 0), (0, 0, 0, 255))
    out = to_rgb(im)
    assert out.getpixel((5, 5)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "damaged|not an image"), (b"not an image", "not an image file"),
     (None, "image file not found")],
)  # fmt: skip
def test_unreadable_image_names_the_file(tmp_path, data, message):
    path = tmp_path / "bad.png"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(ImageReadError, match=rf"bad\.png: ({message})"):
        Sample(image=path, vin=VIN).load_image()
    if data is None:
        with pytest.raises(FileNotFoundError):  # callers that catch FileNotFoundError still do
            open_image(path)
        assert issubclass(ImageNotFoundError, FileNotFoundError)


@pytest.mark.parametrize(
    ("make", "colour"),
    [(lambda p: Image.new("RGB", (64, 32), "white").save(p, format="PNG"), "white"),
     (lambda p: Image.new("L", (64, 32), 0).save(p, format="PNG"), "black"),
     (lambda p: Image.new("RGB", (64, 32), (200, 30, 30)).save(p, format="JPEG"), "one colour"),
     (lambda p: Image.fromarray(np.full((32, 64), 40000, np.uint16)).save(p, format="TIFF"),
      "white")],
)  # fmt: skip
def test_prepare_check_flags_a_blank_frame(tmp_path, make, colour):
    path = tmp_path / "img"
    make(path)
    check = check_image(path)
    assert check.problem is not None
    kind, message = check.problem
    assert kind == "blank_image" and f"all {colour}" in message
    report = validate_samples([Sample(image=path, vin=VIN, meta={"_origin": "labels.csv:2"})])
    assert [(i.kind, i.origin) for i in report.issues] == [("blank_image", "labels.csv:2")]


def test_a_picture_with_content_is_not_blank(tmp_path):
    path = tmp_path / "ok.jpg"
    upright().save(path)
    assert check_image(path).problem is None


# --- labels files and manifests ---------------------------------------------------------------


def test_labels_csv_not_in_utf8_names_the_file_line_and_offset(tmp_path):
    upright().save(tmp_path / "a.png")
    text = f"file,vin,note\na.png,{VIN},ok\na.png,{VIN},café\n"
    (tmp_path / "labels.csv").write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xe9")
    with pytest.raises(ManifestError) as err:
        read_folder(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'labels.csv'}:3: ")
    assert f"not UTF-8 text (byte 0xe9 at offset {offset})" in message
    assert "iconv" in message and "\\x" not in message  # a hint, no byte dump
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_other_labels_formats_not_in_utf8(tmp_path, suffix):
    path = tmp_path / f"labels{suffix}"
    line = '{"image": "é.png", "vin": "x"}' if suffix == ".jsonl" else "image\tvin\né.png\tx"
    path.write_bytes(line.encode("cp1252"))
    with pytest.raises(ManifestError, match=rf"labels\{suffix}:\d+: the .* is not UTF-8"):
        read_labels_file(path)
    with pytest.raises(ManifestError, match="not UTF-8"):
        (read_manifest if suffix == ".jsonl" else read_labels_file)(path)


def test_a_utf8_bom_is_fine(tmp_path):
    upright().save(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_bytes(f"\ufefffile,vin\na.png,{VIN}\n".encode())
    assert [s.vin for s in read_folder(tmp_path)] == [VIN]


@pytest.mark.parametrize(
    ("box", "message"),
    [('"oops"', "box must be \\[x0, y0, x1, y1\\] \\(4 numbers, pixels\\), got 'oops'"),
     ("[1, 2, 3]", "box must be"), ('[1, 2, "a", 4]', "box must be"),
     ("[10, 2, 5, 4]", "box \\[10, 2, 5, 4\\] is empty or negative")],
)  # fmt: skip
def test_bad_box_in_a_manifest_names_file_and_line(tmp_path, box, message):
    path = tmp_path / "m.jsonl"
    path.write_text(f'{{"image": "a.png", "vin": "{VIN}"}}\n\n{{"image": "b.png", "box": {box}}}\n')
    for read in (read_manifest, read_jsonl_manifest):
        with pytest.raises(ManifestError, match=rf"m\.jsonl:3: {message}"):
            read(path)


def test_non_utf8_file_names_round_trip_through_a_manifest(tmp_path):
    import os

    name = os.fsdecode(b"caf\xe9_" + VIN.encode() + b".png")  # a Latin-1 name on a UTF-8 system
    upright().save(tmp_path / name)
    [sample] = read_folder(tmp_path, vin_from_filename=True)
    assert sample.vin == VIN
    assert validate_samples([sample]).ok
    manifest = write_manifest([sample], tmp_path / "out" / "train.jsonl")
    manifest.read_text(encoding="utf-8")  # the manifest itself stays UTF-8
    [back] = read_manifest(manifest)
    assert back.image == tmp_path / name and back.load_image().size == (120, 40)
    # Problems with such a file are reported in printable text (no UnicodeEncodeError on print).
    (tmp_path / name).write_bytes(b"")
    [issue] = validate_samples([sample]).issues
    assert "caf\\udce9_" in str(issue) and str(issue).encode("utf-8")
    with pytest.raises(ImageReadError) as err:
        sample.load_image()
    assert "caf\\udce9_" in str(err.value) and str(err.value).encode("utf-8")


# --- the fine-tuned model in the RapidOCR engine ---------------------------------------------


def _tiny_pp_ocr(head: str):
    from vin_ocr.models.pp_ocr import PPOCRFamily

    family = PPOCRFamily({"tiny": True, "min_width": 64, "head": head})
    model, _ = family.build(None, None)
    return family, model


@pytest.mark.parametrize("head", ["vin", "masked"])
def test_run_model_onnx_loads_in_the_rapidocr_engine(tmp_path, head, one_thread):
    import onnxruntime as ort
    import torch

    from vin_ocr.evaluation.engines import build_engine
    from vin_ocr.models.pp_ocr import VIN_CHARSET

    family, model = _tiny_pp_ocr(head)
    torch.manual_seed(0)
    with torch.no_grad():  # a random head reads something other than blanks
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / "run" / "model.onnx"
    family.export_onnx(model, path)
    engine = build_engine("rapidocr", path=str(path))  # was: Missing key dict_url
    images = [upright((160, 40)), upright((90, 30))]
    texts = engine.predict(images, crops=[True, True])

    # The same input through onnxruntime, decoded with the VIN classes, gives the same text.
    rec = engine._rec
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for image, text in zip(images, texts, strict=True):
        bgr = np.asarray(image)[:, :, ::-1]
        ratio = max(rec.rec_image_shape[2] / rec.rec_image_shape[1], image.width / image.height)
        x = rec.resize_norm_img(bgr, ratio)[None]
        ids = session.run(None, {"pixel_values": x})[0][0].argmax(-1)
        keep = [i for j, i in enumerate(ids) if i != 0 and (j == 0 or i != ids[j - 1])]
        assert text == "".join(VIN_CHARSET[i] for i in keep)
    assert any(texts)


def test_an_onnx_with_unknown_classes_is_refused_with_the_reason(tmp_path, one_thread):
    from vin_ocr.evaluation.engines import EngineUnavailable, RapidOCREngine
    from vin_ocr.models.pp_ocr import export_onnx

    _, model = _tiny_pp_ocr("masked")
    path = tmp_path / "other.onnx"
    export_onnx(model, path)  # every class of the tiny charset, not the VIN ones
    with pytest.raises(EngineUnavailable, match="no character dictionary in its metadata"):
        RapidOCREngine(path=str(path))
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(EngineUnavailable, match="not a loadable ONNX model"):
        RapidOCREngine(path=str(tmp_path / "junk.onnx"))


# --- the test suite itself --------------------------------------------------------------------

SKIPS = """
import pytest

def test_tool():
    pytest.skip("apt-get install tesseract-ocr")

def test_package():
    pytest.importorskip("no_such_package_for_vin_ocr")

@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_gpu():
    pass
"""


@pytest.mark.parametrize("strict", [True, False])
def test_strict_skips_fail_the_run_except_gpu_ones(tmp_path, strict):
    """tests/conftest.py: under VIN_OCR_STRICT_SKIPS=1 (.ci/run) a skip fails, a GPU skip stays."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copy(Path(__file__).parent / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text(SKIPS)
    env = {**os.environ, "VIN_OCR_STRICT_SKIPS": "1" if strict else "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    summary = proc.stdout.strip().splitlines()[-1]
    if strict:
        assert proc.returncode == 1 and "2 failed, 1 skipped" in summary, proc.stdout
        assert "skips fail under VIN_OCR_STRICT_SKIPS=1" in proc.stdout
    else:
        assert proc.returncode == 0 and "3 skipped" in summary, proc.stdout
