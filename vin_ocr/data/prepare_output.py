"""What ``python -m vin_ocr.data.prepare`` writes: the out-folder check, the public samples, the
manifests, parquet files and dataset card, and the summary it prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vin_ocr.data.sample import Sample, write_manifest
from vin_ocr.data.validate import ValidationReport
from vin_ocr.data.writers import public_meta, write_dataset_card, write_parquet
from vin_ocr.errors import check_writable


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


def write_outputs(
    splits: dict[str, list[Sample]], out: Path, fmt: str, card: dict[str, Any]
) -> list[Path]:
    """Write each split's manifest under ``out`` (``fmt="parquet"``: parquet files and a card too;
    a card also whenever a source asks for credit); returns the files written."""
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
        files.append(
            write_dataset_card(
                out / "README.md", splits, data_files=data_files or None, credits=credits, **card
            )
        )
    for name, part in splits.items():
        files.append(write_manifest(part, out / f"{name}.jsonl"))
    return files
