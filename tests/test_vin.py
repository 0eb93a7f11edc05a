"""Tests for vin_ocr.vin: check digit, year codes, regions, validation, clean-up, random VINs."""

from __future__ import annotations

import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from vininfo import Vin

from vin_ocr import vin as V

# Real-format VINs whose check digit vininfo also accepts; they hold S, B, Z, 8, 5, 2 on purpose.
HONDA = "1HGCM82633A004352"
FORD = "1FTSW21R38EB53552"
TESLA = "5YJSA1DN0DFP14705"
DODGE = "2B3KA43R86H389824"
VW = "WVWZZZ1JZXW000001"  # position 9 holds VW's filler 'Z': fails the (optional) check digit

seeds = st.integers(min_value=0, max_value=2**32 - 1)
vin_chars = st.text(alphabet=V.ALPHABET, min_size=17, max_size=17)


# --- tables and check digit -------------------------------------------------------------------


def test_tables():
    assert len(V.ALPHABET) == 33 and not set("IOQ") & set(V.ALPHABET)
    assert set(V.TRANSLITERATION) == set(V.ALPHABET)
    # ISO 3779: A-I -> 1-9, J-R -> 1-9, S-Z -> 2-9, letters I, O, Q left out.
    expected = {str(d): d for d in range(10)}
    for run, first in (("ABCDEFGHI", 1), ("JKLMNOPQR", 1), ("STUVWXYZ", 2)):
        expected |= {c: first + i for i, c in enumerate(run) if c not in "IOQ"}
    assert expected == V.TRANSLITERATION
    assert len(V.WEIGHTS) == V.VIN_LENGTH and V.WEIGHTS[8] == 0
    assert len(V.YEAR_CODES) == 30
    assert V.YEAR_CODES["A"] == 1980 and V.YEAR_CODES["Y"] == 2000 and V.YEAR_CODES["9"] == 2009
    assert not {"U", "Z", "0"} & set(V.YEAR_CODES)


def test_worked_example():
    assert V.check_digit("1M8GDM9AXKP042788") == "X"
    assert V.check_digit("1M8GDM9A_KP042788") == "X"  # position 9 is ignored
    assert V.check_digit_ok("1M8GDM9AXKP042788")
    assert not V.check_digit_ok("1M8GDM9A1KP042788")


@pytest.mark.parametrize("vin", [HONDA, FORD, TESLA, DODGE])
def test_known_vins_pass(vin):
    assert V.check_digit_ok(vin) and Vin(vin).verify_checksum(check_year=False)
    assert V.is_valid(vin)


@pytest.mark.parametrize("bad", ["", "1M8GDM9AXKP04278", "1M8GDM9AXKP0427888", "1M8GDM9AXKPO42788"])
def test_check_digit_rejects_malformed(bad):
    with pytest.raises(ValueError):
        V.check_digit(bad)
    assert V.check_digit_ok(bad) is False


@settings(max_examples=300, deadline=None, database=None)
@given(vin_chars)
def test_check_digit_agrees_with_vininfo(chars):
    vin = chars[:8] + V.check_digit(chars) + chars[9:]
    # vininfo answers False for makers it knows to skip the check digit (Ford Australia, ...).
    assume(getattr(Vin(vin).assembler, "uses_sae_checkdigit", True))
    assert Vin(vin).verify_checksum(check_year=False)
    other = next(c for c in "0123456789X" if c != vin[8])
    assert not Vin(vin[:8] + other + vin[9:]).verify_checksum(check_year=False)


@settings(max_examples=300, deadline=None, database=None)
@given(
    seeds,
    st.sampled_from(["north_america", "china"]),
    st.integers(0, 16),
    st.sampled_from(V.ALPHABET + "X"),
)
def test_single_substitution_caught_unless_same_value(seed, region, pos, char):
    vin = V.random_vin(random.Random(seed), region)
    assert V.check_digit_mandatory(vin) and V.check_digit_ok(vin)
    if char == vin[pos]:
        return
    changed = vin[:pos] + char + vin[pos + 1 :]
    if pos == 8:  # weight 0: the check digit itself; any other character there is wrong
        assert not V.check_digit_ok(changed)
    else:
        same_value = V.TRANSLITERATION[char] == V.TRANSLITERATION[vin[pos]]
        assert V.check_digit_ok(changed) == same_value


