"""Realistic random VINs for synthetic data (:func:`random_vin`): real WMIs, plausible VDS."""

from __future__ import annotations

import random as _random

from vin_ocr.vin.chars import _YEAR_CYCLE, ALPHABET, YEAR_CODES, check_digit
from vin_ocr.vin.wmi import _MANDATORY, REGIONS

#: Real WMIs per region (a small sample for synthetic data).
_WMIS: dict[str, tuple[str, ...]] = {
    "north_america": (
        "1HG", "1FA", "1FT", "1G1", "1GC", "1N4", "1C4", "2T1", "2HG", "2G1",
        "3VW", "3FA", "3N1", "4T1", "4S3", "5YJ", "5N1", "5FN",
    ),
    "south_america": ("9BW", "9BG", "93H", "9BD", "8AP", "8AG", "8AJ"),
    "europe": (
        "WVW", "WBA", "WDD", "WF0", "W0L", "WAU", "VF1", "VF3", "VSS", "ZFA",
        "ZAR", "SAL", "SAJ", "YV1", "YS3", "TMB", "TRU", "UU1", "XTA",
    ),
    "asia": (
        "JHM", "JT2", "JN1", "JM1", "KMH", "KNA", "KL1", "MA1", "MAL", "MAT", "MR0", "NM0",
        "PL1", "JTD",
    ),
    "china": ("LSV", "LFV", "LVS", "LGX", "LSG", "LHG", "LRW"),
    "africa": ("AAV", "AHT", "AFA"),
    "oceania": ("6T1", "6FP", "6G1", "7A3"),
}  # fmt: skip

_LETTERS = "".join(c for c in ALPHABET if c.isalpha())
_RANDOM_YEARS = (1981, 2025)  # fixed, so the output never depends on today's date


def random_vin(rng: _random.Random, region: str | None = None) -> str:
    """A realistic VIN: real WMI, plausible VDS, year code, check digit, numeric serial.

    North American and Chinese VINs always carry a correct check digit (and North American ones
    follow the position-7 rule); elsewhere it is usually correct, sometimes not (VW's
    ``WVWZZZ..`` pattern fills position 9 with ``Z``). Deterministic given ``rng``.

    >>> from vin_ocr.vin import is_valid
    >>> vin = random_vin(_random.Random(0), "china")
    >>> len(vin), vin[0], is_valid(vin)
    (17, 'L', True)
    """
    if region is None:
        region = rng.choice(REGIONS)
    if region not in _WMIS:
        raise ValueError(f"unknown region {region!r}; expected one of {', '.join(REGIONS)}")
    wmi = rng.choice(_WMIS[region])
    year = rng.randint(*_RANDOM_YEARS)
    code = next(c for c, y in YEAR_CODES.items() if (year - y) % _YEAR_CYCLE == 0)
    vw_pattern = wmi == "WVW" and rng.random() < 0.5
    if vw_pattern:
        vds = "ZZZ" + rng.choice("123456789") + rng.choice(_LETTERS)
    else:
        vds = "".join(rng.choice(ALPHABET) for _ in range(5))
    if region == "north_america":  # 49 CFR 565.15: position 7 letter from model year 2010 on
        seventh = rng.choice(_LETTERS) if year >= 2010 else rng.choice("0123456789")
        vds = vds[:3] + seventh + vds[4]
    digits = 5 if region == "north_america" else 4
    serial = "".join(rng.choice(ALPHABET) for _ in range(6 - digits))
    serial += "".join(rng.choice("0123456789") for _ in range(digits))
    plant = rng.choice(ALPHABET)
    # The SAE layout for every WMI, 6FP too (whose real VINs carry the year in position 11):
    # changing it would change the bundled samples.
    vin = f"{wmi}{vds}0{code}{plant}{serial}"
    if vw_pattern:
        ninth = "Z"
    elif region in _MANDATORY or rng.random() < 0.8:
        ninth = check_digit(vin)
    else:
        ninth = rng.choice("0123456789X")
    return vin[:8] + ninth + vin[9:]
