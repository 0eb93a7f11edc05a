"""Read users' data, validate it, split it by VIN and write manifests (and parquet + card).

    python -m vin_ocr.data.prepare source=folder source.path=DIR source.labels=labels.csv \\
        out=OUT_DIR [strict=true] [split.train=0.8 split.val=0.1 split.test=0.1] \\
        [format=jsonl|parquet]

Writes ``OUT_DIR/{train,val,test}.jsonl``; ``format=parquet`` adds ``OUT_DIR/data/<split>.parquet``
(images embedded) and a dataset card ``OUT_DIR/README.md``. Outputs are written only after
validation, each through a temporary file and a rename. Sources (``configs/source/``): ``folder``,
``paddle``, ``hf``, ``manifest``; each names its reader with ``_target_``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig

import vin_ocr
from vin_ocr.data.sample import ManifestError, Sample, write_manifest
from vin_ocr.data.splits import DEFAULT_RATIOS, split_by_vin
from vin_ocr.data.validate import DataValidationError, ValidationReport, validate_samples
from vin_ocr.data.writers import public_meta, write_dataset_card, write_parquet

log = logging.getLogger(__name__)


# --- config schemas (Hydra's ConfigStore: a mistyped key fails at start-up, naming it) ----------


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
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    card: CardConfig = field(default_factory=CardConfig)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="prepare_schema", node=PrepareConfig)
    for name, node in (
        ("folder", FolderSource),
        ("paddle", PaddleSource),
        ("hf", HFSource),
        ("manifest", ManifestSource),
    ):
        cs.store(group="source", name=f"{name}_schema", node=node)


register_configs()


# --- the work ---------------------------------------------------------------------------------


@dataclass
class PrepareResult:
    report: ValidationReport
    splits: dict[str, list[Sample]]
    files: list[Path]

    def summary(self) -> str:
        parts = ", ".join(f"{name} {len(v)}" for name, v in self.splits.items())
        files = "\n".join(f"  {p}" for p in self.files)
        return f"{self.report.format(max_issues=50)}\nsplits: {parts}\nwrote:\n{files}"


def _public(sample: Sample) -> Sample:
    return Sample(
        sample.image, sample.vin, sample.source, sample.box, sample.crop, public_meta(sample)
    )


def prepare(cfg: DictConfig) -> PrepareResult:
    """Read ``cfg.source``, validate, split by VIN and write the outputs under ``cfg.out``.

    Raises :class:`DataValidationError` (strict mode, or nothing usable left) before writing.
    """
    out = Path(cfg.out)
    fmt = getattr(cfg.format, "name", cfg.format)
    if fmt not in OutputFormat.__members__:
        raise ValueError(f"format={fmt!r}: expected one of {list(OutputFormat.__members__)}")
    samples: list[Sample] = instantiate(cfg.source, _convert_="all")
    log.info("read %d samples from %s", len(samples), cfg.source.path)
    report = validate_samples(samples, strict=bool(cfg.strict), **cfg.get("validate", {}))
    if not report.kept:
        raise DataValidationError(report)
    splits = split_by_vin(report.kept, ratios=dict(cfg.split), seed=int(cfg.seed))
    splits = {name: [_public(s) for s in part] for name, part in splits.items()}

    files: list[Path] = []
    if fmt == "parquet":
        data_files = {}
        for name, part in splits.items():
            if part:
                files.append(write_parquet(part, out / "data" / f"{name}.parquet"))
                data_files[name] = f"data/{name}.parquet"
        card = dict(cfg.get("card", {}))
        files.append(write_dataset_card(out / "README.md", splits, data_files=data_files, **card))
    for name, part in splits.items():
        files.append(write_manifest(part, out / f"{name}.jsonl"))
    return PrepareResult(report=report, splits=splits, files=files)


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        result = prepare(cfg)
    except (DataValidationError, ManifestError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(result.summary())


if __name__ == "__main__":
    main()