def test_substitution_examples_from_the_notes():
    # 2 <-> S and 9 <-> Z share a value; 8 <-> B and 5 <-> S do not.
    assert V.check_digit_ok(HONDA.replace("2633", "S633"))
    assert not V.check_digit_ok(HONDA.replace("CM8", "CMB"))
    assert not V.check_digit_ok(TESLA.replace("5YJS", "5YJ5"))


# --- region, country, manufacturer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ("1", "north_america"),
        ("5", "north_america"),
        ("6", "oceania"),
        ("7", "north_america"),  # 7H: United States (7F-70); 7A-7E New Zealand
        ("8", "south_america"),
        ("9", "south_america"),
        ("A", "africa"),
        ("H", "china"),  # vininfo's country table: H is China's (its region table: Africa)
        ("J", "asia"),
        ("K", "asia"),
        ("L", "china"),
        ("R", "asia"),
        ("S", "europe"),
        ("Z", "europe"),
        ("0", "unknown"),
        ("I", "unknown"),
        ("", "unknown"),
    ],
)
def test_region(first, expected):
    wmi = first + "HG" if first else ""
    assert V.region(wmi) == expected
    assert V.check_digit_mandatory(wmi) == (expected in ("north_america", "china"))


def test_one_table_for_region_and_country():
    """Region follows the country where vininfo's first-character regions are out of date."""
    assert (V.country("7A3"), V.region("7A3")) == ("New Zealand", "oceania")  # override
    assert (V.country("7SA"), V.region("7SA")) == ("United States", "north_america")
    assert (V.country("HJR"), V.region("HJR")) == ("China", "china")
    assert (V.country("6FP"), V.region("6FP")) == ("Australia", "oceania")
    # A US VIN with a wrong check digit is invalid (was: valid with a warning, as Oceania).
    assert V.validate("7SAYGDEE1PF000001").reasons == (
        "check digit is '1', expected 'X' (mandatory in north_america)",
    )
    assert V.check_digit_mandatory("HJRPBGJB5PF000001")
    # Ford Australia puts a model code in position 9 and the year in position 11 (vininfo).
    ford = "6FPAAAJGCM8A12345"
    assert not V.has_check_digit(ford) and V.check_digit_ok(ford) is False
    check = V.validate(ford)
    assert check.valid and check.warnings == (
        "position 9 of 6FP VINs is not a check digit (not checked)",
    )
    assert check.years == (2008,)


def test_country_and_manufacturer():
    assert (V.country(HONDA), V.manufacturer(HONDA)) == ("United States", "Honda")
    assert (V.country(VW), V.manufacturer(VW)) == ("Germany", "Volkswagen")
    assert V.manufacturer("1N4AL3AP1JC123456") == "Nissan"  # vininfo holds a Brand object here
    assert V.country("00000000000000000") is None
    assert V.manufacturer("00000000000000000") is None  # no region starts with 0
    assert V.manufacturer("1") is None and V.country("") is None


# --- model years ------------------------------------------------------------------------------


def test_model_years_north_america_position_7():
    light = {"light_vehicle": True}
    assert V.model_years("1HGCM8A6XA0043520", **light) == [2010]  # letter in position 7
    assert V.model_years("1HGCM826XA0043520", **light) == [1980]  # digit in position 7
    assert V.model_years(HONDA, **light) == V.model_years(HONDA) == [2003]
    assert V.model_years(TESLA, **light) == [2013] and V.model_years(TESLA) == [1983, 2013]
    assert V.model_years("1M8GDM9AXKP042788", **light) == [1989]
    # The position-7 rule is for light vehicles only: without knowing, every cycle year stays.
    assert V.model_years("1M8GDM9AXKP042788") == [1989, 2019]
    assert V.model_years("1UYVS2537FU123456") == [1985, 2015]
    assert V.model_years("1HGCM8A6XA0043520") == [1980, 2010]
    assert V.model_years("WVWZZZ1JZAW000001", **light) == [1980, 2010]  # not North America


