"""VinMetric on hand-computed cases, and against its peers (jiwer, RapidFuzz, PaddleOCR's
formula, a plain dynamic-programming edit distance) on thousands of generated pairs."""

from __future__ import annotations

import random

import jiwer
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vin_ocr.evaluation.metric import DEFINITIONS, GAP, VinMetric, align, clean, levenshtein
from vin_ocr.vin import random_vin

VIN = "1M8GDM9AXKP042788"  # valid: check digit X


def one(pred: str, truth: str = VIN) -> tuple[dict, object]:
    m = VinMetric()
    score = m.update(truth, pred)
    return m.summary(), score


def test_exact_match():
    s, score = one(VIN)
    assert (s["n"], s["exact_match"], s["char_accuracy"], s["cer"]) == (1, 1.0, 1.0, 0.0)
    assert s["valid_rate"] == 1.0 and s["empty_rate"] == 0.0
    assert s["per_position"] == [1.0] * 17
    assert s["confusions"] == []
    assert score.exact and score.valid and score.matched == 17 and score.distance == 0


def test_substitution_position_aligned():
    s, score = one("1MBGDM9AXKP042788")  # position 3: 8 -> B
    assert s["exact_match"] == 0.0
    assert s["char_accuracy"] == pytest.approx(16 / 17)
    assert s["cer"] == pytest.approx(1 / 17)
    assert s["valid_rate"] == 0.0  # the check digit catches 8 <-> B
    assert s["per_position"][2] == 0.0
    assert s["per_position"][:2] + s["per_position"][3:] == [1.0] * 16
    assert s["confusions"] == [{"truth": "8", "pred": "B", "count": 1}]
    assert score.matched == 16 and score.distance == 1


def test_equal_length_shift_is_scored_by_alignment_and_positional_says_so():
    pred = VIN[1:] + "5"  # shifted left by one: edit distance 2, few positions right by index
    s, score = one(pred)
    by_index = sum(t == p for t, p in zip(VIN, pred, strict=True))
    assert by_index < 5 and score.positional == by_index
    assert s["positional_accuracy"] == pytest.approx(by_index / 17)
    assert s["cer"] == pytest.approx(2 / 17)
    assert s["char_accuracy"] == pytest.approx(1 - 2 / 17)  # was by_index / 17 (0.048)
    assert score.matched == 16  # the alignment loses only the first character
    assert s["norm_edit_dis"] == pytest.approx(1 - 2 / 17)


def test_deletion_uses_alignment():
    s, score = one("1M8DM9AXKP042788")  # the G at position 4 is lost
    assert score.matched == 16 and score.distance == 1
    assert s["char_accuracy"] == pytest.approx(16 / 17)
    assert s["cer"] == pytest.approx(1 / 17)
    assert s["norm_edit_dis"] == pytest.approx(1 - 1 / 17)
    assert s["per_position"][3] == 0.0
    assert sum(a == 1.0 for a in s["per_position"]) == 16
    assert s["confusions"] == [{"truth": "G", "pred": GAP, "count": 1}]


def test_insertion_is_an_error():
    s, score = one("1M8GDM9AXKZP042788")  # a Z inserted after position 10
    assert score.matched == 17 and score.distance == 1
    assert s["char_accuracy"] == pytest.approx(1 - 1 / 17)  # was 1.0: extras were free
    assert s["norm_edit_dis"] == pytest.approx(1 - 1 / 18)  # PaddleOCR divides by the longer
    assert s["cer"] == pytest.approx(1 / 17)
    assert s["exact_match"] == 0.0
    assert s["per_position"] == [1.0] * 17
    assert s["confusions"] == [{"truth": GAP, "pred": "Z", "count": 1}]


def test_issue_cases_that_the_old_measure_scored_as_perfect():
    s, _ = one("WVWZZZ1JZXW0000017", truth="WVWZZZ1JZXW000001")  # one extra character at the end
    assert s["char_accuracy"] == pytest.approx(1 - 1 / 17) and s["positional_accuracy"] == 1.0
    a, _ = one("XWVWZZZ1JZXW00000", truth="WVWZZZ1JZXW000001")  # one extra at the start, one lost
    b, _ = one("XWVWZZZ1JZXW000001", truth="WVWZZZ1JZXW000001")  # one extra at the start
    assert a["char_accuracy"] == pytest.approx(1 - 2 / 17)
    assert b["char_accuracy"] == pytest.approx(1 - 1 / 17)


