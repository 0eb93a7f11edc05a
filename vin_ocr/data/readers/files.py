"""Readers of label files and folders (CSV, TSV, JSONL, PaddleOCR, our manifest), and the column
helpers every reader shares."""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vin_ocr.data.sample import (
    ManifestError,
    Sample,
    jsonl_rows,
    read_manifest,
    read_text,
)

log = logging.getLogger(__name__)

#: Column / key names tried, in order, when none is given (compared case-insensitively).
IMAGE_KEYS: tuple[str, ...] = ("image", "file", "filename", "file_name", "path", "image_path")
VIN_KEYS: tuple[str, ...] = ("vin", "label", "text", "ground_truth", "gt")
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
#: Labels files picked up by :func:`read_folder` when none is named.
DEFAULT_LABEL_FILES: tuple[str, ...] = ("labels.csv", "labels.tsv", "labels.jsonl")
ORIGIN = "_origin"

_VIN_IN_NAME = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
LEAK_WARNING = (
    "Reading VINs from file names (vin_from_filename=true). Earlier VIN projects leaked labels "
    "this way: make sure the file names never reach the model or a post-processing step, and "
    "that the names really hold the right VIN."
)

PathLike = str | os.PathLike[str]


def _clean_vin(value: Any) -> str:
    return "" if value is None else str(value).strip().upper()


def _pick(keys: Iterable[str], wanted: str | None, defaults: Sequence[str], what: str, where: str):
    """Return the actual key for ``wanted`` (or the first default present), case-insensitively."""
    by_lower = {k.lower(): k for k in keys if isinstance(k, str)}
    if wanted:
        if wanted.lower() in by_lower:
            return by_lower[wanted.lower()]
        raise ManifestError(f"{where}: no {what} column {wanted!r} (columns: {sorted(by_lower)})")
    for name in defaults:
        if name in by_lower:
            return by_lower[name]
    raise ManifestError(
        f"{where}: no {what} column; looked for {list(defaults)} in {sorted(by_lower)} "
        f"(name it with {what}_key=...)"
    )


def _resolve(root: Path, value: Any) -> Path:
    path = Path(str(value).strip())
    return path if path.is_absolute() else root / path


def _row_sample(
    row: dict[str, Any], image_key: str, vin_key: str, root: Path, source: str, origin: str
) -> Sample:
    if row.get(image_key) in (None, ""):
        raise ManifestError(f"{origin}: empty {image_key!r}")
    meta = {k: v for k, v in row.items() if k not in (image_key, vin_key, "source") and k}
    meta[ORIGIN] = origin
    return Sample(
        image=_resolve(root, row[image_key]),
        vin=_clean_vin(row.get(vin_key)),
        source=str(row.get("source") or source),
        meta=meta,
    )