def test_light_vehicle_rules_are_warnings():
    heavy = "3AKJGLDR8HSHF1234"  # heavy-truck serial (letter in 13), correct check digit
    check = V.validate(heavy)
    assert check.valid and check.reasons == ()
    assert check.warnings == (
        "position 13 'F' is a letter: not allowed for cars, MPVs and trucks of 10,000 lb GVWR "
        "or less (49 CFR 565.15), allowed for other vehicles",
    )
    check = V.validate("1UYVS2537FU123456")
    assert check.valid and check.years == (1985, 2015)
    assert check.warnings == (
        "model year 1985 if one of the cars, MPVs and trucks of 10,000 lb GVWR or less "
        "(49 CFR 565.15) (position 7 is a digit); otherwise any of 1985, 2015",
    )


def test_model_years_elsewhere_and_never_used():
    assert V.model_years("JH4KA7561PC008269") == [1993, 2023]
    assert V.model_years("WVWZZZ1JZAW000001") == [1980, 2010]
    for code in "UZ0IOQ":
        assert V.model_years(HONDA[:9] + code + HONDA[10:]) == []
    assert V.model_years("1HG") == []


# --- validate ---------------------------------------------------------------------------------


def test_validate_reasons():
    check = V.validate("1M8GDM9AXKP04278")
    assert not check.valid and check.reasons == ("length 16, expected 17",)
    assert check.check_digit_ok is None and check.years == ()

    check = V.validate("1M8GOM9AXKP042788")
    assert check.reasons == ("forbidden character 'O' at position 5",)
    assert V.validate("1m8GDM9AXKP042788").reasons == ("lower-case character 'm' at position 2",)

    check = V.validate("1M8GDM9A3KP042788")
    assert check.reasons == ("check digit is '3', expected 'X' (mandatory in north_america)",)
    assert check.check_digit_ok is False and check.check_digit_mandatory

    vin = "1M8GDM9AXUP042788"
    vin = vin[:8] + V.check_digit(vin) + vin[9:]
    check = V.validate(vin)
    assert check.reasons == ("model-year code 'U' at position 10 is never used",)
    assert check.years == ()

    vin = HONDA[:-1] + "A"
    vin = vin[:8] + V.check_digit(vin) + vin[9:]
    assert V.validate(vin).reasons == ("last 4 characters '435A' are not all digits",)


def test_validate_optional_check_digit_is_not_a_reason():
    check = V.validate(VW)
    assert check.valid and check.reasons == ()
    assert check.check_digit_ok is False and not check.check_digit_mandatory
    assert check.region == "europe" and check.years == (1999,)
    assert check.warnings == ("check digit is 'Z', expected '0' (optional in europe)",)
    assert Vin(VW[:8] + "0" + VW[9:]).verify_checksum(check_year=False)
    # Outside North America and China a '0' in position 10 is common: a warning only.
    assert V.validate("WVWZZZ1JZ0W000001").valid


def test_validate_good():
    check = V.validate(HONDA)
    assert check == V.VinCheck(HONDA, True, (), True, True, "north_america", (2003,))


# --- random VINs ------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, database=None)
@given(seeds, st.sampled_from([*V.REGIONS, None]))
def test_random_vin_is_valid_and_realistic(seed, region):
    vin = V.random_vin(random.Random(seed), region)
    check = V.validate(vin)
    assert check.valid, (vin, check.reasons)
    assert check.years or not V.has_check_digit(vin), vin  # 6FP: year in 11, SAE layout here
    assert region is None or check.region == region
    assert V.manufacturer(vin) is not None and V.country(vin) is not None
    if check.check_digit_mandatory:
        assert check.check_digit_ok
    if check.region == "north_america":
        assert vin[-5:].isdigit()
        assert len(V.model_years(vin, light_vehicle=True)) == 1  # the position-7 rule
    else:
        assert vin[-4:].isdigit()
    assert V.normalize(vin) == vin
    assert V.normalize(f"VIN: {vin[:3].lower()} {vin[3:9]}-{vin[9:]}") == vin


