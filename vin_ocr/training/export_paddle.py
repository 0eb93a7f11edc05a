"""Export a fine-tuned PP-OCR run to the Paddle inference format PaddleOCR 3.x loads from a
folder, verified through the official package (:mod:`vin_ocr.models.pp_ocr_paddle`)::

    python -m vin_ocr.training.export_paddle run=RUN              # -> RUN/paddle/{rec,det}
    python -m vin_ocr.training.export_paddle run=RUN out=DIR det=false overwrite=true

Config: ``configs/paddle_export.yaml`` (schema :class:`PaddleExportConf`). Needs the ``paddle``
extra; see docs/pp_ocr.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

import vin_ocr
from vin_ocr.errors import exit_on_user_error
from vin_ocr.models.pp_ocr_paddle import PaddleExportError, export_det, export_rec, sample_crops
from vin_ocr.run_folder import load_run


@dataclass
class PaddleExportConf:
    """``python -m vin_ocr.training.export_paddle``; a mistyped key fails naming it."""

    run: str | None = None  # a finished PP-OCR training run folder
    out: str | None = None  # null: RUN/paddle (rec/ and det/ inside)
    det: bool = True  # also write det/: the run's detector (run.json's det_* settings)
    overwrite: bool = False  # replace existing rec/ and det/ folders
    samples: int = 32  # line crops the official package must read as torch does
    manifest: str | None = None  # their manifest; null: the bundled samples
    atol: float = 1e-3  # largest probability difference accepted


def export_run(cfg: Any) -> dict[str, Any]:
    """Export the run ``cfg.run`` (see :class:`PaddleExportConf`); returns the reports."""
    if not cfg.run:
        raise PaddleExportError("run=RUN is required (a finished PP-OCR training run folder)")
    run = Path(cfg.run)
    out = Path(cfg.out) if cfg.out else run / "paddle"
    for sub in ("rec", "det") if cfg.det else ("rec",):
        if (out / sub).exists() and not cfg.overwrite:
            raise PaddleExportError(f"{out / sub} exists (overwrite=true replaces it)")
    images = sample_crops(cfg.samples, cfg.manifest)
    try:
        engine = load_run(run)
    except (FileNotFoundError, ValueError) as exc:
        raise PaddleExportError(str(exc)) from None
    family: Any = engine.family  # a PPOCRFamily (checked below)
    model = engine.model
    if getattr(family, "name", None) != "pp_ocr":
        raise PaddleExportError(f"{run}: a {family.name} run; only pp_ocr runs export to Paddle")
    rec = export_rec(
        model, family.charset, out / "rec", images, family.class_index, cfg.overwrite, cfg.atol
    )
    reports = {"rec": rec}
    if cfg.det:
        detector = family.detector()
        reports["det"] = export_det(
            detector.model, out / "det", detector.settings, overwrite=cfg.overwrite
        )
    return reports


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="paddle_export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(PaddleExportError, out="out"):  # bad input: one line
        reports = export_run(cfg)
    for kind, report in reports.items():
        print(f"{kind}: {json.dumps(report)}")


if __name__ == "__main__":
    from vin_ocr.config import register_configs

    register_configs()  # every Hydra schema, before main() composes
    main()