def test_char_accuracy_is_not_clamped():
    s, _ = one("X" * 40, truth="AB")
    assert s["cer"] == pytest.approx(40 / 2) and s["char_accuracy"] == pytest.approx(1 - 20)
    assert s["norm_edit_dis"] == pytest.approx(0.0)


def test_empty_prediction():
    s, score = one("")
    assert (s["exact_match"], s["char_accuracy"], s["cer"]) == (0.0, 0.0, 1.0)
    assert s["norm_edit_dis"] == 0.0 and s["positional_accuracy"] == 0.0
    assert s["empty_rate"] == 1.0 and s["valid_rate"] == 0.0
    assert s["per_position"] == [0.0] * 17
    assert sum(c["count"] for c in s["confusions"]) == 17
    assert {c["pred"] for c in s["confusions"]} == {GAP}
    assert {"truth": "8", "pred": GAP, "count": 3} in s["confusions"]
    assert not score.valid


def test_strict_scores_the_answer_lenient_finds_the_vin():
    raw = "VIN: 1M8GDM9AXKPO42788"  # label text around it, O read for 0
    s, score = one(raw)
    assert score.raw == raw and score.pred == raw.upper() and not score.exact
    assert score.lenient == VIN and score.exact_lenient
    assert (s["exact_match"], s["exact_match_lenient"]) == (0.0, 1.0)
    # Only case and surrounding whitespace are forgiven by the strict measure.
    s, score = one(f"  {VIN.lower()}\n")
    assert score.exact and s["exact_match"] == 1.0 and s["cer"] == 0.0
    assert clean(" a b ") == "A B"
    s, _ = one(VIN[:9] + " " + VIN[9:])  # an inner space is a character
    assert s["exact_match"] == 0.0 and s["exact_match_lenient"] == 1.0


def test_definitions_cover_every_summary_key():
    keys = set(VinMetric().summary()) - {"n"}
    assert keys <= set(DEFINITIONS)


def test_several_samples_aggregate_and_confusions_count():
    m = VinMetric()
    for pred in (VIN, "1MBGDM9AXKP042788", "1MBGDM9AXKP04278B", ""):
        m.update(VIN, pred)
    s = m.summary()
    assert s["n"] == 4
    assert s["exact_match"] == 0.25
    assert s["cer"] == pytest.approx((0 + 1 + 2 + 17) / 68)
    assert s["char_accuracy"] == pytest.approx(1 - (0 + 1 + 2 + 17) / 68)
    assert s["norm_edit_dis"] == pytest.approx(1 - (0 + 1 / 17 + 2 / 17 + 1) / 4)
    assert s["empty_rate"] == 0.25
    assert s["per_position"][2] == pytest.approx(1 / 4)  # the 8 at position 3: right once
    assert s["per_position"][0] == pytest.approx(3 / 4)
    assert s["confusions"][0] == {"truth": "8", "pred": "B", "count": 3}


def test_latency_stats_match_numpy():
    m = VinMetric()
    lat = [0.010, 0.020, 0.030, 0.100]
    for x in lat:
        m.update(VIN, VIN, latency_s=x)
    s = m.summary()
    assert s["ms_per_image"] == pytest.approx(1000 * np.mean(lat))
    assert s["ms_p50"] == pytest.approx(1000 * np.percentile(lat, 50))
    assert s["ms_p95"] == pytest.approx(1000 * np.percentile(lat, 95))
    assert s["images_per_s"] == pytest.approx(1 / np.mean(lat))
    assert VinMetric().summary()["ms_per_image"] is None


def test_merge_equals_one_pass_and_reset():
    preds = [VIN, "1M8DM9AXKP042788", "", "1M8GDM9AXKZP042788", "1MBGDM9AXKP042788"]
    whole, a, b = VinMetric(), VinMetric(), VinMetric()
    for i, p in enumerate(preds):
        whole.update(VIN, p, latency_s=0.01 * (i + 1))
        (a if i % 2 else b).update(VIN, p, latency_s=0.01 * (i + 1))
    merged = a.merge(b).summary()
    expected = whole.summary()
    for key in (
        "n", "exact_match", "exact_match_lenient", "char_accuracy", "cer", "norm_edit_dis",
        "positional_accuracy", "valid_rate", "per_position",
    ):  # fmt: skip
        assert merged[key] == pytest.approx(expected[key])
    assert sorted(merged["confusions"], key=str) == sorted(expected["confusions"], key=str)
    assert merged["ms_per_image"] == pytest.approx(expected["ms_per_image"])
    a.reset()
    assert a.summary()["n"] == 0 and a.summary()["exact_match"] is None


