"""The World Manufacturer Identifier (positions 1-3, ISO 3780): country, region and maker, the
regions where the check digit is mandatory, and the WMIs with rules of their own."""

from __future__ import annotations

from vin_ocr.vin.chars import _ALPHABET_SET

#: Region names ``region`` returns (besides ``"unknown"``).
REGIONS = ("north_america", "south_america", "europe", "asia", "china", "africa", "oceania")
_MANDATORY = frozenset({"north_america", "china"})


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
