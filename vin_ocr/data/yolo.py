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

import hashlib
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vin_ocr.data.readers import IMAGE_SUFFIXES, ORIGIN, PathLike, read_labels_file
from vin_ocr.data.sample import ManifestError, Sample, write_manifest
from vin_ocr.data.yolo_files import (
    _SPLIT_NAMES,
    _excluded,
    _find_file,
    _image_dirs,
    _image_size,
    _labels_dir,
    find_credit,
    read_label_file,
)

log = logging.getLogger(__name__)


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
