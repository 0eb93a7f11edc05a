"""Reading a VIN out of OCR text: labels, delimiters and safe repairs (:func:`normalize`), and the
VIN among a scene's lines, ranked by the VIN rules (:func:`pick_vin`, :func:`pick_vin_at`)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from vin_ocr.vin.chars import VIN_LENGTH, YEAR_CODES, check_digit_ok
from vin_ocr.vin.rules import validate
from vin_ocr.vin.wmi import check_digit_mandatory

#: The always-safe OCR repairs: these letters never occur in a VIN.
_SAFE_MAP = str.maketrans({"I": "1", "O": "0", "Q": "0"})


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
