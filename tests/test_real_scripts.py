"""scripts/bench_real.py and scripts/pseudo_label.py, quick, on a few of the real shared photos
(``../shared/vin-detection``; CI has it)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

import vin_ocr

SHARED = vin_ocr.REPO_ROOT.parent / "shared" / "vin-detection"
DEV = SHARED / "vin_labels.jsonl"

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not DEV.is_file(), reason=f"{SHARED} is not here (CI has it)"),
]


def script(name: str):
    path = vin_ocr.REPO_ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_real_quick_reads_three_ways_and_records(tmp_path):
    mod = script("bench_real")
    md = tmp_path / "b.md"
    results = mod.main(["quick=true", "engines=[rapidocr,fine-tuned]", f"out={md}"])
    assert set(results) == {"rapidocr", "fine-tuned"}
    for engine in results.values():
        assert set(engine) == set(mod.READINGS)
        assert all(r["n"] == 4 for r in engine.values())
    assert results["rapidocr"]["photos"]["exact_match"] >= 0.75  # the pretrained pipeline
    text = md.read_text()
    assert mod.SECTION in text and "CC BY 4.0" in text and "| rapidocr |" in text
    assert "never below rapidocr in any reading" in text


def test_pseudo_labels_need_two_readers_agreeing_on_a_valid_vin(tmp_path):
    mod = script("pseudo_label")
    rows = [json.loads(x) for x in DEV.read_text().splitlines()][:4]
    manifest = tmp_path / "photos.jsonl"
    boxes = []
    for r in rows:
        image = SHARED / r["image"]
        with Image.open(image) as im:
            box = script("bench_real").yolo_box(image, im.size)
        boxes.append(box)
        manifest.open("a").write(
            json.dumps({"image": str(image), "vin": "", "crop": False, "box": list(box)}) + "\n"
        )
    out = tmp_path / "labelled.jsonl"
    counts = mod.main([f"manifest={manifest}", f"out={out}"])
    labelled = [json.loads(x) for x in out.read_text().splitlines()]
    assert counts["labelled"] == len(labelled) >= 2
    truth = {SHARED / r["image"]: r["vin"] for r in rows}
    for row in labelled:  # a trusted pseudo-label is right
        assert truth[Path(row["image"])] == row["vin"]
    with pytest.raises(SystemExit, match="exists"):
        mod.main([f"manifest={manifest}", f"out={out}"])
    none = mod.main([f"manifest={manifest}", f"out={tmp_path / 'x.jsonl'}", f"exclude={DEV}"])
    assert none["excluded"] == 4 and "labelled" not in none
    assert mod.trusted("1HGCM82633A004353", "1HGCM82633A004353") is None
