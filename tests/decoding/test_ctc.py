"""CTC decoding: greedy reading and the exact check-digit search."""

from __future__ import annotations

import numpy as np
import pytest

from vin_ocr.decoding.ctc import ctc_read, greedy, vin_search
from vin_ocr.vin import (
    ALPHABET,
    YEAR_CODES,
    check_digit,
    check_digit_mandatory,
    check_digit_ok,
    random_vin,
)

CHARSET = ["", *ALPHABET]
INDEX = {c: i for i, c in enumerate(CHARSET)}


def frames(*rows: dict[str, float], rest: float = 0.0) -> np.ndarray:
    """One frame per dict ({character or "" for blank: probability}); the leftover mass goes
    to the blank."""
    out = np.full((len(rows), len(CHARSET)), rest)
    for t, row in enumerate(rows):
        for c, p in row.items():
            out[t, INDEX[c]] = p
        out[t, 0] += 1.0 - out[t].sum()
    return out


def test_greedy_merges_repeats_drops_blanks_and_keeps_the_best_frame():
    probs = frames({"A": 0.6}, {"A": 0.9}, {"": 1.0}, {"A": 0.7}, {"B": 0.8}, {"": 0.9})
    text, conf = greedy(probs, CHARSET)
    assert text == "AAB"
    assert conf == pytest.approx((0.9, 0.7, 0.8))
    reading = ctc_read(probs, CHARSET, search=False)
    assert (reading.text, reading.unconstrained) == ("AAB", None)
    assert reading.char_conf == pytest.approx((0.9, 0.7, 0.8))


def test_greedy_of_all_blanks_is_empty_and_a_bad_shape_is_named():
    assert greedy(frames({"": 1.0}, {"": 1.0}), CHARSET) == ("", ())
    with pytest.raises(ValueError, match=r"\(T, 34\)"):
        greedy(np.ones((3, 5)), CHARSET)


# --- the check-digit search ---------------------------------------------------------------------

VIN = "1M8GDM9AXKP042788"  # 49 CFR 565.15's worked example: valid, check digit X


def spelled(text: str, sure: float = 0.9, **unsure: dict[str, float]) -> np.ndarray:
    """Frames ``blank, c1, blank, c2, ..., c17, blank``: each character frame puts ``sure`` on its
    character and the rest on the blank; ``unsure={"p5": {...}}`` replaces the frame of position 5
    by that distribution (rest to the blank). Every other class gets probability 0, so only the
    characters named can be read."""
    rows: list[dict[str, float]] = [{"": 1.0}]
    for pos, c in enumerate(text, start=1):
        rows += [unsure.get(f"p{pos}", {c: sure}), {"": 1.0}]
    return frames(*rows)


def best_path(probs: np.ndarray, text: str) -> float:
    """Reference: the probability of the best CTC alignment of ``text`` (plain Viterbi over the
    blank-extended label sequence)."""
    ext = [0]
    for c in text:
        ext += [INDEX[c], 0]
    best = [0.0] * len(ext)
    best[0], best[1] = probs[0, ext[0]], probs[0, ext[1]]
    for t in range(1, len(probs)):
        prev, best = best, [0.0] * len(ext)
        for j, label in enumerate(ext):
            cands = [prev[j]] + ([prev[j - 1]] if j else [])
            if j > 1 and label != 0 and ext[j - 2] != label:
                cands.append(prev[j - 2])
            best[j] = max(cands) * probs[t, label]
    return max(best[-1], best[-2])


def brute_force(probs: np.ndarray, text: str, positions: dict[int, str]) -> tuple[str, float]:
    """The valid VIN (by the rules the search enforces) with the best alignment among every
    combination of the given characters at the given positions."""
    from itertools import product

    best = ("", 0.0)
    for combo in product(*positions.values()):
        cand = list(text)
        for pos, c in zip(positions, combo, strict=True):
            cand[pos - 1] = c
        vin = "".join(cand)
        if vin[0] in "12345L" and vin[9] in YEAR_CODES and check_digit_ok(vin):
            p = best_path(probs, vin)
            if p > best[1]:
                best = (vin, p)
    return best


@pytest.mark.parametrize(
    ("unsure", "expected"),
    [
        # One misread: 0 <-> D at position 12 (weights differ, the check digit catches it).
        ({"p12": {"D": 0.5, "0": 0.4}}, VIN),
        # Two uncertain positions; the single fix with the better alignment wins.
        ({"p5": {"B": 0.45, "D": 0.3, "8": 0.2}, "p13": {"4": 0.5, "A": 0.4}}, None),
        # The check digit itself misread (X <-> K): fixing position 9 is the cheapest repair.
        ({"p9": {"K": 0.6, "X": 0.3}}, VIN),
    ],
)
def test_search_matches_brute_force(unsure, expected):
    probs = spelled(VIN, **unsure)
    positions = {int(k[1:]): "".join(ALPHABET) for k in unsure}
    want, p = brute_force(probs, VIN, positions)
    vin, logp, conf = vin_search(probs, CHARSET)
    assert vin == want
    assert np.exp(logp) == pytest.approx(p, rel=1e-9)
    assert vin == (expected or want)
    assert len(conf) == 17 and all(0 < c <= 1 for c in conf)

    reading = ctc_read(probs, CHARSET)
    greedy_text = greedy(probs, CHARSET)[0]
    assert greedy_text != vin and not check_digit_ok(greedy_text)
    assert (reading.text, reading.unconstrained, reading.repaired) == (vin, greedy_text, True)
    assert reading.check_digit_ok and reading.char_conf == conf
    off = ctc_read(probs, CHARSET, search=False)
    assert (off.text, off.unconstrained) == (greedy_text, None)


