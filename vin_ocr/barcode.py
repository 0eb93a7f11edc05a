"""VIN barcodes: find them in a photo (zxing-cpp), take the VIN out of the payload, fuse with OCR.

Door-jamb stickers print the VIN as a Code 39 barcode as well as in text; newer labels and
documents use Data Matrix or QR, and Code 128 carries part numbers on the same sticker. A
barcode is read essentially without error where it is readable at all, so a barcode VIN that
passes :func:`vin_ocr.vin.validate` wins over the OCR reading (rules and sources:
docs/barcodes.md).

What a payload carries (:func:`vin_from_barcode`): the 17-character VIN; ``I`` + VIN (the
import marker); or, the rule of commercial VIN scanners, 18-20 characters with the VIN inside
(18: drop the first; 19: the first and the last; 20: the first two and the last). A strip is
only taken when what remains validates and, except for the ``I`` marker, has the right check
digit; anything else (part numbers) is not a VIN.

>>> vin_from_barcode("I1M8GDM9AXKP042788")
'1M8GDM9AXKP042788'
>>> vin_from_barcode("E00397409") is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from vin_ocr import vin as vinlib
from vin_ocr.reading import Reading, TextsFromReadings

__all__ = [
    "BARCODE_CONF",
    "FORMATS",
    "Barcode",
    "BarcodeFusion",
    "BarcodeVin",
    "barcode_vin",
    "fuse",
    "read_barcodes",
    "vin_from_barcode",
]

#: The symbologies searched (zxing-cpp names; Code 39 includes its extended mode).
FORMATS = ("Code39", "Code128", "DataMatrix", "QRCode")

#: Per-character confidence of a validated barcode VIN; the floor of an agreeing OCR reading.
BARCODE_CONF = 0.99

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Barcode:
    """One decoded barcode: its text, format (zxing-cpp's name, e.g. ``Code39``, ``Code39Ext``,
    ``Code128``, ``DataMatrix``, ``QRCode``) and box ``(left, top, right, bottom)`` in pixels."""

    text: str
    format: str
    box: Box


@dataclass(frozen=True)
class BarcodeVin:
    """The VIN a barcode carries, with the barcode it came from."""

    vin: str
    payload: str
    format: str
    box: Box


def _gray(image: Any) -> np.ndarray:
    """A uint8 grey-level array of a PIL image or a (h, w) / (h, w, 3) RGB uint8 array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(
            f"read_barcodes: expected a PIL image or a uint8 (h, w) / (h, w, 3) RGB array, "
            f"got {type(image).__name__} {getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}"
        )
    return np.asarray(Image.fromarray(arr).convert("L"))


def read_barcodes(image: Any) -> list[Barcode]:
    """Every Code 39 (incl. extended), Code 128, Data Matrix and QR code zxing-cpp finds in
    ``image`` (a PIL image or an RGB/grey uint8 array), in any orientation."""
    import zxingcpp

    gray = _gray(image)
    h, w = gray.shape
    formats = zxingcpp.barcode_formats_from_str(",".join(FORMATS))
    found = zxingcpp.read_barcodes(gray, formats=formats, try_rotate=True, try_downscale=True)
    out = []
    for b in found:
        if not b.valid:
            continue
        p = b.position
        xs = [p.top_left.x, p.top_right.x, p.bottom_right.x, p.bottom_left.x]
        ys = [p.top_left.y, p.top_right.y, p.bottom_right.y, p.bottom_left.y]
        box = (
            max(0, min(xs)),
            max(0, min(ys)),
            min(w, max(xs) + 1),
            min(h, max(ys) + 1),
        )
        out.append(Barcode(text=b.text, format=b.format.name, box=box))
    return out


def _vin_of_piece(piece: str) -> str | None:
    """The VIN one alphanumeric piece carries, or ``None``.

    The 17-character VIN and ``I`` + VIN need only validate. The other strips (the scanners'
    18-20 rule, and one stray trailing character) must also have the right check digit:
    validation alone accepts any 17 letters and digits where the check digit is optional
    (Europe, Asia, ...), so a 20-character part number would otherwise become a "VIN".
    """
    n = len(piece)
    if n == vinlib.VIN_LENGTH:
        return piece if vinlib.is_valid(piece) else None
    if n == 18 and piece[0] == "I" and vinlib.is_valid(piece[1:]):
        return piece[1:]
    strips = {18: [piece[1:], piece[:-1]], 19: [piece[1:-1]], 20: [piece[2:-1]]}.get(n, [])
    valid = {v for v in strips if vinlib.is_valid(v) and vinlib.check_digit_ok(v)}
    return valid.pop() if len(valid) == 1 else None  # two strips confirmed: ambiguous


def vin_from_barcode(text: str) -> str | None:
    """The VIN a barcode payload carries, or ``None`` (not a VIN, or ambiguous).

    The payload is upper-cased (a VIN is written in capitals; Code 39 extended and QR can carry
    lower case) and trimmed of surrounding white space. A payload of several fields (QR/Data
    Matrix, e.g. ``VIN:...``) is split at anything not a letter or digit, and gives a VIN when
    exactly one field is ``I`` + a valid VIN or a valid VIN with the right check digit.

    >>> vin_from_barcode("1M8GDM9AXKP042788")  # 17: the VIN
    '1M8GDM9AXKP042788'
    >>> vin_from_barcode("A1M8GDM9AXKP042788Z")  # 19: drop the first and the last
    '1M8GDM9AXKP042788'
    >>> vin_from_barcode("A1M8GDM9A3KP042788Z") is None  # what remains fails the check digit
    True
    """
    t = text.strip().upper()
    found = _vin_of_piece(t)
    if found is not None:
        return found
    pieces = re.split(r"[^A-Z0-9]+", t)
    if len(pieces) < 2:
        return None
    vins = {v for v in map(_vin_of_field, pieces) if v is not None}
    return vins.pop() if len(vins) == 1 else None


