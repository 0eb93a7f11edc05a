"""A YOLO dataset's files: its layout (image and label folders, ``data.yaml``), label lines in
pixels, image sizes, exclusion manifests and the README's credit line (:mod:`vin_ocr.data.yolo`
reads them into samples)."""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vin_ocr.data.readers import IMAGE_KEYS, PathLike
from vin_ocr.data.sample import ManifestError, jsonl_rows, read_text

log = logging.getLogger(__name__)

YAML_NAMES: tuple[str, ...] = ("data.yaml", "data.yml")
_YAML_SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_NAMES = frozenset({"train", "val", "valid", "validation", "test"})


@dataclass(frozen=True)
class YoloBox:
    """One label line: class id and pixel box ``(x0, y0, x1, y1)``."""

    cls: int
    box: tuple[int, int, int, int]
    origin: str

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


# --- layout --------------------------------------------------------------------------------------


def _image_dirs(path: Path) -> tuple[Path, list[tuple[str | None, Path]]]:
    """(dataset root, [(split name or None, images folder)]) for the three layouts."""
    if path.is_file():
        if path.suffix.lower() not in (".yaml", ".yml"):
            raise ManifestError(f"{path}: expected a dataset folder or its data.yaml")
        return path.parent, _yaml_dirs(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: YOLO dataset not found (a folder or a data.yaml)")
    if (path / "images").is_dir():
        return path, [(None, path / "images")]
    yaml_file = next((path / n for n in YAML_NAMES if (path / n).is_file()), None)
    if yaml_file is not None:
        return path, _yaml_dirs(yaml_file)
    splits: list[tuple[str | None, Path]] = [
        (d.name, d / "images") for d in sorted(path.iterdir()) if (d / "images").is_dir()
    ]
    if not splits:
        raise FileNotFoundError(
            f"{path}: not a YOLO dataset: no images/ folder, no data.yaml, and no split folder "
            "(e.g. train/) holding images/"
        )
    return path, splits


def _yaml_dirs(yaml_file: Path) -> list[tuple[str | None, Path]]:
    import yaml

    try:
        data = yaml.safe_load(read_text(yaml_file, "data.yaml"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{yaml_file}:{mark.line + 1}" if mark is not None else str(yaml_file)
        raise ManifestError(f"{where}: not readable YAML ({getattr(e, 'problem', e)})") from None
    except OSError as e:
        raise ManifestError(f"{yaml_file}: cannot read ({e.strerror or e})") from None
    if not isinstance(data, dict) or not any(data.get(k) for k in _YAML_SPLITS):
        raise ManifestError(
            f"{yaml_file}: expected a mapping with train/val/test image folders "
            f"(got {type(data).__name__})"
        )
    base = yaml_file.parent
    if data.get("path"):
        root = Path(str(data["path"]))
        base = root if root.is_absolute() else yaml_file.parent / root
    dirs: list[tuple[str | None, Path]] = []
    for split in _YAML_SPLITS:
        entries = data.get(split) or []
        for entry in [entries] if isinstance(entries, str) else entries:
            dirs.append((split, _find_dir(yaml_file, base, split, str(entry))))
    return dirs


def _find_dir(yaml_file: Path, base: Path, split: str, entry: str) -> Path:
    rel = Path(entry)
    if rel.is_absolute() and rel.is_dir():
        return rel
    tried = [base / rel, yaml_file.parent / rel]
    parts = [p for p in rel.parts if p not in ("..", ".")] if not rel.is_absolute() else []
    tried += [yaml_file.parent / Path(*parts[k:]) for k in range(len(parts))]
    for candidate in tried:
        if candidate.is_dir():
            if candidate != tried[0]:
                log.info("%s: %s %r read from %s", yaml_file, split, entry, candidate)
            return candidate
    if rel.suffix == ".txt":
        raise ManifestError(f"{yaml_file}: {split}: {entry!r}: image list files are not supported")
    raise ManifestError(
        f"{yaml_file}: {split}: image folder {entry!r} not found (tried "
        + ", ".join(str(t) for t in dict.fromkeys(tried))
        + ")"
    )


def _labels_dir(images: Path) -> Path:
    """YOLO's rule: the last ``images`` part of the path becomes ``labels``."""
    parts = list(images.parts)
    k = max(i for i, p in enumerate(parts) if p == "images") if "images" in parts else -1
    if k < 0:
        return images.parent / "labels"
    parts[k] = "labels"
    return Path(*parts)


# --- label lines ---------------------------------------------------------------------------------


def read_label_file(path: Path, width: int, height: int) -> list[YoloBox]:
    """Boxes of a YOLO label file in pixels; a bad line raises ManifestError naming file:line."""
    boxes = []
    for lineno, line in enumerate(io.StringIO(read_text(path, "label file")), start=1):
        if not line.strip():
            continue
        origin = f"{path}:{lineno}"
        fields = line.split()
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(fields) != 5 or len(values) != 5 or not all(map(math.isfinite, values)):
            raise ManifestError(f"{origin}: expected 'class cx cy w h' (5 numbers), got {line!r}")
        cls, cx, cy, w, h = values
        if cls < 0 or cls != int(cls):
            raise ManifestError(f"{origin}: class {fields[0]!r} is not a non-negative integer")
        if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
            raise ManifestError(
                f"{origin}: coordinates out of [0, 1] ({' '.join(fields[1:])}); YOLO boxes are "
                "normalised by the image size"
            )
        if w <= 0 or h <= 0:
            raise ManifestError(f"{origin}: empty box (w={fields[3]}, h={fields[4]})")
        # edges rounded to the nearest pixel, clipped to the image, at least one pixel wide
        x0 = min(width - 1, max(0, round((cx - w / 2) * width)))
        y0 = min(height - 1, max(0, round((cy - h / 2) * height)))
        x1 = min(width, max(x0 + 1, round((cx + w / 2) * width)))
        y1 = min(height, max(y0 + 1, round((cy + h / 2) * height)))
        boxes.append(YoloBox(int(cls), (x0, y0, x1, y1), origin))
    return boxes


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the upright image (EXIF orientation applied), reading the header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise ManifestError(f"{path}: cannot read the image ({e})") from None
    return width, height


# --- VIN labels, exclusion, credit ---------------------------------------------------------------


def _find_file(root: Path, value: PathLike, what: str) -> Path:
    """``value`` relative to the dataset root (tried first) or to the working directory."""
    path = Path(value)
    if not path.is_absolute() and (root / path).is_file():
        return root / path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found (relative to {root} or the cwd)")
    return path


def _excluded(files: Iterable[Path]) -> tuple[set[Path], set[str]]:
    """(resolved paths, file names) of the images listed in JSONL/CSV/TSV manifests."""
    paths: set[Path] = set()
    names: set[str] = set()
    for file in files:
        suffix = file.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            rows: Iterable[tuple[int, dict[str, Any]]] = jsonl_rows(file)
        elif suffix in (".csv", ".tsv", ".tab"):
            text = read_text(file, "exclude file")
            reader = csv.DictReader(io.StringIO(text), delimiter="," if suffix == ".csv" else "\t")
            rows = ((i, r) for i, r in enumerate(reader, start=2))
        else:
            raise ManifestError(f"{file}: unknown exclude format {suffix!r} (.jsonl, .csv, .tsv)")
        for lineno, row in rows:
            key = next((k for k in row if isinstance(k, str) and k.lower() in IMAGE_KEYS), None)
            if key is None or not str(row[key] or "").strip():
                raise ManifestError(f"{file}:{lineno}: no image path (keys: {list(row)})")
            image = Path(str(row[key]).strip())
            paths.add((image if image.is_absolute() else file.parent / image).resolve())
            names.add(image.name)
    return paths, names


_CREDIT = re.compile(r"credit\W{0,3}[\"“]([^\"”\n]+)[\"”]", re.IGNORECASE)
_LICENCE = re.compile(r"^\W*licen[cs]e\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def find_credit(folder: Path) -> str | None:
    """The credit line of a README in ``folder``: a quoted ``credit "..."``, else
    "TITLE, URL, licence LICENCE" from a ``License:`` line, else None."""
    readmes = sorted(
        (p for p in folder.glob("*") if p.is_file() and p.name.lower().startswith("readme")),
        key=lambda p: (p.suffix.lower() != ".md", p.name),
    )
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in readmes]
    for text in texts:
        if match := _CREDIT.search(text):
            return match.group(1).strip()
    for text in texts:
        if match := _LICENCE.search(text):
            lines = [ln.strip("# ").strip() for ln in text.splitlines() if ln.strip()]
            url = re.search(r"https?://\S+", text)
            parts = [lines[0], url.group(0) if url else "", f"licence {match.group(1)}"]
            return ", ".join(p for p in parts if p)
    return None