def test_random_vin_deterministic_and_varied():
    first = [V.random_vin(random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1
    rng = random.Random(7)
    many = [V.random_vin(rng) for _ in range(600)]
    assert many[0] == first[0]
    assert len(set(many)) == len(many)
    assert {V.region(v) for v in many} == set(V.REGIONS)
    europe = [V.random_vin(rng, "europe") for _ in range(600)]
    share_ok = sum(map(V.check_digit_ok, europe)) / len(europe)
    assert 0.6 < share_ok < 0.95  # optional: usually correct, sometimes not
    assert any(v.startswith("WVWZZZ") and v[8] == "Z" for v in europe)


def test_random_vin_unknown_region():
    with pytest.raises(ValueError, match="unknown region 'mars'"):
        V.random_vin(random.Random(0), "mars")


# --- normalize --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*1HGCM82633A004352*", HONDA),
        ("1HG CM826 33A004352", HONDA),
        ("1hg-cm826.33a004352", HONDA),
        ("VIN: 1HGCM82633A004352", HONDA),
        ("VIN1HGCM82633A004352", HONDA),
        ("V.I.N. No.: 1HGCM82633A004352", HONDA),
        ("Vehicle Identification Number 1HGCM82633A004352", HONDA),
        ("FIN: WVWZZZ1JZXW000001", VW),
        ("1HGCM82633AOO4352", HONDA),  # O -> 0
        ("1HGCM82633AQ04352", HONDA),  # Q -> 0
        ("IHGCM82633A004352", HONDA),  # I -> 1
        ("１ＨＧＣＭ８２６３３Ａ００４３５２", HONDA),  # full-width digits and letters
        (FORD, FORD),  # S, B, 5, 2 stay as they are
        (TESLA, TESLA),
        (DODGE, DODGE),
        ("I" + HONDA, HONDA),  # Code 39 door-jamb import marker
        ("*I" + FORD + "*", FORD),
        ("VIN: 1HGCM8263A004352", "1HGCM8263A004352"),  # too short: the cleaned text
        ("1HGCM82633A004352 2003 HONDA", HONDA),
        ("", ""),
        ("  *** ", ""),
    ],
)
def test_normalize(text, expected):
    assert V.normalize(text) == expected


def test_normalize_never_maps_legal_lookalikes():
    # A VIN that fails its check digit stays as read: no S->5 / B->8 / Z->2 "repair".
    wrong = "1FTSW21R38EB5355Z"
    assert V.normalize(wrong) == wrong
    assert V.normalize("B" * 17) == "B" * 17


# --- pick_vin ---------------------------------------------------------------------------------


def test_pick_vin_sticker_not_first_line():
    lines = [
        "MFD BY HONDA OF AMERICA MFG INC",
        "DATE 03/03  GVWR 1980 KG 4366 LB",
        "THIS VEHICLE CONFORMS TO ALL APPLICABLE",
        "FEDERAL MOTOR VEHICLE SAFETY STANDARDS",
        "VIN 1HGCM82633A004352",
        "TYPE PASSENGER CAR   PART NO 8K4A00B12345C6789",
    ]
    assert V.pick_vin(lines) == HONDA


def test_pick_vin_prefers_valid_check_digit():
    wrong = HONDA[:8] + "7" + HONDA[9:]
    assert V.pick_vin([wrong, "some text", HONDA]) == HONDA
    assert V.pick_vin([HONDA, wrong]) == HONDA


def test_pick_vin_label_beats_lookalike():
    # A part number that happens to pass the check digit vs. the labelled VW VIN (which fails it).
    decoy = "8K4A00B12345C6789"
    decoy = decoy[:8] + V.check_digit(decoy) + decoy[9:]
    assert V.is_valid(decoy) and V.check_digit_ok(decoy)
    assert V.pick_vin([f"PART {decoy}", f"FIN: {VW}"]) == VW
    assert V.pick_vin([f"PART {decoy}", VW]) == decoy  # without a label, the check digit decides


def test_normalize_prefers_check_digit_valid_run():
    wrong = HONDA[:8] + "7" + HONDA[9:]
    assert V.normalize(f"{wrong} {HONDA}") == HONDA


def test_pick_vin_joins_split_lines_and_handles_nothing():
    assert V.pick_vin(["VEHICLE ID", "1HGCM8263", "3A004352", "MADE IN USA"]) == HONDA
    assert V.pick_vin(["FEDERAL MOTOR VEHICLE", "SAFETY STANDARDS", "12/2019"]) == ""
    assert V.pick_vin([]) == ""
    # Only a VIN with one character lost: the best guess is still that line.
    assert V.pick_vin(["HONDA", "VIN: 1HGCM8263A004352", "GVWR 1980"]) == "1HGCM8263A004352"