def _vin_of_field(field: str) -> str | None:
    """A field of a multi-field payload: ``I`` + a valid VIN, or a VIN whose check digit is right.

    Stricter than a whole payload: parts labels carry ISO 15434 Data Matrix codes whose fields
    are 17 letters and digits that validate where the check digit is optional (a lot number
    ``T`` + 16 characters reads as a European VIN); seen on a real photo of the shared set.
    """
    if len(field) == 18 and field[0] == "I" and vinlib.is_valid(field[1:]):
        return field[1:]
    if len(field) == vinlib.VIN_LENGTH and vinlib.is_valid(field) and vinlib.check_digit_ok(field):
        return field
    return None


_FORMAT_RANK = {"Code39": 0, "Code39Ext": 0, "DataMatrix": 1, "QRCode": 2, "Code128": 3}


def barcode_vin(image: Any) -> BarcodeVin | None:
    """The best VIN among ``image``'s barcodes, or ``None`` where none carries one.

    Several VINs (rare: two vehicles' labels in one photo): a confirmed check digit first, then
    the VIN most barcodes carry, then Code 39 (the VIN label's own symbology), then the largest.
    """
    found = [
        BarcodeVin(vin=v, payload=b.text, format=b.format, box=b.box)
        for b in read_barcodes(image)
        if (v := vin_from_barcode(b.text)) is not None
    ]
    if not found:
        return None
    votes = {v: sum(f.vin == v for f in found) for v in {f.vin for f in found}}

    def rank(f: BarcodeVin) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = f.box
        return (
            -int(vinlib.check_digit_ok(f.vin)),
            -votes[f.vin],
            _FORMAT_RANK.get(f.format, 9),
            -(x1 - x0) * (y1 - y0),
        )

    return min(found, key=rank)


def fuse(ocr: Reading, barcode: BarcodeVin | None) -> Reading:
    """One reading from the OCR reading and the image's barcode VIN (``None``: none found).

    - no barcode VIN: the OCR reading, ``source="ocr"`` (``None`` where OCR read nothing either);
    - the same VIN: the OCR reading with each confidence raised to at least
      :data:`BARCODE_CONF`, ``source="agree"``;
    - only the barcode read (OCR empty), valid: the barcode VIN, :data:`BARCODE_CONF` per
      character, the barcode's box, ``source="barcode"``;
    - different, barcode VIN valid: the barcode VIN wins, the OCR text is kept in
      ``alternative``, ``source="disagree"``;
    - different, barcode VIN not valid: the OCR reading stays, the barcode's in
      ``alternative``, ``source="disagree"``.

    >>> bc = BarcodeVin("1M8GDM9AXKP042788", "I1M8GDM9AXKP042788", "Code39", (0, 0, 9, 9))
    >>> r = fuse(Reading("1M8GDM9AXKP042783"), bc)
    >>> r.text, r.source, r.alternative
    ('1M8GDM9AXKP042788', 'disagree', '1M8GDM9AXKP042783')
    """
    if barcode is None or not barcode.vin:
        return replace(ocr, source="ocr" if ocr.text else None)
    if barcode.vin == ocr.text:
        conf = ocr.char_conf or (0.0,) * len(ocr.text)
        return replace(ocr, char_conf=tuple(max(c, BARCODE_CONF) for c in conf), source="agree")
    if vinlib.is_valid(barcode.vin):
        return Reading(
            barcode.vin,
            char_conf=(BARCODE_CONF,) * len(barcode.vin),
            box=barcode.box,
            source="disagree" if ocr.text else "barcode",
            alternative=ocr.text or None,
        )
    return replace(ocr, source="disagree", alternative=barcode.vin)


class BarcodeFusion(TextsFromReadings):
    """Any engine, with every whole photo also searched for a VIN barcode and fused
    (:func:`fuse`). Line crops (``crops[i]`` true) are read by the engine alone: a crop of one
    text line carries no barcode. The harness, the training run's evaluations and the app wrap
    their engine in this unless ``barcodes=false``.

    >>> class Blank:
    ...     name = "blank"
    ...     def read(self, images, crops=None):
    ...         return [Reading("")] * len(images)
    >>> BarcodeFusion(Blank()).read([Image.new("RGB", (64, 64), "white")], [False])[0].source
    >>> BarcodeFusion(Blank()).name
    'blank'
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.name

    def __getattr__(self, name: str) -> Any:  # version, model, family... of the engine
        return getattr(self.__dict__["engine"], name)

    def read(self, images: Any, crops: Any = None) -> list[Reading]:
        from vin_ocr.layout import crop_flags

        flags = crop_flags(images, crops)
        readings = self.engine.read(images, crops)
        return [
            r if flag else fuse(r, barcode_vin(image))
            for image, flag, r in zip(images, flags, readings, strict=True)
        ]