def test_a_character_merged_by_the_repeat_rule_is_restored():
    # "...788": the frame between the two 8s leans to 8, so greedy merges them (16 characters).
    probs = spelled(VIN)
    gap = 2 * 16  # the blank frame between positions 16 and 17
    probs[gap] = frames({"8": 0.6})[0]
    assert greedy(probs, CHARSET)[0] == VIN[:16]
    reading = ctc_read(probs, CHARSET)
    assert (reading.text, reading.unconstrained) == (VIN, VIN[:16])
    assert np.exp(vin_search(probs, CHARSET)[1]) == pytest.approx(best_path(probs, VIN))


def test_a_spurious_character_is_dropped():
    probs = spelled(VIN)
    probs[2 * 6] = frames({"7": 0.55})[0]  # a blank frame between positions 6 and 7 reads "7"
    assert len(greedy(probs, CHARSET)[0]) == 18
    assert ctc_read(probs, CHARSET).text == VIN


def test_position_10_never_gets_a_forbidden_year_code():
    # U and 4 weigh the same, so the check digit holds either way; U is never a year code.
    vin = VIN[:8] + check_digit(VIN[:9] + "4" + VIN[10:]) + "4" + VIN[10:]
    read_u = vin[:9] + "U" + vin[10:]
    assert check_digit_ok(read_u)
    reading = ctc_read(spelled(read_u, p10={"U": 0.6, "4": 0.3}), CHARSET)
    assert (reading.text, reading.unconstrained) == (vin, read_u)


def test_valid_optional_region_and_far_off_readings_are_left_alone():
    valid = ctc_read(spelled(VIN, p12={"0": 0.5, "D": 0.4}), CHARSET)
    assert (valid.text, valid.unconstrained) == (VIN, None)
    europe = "WVWZZZ1JZXW000001"  # VW's Z in position 9 fails the optional check digit
    wrong = ctc_read(spelled(europe, p12={"D": 0.5, "0": 0.4}), CHARSET)
    assert (wrong.text, wrong.unconstrained) == (europe[:11] + "D" + europe[12:], None)
    short = ctc_read(spelled(VIN[:12]), CHARSET)
    assert (short.text, short.unconstrained) == (VIN[:12], None)


def test_the_search_never_moves_a_us_vin_to_new_zealand():
    # 7S is a US WMI (check digit mandatory), 7A New Zealand's (optional). The reading's check
    # digit is 7A's; the cheapest repair would turn S into A, leaving the region: the search
    # must fix the check digit instead.
    body = "AYGDEE?PF000001"
    us, nz = (w + body.replace("?", check_digit(w + body)) for w in ("7S", "7A"))
    assert check_digit_mandatory(us) and not check_digit_mandatory(nz) and us[8] != nz[8]
    read = us[:8] + nz[8] + us[9:]  # the US VIN with New Zealand's check digit: invalid
    probs = spelled(read, p2={"S": 0.55, "A": 0.45}, p9={nz[8]: 0.6, us[8]: 0.3})
    reading = ctc_read(probs, CHARSET)
    assert (reading.text, reading.unconstrained) == (us, read)
    # the same frames with only 7A's digit and A readable: the search still ends in a
    # mandatory region (at a vanishing probability), never on 7A
    only_nz = spelled(read, p2={"A": 0.9}, p9={nz[8]: 0.9})
    vin = vin_search(only_nz, CHARSET)[0]
    assert vin[:2] != "7A" and check_digit_mandatory(vin) and check_digit_ok(vin)
    assert vin_search(spelled(us), CHARSET)[0] == us  # a valid US VIN: found by the first pass


def test_too_few_frames_keeps_the_greedy_reading_and_says_the_search_ran():
    probs = frames(*({c: 0.9} for c in VIN[:16]))  # 16 frames cannot hold 17 characters
    reading = ctc_read(probs, CHARSET)
    assert (reading.text, reading.unconstrained, reading.repaired) == (VIN[:16], VIN[:16], False)


@pytest.mark.parametrize("steps", [40, 80])
def test_search_on_noise_returns_a_valid_vin_scored_by_its_best_alignment(steps):
    rng = np.random.default_rng(steps)
    probs = rng.dirichlet(np.full(len(CHARSET), 0.3), size=steps)
    vin, logp, conf = vin_search(probs, CHARSET)
    assert vin[0] in "12345L" and vin[9] in YEAR_CODES and check_digit_ok(vin)
    assert len(conf) == 17 and all(0 < c <= 1 for c in conf)
    assert np.exp(logp) == pytest.approx(best_path(probs, vin), rel=1e-9)
    # No valid VIN aligns better (a sample of valid North American and Chinese VINs).
    import random

    others = [random_vin(random.Random(i), ("north_america", "china")[i % 2]) for i in range(50)]
    assert all(best_path(probs, v) <= np.exp(logp) * (1 + 1e-9) for v in others)