def test_truth_longer_than_17_reports_extra_positions():
    m = VinMetric(normalize=str, is_valid=lambda v: False)
    m.update("ABCDEFGH1234567890", "ABCDEFGH1234567890")
    assert len(m.summary()["per_position"]) == 18


def test_empty_truth_is_refused():
    with pytest.raises(ValueError, match="empty truth"):
        VinMetric().update("  ", VIN)


def test_levenshtein_known_values():
    assert levenshtein("", "") == 0
    assert levenshtein(VIN, "") == 17
    assert levenshtein("ABCD", "ACBD") == 2
    assert levenshtein("ABC", "XABC") == 1


@settings(max_examples=200, deadline=None)
@given(st.text("AB12", max_size=9), st.text("AB12", max_size=9))
def test_alignment_is_minimal_and_spells_both_strings(a: str, b: str):
    pairs = align(a, b)
    assert "".join(t for t, _ in pairs if t != GAP) == a
    assert "".join(p for _, p in pairs if p != GAP) == b
    assert sum(t != p for t, p in pairs) == levenshtein(a, b) == levenshtein(b, a)


# --- against the peers, on generated pairs ----------------------------------------------------

_NOISE = "0123456789ABCDEFGHJKLMNPRSTUVWXYZIOQ ."


def _dp_distance(a: str, b: str) -> int:
    """Plain Wagner-Fischer edit distance, independent of RapidFuzz."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _garble(rng: random.Random, vin: str) -> str:
    """A plausible OCR reading of ``vin``: 0-4 substitutions, deletions, insertions; sometimes
    empty, sometimes a label or surrounding spaces."""
    chars = list(vin)
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 4))):
        op, at = rng.choice("sdi"), rng.randrange(len(chars) + 1)
        if op == "i" or not chars:
            chars.insert(at, rng.choice(_NOISE.strip()))
        elif op == "d":
            del chars[min(at, len(chars) - 1)]
        else:
            chars[min(at, len(chars) - 1)] = rng.choice(_NOISE.strip())
    text = "".join(chars)
    r = rng.random()
    if r < 0.05:
        return ""
    if r < 0.10:
        return f"VIN: {text}"
    if r < 0.15:
        return f"  {text.lower()} "
    return text


def _pairs(seed: int, n: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        truth = random_vin(rng)
        out.append((truth, _garble(rng, truth)))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_corpus_cer_equals_jiwer_and_per_pair_distance_equals_plain_dp(seed):
    pairs = _pairs(seed, 2000)
    m = VinMetric()
    for truth, pred in pairs:
        score = m.update(truth, pred)
        assert score.distance == _dp_distance(truth, clean(pred)), (truth, pred)
    s = m.summary()
    truths, answers = [t for t, _ in pairs], [clean(p) for _, p in pairs]
    # jiwer.cer over lists is the corpus CER: total edits / total reference characters.
    assert s["cer"] == pytest.approx(jiwer.cer(truths, answers), abs=1e-12)
    assert s["char_accuracy"] == pytest.approx(1 - jiwer.cer(truths, answers), abs=1e-12)
    assert 0.01 < s["cer"] < 0.5 and 0 < s["exact_match"] < s["exact_match_lenient"] < 1


def test_norm_edit_dis_equals_paddleocr_formula():
    # PaddleOCR's RecMetric: norm_edit_dis += Levenshtein.normalized_distance(pred, target);
    # metric = 1 - norm_edit_dis / (n + eps), with rapidfuzz's normalized_distance.
    from rapidfuzz.distance import Levenshtein

    pairs = _pairs(2, 2000)
    m = VinMetric()
    total = 0.0
    for truth, pred in pairs:
        m.update(truth, pred)
        total += Levenshtein.normalized_distance(clean(pred), truth)
        dp = _dp_distance(truth, clean(pred)) / max(len(truth), len(clean(pred)))
        assert Levenshtein.normalized_distance(clean(pred), truth) == pytest.approx(dp)
    assert m.summary()["norm_edit_dis"] == pytest.approx(1 - total / (len(pairs) + 1e-6), abs=1e-6)


def test_alignment_matches_per_position_and_confusions_on_generated_pairs():
    m = VinMetric(top_confusions=10_000)
    matched = distance = 0
    for truth, pred in _pairs(3, 1000):
        score = m.update(truth, pred)
        matched, distance = matched + score.matched, distance + score.distance
    s = m.summary()
    assert sum(m.pos_correct) == matched
    assert sum(c["count"] for c in s["confusions"]) == distance  # each confusion is one edit
