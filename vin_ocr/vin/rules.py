"""The VIN rules together: candidate model years and :func:`validate` (reasons and warnings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from vin_ocr.vin.chars import _ALPHABET_SET, _YEAR_CYCLE, VIN_LENGTH, YEAR_CODES, check_digit
from vin_ocr.vin.wmi import _MANDATORY, _YEAR_POSITION, has_check_digit, region


def _latest_year() -> int:
    return datetime.now(UTC).year + 1


def model_years(vin: str, light_vehicle: bool | None = None) -> list[int]:
    """Candidate model years (ascending) from the model-year code, every cycle year from 1980 up
    to next year that the VIN allows.

    49 CFR 565.15 lets position 7 choose the cycle (a letter: 2010-2039, a digit: 1980-2009) only
    for cars, MPVs and trucks of 10,000 lb GVWR or less; the VIN rarely says which kind it is, so
    that rule applies only with ``light_vehicle=True`` (and to North American VINs). The code is
    in position 10 (position 11 for Ford Australia ``6FP``); ``U``, ``Z``, ``0`` and non-VIN
    characters give ``[]``.

    >>> model_years("1M8GDM9AXKP042788")
    [1989, 2019]
    >>> model_years("1M8GDM9AXKP042788", light_vehicle=True)  # position 7 is a digit
    [1989]
    >>> model_years("1UYVS2537FU123456")  # a trailer maker: the light-vehicle rule may not apply
    [1985, 2015]
    >>> model_years("WVWZZZ1JZXW000001")
    [1999]
    """
    vin = vin.upper()
    at = _YEAR_POSITION.get(vin[:3], 10) - 1
    if len(vin) <= at or vin[at] not in YEAR_CODES:
        return []
    years = list(range(YEAR_CODES[vin[at]], _latest_year() + 1, _YEAR_CYCLE))
    if light_vehicle and region(vin) == "north_america" and vin[6:7] in _ALPHABET_SET:
        newer = vin[6].isalpha()
        years = [y for y in years if (y >= 2010) == newer]
    return years


@dataclass(frozen=True)
class VinCheck:
    """Outcome of :func:`validate`.

    ``reasons`` say why a VIN is invalid (empty when valid); ``warnings`` note what is unusual but
    allowed (an optional check digit that fails, a year code outside North America and China) and
    what holds only for some vehicle kinds (49 CFR 565.15's light-vehicle rules).
    ``check_digit_ok`` is None when the check digit could not be computed (bad length/chars).
    ``years`` are all the candidates :func:`model_years` allows.
    """

    vin: str
    valid: bool
    reasons: tuple[str, ...]
    check_digit_ok: bool | None
    check_digit_mandatory: bool
    region: str
    years: tuple[int, ...]
    warnings: tuple[str, ...] = field(default=())


_LIGHT = "cars, MPVs and trucks of 10,000 lb GVWR or less (49 CFR 565.15)"


def validate(vin: str) -> VinCheck:
    """Check a VIN against the rules; the reasons name each problem and its position.

    >>> validate("1M8GDM9AXKP042788").valid
    True
    >>> validate("1M8GDM9AXKPO42788").reasons
    ("forbidden character 'O' at position 12",)
    >>> validate("WVWZZZ1JZXW000001").valid  # VW's filler 'Z' fails the optional check digit
    True
    >>> check = validate("3AKJGLDR8HSHF1234")  # a heavy-truck serial: valid, with a warning
    >>> check.valid, check.warnings[0]
    (True, "position 13 'F' is a letter: not allowed for cars, MPVs and trucks of 10,000 lb GVWR \
or less (49 CFR 565.15), allowed for other vehicles")
    """
    reasons: list[str] = []
    warnings: list[str] = []
    reg = region(vin)
    mandatory = reg in _MANDATORY
    if len(vin) != VIN_LENGTH:
        reasons.append(f"length {len(vin)}, expected {VIN_LENGTH}")
    for i, c in enumerate(vin):
        if c not in _ALPHABET_SET:
            kind = "lower-case" if c.upper() in _ALPHABET_SET else "forbidden"
            reasons.append(f"{kind} character {c!r} at position {i + 1}")
    digit_ok: bool | None = None
    years = tuple(model_years(vin)) if len(vin) == VIN_LENGTH else ()
    if not reasons:
        expected = check_digit(vin)
        digit_ok = vin[8] == expected
        if not has_check_digit(vin):
            warnings.append(f"position 9 of {vin[:3]} VINs is not a check digit (not checked)")
        elif not digit_ok:
            text = f"check digit is {vin[8]!r}, expected {expected!r}"
            if mandatory:
                reasons.append(f"{text} (mandatory in {reg})")
            else:
                warnings.append(f"{text} (optional in {reg})")
        at = _YEAR_POSITION.get(vin[:3], 10)
        code = vin[at - 1]
        if code not in YEAR_CODES:
            text = f"model-year code {code!r} at position {at} is never used"
            (reasons if mandatory else warnings).append(text)
        if reg == "north_america":  # 565.15: last 4 numeric, last 5 for light vehicles
            if not vin[-4:].isdigit():
                reasons.append(f"last 4 characters {vin[-4:]!r} are not all digits")
            elif not vin[12].isdigit():
                warnings.append(
                    f"position 13 {vin[12]!r} is a letter: not allowed for {_LIGHT}, "
                    "allowed for other vehicles"
                )
            elif len(years) > 1:
                light = model_years(vin, light_vehicle=True)
                cycle = "letter" if vin[6].isalpha() else "digit"
                warnings.append(
                    f"model year {light[0] if light else '?'} if one of the {_LIGHT} (position 7 "
                    f"is a {cycle}); otherwise any of {', '.join(map(str, years))}"
                )
        elif not vin[-4:].isdigit():
            warnings.append(f"last 4 characters {vin[-4:]!r} are not all digits")
    return VinCheck(
        vin=vin,
        valid=not reasons,
        reasons=tuple(reasons),
        check_digit_ok=digit_ok,
        check_digit_mandatory=mandatory,
        region=reg,
        years=years,
        warnings=tuple(warnings),
    )


def is_valid(vin: str) -> bool:
    """Shorthand for ``validate(vin).valid``."""
    return validate(vin).valid
