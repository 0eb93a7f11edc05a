"""Hugging Face datasets: ``save_to_disk`` folders, ``.parquet``/``.arrow`` files, Hub ids; images
held in memory are written out as content-addressed files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from vin_ocr.data.readers.files import (
    IMAGE_KEYS,
    ORIGIN,
    VIN_KEYS,
    PathLike,
    _clean_vin,
    _pick,
    _resolve,
)
from vin_ocr.data.sample import ManifestError, Sample, parse_box

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
