"""The Paddle export command on a real run folder: the hub tests' 2-step LoRA fine-tune of
PP-OCRv6-small exported to PaddleOCR's format and verified through the official package
(``python -m vin_ocr.training.export_paddle``)."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from vin_ocr.models.pp_ocr_paddle import REPORT_FILE, PaddleExportError
from vin_ocr.training.export_paddle import PaddleExportConf, export_run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_a_lora_run_exports_verified_and_refuses_to_overwrite(trained_run, tmp_path):
    assert (trained_run / "model" / "adapter").is_dir()  # LoRA: the export merges on a copy
    out = tmp_path / "paddle"
    cfg = OmegaConf.structured(
        PaddleExportConf(run=str(trained_run), out=str(out), det=False, samples=6)
    )
    reports = export_run(cfg)
    rec = out / "rec"
    assert {"inference.yml", "inference.pdiparams", REPORT_FILE} <= {p.name for p in rec.iterdir()}
    saved = json.loads((rec / REPORT_FILE).read_text())
    assert reports["rec"] == {**saved, "path": str(rec)}  # the report, and where it lies
    assert saved["crops"] == 6 and saved["texts_equal"] == 6, saved
    before = (rec / REPORT_FILE).stat().st_mtime_ns
    with pytest.raises(PaddleExportError, match="exists"):
        export_run(cfg)
    assert (rec / REPORT_FILE).stat().st_mtime_ns == before  # nothing overwritten
    assert not (trained_run / "paddle").exists()  # out= was honoured
