"""The VIN's characters: length, alphabet, transliteration and weights of the check digit
(ISO 3779, 49 CFR 565.15), the model-year codes."""

from __future__ import annotations

VIN_LENGTH = 17
ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
_ALPHABET_SET = frozenset(ALPHABET)

#: ISO 3779 / 49 CFR 565.15 transliteration; digits keep their value.
TRANSLITERATION: dict[str, int] = {str(d): d for d in range(10)} | {
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}

#: Weight of each position 1-17 (position 9, the check digit itself, weighs 0).
WEIGHTS: tuple[int, ...] = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)

#: Model-year code (position 10) -> year in the 1980-2009 cycle; the cycle repeats every 30 years.
#: Never used: ``I``, ``O``, ``Q``, ``U``, ``Z`` and ``0``.
YEAR_CODES: dict[str, int] = {
    code: 1980 + i for i, code in enumerate("ABCDEFGHJKLMNPRSTVWXY123456789")
}
_YEAR_CYCLE = 30


def _require_vin_chars(vin: str) -> str:
    vin = vin.upper()
    if len(vin) != VIN_LENGTH:
        raise ValueError(f"a VIN has {VIN_LENGTH} characters, got {len(vin)}: {vin!r}")
    bad = [(i + 1, c) for i, c in enumerate(vin) if c not in _ALPHABET_SET and i != 8]
    if bad:
        pos, char = bad[0]
        raise ValueError(f"forbidden character {char!r} at position {pos} in {vin!r}")
    return vin


def check_digit(vin: str) -> str:
    """The correct position-9 character (``'0'``-``'9'`` or ``'X'``) for a 17-character VIN.

    Position 9 itself is ignored (its weight is 0), so it may hold anything.

    >>> check_digit("11111111111111111")
    '1'
    """
    vin = _require_vin_chars(vin)
    total = sum(TRANSLITERATION[c] * w for c, w in zip(vin, WEIGHTS, strict=True) if w)
    rest = total % 11
    return "X" if rest == 10 else str(rest)


def check_digit_ok(vin: str) -> bool:
    """Whether position 9 holds the correct check digit (False for a malformed VIN)."""
    try:
        return vin.upper()[8] == check_digit(vin)
    except (ValueError, IndexError):
        return False
