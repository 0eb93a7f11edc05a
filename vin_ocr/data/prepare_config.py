"""``python -m vin_ocr.data.prepare``'s config schemas: the sources (each names its reader with
``_target_``), the output format, validation and card options (:class:`PrepareConfig`),
registered in Hydra's ConfigStore so that a mistyped key fails at start-up, naming it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from vin_ocr.data.splits import DEFAULT_RATIOS


@dataclass
class FolderSource:
    """A folder of images and a labels file (CSV/TSV/JSONL) relative to it."""

    _target_: str = "vin_ocr.data.readers.read_folder"
    path: str = MISSING
    labels: str | None = None
    image_key: str | None = None
    vin_key: str | None = None
    vin_from_filename: bool = False
    source: str = "user"


@dataclass
class PaddleSource:
    """A PaddleOCR recognition label file; ``root`` is PaddleOCR's ``data_dir``."""

    _target_: str = "vin_ocr.data.readers.read_paddle_labels"
    path: str = MISSING
    root: str | None = None
    source: str = "user"


@dataclass
class HFSource:
    """A Hugging Face dataset: local parquet/arrow/``save_to_disk``, or a Hub id (online)."""

    _target_: str = "vin_ocr.data.readers.read_hf_dataset"
    path: str = MISSING
    split: str | None = None
    image_column: str | None = None
    vin_column: str | None = None
    image_dir: str = "${out}/images"
    revision: str | None = None
    source: str = "hf"


@dataclass
class ManifestSource:
    """One of our JSONL manifests (to re-validate or re-split)."""

    _target_: str = "vin_ocr.data.readers.read_jsonl_manifest"
    path: str = MISSING


@dataclass
class YoloSource:
    """Images + YOLO boxes (``vin_ocr.data.yolo``); VINs from an optional labels file."""

    _target_: str = "vin_ocr.data.yolo.read_yolo"
    path: str = MISSING
    labels: str | None = None
    image_key: str | None = None
    vin_key: str | None = None
    class_ids: list[int] | None = None
    exclude: list[str] = field(default_factory=list)
    unlabelled: str = "keep"  # keep | skip
    unlabelled_out: str | None = "${out}/unlabelled.jsonl"
    crops: bool = False
    crop_dir: str = "${out}/crops"
    margin: float = 0.08
    credit: str | None = None
    source: str = "yolo"


class OutputFormat(Enum):
    jsonl = "jsonl"
    parquet = "parquet"  # the JSONL manifests plus parquet files and a dataset card


@dataclass
class ValidateConfig:
    check_vin: bool = True
    check_images: bool = True
    allow_unlabelled: bool = False
    min_side: int = 8
    max_side: int = 20_000
    max_pixels: int = 100_000_000


@dataclass
class CardConfig:
    license: str = "other"
    pretty_name: str = "VIN OCR"
    description: str = ""


@dataclass
class PrepareConfig:
    source: Any = MISSING
    out: str = MISSING
    strict: bool = False
    format: OutputFormat = OutputFormat.jsonl
    split: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    seed: int = 0
    overwrite: bool = False  # replace the manifests (and parquet/card) already in ``out``
    allow_empty_splits: bool = False  # write a split with a ratio > 0 but no sample (warning)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    card: CardConfig = field(default_factory=CardConfig)