def read_labels_file(
    path: PathLike,
    root: PathLike | None = None,
    *,
    image_key: str | None = None,
    vin_key: str | None = None,
    source: str = "user",
) -> list[Sample]:
    """Read a CSV (``.csv``), TSV (``.tsv``/``.tab``) or JSONL (``.jsonl``/``.ndjson``) labels file.

    Image paths are relative to ``root`` (default: the labels file's folder). ``image_key`` and
    ``vin_key`` name the columns; by default the first of :data:`IMAGE_KEYS` / :data:`VIN_KEYS`
    present is used. A ``source`` column, when present, overrides ``source``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found")
    root = Path(root) if root is not None else path.parent
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = jsonl_rows(path)
    elif suffix in (".csv", ".tsv", ".tab"):
        rows = _csv_rows(path, "," if suffix == ".csv" else "\t")
    else:
        raise ManifestError(f"{path}: unknown labels format {suffix!r} (use .csv, .tsv or .jsonl)")
    samples: list[Sample] = []
    keys: tuple[str, str] | None = None
    for lineno, row in rows:
        origin = f"{path}:{lineno}"
        if keys is None or not (keys[0] in row and keys[1] in row):
            keys = (
                _pick(row, image_key, IMAGE_KEYS, "image", origin),
                _pick(row, vin_key, VIN_KEYS, "vin", origin),
            )
        samples.append(_row_sample(row, keys[0], keys[1], root, source, origin))
    return samples


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    with io.StringIO(read_text(path, "labels file"), newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        if not reader.fieldnames:
            raise ManifestError(f"{path}:1: empty file, expected a header line")
        for row in reader:
            # line_num is the row's last line (blank lines skipped); back up over quoted newlines
            cells = [v for v in row.values() if isinstance(v, str)]
            lineno = reader.line_num - sum(v.count("\n") for v in cells)
            if None in row:
                n = len(reader.fieldnames)
                raise ManifestError(
                    f"{path}:{lineno}: {n + len(row[None])} fields, the header has {n}"
                )
            if any(v.strip() for v in cells):
                # a short row's missing cells are empty: validation then reports the line
                yield lineno, {k.strip(): (v or "").strip() for k, v in row.items()}


def vin_from_name(path: PathLike) -> str:
    """The VIN in a file name: the first 17-character VIN-alphabet run, else the upper-cased stem.

    >>> vin_from_name("photos/car_1m8gdm9axkp042788_front.jpg")
    '1M8GDM9AXKP042788'
    """
    stem = Path(path).stem.upper()
    match = _VIN_IN_NAME.search(stem)
    return match.group(0) if match else stem


def read_folder(
    path: PathLike,
    labels: PathLike | None = None,
    *,
    image_key: str | None = None,
    vin_key: str | None = None,
    vin_from_filename: bool = False,
    source: str = "user",
) -> list[Sample]:
    """Read a folder of images with a labels file (image paths relative to the folder).

    ``labels`` may be relative to the folder (tried first) or to the working directory; when not
    given, ``labels.csv``/``.tsv``/``.jsonl`` in the folder is used. Only with
    ``vin_from_filename=True`` and no labels file are the VINs taken from the image file names
    (see :func:`vin_from_name`), with a warning.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: data folder not found")
    if labels is None and not vin_from_filename:
        found = [folder / n for n in DEFAULT_LABEL_FILES if (folder / n).is_file()]
        if not found:
            raise FileNotFoundError(
                f"{folder}: no labels file given and none of {list(DEFAULT_LABEL_FILES)} found; "
                "pass labels=FILE (or, knowingly, vin_from_filename=true)"
            )
        labels = found[0]
    if labels is not None:
        labels_path = Path(labels)
        if not labels_path.is_absolute() and (folder / labels_path).is_file():
            labels_path = folder / labels_path  # relative to the folder first, then to the cwd
        return read_labels_file(
            labels_path, folder, image_key=image_key, vin_key=vin_key, source=source
        )
    log.warning(LEAK_WARNING)
    images = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    return [
        Sample(
            image=p,
            vin=vin_from_name(p),
            source=source,
            meta={"vin_from_filename": True, ORIGIN: str(p)},
        )
        for p in images
    ]


def read_paddle_labels(
    path: PathLike, root: PathLike | None = None, *, source: str = "user"
) -> list[Sample]:
    """Read a PaddleOCR recognition label file: ``image_path<TAB>label`` per line.

    Paths are relative to ``root`` (PaddleOCR's ``data_dir``; default: the label file's folder).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label file not found")
    root = Path(root) if root is not None else path.parent
    samples = []
    with io.StringIO(read_text(path, "label file")) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            image, tab, label = line.partition("\t")
            if not tab:
                raise ManifestError(f"{path}:{lineno}: expected 'image_path<TAB>label'")
            if not image.strip():
                raise ManifestError(f"{path}:{lineno}: empty image path")
            samples.append(
                Sample(
                    image=_resolve(root, image),
                    vin=_clean_vin(label),
                    source=source,
                    meta={ORIGIN: f"{path}:{lineno}"},
                )
            )
    return samples


def read_jsonl_manifest(path: PathLike) -> list[Sample]:
    """Read one of our JSONL manifests, recording each sample's line in ``meta['_origin']``."""
    samples = read_manifest(path)
    lines = [
        n
        for n, line in enumerate(io.StringIO(read_text(Path(path), "manifest")), 1)
        if line.strip()
    ]
    return [
        Sample(s.image, s.vin, s.source, s.box, s.crop, {**s.meta, ORIGIN: f"{path}:{n}"})
        for s, n in zip(samples, lines, strict=True)
    ]
