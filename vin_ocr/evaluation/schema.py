"""The config schemas of ``configs/eval/eval.yaml`` and its groups ``eval/data/``, ``eval/engine/``
(registered by :func:`vin_ocr.config.register_configs`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

_ENGINES = "vin_ocr.evaluation.engines."


@dataclass
class RapidOCRConf:
    _target_: str = _ENGINES + "RapidOCREngine"
    path: str | None = None
    det_path: str | None = None
    threads: int | None = None
    text_score: float = 0.5
    rec_batch_num: int = 8


@dataclass
class TesseractConf:
    _target_: str = _ENGINES + "TesseractEngine"
    binary: str = "tesseract"
    lang: str = "eng"
    psm_crop: int = 7
    psm_scene: int = 6
    whitelist: str | None = None
    whitelist_scenes: bool = False
    workers: int = 1
    timeout_s: float = 60.0


@dataclass
class PaddleOCRConf:
    _target_: str = _ENGINES + "PaddleOCREngine"
    path: str | None = None
    det_path: str | None = None
    rec_model: str = "PP-OCRv6_small_rec"
    det_model: str = "PP-OCRv6_small_det"
    device: str = "cpu"


@dataclass
class CheckpointConf:
    _target_: str = _ENGINES + "CheckpointEngine"
    path: str = MISSING
    # keys of the run's model config to change for reading, e.g. +engine.model.decoding.num_beams=8
    model: dict[str, Any] = field(default_factory=dict)
    onnx: bool = True  # PP-OCR: read through the run's ONNX graphs (false: torch)


@dataclass
class DataConf:
    #: A JSONL manifest; ``None`` means the bundled samples (``vin_ocr.SAMPLES_DIR``).
    path: str | None = MISSING


@dataclass
class EvalConf:
    engine: Any = MISSING
    data: DataConf = field(default_factory=DataConf)
    batch_size: int = 8
    limit: int | None = None
    crops: Any = "auto"  # auto | true | false
    barcodes: bool = True  # whole photos: also read VIN barcodes and fuse them with OCR
    warmup: bool = True
    top_confusions: int = 20
    #: A truth label that is not a VIN (``O``/``I``/``Q``, length, spaces, a number): ``error``
    #: stops before reading, naming file:line; ``skip`` leaves the row out and counts it.
    invalid_labels: str = "error"
    #: Where the run's files go; ``None``: the Hydra run folder (``hydra.run.dir``).
    out_dir: str | None = None
    progress: bool = True
