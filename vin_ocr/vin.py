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
"""

from __future__ import annotations

import random as _random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

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

#: Region names ``region`` returns (besides ``"unknown"``).
REGIONS = ("north_america", "south_america", "europe", "asia", "china", "africa", "oceania")
_MANDATORY = frozenset({"north_america", "china"})

#: The always-safe OCR repairs: these letters never occur in a VIN.
_SAFE_MAP = str.maketrans({"I": "1", "O": "0", "Q": "0"})


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


#: Regions by the first WMI character: vininfo 1.11's table (``A``-``C`` Africa, ``7`` North
#: America, ...) plus China (``L``, and ``H``, which vininfo's country table gives to China while
#: its region table gives it none) and ``D``-``G`` kept in Africa as ISO 3780 has them (vininfo:
#: none). :func:`region` lets the country decide where one character does not.
_REGION_OF_FIRST: dict[str, str] = {
    **dict.fromkeys("ABCDEFG", "africa"),
    "H": "china",
    **dict.fromkeys("JKMNPR", "asia"),
    "L": "china",
    **dict.fromkeys("STUVWXYZ", "europe"),
    **dict.fromkeys("12345", "north_america"),
    "6": "oceania",
    "7": "north_america",  # 7F-70 United States; 7A-7E New Zealand, by the country below
    **dict.fromkeys("89", "south_america"),
}
#: Countries whose region is not their first character's (``7A``-``7E``: New Zealand).
_REGION_OF_COUNTRY = {"China": "china", "United States": "north_america", "New Zealand": "oceania"}
#: Where vininfo's country table is wrong: SAE/ISO 3780 give ``7A``-``7E`` to New Zealand
#: (vininfo: every ``7`` is the United States).
_COUNTRY_OVERRIDES = dict.fromkeys(("7A", "7B", "7C", "7D", "7E"), "New Zealand")
#: WMIs whose position 9 is not an SAE check digit (vininfo: Ford Australia puts a model code
#: there and the model year in position 11).
_NO_CHECK_DIGIT = frozenset({"6FP"})
_YEAR_POSITION = {"6FP": 11}


def country(vin: str) -> str | None:
    """Country of the WMI per ISO 3780, None when unknown: ``vininfo``'s offline table with the
    overrides of :data:`_COUNTRY_OVERRIDES`.

    >>> country("WVWZZZ1JZXW000001"), country("7SAYGDEE1PF000001"), country("7A3CL1234A1000001")
    ('Germany', 'United States', 'New Zealand')
    """
    from vininfo.dicts import COUNTRIES

    code = vin[:2].upper()
    if len(code) < 2 or not set(code) <= _ALPHABET_SET:
        return None
    return _COUNTRY_OVERRIDES.get(code) or COUNTRIES.get(code)


def region(vin: str) -> str:
    """World region of the maker: the country's (:func:`country`) where it decides, else the
    first WMI character's (ISO 3780).

    >>> region("1M8GDM9AXKP042788"), region("LSVAB2BM0EN000000"), region("WVWZZZ1JZXW000001")
    ('north_america', 'china', 'europe')
    >>> region("7SAYGDEE1PF000001"), region("HJRPBGJB5PF000001"), region("7A3CL1234A1000001")
    ('north_america', 'china', 'oceania')
    """
    first = vin[:1].upper()
    if first not in _REGION_OF_FIRST:
        return "unknown"
    return _REGION_OF_COUNTRY.get(country(vin) or "", _REGION_OF_FIRST[first])


def has_check_digit(vin: str) -> bool:
    """False for the WMIs known to put something else in position 9 (Ford Australia ``6FP``)."""
    return vin[:3].upper() not in _NO_CHECK_DIGIT


def check_digit_mandatory(vin: str) -> bool:
    """True where the check digit is required: North America (49 CFR 565, WMIs ``1``-``5`` and
    ``7F``-``70``) and China (GB 16735, ``L`` and ``H``)."""
    return region(vin) in _MANDATORY


def _wmi_like(code: str) -> bool:
    return len(code) >= 2 and region(code) != "unknown" and set(code) <= _ALPHABET_SET


def manufacturer(vin: str) -> str | None:
    """Maker registered for the WMI (``vininfo``'s offline table), None when unknown.

    >>> manufacturer("1HGCM82633A004352"), manufacturer("6FPAAAJGSW8A12345")
    ('Honda', 'Ford Australia')
    """
    from vininfo.dicts import WMI

    wmi = vin[:3].upper()
    if not _wmi_like(wmi):
        return None
    entry = WMI.get(wmi) or WMI.get(wmi[:2])
    if entry is None:
        return None
    return entry if isinstance(entry, str) else str(entry.manufacturer)


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


# --- Clean-up of OCR text ------------------------------------------------------------------

# Labels printed next to a VIN. Each contains I or O, so none is part of a real VIN.
_LABEL = re.compile(
    r"(?<![A-Z0-9])(?:"
    r"VEHICLE\s*IDENT(?:IFICATION)?\.?\s*(?:NUMBER|NO\b\.?|NR\b\.?)?"
    r"|CHASSIS\s*(?:NUMBER|NO\b\.?|NR\b\.?)?"
    r"|V\.?\s?I\.?\s?N\.?(?:\s*(?:NUMBER|NO\b\.?|NR\b\.?|CODE))?"
    r"|FIN\b(?:\s*(?:NUMBER|NO\b\.?|NR\b\.?))?"
    r")\s*[:#=.]?"
)
_MARK = "\x00"  # stands in for a removed label
_TOKEN = re.compile(r"[A-Z0-9]+|\x00")


@dataclass(frozen=True)
class _Candidate:
    vin: str
    tokens: int  # how many whitespace/punctuation-separated pieces were joined
    start: int  # index of the first piece (earlier wins ties)
    labelled: bool  # right after a label such as "VIN:"
    inner: bool = False  # a 17-character window inside one longer piece (a logo or stray mark)
    mapped: int = 0  # I/O/Q in the window, read as 1/0/0 (a real VIN has none)
    suffix: bool = False  # the window ends where its piece ends (labels and logos come first)


def _pieces(text: str) -> tuple[list[str], set[int]]:
    """Upper-cased alphanumeric pieces of ``text`` (before mapping), labels removed, and the
    indices of the pieces that directly follow a label."""
    marked = _LABEL.sub(f" {_MARK} ", unicodedata.normalize("NFKC", text).upper())
    pieces: list[str] = []
    labelled: set[int] = set()
    for tok in _TOKEN.findall(marked):
        if tok == _MARK:
            labelled.add(len(pieces))
        else:
            pieces.append(tok)
    return pieces, labelled


def _import_trim(raw: str, mapped: str) -> str | None:
    """An 18-character run: drop the leading import marker or a stray trailing character."""
    head, tail = mapped[1:], mapped[:-1]
    if check_digit_mandatory(head) and check_digit_ok(head):
        return head
    if check_digit_mandatory(tail) and check_digit_ok(tail):
        return tail
    if raw[0] == "I":  # the door-jamb Code 39 import marker, without a check digit to confirm
        return head
    return None


def _candidates(text: str, inner: bool = False) -> tuple[list[_Candidate], str]:
    """17-character candidates (joins of adjacent pieces) and the plain cleaned text; with
    ``inner``, also the windows inside one piece of 18-20 characters (:func:`pick_vin_at` on a
    scene's lines, where a logo or mark is read into the VIN's piece)."""
    raws, labelled = _pieces(text)
    tokens = [t.translate(_SAFE_MAP) for t in raws]
    found: list[_Candidate] = []
    for i in range(len(tokens)):
        raw = mapped = ""
        for j in range(i, len(tokens)):
            raw += raws[j]
            mapped += tokens[j]
            if len(mapped) == VIN_LENGTH:
                found.append(_Candidate(mapped, j - i + 1, i, i in labelled))
            elif len(mapped) == VIN_LENGTH + 1 and (trimmed := _import_trim(raw, mapped)):
                found.append(_Candidate(trimmed, j - i + 1, i, i in labelled))
            if len(mapped) > VIN_LENGTH:
                if inner and j == i:
                    found += _inner_windows(raw, mapped, i, i in labelled)
                break
    return found, "".join(tokens)


#: One piece this many characters longer than a VIN is searched for a VIN inside it (a logo
#: read into the VIN line, "KIAU5YFF24427L004906"); longer pieces are something else.
_MAX_INNER_EXTRA = 3


def _inner_windows(raw: str, mapped: str, start: int, labelled: bool) -> list[_Candidate]:
    """The 17-character windows inside one piece of 18-20 characters; they rank below every
    whole candidate of equal merit (see :func:`_score`)."""
    extra = len(mapped) - VIN_LENGTH
    if not 0 < extra <= _MAX_INNER_EXTRA:
        return []
    return [
        _Candidate(
            mapped[k : k + VIN_LENGTH],
            1,
            start,
            labelled,
            inner=True,
            mapped=sum(ch in "IOQ" for ch in raw[k : k + VIN_LENGTH]),
            suffix=k == extra,
        )
        for k in range(extra + 1)
    ]


def _score(c: _Candidate) -> tuple[int, ...]:
    check = validate(c.vin)
    # A correct check digit beats an optional failing one, which beats a mandatory failing one.
    digit = 2 if check.check_digit_ok else 0 if check.check_digit_mandatory else 1
    return (
        int(check.valid),
        int(c.labelled),
        digit,
        int(c.vin[9] in YEAR_CODES),
        int(check.region != "unknown"),
        int(c.vin[-4:].isdigit()),
        int(any(ch.isalpha() for ch in c.vin)),
        -int(c.inner),
        -c.mapped,
        int(c.suffix),
        -c.tokens,
    )


def normalize(text: str) -> str:
    """Pull the VIN out of raw OCR text.

    Drops labels (``VIN``, ``VIN No.``, ``Chassis No``, ``FIN``), ``*`` delimiters, spaces,
    dashes and dots; upper-cases; maps only ``I``->``1``, ``O``->``0``, ``Q``->``0``; drops the
    extra import character a door-jamb Code 39 barcode can carry. If the text holds a 17-character
    run (possibly split by spaces or dashes) the best such run is returned, otherwise the whole
    cleaned text (which the metric then scores as wrong).

    >>> normalize("*1HGCM82633A004352*")
    '1HGCM82633A004352'
    >>> normalize("I1HGCM82633A004352")  # Code 39 import marker
    '1HGCM82633A004352'
    >>> normalize("VIN No. wvwzzz1jzxwOOOOO1")  # O -> 0 is safe; S, B, Z are left alone
    'WVWZZZ1JZXW000001'
    """
    found, cleaned = _candidates(text)
    if not found:
        return cleaned
    return max(found, key=lambda c: (_score(c), -c.start)).vin


def _looks_like_vin(c: _Candidate) -> bool:
    """Letters and digits, and a (mostly) numeric end or a correct mandatory check digit."""
    vin = c.vin
    if not any(ch.isalpha() for ch in vin) or not any(ch.isdigit() for ch in vin):
        return False
    if check_digit_mandatory(vin) and check_digit_ok(vin):
        return True
    return sum(ch.isdigit() for ch in vin[-4:]) >= 3


def _near_miss(line: str, cleaned: str) -> bool:
    """One piece of 16 or 18 characters with letters and a numeric end: a VIN off by one."""
    return (
        len(_pieces(line)[0]) == 1
        and len(cleaned) in (VIN_LENGTH - 1, VIN_LENGTH + 1)
        and any(ch.isalpha() for ch in cleaned)
        and cleaned[-3:].isdigit()
    )


def pick_vin(lines: Sequence[str]) -> str:
    """Choose the VIN among the OCR'd text lines of a scene (sticker, plate, paper).

    Every line, and every pair of adjacent lines (a VIN split over two lines), is searched for
    17-character candidates. They are ranked by the VIN rules, not by position: validity, a
    ``VIN:`` label just before, a correct check digit, year code, known region, numeric serial.
    A candidate needs letters, digits and a (mostly) numeric end, or a correct mandatory check
    digit, to count. Returns ``""`` when none does; when no 17-character candidate exists, a
    single-piece line of 16 or 18 characters (a VIN with one character lost or gained) is
    returned as the best guess.

    >>> pick_vin(["MFD BY HONDA 04/03", "GVWR 1980 KG", "VIN 1HGCM82633A004352"])
    '1HGCM82633A004352'
    """
    return pick_vin_at(lines)[0]


def pick_vin_at(lines: Sequence[str]) -> tuple[str, int | None]:
    """:func:`pick_vin`, plus the index of the line the VIN was found on (its first line when
    split over two; ``None`` when nothing was picked), so a caller can show where it was read.

    >>> pick_vin_at(["GVWR 1980 KG", "VIN 1HGCM82633A004352"])
    ('1HGCM82633A004352', 1)
    """
    found: list[tuple[_Candidate, int]] = []
    near: list[str] = []
    near_at: list[int] = []
    for i, line in enumerate(lines):
        texts = [line] + ([f"{line} {lines[i + 1]}"] if i + 1 < len(lines) else [])
        own = len(_pieces(line)[0])  # a joined candidate starting past these is on line i + 1
        for text in texts:
            cands, cleaned = _candidates(text, inner=True)
            found += [(c, i + (c.start >= own)) for c in cands if _looks_like_vin(c)]
            if text is line and _near_miss(line, cleaned):
                near.append(cleaned)
                near_at.append(i)
    if found:
        best, at = max(found, key=lambda ci: (_score(ci[0]), -ci[1], -ci[0].start))
        return best.vin, at
    return near[0] if near else "", near_at[0] if near else None


# --- Realistic random VINs -------------------------------------------------------------------

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
