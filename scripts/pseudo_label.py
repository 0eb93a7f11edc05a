"""Pseudo-labels for unlabelled VIN photos with a VIN box, kept only where they can be trusted.

    python scripts/pseudo_label.py manifest=outputs/vin_det/train.jsonl \
        out=outputs/vin_det/pseudo_train.jsonl limit=400

``manifest`` holds photos with their VIN ``box`` and no VIN (e.g. ``prepare source=yolo``'s
splits with ``validate.allow_unlabelled=true``). Two readers read each photo:

- the pretrained RapidOCR pipeline (onnxruntime) on the **whole photo** (detection, every line,
  the VIN rules);
- ``second=crop`` (default): the pretrained PP-OCR VIN model on the **box crop** alone
  (recognition with the check-digit search), a different input, so the strictest pair; or
  ``second=photo``: the pp_ocr family's own pipeline on the whole photo (torch detection with
  its retries, the general reader, the VIN model on the VIN's span), which labels many more
  photos but shares the recogniser's weights with the first reader.

A photo gets a label only when both give the same VIN, it is a valid VIN, and, where the region
makes the check digit mandatory, the check digit is right. Everything else is left out (counted).
Rows keep the photo, its box and its credit; ``source`` becomes ``pseudo``. Options are
``key=value`` (:class:`PseudoLabel`).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vin_ocr import bench


@dataclass
class PseudoLabel:
    manifest: str = ""  # photos with a VIN box (required)
    out: str = ""  # the labelled manifest to write (required; refused if it exists)
    limit: int = 0  # only the first N photos (0: all)
    exclude: str = ""  # a manifest whose images must never be labelled (e.g. the dev set)
    second: str = "crop"  # the second reader: crop (the box crop) | photo (the whole photo)
    overwrite: bool = False


def trusted(a: str, b: str) -> str | None:
    """The VIN two readings agree on, if it is valid (and its mandatory check digit right).

    >>> trusted("1HGCM82633A004352", "1HGCM82633A004352")
    '1HGCM82633A004352'
    >>> trusted("1HGCM82633A004353", "1HGCM82633A004353") is None  # wrong mandatory check digit
    True
    >>> trusted("WVWZZZ1JZXW000001", "WVWZZZ1JZXW000007") is None
    True
    """
    from vin_ocr.vin import validate

    if not a or a != b:
        return None
    check = validate(a)
    if not check.valid or (check.check_digit_mandatory and not check.check_digit_ok):
        return None
    return a


def label(o: PseudoLabel) -> Counter[str]:
    from vin_ocr.data.sample import read_manifest
    from vin_ocr.evaluation.engines import build_engine
    from vin_ocr.models.engine import FamilyEngine
    from vin_ocr.models.pp_ocr_scene import box_crop
    from vin_ocr.models.registry import get_family

    if not o.manifest or not o.out:
        raise SystemExit("pseudo_label: manifest=... and out=... are required")
    if o.second not in ("crop", "photo"):
        raise SystemExit(f"pseudo_label: second={o.second!r}: expected crop or photo")
    out = Path(o.out)
    if out.exists() and not o.overwrite:
        raise SystemExit(f"pseudo_label: {out} exists; pass overwrite=true to replace it")
    samples = read_manifest(o.manifest)
    banned: set[str] = set()
    if o.exclude:
        banned = {s.image.name for s in read_manifest(o.exclude)}
    whole = build_engine("rapidocr")
    family = get_family("pp_ocr", {"name": "pp_ocr"})
    model, _ = family.build(None, None)
    crop_reader = FamilyEngine(family, model)
    counts: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    for s in samples[: o.limit or None]:
        if s.image.name in banned:
            counts["excluded"] += 1
            continue
        if s.box is None:
            counts["no_box"] += 1
            continue
        image = s.load_image()
        a = whole.read([image], [False])[0].text
        if o.second == "crop":
            b = crop_reader.read([box_crop(image, s.box)], [True])[0].text
        else:
            b = crop_reader.read([image], [False])[0].text
        vin = trusted(a, b)
        counts["labelled" if vin else ("disagree" if a != b else "not_valid")] += 1
        if vin:
            row = s.to_dict(out.parent)
            row.update(vin=vin, crop=False, source="pseudo")
            rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)
    return counts


def main(argv: list[str] | None = None) -> Counter[str]:
    o = bench.parse_options(PseudoLabel, sys.argv[1:] if argv is None else argv, "pseudo_label")
    counts = label(o)
    print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())), f"-> {o.out}")
    return counts


if __name__ == "__main__":
    main()
