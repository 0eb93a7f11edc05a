"""The VIN metric: one object fed pair by pair, in the style of docTR's ``TextMatch``.

Predictions are normalised with :func:`vin_ocr.vin.normalize` before scoring (the raw string is
kept in the per-sample score). Characters are compared position by position when the two strings
have the same length, and through a Levenshtein alignment otherwise.

>>> m = VinMetric()
>>> _ = m.update("1M8GDM9AXKP042788", "1M8GDM9AXKP042788", latency_s=0.010)
>>> _ = m.update("1M8GDM9AXKP042788", "1M8GDM9AXKP04278B", latency_s=0.030)  # 8 read as B
>>> _ = m.update("1M8GDM9AXKP042788", "1M8GDM9AXKP04788", latency_s=0.020)   # the 2 is lost
>>> s = m.summary()
>>> s["n"], round(s["exact_match"], 4), round(s["char_accuracy"], 4), round(s["cer"], 4)
(3, 0.3333, 0.9608, 0.0392)
>>> round(s["valid_rate"], 4), s["empty_rate"], round(s["ms_per_image"], 1), round(s["ms_p95"], 1)
(0.3333, 0.0, 20.0, 29.0)
>>> [round(a, 2) for a in s["per_position"][12:]]  # positions 13..17
[1.0, 0.67, 1.0, 1.0, 0.67]
>>> s["confusions"]
[{'truth': '8', 'pred': 'B', 'count': 1}, {'truth': '2', 'pred': '∅', 'count': 1}]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Marks the missing side of an insertion or a deletion in confusion pairs.
GAP = "∅"
#: Positions reported even when the truth is shorter (a VIN has 17 characters).
VIN_LENGTH = 17


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions each cost 1).

    >>> levenshtein("KITTEN", "SITTING"), levenshtein("", "ABC"), levenshtein("ABC", "ABC")
    (3, 3, 0)
    """
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def align(truth: str, pred: str) -> list[tuple[str, str]]:
    """A minimal-cost alignment of ``truth`` and ``pred`` as (truth char, pred char) pairs.

    Deleted truth characters pair with :data:`GAP` on the right, inserted predicted characters
    with :data:`GAP` on the left. Ties prefer a match or substitution, then a deletion.

    >>> align("ABC", "AC")
    [('A', 'A'), ('B', '∅'), ('C', 'C')]
    >>> align("AC", "AXC")
    [('A', 'A'), ('∅', 'X'), ('C', 'C')]
    """
    n, m = len(truth), len(pred)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (truth[i - 1] != pred[j - 1])
            )
    pairs: list[tuple[str, str]] = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (truth[i - 1] != pred[j - 1]):
            pairs.append((truth[i - 1], pred[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            pairs.append((truth[i - 1], GAP))
            i -= 1
        else:
            pairs.append((GAP, pred[j - 1]))
            j -= 1
    return pairs[::-1]


def _pairs(truth: str, pred: str) -> list[tuple[str, str]]:
    """Position-aligned pairs for equal lengths, the Levenshtein alignment otherwise."""
    return list(zip(truth, pred, strict=True)) if len(truth) == len(pred) else align(truth, pred)


@dataclass(frozen=True)
class SampleScore:
    """What :meth:`VinMetric.update` scored for one pair (written to ``predictions.jsonl``)."""

    truth: str
    raw: str
    pred: str
    exact: bool
    valid: bool
    matched: int
    distance: int
    latency_s: float | None

    @property
    def char_accuracy(self) -> float:
        return self.matched / len(self.truth)

    @property
    def cer(self) -> float:
        return self.distance / len(self.truth)


def _default_normalize(text: str) -> str:
    from vin_ocr.vin import normalize

    return normalize(text)


def _default_is_valid(text: str) -> bool:
    from vin_ocr.vin import is_valid

    return bool(is_valid(text))


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), ``q`` in [0, 100]."""
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class VinMetric:
    """Accumulates VIN reading scores; :meth:`summary` gives the headline numbers.

    Summary keys: ``n``, ``exact_match``, ``char_accuracy`` (matched characters / truth
    characters), ``cer`` (edit distance / truth characters), ``valid_rate`` (predictions that
    are valid VINs), ``empty_rate``, ``per_position`` (accuracy of truth positions 1..17, a list;
    ``None`` where no truth reaches that position), ``confusions`` (most frequent truth -> pred
    pairs, ``∅`` marking a missing character), and latency: ``ms_per_image``, ``ms_p50``,
    ``ms_p95``, ``images_per_s`` (``None`` when no latency was given).

    ``normalize`` and ``is_valid`` default to :mod:`vin_ocr.vin`'s; pass ``normalize=str`` to
    score raw strings.
    """

    def __init__(
        self,
        normalize: Callable[[str], str] | None = None,
        is_valid: Callable[[str], bool] | None = None,
        top_confusions: int = 20,
    ) -> None:
        self.normalize = normalize or _default_normalize
        self.is_valid = is_valid or _default_is_valid
        self.top_confusions = top_confusions
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.exact = 0
        self.valid = 0
        self.empty = 0
        self.matched = 0
        self.distance = 0
        self.truth_chars = 0
        self.pos_correct: list[int] = []
        self.pos_total: list[int] = []
        self.confusions: Counter[tuple[str, str]] = Counter()
        self.latencies: list[float] = []

    def update(self, truth: str, pred: str, latency_s: float | None = None) -> SampleScore:
        """Score one prediction (raw OCR text) against its label and return the score."""
        truth = truth.strip().upper()
        if not truth:
            raise ValueError("VinMetric.update: empty truth (unlabelled samples cannot be scored)")
        raw = pred
        pred = self.normalize(pred)
        pairs = _pairs(truth, pred)
        matched = 0
        pos = 0  # index into truth
        for t, p in pairs:
            if t == GAP:
                self.confusions[(t, p)] += 1
                continue
            if pos >= len(self.pos_total):
                self.pos_total.append(0)
                self.pos_correct.append(0)
            self.pos_total[pos] += 1
            if t == p:
                matched += 1
                self.pos_correct[pos] += 1
            else:
                self.confusions[(t, p)] += 1
            pos += 1
        score = SampleScore(
            truth=truth,
            raw=raw,
            pred=pred,
            exact=pred == truth,
            valid=self.is_valid(pred) if pred else False,
            matched=matched,
            distance=levenshtein(truth, pred),
            latency_s=latency_s,
        )
        self.n += 1
        self.exact += score.exact
        self.valid += score.valid
        self.empty += not pred
        self.matched += matched
        self.distance += score.distance
        self.truth_chars += len(truth)
        if latency_s is not None:
            self.latencies.append(float(latency_s))
        return score

    def merge(self, other: VinMetric) -> VinMetric:
        """Add ``other``'s counts into this metric (e.g. from another process); returns self."""
        for name in ("n", "exact", "valid", "empty", "matched", "distance", "truth_chars"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for i, (c, t) in enumerate(zip(other.pos_correct, other.pos_total, strict=True)):
            if i >= len(self.pos_total):
                self.pos_total.append(0)
                self.pos_correct.append(0)
            self.pos_correct[i] += c
            self.pos_total[i] += t
        self.confusions.update(other.confusions)
        self.latencies.extend(other.latencies)
        return self

    def summary(self) -> dict[str, Any]:
        """The headline numbers (see the class docstring); rates are ``None`` before any update."""
        n = self.n
        lat = self.latencies
        mean_ms = 1000 * sum(lat) / len(lat) if lat else None
        npos = max(VIN_LENGTH, len(self.pos_total))
        return {
            "n": n,
            "exact_match": self.exact / n if n else None,
            "char_accuracy": self.matched / self.truth_chars if n else None,
            "cer": self.distance / self.truth_chars if n else None,
            "valid_rate": self.valid / n if n else None,
            "empty_rate": self.empty / n if n else None,
            "ms_per_image": mean_ms,
            "ms_p50": 1000 * _percentile(lat, 50) if lat else None,
            "ms_p95": 1000 * _percentile(lat, 95) if lat else None,
            "images_per_s": 1000 / mean_ms if mean_ms else None,
            "per_position": [
                self.pos_correct[i] / self.pos_total[i]
                if i < len(self.pos_total) and self.pos_total[i]
                else None
                for i in range(npos)
            ],
            "confusions": [
                {"truth": t, "pred": p, "count": c}
                for (t, p), c in self.confusions.most_common(self.top_confusions)
            ],
        }
