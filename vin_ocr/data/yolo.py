"""Read a detection dataset of images + YOLO boxes (e.g. a Roboflow "YOLO v5/v8" export).

Layouts (``path``): a folder holding ``images/`` and ``labels/``; a folder of split folders
(``train/``, ``valid/``, ...) each holding them; or a ``data.yaml`` (the file, or a folder holding
it; its ``train``/``val``/``test`` entries are image folders, tried relative to ``path:``, to the
YAML's folder and then, for Roboflow's ``../data/train/images``, by their trailing parts). Each
``labels/NAME.txt`` holds one ``class cx cy w h`` line per box, normalised to [0, 1]; an image
without a label file has no box.

YOLO files hold no text, so VINs come from an optional ``labels`` file (CSV/TSV/JSONL, image ->
vin, image paths relative to the dataset root). Each image becomes one :class:`Sample` whose
``box`` is its VIN box in pixels (the largest box of the kept classes; the others go to
``meta["other_boxes"]``), ``crop=False``. With ``crops=True`` the box (plus a margin of
``margin`` x its height on every side) is cut out and written under ``crop_dir`` instead, and the
sample is that line crop (``crop=True``, the photo and box kept in ``meta``).

Images listed in the ``exclude`` manifests (matched by resolved path and by file name) are left
out: the real dev photos must never reach training. Images without a VIN are kept with an empty
label (``unlabelled="keep"``: prepare then needs ``validate.allow_unlabelled=true``) or left out of
the result and written to ``unlabelled_out`` (``"skip"``), a manifest to pseudo-label.

A credit line (``credit``, or the ``credit "..."`` / ``License:`` line of a README in the
dataset folder, or in its parent for a split folder such as ``test/``) goes into every sample's
``meta["credit"]``; prepare writes it into the dataset card.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vin_ocr.data.readers import IMAGE_KEYS, IMAGE_SUFFIXES, ORIGIN, PathLike, read_labels_file
from vin_ocr.data.sample import ManifestError, Sample, jsonl_rows, read_text, write_manifest

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


# --- the reader ----------------------------------------------------------------------------------


def read_yolo(
    path: PathLike,
    labels: PathLike | None = None,
    *,
    class_ids: Sequence[int] | None = None,
    exclude: Sequence[PathLike] | PathLike | None = None,
    unlabelled: str = "keep",
    unlabelled_out: PathLike | None = None,
    crops: bool = False,
    crop_dir: PathLike | None = None,
    margin: float = 0.08,
    credit: str | None = None,
    image_key: str | None = None,
    vin_key: str | None = None,
    source: str = "yolo",
) -> list[Sample]:
    """Read a YOLO detection dataset into samples (see the module doc for every option)."""
    if unlabelled not in ("keep", "skip"):
        raise ValueError(f"unlabelled={unlabelled!r}: expected 'keep' or 'skip'")
    if not 0 <= margin <= 2:
        raise ValueError(f"margin={margin}: expected a fraction of the box height in [0, 2]")
    if crops and crop_dir is None:
        raise ValueError("crops=true needs crop_dir= (where the line crops are written)")
    root, dirs = _image_dirs(Path(path))
    credit = credit or find_credit(root)
    if credit is None and root.name.lower() in _SPLIT_NAMES:  # one split of a dataset
        credit = find_credit(root.parent)
    keep = None if class_ids is None else {int(c) for c in class_ids}

    images: list[tuple[str | None, Path, Path]] = []  # (split, image, label file)
    for split, image_dir in dirs:
        label_dir = _labels_dir(image_dir)
        found = sorted(
            p for p in image_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        stems = {p.relative_to(image_dir).with_suffix("") for p in found}
        if label_dir.is_dir():
            orphans = sorted(
                p
                for p in label_dir.rglob("*.txt")
                if p.relative_to(label_dir).with_suffix("") not in stems
            )
            if orphans:
                raise ManifestError(
                    f"{orphans[0]}: label file without its image (no {orphans[0].stem}.* in "
                    f"{image_dir}; {len(orphans)} such file(s))"
                )
        images += [
            (split, p, label_dir / p.relative_to(image_dir).with_suffix(".txt")) for p in found
        ]
    if not images:
        raise FileNotFoundError(f"{path}: no images in " + ", ".join(str(d) for _, d in dirs))

    vins: dict[Path, tuple[str, dict[str, Any]]] = {}
    if labels is not None:
        labels_file = _find_file(root, labels, "VIN labels file")
        known = {p.resolve() for _, p, _ in images}
        for s in read_labels_file(labels_file, root, image_key=image_key, vin_key=vin_key):
            if s.image.resolve() not in known:
                raise ManifestError(f"{s.meta[ORIGIN]}: {s.image} is not an image of {path}")
            row = {k: v for k, v in s.meta.items() if k not in ("crop", "box", ORIGIN)}
            vins[s.image.resolve()] = (s.vin, row)

    ex_files = [exclude] if isinstance(exclude, str | os.PathLike) else list(exclude or [])
    ex_paths, ex_names = _excluded(_find_file(root, f, "exclude file") for f in ex_files)

    samples: list[Sample] = []
    left: list[Sample] = []
    counts = {"excluded": 0, "no_box": 0, "unlabelled": 0}
    for split, image, label_file in images:
        if image.resolve() in ex_paths or image.name in ex_names:
            counts["excluded"] += 1
            continue
        width, height = _image_size(image)
        boxes = read_label_file(label_file, width, height) if label_file.is_file() else []
        boxes = [b for b in boxes if keep is None or b.cls in keep]
        vin, extra = vins.get(image.resolve(), ("", {}))
        if not boxes and not vin:
            counts["no_box"] += 1  # a background image: nothing to read
            continue
        boxes.sort(key=lambda b: -b.area)
        meta: dict[str, Any] = {**extra, ORIGIN: boxes[0].origin if boxes else str(image)}
        if split is not None:
            meta["split"] = split
        if boxes:
            meta["class_id"] = boxes[0].cls
        if len(boxes) > 1:
            meta["other_boxes"] = [[b.cls, *b.box] for b in boxes[1:]]
        if credit:
            meta["credit"] = credit
        sample = Sample(image, vin, source, boxes[0].box if boxes else None, False, meta)
        if crops:
            if not boxes:
                counts["no_box"] += 1
                continue
            sample = _crop_sample(sample, root, Path(crop_dir or "."), margin)
        if not vin:
            counts["unlabelled"] += 1
            if unlabelled == "skip":
                left.append(sample)
                continue
        samples.append(sample)

    log.info(
        "%s: %d images, %d samples; %d excluded, %d without a box, %d without a VIN",
        path,
        len(images),
        len(samples),
        *counts.values(),
    )
    if ex_files and not counts["excluded"]:
        log.warning("WARNING: exclude=%s matched no image of %s", ex_files, path)
    if counts["unlabelled"] and unlabelled == "keep":
        log.warning(
            "WARNING: %d images have no VIN label: prepare keeps them only with "
            "validate.allow_unlabelled=true (pass labels=FILE for VINs, or unlabelled=skip to "
            "write them to a manifest for pseudo-labelling)",
            counts["unlabelled"],
        )
    if left and unlabelled_out is not None:
        write_manifest(left, unlabelled_out)
        log.info("wrote %d unlabelled samples to %s", len(left), unlabelled_out)
    return samples


def _crop_sample(sample: Sample, root: Path, crop_dir: Path, margin: float) -> Sample:
    """The sample's box plus ``margin`` x box height on every side, written as a PNG crop."""
    from vin_ocr.data.images import open_image

    assert sample.box is not None
    x0, y0, x1, y1 = sample.box
    image = open_image(sample.image)
    pad = round(margin * (y1 - y0))
    area = (
        max(0, x0 - pad),
        max(0, y0 - pad),
        min(image.width, x1 + pad),
        min(image.height, y1 + pad),
    )
    try:
        rel = sample.image.resolve().relative_to(root.resolve()).with_suffix("")
    except ValueError:  # an image folder outside the root (data.yaml): a stable unique name
        digest = hashlib.sha256(str(sample.image.resolve()).encode()).hexdigest()[:10]
        rel = Path(f"{digest}_{sample.image.stem}")
    target = crop_dir / rel.parent / f"{rel.name}.png"
    buf = io.BytesIO()
    image.crop(area).save(buf, format="PNG")
    store = target.parent / f".{target.name}.tmp"
    target.parent.mkdir(parents=True, exist_ok=True)
    store.write_bytes(buf.getvalue())
    store.replace(target)  # never half a crop
    meta = {
        **sample.meta,
        "photo": sample.image.resolve().as_posix(),
        "photo_box": list(sample.box),
    }
    return Sample(target, sample.vin, sample.source, None, True, meta)
