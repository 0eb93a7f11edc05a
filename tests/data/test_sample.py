import json
from pathlib import Path

import pytest

from vin_ocr.data.sample import (
    ManifestError,
    Sample,
    atomic_write_text,
    read_manifest,
    write_manifest,
)


def test_manifest_round_trip_keeps_extra_keys(tmp_path: Path):
    img = tmp_path / "imgs" / "a.png"
    samples = [
        Sample(
            image=img,
            vin="1M8GDM9AXKP042788",
            source="synth",
            box=(1, 2, 30, 40),
            crop=False,
            meta={"look": "sticker", "n": 3},
        ),
        Sample(image=tmp_path / "b.jpg", vin="", crop=True),
    ]
    path = write_manifest(samples, tmp_path / "manifest.jsonl")
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["image"] == "imgs/a.png"  # relative to the manifest
    assert json.loads(lines[0])["look"] == "sticker"
    assert read_manifest(path) == samples


def test_manifest_errors_name_file_and_line(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "a.png", "vin": "X"}\n\n{"vin": "Y"}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: missing key 'image'"):
        read_manifest(path)
    path.write_text('{"image": "a.png"}\n{oops\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: not valid JSON"):
        read_manifest(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: expected a JSON object"):
        read_manifest(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        read_manifest(tmp_path / "nope.jsonl")


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind


def test_in_memory_pixels_are_loaded_and_not_written(tmp_path: Path):
    from PIL import Image

    im = Image.new("L", (40, 10), 128)
    s = Sample(image=tmp_path / "never-written.png", vin="1M8GDM9AXKP042788", pixels=im)
    loaded = s.load_image()
    assert loaded.mode == "RGB" and loaded.size == (40, 10)
    assert "pixels" not in s.to_dict(tmp_path)