# --- against vininfo on thousands of generated VINs --------------------------------------------

_VININFO_REGION = {
    "Africa": "africa",
    "Asia": "asia",
    "Europe": "europe",
    "North America": "north_america",
    "Oceania": "oceania",
    "South America": "south_america",
}


def _peer_vins(seed: int, n: int) -> list[str]:
    """Realistic VINs (random_vin), VINs on every WMI vininfo lists, and random strings."""
    from vininfo.dicts import WMI

    rng = random.Random(seed)
    wmis = sorted(w for w in WMI if set(w) <= set(V.ALPHABET))  # vininfo lists "WFO" too
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(V.random_vin(rng))
            continue
        rest = "".join(rng.choice(V.ALPHABET) for _ in range(17))
        vin = (rng.choice(wmis) + rest)[:17] if kind == 1 else rest
        out.append(vin[:8] + (V.check_digit(vin) if rng.random() < 0.5 else vin[8]) + vin[9:])
    return out


def _expected_region(vin: str) -> str:
    """vininfo's region, with the disagreements docs/vin.md lists: China (``L``, ``H``) is a
    region of its own here (vininfo: Asia for L, none for H although its country table says
    China), ``D``-``G`` stay in Africa (ISO 3780; vininfo: none), ``7A``-``7E`` are New Zealand's
    (vininfo: North America)."""
    if vin[0] in "LH":
        return "china"
    if vin[0] in "DEFG":
        return "africa"
    if vin[:2] in ("7A", "7B", "7C", "7D", "7E"):
        return "oceania"
    return _VININFO_REGION.get(Vin(vin).region or "", "unknown")  # "0...": none


@pytest.mark.parametrize("seed", [0, 1])
def test_rules_agree_with_vininfo_except_the_documented_overrides(seed):
    from datetime import UTC, datetime

    this_year = datetime.now(UTC).year + 1  # vininfo's years stop at next year too
    disagreements = {"country": 0, "region": 0, "manufacturer_0": 0, "6FP": 0}
    for vin in _peer_vins(seed, 3000):
        peer = Vin(vin)
        ours_country = V.country(vin)
        if vin[:2] in ("7A", "7B", "7C", "7D", "7E"):  # ISO 3780: New Zealand; vininfo: US
            assert (ours_country, peer.country) == ("New Zealand", "United States")
            disagreements["country"] += 1
        else:
            assert ours_country == peer.country, vin
        if V.region(vin) != _VININFO_REGION.get(peer.region or "", "unknown"):
            disagreements["region"] += 1
        assert V.region(vin) == _expected_region(vin), vin
        maker = peer.manufacturer
        if vin[0] == "0":  # no ISO 3780 region starts with 0: no maker here, vininfo has some
            disagreements["manufacturer_0"] += maker != "UnsupportedBrand"
            assert V.manufacturer(vin) is None
        else:
            assert V.manufacturer(vin) == (None if maker == "UnsupportedBrand" else maker), vin
        # Check-digit verdict: the same, Ford Australia (no check digit) included.
        ours = V.has_check_digit(vin) and V.check_digit_ok(vin)
        assert ours == peer.verify_checksum(check_year=False), vin
        disagreements["6FP"] += vin.startswith("6FP") and V.check_digit_ok(vin)
        # Model years: the same candidates (vininfo's descending), position 11 for 6FP.
        assert V.model_years(vin) == sorted(y for y in peer.years if y <= this_year), vin
    # Each override was exercised (the test would not notice them otherwise).
    assert disagreements["country"] and disagreements["region"] and disagreements["6FP"]


def test_check_digit_mandatory_follows_the_region_everywhere():
    for vin in _peer_vins(5, 3000):
        check = V.validate(vin)
        mandatory = V.region(vin) in ("north_america", "china")
        assert check.check_digit_mandatory == mandatory
        if mandatory and not V.check_digit_ok(vin):
            assert not check.valid and any("mandatory" in r for r in check.reasons), vin
