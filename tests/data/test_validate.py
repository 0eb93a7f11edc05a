import io
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from vin_ocr.data.readers import ORIGIN, read_folder
from vin_ocr.data.sample import Sample
from vin_ocr.data.validate import (
    DataValidationError,
    check_image,
    validate_samples,
    vin_problems,
)

GOOD = ["1M8GDM9AXKP042788", "JH4KA7561PC008269", "WVWZZZ1JZXW000001", "1HGCM82633A004352"]


def card(color: str = "white", size: tuple[int, int] = (64, 16)) -> Image.Image:
    """A ``color`` image with a contrasting line (a flat frame is a ``blank_image``)."""
    im = Image.new("RGB", size, color)
    line = "white" if color == "black" else "black"
    ImageDraw.Draw(im).line((0, size[1] // 2, size[0] // 2, size[1] // 2), fill=line)
    return im


def png(path: Path, color: str = "white", size: tuple[int, int] = (64, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    card(color, size).save(path)
    return path


def sample(path: Path, vin: str, line: int) -> Sample:
    return Sample(image=path, vin=vin, meta={ORIGIN: f"labels.csv:{line}"})


def test_vin_rules():
    assert all(vin_problems(v) == [] for v in GOOD[:3])  # VW's optional check digit fails: fine
    assert [k for k, _ in vin_problems("")] == ["empty_vin"]
    assert [k for k, _ in vin_problems("1M8GDM9AXKP04278")] == ["length"]
    assert [k for k, _ in vin_problems("1M8GDM9AXKP0427-8")] == ["characters"]
    assert [k for k, _ in vin_problems("1M8GDM9AXKPO4278")] == ["characters", "length"]
    [(kind, message)] = vin_problems("1M8GDM9A1KP042788")  # North America: mandatory
    assert kind == "check_digit" and "expected 'X'" in message
    assert [k for k, _ in vin_problems("LSVAA4182E2123456")] == ["check_digit"]  # China
    assert [k for k, _ in vin_problems("WVWZZZ1J1XW000001")] == []  # Europe: optional


def test_every_problem_is_reported_with_its_line(tmp_path: Path):
    good = png(tmp_path / "good.png")
    copy = tmp_path / "copy.png"
    shutil.copy(good, copy)
    other = png(tmp_path / "other.png", "black")
    twice = png(tmp_path / "twice.png", "red")
    conflict = png(tmp_path / "conflict.png", "blue")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a JPEG")
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), "green").save(buf, format="PNG", compress_level=0)
    (tmp_path / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    tiny = png(tmp_path / "tiny.png", size=(40, 4))
    wide = png(tmp_path / "wide.png", size=(20_001, 8))
    v = GOOD
    samples = [
        sample(good, v[0], 2),  # kept
        sample(other, "1M8GDM9AXKP04278", 3),  # length
        sample(other, v[1], 4),  # (other.png again, different VIN) -> conflicts with line 3
        sample(tmp_path / "missing.png", v[2], 5),
        sample(tmp_path / "empty.png", v[3], 6),
        sample(tmp_path / "text.jpg", v[3], 7),
        sample(tmp_path / "truncated.png", v[3], 8),
        sample(tiny, v[3], 9),
        sample(wide, v[3], 10),
        sample(copy, v[0], 11),  # same content and VIN as line 2
        sample(twice, v[1], 12),  # kept
        sample(twice, v[1], 13),  # same row again
        sample(conflict, v[2], 14),
        sample(conflict, v[3], 15),
        sample(png(tmp_path / "cd.png", "gray"), "1M8GDM9A1KP042788", 16),  # check digit
        sample(png(tmp_path / "ch.png", "pink"), "1M8GDM9AXKP0427O8", 17),  # characters
        sample(png(tmp_path / "ev.png", "cyan"), "", 18),  # empty VIN
    ]
    report = validate_samples(samples, strict=False, workers=2)
    found = {(i.origin, i.kind) for i in report.issues}
    expected = {
        ("labels.csv:3", "length"),
        ("labels.csv:3", "conflicting_label"),
        ("labels.csv:4", "conflicting_label"),
        ("labels.csv:5", "missing_image"),
        ("labels.csv:6", "unreadable_image"),
        ("labels.csv:7", "unreadable_image"),
        ("labels.csv:8", "unreadable_image"),
        ("labels.csv:9", "image_size"),
        ("labels.csv:10", "image_size"),
        ("labels.csv:11", "duplicate_image"),
        ("labels.csv:13", "duplicate_row"),
        ("labels.csv:14", "conflicting_label"),
        ("labels.csv:15", "conflicting_label"),
        ("labels.csv:16", "check_digit"),
        ("labels.csv:17", "characters"),
        ("labels.csv:18", "empty_vin"),
    }
    assert found == expected
    messages = {i.origin: i.message for i in report.issues}
    assert messages["labels.csv:6"] == "empty file (0 bytes)"
    assert messages["labels.csv:7"] == "not an image file"
    assert "truncated" in messages["labels.csv:8"].lower()
    assert "labels.csv:2" in messages["labels.csv:11"]
    assert [s.meta[ORIGIN] for s in report.kept] == ["labels.csv:2", "labels.csv:12"]
    assert report.skipped == {
        "length": 1,
        "conflicting_label": 3,
        "missing_image": 1,
        "unreadable_image": 3,
        "image_size": 2,
        "duplicate_image": 1,
        "duplicate_row": 1,
        "check_digit": 1,
        "characters": 1,
        "empty_vin": 1,
    }
    assert report.summary().startswith("17 samples read, 2 kept, 15 skipped")

    with pytest.raises(DataValidationError) as err:
        validate_samples(samples, strict=True)
    text = str(err.value)
    assert all(f"{origin}:" in text for origin, _ in expected)  # every problem, not the first
    assert len(err.value.report.issues) == len(report.issues) == 16


def test_clean_data_passes_strict(tmp_path: Path):
    samples = [
        sample(png(tmp_path / f"{i}.png", c), v, i)
        for i, (c, v) in enumerate(zip(["red", "blue", "green"], GOOD, strict=False))
    ]
    report = validate_samples(samples, strict=True)
    assert report.ok and report.kept == samples and not report.skipped


def test_switches_for_unlabelled_and_non_vin_labels(tmp_path: Path):
    a = png(tmp_path / "a.png", "red")
    b = png(tmp_path / "b.png", "blue")
    samples = [sample(a, "", 1), sample(b, "ABC123", 2)]
    assert validate_samples(samples, allow_unlabelled=True).skipped == {"length": 1}
    assert validate_samples(samples, check_vin=False).skipped == {"empty_vin": 1}
    assert validate_samples(samples, allow_unlabelled=True, check_vin=False).ok
    missing = [sample(tmp_path / "nope.png", GOOD[0], 1)]
    assert validate_samples(missing, check_images=False).ok


def test_jpeg_checks(tmp_path: Path):
    path = tmp_path / "a.jpg"
    card("white", (640, 480)).save(path, quality=90)
    ok = check_image(path)
    assert ok.problem is None and ok.size == (640, 480) and ok.digest
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    assert check_image(path).problem[0] == "unreadable_image"
    assert check_image(tmp_path / "a.jpg", max_pixels=1000).problem[0] == "image_size"


def test_reader_origins_reach_the_report(tmp_path: Path):
    png(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text(f"file,vin\na.png,{GOOD[0]}\nb.png,{GOOD[1]}\n")
    report = validate_samples(read_folder(tmp_path))
    [issue] = report.issues
    assert str(issue).startswith(f"{tmp_path / 'labels.csv'}:3: image file not found")
