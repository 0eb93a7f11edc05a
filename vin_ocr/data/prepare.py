"""Read users' data, validate it, split it by VIN and write manifests (and parquet + card).

    python -m vin_ocr.data.prepare source=folder source.path=DIR source.labels=labels.csv \\
        out=OUT_DIR [strict=true] [split.train=0.8 split.val=0.1 split.test=0.1] \\
        [format=jsonl|parquet]

Writes ``OUT_DIR/{train,val,test}.jsonl``; ``format=parquet`` adds ``OUT_DIR/data/<split>.parquet``
(images embedded) and a dataset card ``OUT_DIR/README.md``. Outputs are written only after
validation, each through a temporary file and a rename. An ``OUT_DIR`` that already holds
manifests (or a parquet/card output) is refused unless ``overwrite=true``; one that cannot be
written is refused before anything is read. A split with a non-zero ratio that would be empty
(too few VINs: a VIN never goes to two splits) is refused, naming it, unless
``allow_empty_splits=true`` (then a warning); set its ratio to 0 to go without it.
Sources (``configs/source/``): ``folder``, ``paddle``, ``hf``, ``manifest``, ``yolo``; each names
its reader with ``_target_``.
"""

from __future__ import annotations

import logging
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
from vin_ocr.errors import check_writable, exit_on_user_error

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


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="prepare_schema", node=PrepareConfig)
    for name, node in (
        ("folder", FolderSource),
        ("paddle", PaddleSource),
        ("hf", HFSource),
        ("manifest", ManifestSource),
        ("yolo", YoloSource),
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


def check_out(out: Path, split_names: list[str], overwrite: bool) -> None:
    """Refuse an output folder that holds a previous result (unless ``overwrite``) or cannot be
    written; nothing is created here."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={out} is a file, not a folder")
    held = [f"{n}.jsonl" for n in split_names if (out / f"{n}.jsonl").exists()]
    held += [p.name for p in out.glob("*.jsonl") if p.name not in held] if out.is_dir() else []
    held += [n for n in ("data", "README.md") if (out / n).exists()]
    if held and not overwrite:
        raise ValueError(
            f"out={out} already holds {', '.join(sorted(held))}: set overwrite=true to replace "
            "them, or choose another out folder"
        )
    check_writable(out, "out")  # the folder, or the nearest existing parent, takes a new file


def prepare(cfg: DictConfig) -> PrepareResult:
    """Read ``cfg.source``, validate, split by VIN and write the outputs under ``cfg.out``.

    Raises :class:`DataValidationError` (strict mode, or nothing usable left) and ValueError
    (``out`` holds a previous result or cannot be written, a split would be empty) before
    writing.
    """
    out = Path(cfg.out)
    fmt = getattr(cfg.format, "name", cfg.format)
    if fmt not in OutputFormat.__members__:
        raise ValueError(f"format={fmt!r}: expected one of {list(OutputFormat.__members__)}")
    check_out(out, list(cfg.split), bool(cfg.get("overwrite", False)))
    samples: list[Sample] = instantiate(cfg.source, _convert_="all")
    log.info("read %d samples from %s", len(samples), cfg.source.path)
    report = validate_samples(samples, strict=bool(cfg.strict), **cfg.get("validate", {}))
    if not report.kept:
        raise DataValidationError(report)
    splits = split_by_vin(report.kept, ratios=dict(cfg.split), seed=int(cfg.seed))
    splits = {name: [_public(s) for s in part] for name, part in splits.items()}
    empty = [n for n, part in splits.items() if not part and float(cfg.split[n]) > 0]
    if empty:
        vins = len({s.vin for s in report.kept})
        what = (
            f"split {', '.join(empty)} would be empty: {vins} VIN(s) for ratios "
            + ", ".join(f"{n} {float(r):g}" for n, r in cfg.split.items())
            + " (a VIN never goes to two splits)"
        )
        if not cfg.get("allow_empty_splits", False):
            raise ValueError(
                f"{what}; add data, set split.{empty[0]}=0 (and rebalance), or "
                "allow_empty_splits=true to write it empty"
            )
        log.warning("WARNING: %s; written empty (allow_empty_splits=true)", what)

    files: list[Path] = []
    data_files: dict[str, str] = {}
    if fmt == "parquet":
        for name, part in splits.items():
            if part:
                files.append(write_parquet(part, out / "data" / f"{name}.parquet"))
                data_files[name] = f"data/{name}.parquet"
    # a source's required credit (meta["credit"], e.g. CC BY data) travels in a card in any format
    credits = sorted(
        {str(s.meta["credit"]) for p in splits.values() for s in p if "credit" in s.meta}
    )
    if fmt == "parquet" or credits:
        card = dict(cfg.get("card", {}))
        files.append(
            write_dataset_card(
                out / "README.md", splits, data_files=data_files or None, credits=credits, **card
            )
        )
    for name, part in splits.items():
        files.append(write_manifest(part, out / f"{name}.jsonl"))
    return PrepareResult(report=report, splits=splits, files=files)


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(DataValidationError, ManifestError, OSError, ValueError, out="out"):
        result = prepare(cfg)
    print(result.summary())


if __name__ == "__main__":
    main()
