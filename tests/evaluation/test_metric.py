"""VinMetric on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vin_ocr.evaluation.metric import GAP, VinMetric, align, levenshtein

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


def test_equal_length_shift_is_scored_by_position_not_by_alignment():
    pred = VIN[1:] + "5"  # shifted left by one: edit distance 2, few positions right
    s, score = one(pred)
    matched = sum(t == p for t, p in zip(VIN, pred, strict=True))
    assert score.matched == matched
    assert s["char_accuracy"] == pytest.approx(matched / 17)
    assert s["cer"] == pytest.approx(2 / 17)


def test_deletion_uses_alignment():
    s, score = one("1M8DM9AXKP042788")  # the G at position 4 is lost
    assert score.matched == 16 and score.distance == 1
    assert s["char_accuracy"] == pytest.approx(16 / 17)
    assert s["cer"] == pytest.approx(1 / 17)
    assert s["per_position"][3] == 0.0
    assert sum(a == 1.0 for a in s["per_position"]) == 16
    assert s["confusions"] == [{"truth": "G", "pred": GAP, "count": 1}]


def test_insertion_uses_alignment():
    s, score = one("1M8GDM9AXKZP042788")  # a Z inserted after position 10
    assert score.matched == 17 and score.distance == 1
    assert s["char_accuracy"] == 1.0
    assert s["cer"] == pytest.approx(1 / 17)
    assert s["exact_match"] == 0.0
    assert s["per_position"] == [1.0] * 17
    assert s["confusions"] == [{"truth": GAP, "pred": "Z", "count": 1}]


def test_empty_prediction():
    s, score = one("")
    assert (s["exact_match"], s["char_accuracy"], s["cer"]) == (0.0, 0.0, 1.0)
    assert s["empty_rate"] == 1.0 and s["valid_rate"] == 0.0
    assert s["per_position"] == [0.0] * 17
    assert sum(c["count"] for c in s["confusions"]) == 17
    assert {c["pred"] for c in s["confusions"]} == {GAP}
    assert {"truth": "8", "pred": GAP, "count": 3} in s["confusions"]
    assert not score.valid


def test_prediction_is_normalised_and_raw_kept():
    raw = "VIN: 1M8GDM9AXKPO42788"  # label text around it, O read for 0 (a safe repair)
    s, score = one(raw)
    assert score.raw == raw and score.pred == VIN and score.exact
    assert s["exact_match"] == 1.0


def test_several_samples_aggregate_and_confusions_count():
    m = VinMetric()
    for pred in (VIN, "1MBGDM9AXKP042788", "1MBGDM9AXKP04278B", ""):
        m.update(VIN, pred)
    s = m.summary()
    assert s["n"] == 4
    assert s["exact_match"] == 0.25
    assert s["char_accuracy"] == pytest.approx((17 + 16 + 15 + 0) / 68)
    assert s["cer"] == pytest.approx((0 + 1 + 2 + 17) / 68)
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
    for key in ("n", "exact_match", "char_accuracy", "cer", "valid_rate", "per_position"):
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
