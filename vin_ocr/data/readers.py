"""Readers for the data users already have; each returns ``list[Sample]``.

- :func:`read_folder`: a folder of images plus a labels file (CSV, TSV or JSONL), or, only when
  asked, VINs taken from the file names.
- :func:`read_labels_file`: the labels file alone (image paths relative to a root folder).
- :func:`read_paddle_labels`: PaddleOCR recognition label files (``path<TAB>label`` per line).
- :func:`read_hf_dataset`: Hugging Face ``datasets`` (a ``save_to_disk`` folder, ``.parquet`` or
  ``.arrow`` files, or a Hub id); images held in memory are written out as files.
- :func:`read_jsonl_manifest`: our own JSONL manifest (:func:`vin_ocr.data.sample.read_manifest`).

Every sample carries where it came from in ``meta["_origin"]`` (``"labels.csv:12"``, ``"x.parquet
row 3"``) so that validation can name the file and line; columns we do not use are kept in
``meta``. Labels are stripped and upper-cased and nothing else: fixing ``O`` to ``0`` or the like
is for validation to report, not for a reader to do silently.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vin_ocr.data.sample import (
    ManifestError,
    Sample,
    jsonl_rows,
    parse_box,
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


# --- Hugging Face datasets / parquet -------------------------------------------------------------

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


def _suffix_for(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((s for magic, s in _MAGIC if data.startswith(magic)), ".bin")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def store_image_bytes(data: bytes, image_dir: PathLike) -> Path:
    """Write image bytes to ``image_dir/<sha256[:20]><ext>`` atomically; same bytes, same file."""
    image_dir = Path(image_dir)
    target = image_dir / (hashlib.sha256(data).hexdigest()[:20] + _suffix_for(data))
    if target.is_file() and target.stat().st_size == len(data):
        return target
    image_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=image_dir, prefix=".img.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _image_value_to_path(value: Any, root: Path, image_dir: Path | None, origin: str) -> Path:
    """An image cell (path string, bytes, ``{"bytes", "path"}`` dict or PIL image) -> a file."""
    data: bytes | None = None
    if isinstance(value, dict):
        data = value.get("bytes")
        if not data:
            if not value.get("path"):
                raise ManifestError(f"{origin}: image cell has neither bytes nor path")
            return _resolve(root, value["path"])
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, str | os.PathLike):
        if not str(value).strip():
            raise ManifestError(f"{origin}: empty image path")
        return _resolve(root, value)
    elif hasattr(value, "save") and hasattr(value, "size"):  # a decoded PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        data = buf.getvalue()
    else:
        raise ManifestError(f"{origin}: unsupported image cell of type {type(value).__name__}")
    if image_dir is None:
        raise ValueError(f"{origin}: images held in memory need image_dir= to be written out")
    return store_image_bytes(bytes(data), image_dir)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return str(value)


def _hf_row_sample(
    row: dict[str, Any],
    image_col: str,
    vin_col: str,
    root: Path,
    image_dir: Path | None,
    source: str,
    origin: str,
) -> Sample:
    meta: dict[str, Any] = {}
    for key, value in row.items():
        if key in (image_col, vin_col, "source", "box", "crop"):
            continue
        if key == "meta" and isinstance(value, str) and value.startswith("{"):
            try:  # our own parquet files keep meta as a JSON string
                meta.update(json.loads(value))
                continue
            except json.JSONDecodeError:
                pass
        if not isinstance(value, bytes | bytearray):
            meta[key] = _jsonable(value)
    meta[ORIGIN] = origin
    crop = row.get("crop")
    try:
        box = parse_box(row.get("box"))
    except ValueError as e:
        raise ManifestError(f"{origin}: {e}") from None
    return Sample(
        image=_image_value_to_path(row[image_col], root, image_dir, origin),
        vin=_clean_vin(row.get(vin_col)),
        source=str(row.get("source") or source),
        box=box,
        crop=bool(crop) if crop is not None else None,
        meta=meta,
    )


def read_hf_dataset(
    path: str,
    *,
    split: str | None = None,
    image_column: str | None = None,
    vin_column: str | None = None,
    image_dir: PathLike | None = None,
    revision: str | None = None,
    source: str = "hf",
) -> list[Sample]:
    """Read a Hugging Face dataset: a local ``.parquet``/``.arrow`` file, a folder of parquet
    files, a ``save_to_disk`` folder, or (online) a Hub id through ``datasets.load_dataset``.

    The image column may hold paths (relative to the dataset's folder), bytes, ``{"bytes",
    "path"}`` dicts or PIL images; images held in memory are written to ``image_dir`` (content-
    addressed, atomically). With ``split=None`` every split is read and its name kept in
    ``meta["split"]``.
    """
    img_dir = Path(image_dir) if image_dir is not None else None
    samples: list[Sample] = []
    for where, root, split_name, rows in _hf_tables(Path(path), str(path), split, revision):
        cols: tuple[str, str] | None = None
        for i, row in enumerate(rows):
            origin = f"{where} row {i}"
            if cols is None:
                cols = (
                    _pick(row, image_column, (*IMAGE_KEYS, "img", "jpg", "png"), "image", where),
                    _pick(row, vin_column, VIN_KEYS, "vin", where),
                )
            sample = _hf_row_sample(row, cols[0], cols[1], root, img_dir, source, origin)
            if split_name is not None:
                sample.meta.setdefault("split", split_name)
            samples.append(sample)
    return samples


def _hf_tables(
    local: Path, name: str, split: str | None, revision: str | None
) -> Iterator[tuple[str, Path, str | None, Iterable[dict[str, Any]]]]:
    """Yield (label, root, split name, rows) for each table of the source."""
    if local.is_file() and local.suffix == ".parquet":
        yield str(local), local.parent, None, _parquet_rows(local)
        return
    if local.is_dir() and not _is_saved_dataset(local):
        files = sorted(local.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{local}: no .parquet files and not a save_to_disk folder")
        for f in files:
            name_split = f.stem.split("-")[0]
            if split is None or name_split == split:
                yield str(f), f.parent, name_split, _parquet_rows(f)
        return
    import datasets

    if local.is_file() and local.suffix == ".arrow":
        ds: Any = datasets.Dataset.from_file(str(local))
        root = local.parent
    elif local.is_dir():
        ds = datasets.load_from_disk(str(local))
        root = local
    elif local.exists():
        raise ManifestError(f"{local}: not a .parquet/.arrow file or a dataset folder")
    else:
        ds = datasets.load_dataset(name, split=split, revision=revision)
        root = Path.cwd()
    if isinstance(ds, datasets.DatasetDict):
        names = [split] if split is not None else list(ds)
        if split is not None and split not in ds:
            raise ManifestError(f"{name}: no split {split!r} (splits: {list(ds)})")
        for s in names:
            yield f"{name}[{s}]", root, s, _undecoded(ds[s])
    else:
        yield name, root, split, _undecoded(ds)


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_info.json").is_file() or (folder / "dataset_dict.json").is_file()


def _undecoded(ds: Any) -> Iterable[dict[str, Any]]:
    """Rows with Image columns as ``{"bytes", "path"}`` (no decoding into PIL images)."""
    import datasets

    for col, feature in ds.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            ds = ds.cast_column(col, datasets.Image(decode=False))
    return iter(ds)


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise ManifestError(f"{path}: not a readable parquet file ({e})") from None
    for batch in pf.iter_batches(batch_size=256):
        yield from batch.to_pylist()
