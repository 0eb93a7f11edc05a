"""The Vehicle Identification Number itself: alphabet, check digit, model year, region, clean-up.

Rules follow ISO 3779 (VIN content and structure), ISO 3780 (WMI) and, for North America,
US 49 CFR Part 565 (VIN requirements, notably 565.15: check digit, model-year code, the
position-7 rule and the numeric serial). China's GB 16735 follows ISO 3779; like North America
it uses the check digit and the model-year code (every Chinese VIN we checked carries both).

* 17 characters from ``0-9`` and ``A-Z`` without ``I``, ``O`` and ``Q``.
* Positions 1-3 WMI (maker), 4-8 VDS, 9 check digit, 10 model year, 11 plant, 12-17 serial.
* Check digit: transliterate letters to numbers, weight by position, sum, mod 11; 10 is ``X``.

The worked example of 49 CFR 565.15:

>>> check_digit("1M8GDM9AXKP042788")
'X'
>>> validate("1M8GDM9A3KP042788").reasons
("check digit is '3', expected 'X' (mandatory in north_america)",)
>>> normalize("VIN: 1m8 gdm9a xkp 042788")
'1M8GDM9AXKP042788'

Only the always-safe OCR confusions are repaired (``I``->``1``, ``O``->``0``, ``Q``->``0``: those
letters never occur in a VIN). ``S``/``5``, ``B``/``8``, ``Z``/``2`` and the like are left alone:
both characters are legal, so a blind map turns correct VINs into wrong ones.

The package: ``chars`` (alphabet, check digit, year codes), ``wmi`` (country, region, maker),
``rules`` (model years, :func:`validate`), ``text`` (:func:`normalize`, :func:`pick_vin`) and
``synthetic`` (:func:`random_vin`). Import from ``vin_ocr.vin``.
"""

from vin_ocr.vin.chars import (
    _ALPHABET_SET as _ALPHABET_SET,  # evaluation/harness.py's character check
)
from vin_ocr.vin.chars import (
    ALPHABET,
    TRANSLITERATION,
    VIN_LENGTH,
    WEIGHTS,
    YEAR_CODES,
    check_digit,
    check_digit_ok,
)
from vin_ocr.vin.rules import VinCheck, is_valid, model_years, validate
from vin_ocr.vin.synthetic import random_vin
from vin_ocr.vin.text import normalize, pick_vin, pick_vin_at
from vin_ocr.vin.wmi import (
    REGIONS,
    check_digit_mandatory,
    country,
    has_check_digit,
    manufacturer,
    region,
)

__all__ = [
    "ALPHABET",
    "REGIONS",
    "TRANSLITERATION",
    "VIN_LENGTH",
    "WEIGHTS",
    "YEAR_CODES",
    "VinCheck",
    "check_digit",
    "check_digit_mandatory",
    "check_digit_ok",
    "country",
    "has_check_digit",
    "is_valid",
    "manufacturer",
    "model_years",
    "normalize",
    "pick_vin",
    "pick_vin_at",
    "random_vin",
    "region",
    "validate",
]
