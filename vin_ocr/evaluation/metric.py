"""The VIN metric: one object fed pair by pair, in the style of docTR's ``TextMatch``.

What is scored is the engine's answer after a minimal clean-up (:func:`clean`: surrounding
whitespace removed, upper case), the string a user receives. Every measure has a standard
definition (:data:`DEFINITIONS`, written into ``report.json``): exact match; corpus CER (total
edit distance over total truth characters) and character accuracy ``1 - CER``; PaddleOCR's
``norm_edit_dis``; the lenient exact match (:func:`vin_ocr.vin.normalize` finds a VIN somewhere in
the answer) is reported beside the strict one, never instead of it. Edit distances and the
alignment behind the per-position accuracy and the confusions come from RapidFuzz.

>>> m = VinMetric()
>>> _ = m.update("1M8GDM9AXKP042788", "1M8GDM9AXKP042788", latency_s=0.010)
>>> _ = m.update("1M8GDM9AXKP042788", "1M8GDM9AXKP04278B", latency_s=0.030)  # 8 read as B
>>> _ = m.update("1M8GDM9AXKP042788", "1M8GDM9AXKP04788", latency_s=0.020)   # the 2 is lost
>>> _ = m.update("1M8GDM9AXKP042788", "VIN 1M8GDM9AXKP042788", latency_s=0.020)  # a label kept
>>> s = m.summary()
>>> s["n"], s["exact_match"], s["exact_match_lenient"]
(4, 0.25, 0.5)
>>> round(s["cer"], 4), round(s["char_accuracy"], 4), round(s["norm_edit_dis"], 4)
(0.0882, 0.9118, 0.923)
>>> round(s["positional_accuracy"], 4)  # index by index: a shift makes the rest wrong
0.7059
>>> round(s["valid_rate"], 4), s["empty_rate"], round(s["ms_per_image"], 1), round(s["ms_p95"], 1)
(0.25, 0.0, 20.0, 28.5)
>>> [round(a, 2) for a in s["per_position"][12:]]  # positions 13..17, from the alignment
[1.0, 0.75, 1.0, 1.0, 0.75]
>>> s["confusions"][:2]
[{'truth': '8', 'pred': 'B', 'count': 1}, {'truth': '2', 'pred': '∅', 'count': 1}]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rapidfuzz.distance import Levenshtein

#: Marks the missing side of an insertion or a deletion in confusion pairs.
GAP = "∅"
#: Positions reported even when the truth is shorter (a VIN has 17 characters).
VIN_LENGTH = 17

#: What each summary key means; ``report.json`` carries this dict under ``definitions``.
DEFINITIONS: dict[str, str] = {
    "answer": "the engine's output after the minimal clean-up: surrounding whitespace removed, "
    "upper case (nothing else: no label removal, no I/O/Q mapping)",
    "exact_match": "share of samples whose answer equals the truth",
    "exact_match_lenient": "share of samples where vin.normalize(answer) equals the truth: a VIN "
    "found somewhere in the output (labels and separators dropped, I/O/Q -> 1/0/0, the best "
    "17-character run); more generous than what a user receives",
    "cer": "corpus character error rate: sum over samples of the Levenshtein distance (answer vs "
    "truth, unit costs) / sum of truth lengths",
    "char_accuracy": "1 - cer (ISRI / ocreval character accuracy), not clamped: below 0 when the "
    "answers hold more errors than the truths hold characters",
    "norm_edit_dis": "PaddleOCR's RecMetric norm_edit_dis: 1 - mean over samples of "
    "Levenshtein distance / max(len(answer), len(truth))",
    "positional_accuracy": "share of truth characters equal to the answer's character at the "
    "same index (no alignment: one lost character makes the rest wrong; extra characters at the "
    "end cost nothing)",
    "valid_rate": "share of samples whose answer is a valid VIN (vin.is_valid)",
    "empty_rate": "share of samples whose answer is empty",
    "per_position": "for truth positions 1..17 (more if a truth is longer): share of truth "
    "characters the minimal edit alignment (RapidFuzz Levenshtein.opcodes) pairs with the same "
    "character; null where no truth reaches the position",
    "confusions": "most frequent (truth, answer) character pairs of that alignment that differ; "
    "'∅' marks the missing side of an insertion or deletion",
    "ms_per_image": "mean engine time per image in ms (a batch's time / its size)",
    "ms_p50": "median of the per-image times (numpy.percentile, linear)",
    "ms_p95": "95th percentile of the per-image times (numpy.percentile, linear)",
    "images_per_s": "1000 / ms_per_image",
}


def clean(text: str) -> str:
    """The minimal clean-up of an answer before scoring: surrounding whitespace, case.

    >>> clean("  1m8gdm9axkp042788\\n")
    '1M8GDM9AXKP042788'
    """
    return text.strip().upper()


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions each cost 1), from RapidFuzz.

    >>> levenshtein("KITTEN", "SITTING"), levenshtein("", "ABC"), levenshtein("ABC", "ABC")
    (3, 3, 0)
    """
    return int(Levenshtein.distance(a, b))


def align(truth: str, pred: str) -> list[tuple[str, str]]:
    """A minimal-cost alignment of ``truth`` and ``pred`` (RapidFuzz ``Levenshtein.opcodes``) as
    (truth char, pred char) pairs: deleted truth characters pair with :data:`GAP` on the right,
    inserted predicted characters with :data:`GAP` on the left.

    >>> align("ABC", "AC")
    [('A', 'A'), ('B', '∅'), ('C', 'C')]
    >>> align("AC", "AXC")
    [('A', 'A'), ('∅', 'X'), ('C', 'C')]
    """
    pairs: list[tuple[str, str]] = []
    for op in Levenshtein.opcodes(truth, pred):
        t, p = truth[op.src_start : op.src_end], pred[op.dest_start : op.dest_end]
        common = min(len(t), len(p))
        pairs += list(zip(t[:common], p[:common], strict=True))
        pairs += [(c, GAP) for c in t[common:]] + [(GAP, c) for c in p[common:]]
    return pairs


@dataclass(frozen=True)
class SampleScore:
    """What :meth:`VinMetric.update` scored for one pair (written to ``predictions.jsonl``)."""

    truth: str
    raw: str  # the engine's answer as given
    pred: str  # clean(raw): what is scored
    exact: bool
    lenient: str  # normalize(raw)
    exact_lenient: bool
    valid: bool
    matched: int  # truth characters the alignment pairs with the same character
    positional: int  # truth characters equal to pred's at the same index
    distance: int
    latency_s: float | None

    @property
    def cer(self) -> float:
        return self.distance / len(self.truth)

    @property
    def char_accuracy(self) -> float:
        """``1 - cer`` for this sample (may be negative)."""
        return 1 - self.cer

    @property
    def norm_edit_dis(self) -> float:
        """PaddleOCR's per-sample ``1 - distance / max(len(pred), len(truth))``."""
        return 1 - self.distance / max(len(self.pred), len(self.truth))


def _default_normalize(text: str) -> str:
    from vin_ocr.vin import normalize

    return normalize(text)


def _default_is_valid(text: str) -> bool:
    from vin_ocr.vin import is_valid

    return bool(is_valid(text))


_COUNTS = (
    "n",
    "exact",
    "exact_lenient",
    "valid",
    "empty",
    "matched",
    "positional",
    "distance",
    "norm_distance",
    "truth_chars",
)


class VinMetric:
    """Accumulates VIN reading scores; :meth:`summary` gives the headline numbers.

    Summary keys (defined in :data:`DEFINITIONS`): ``n``, ``exact_match``,
    ``exact_match_lenient``, ``cer``, ``char_accuracy``, ``norm_edit_dis``,
    ``positional_accuracy``, ``valid_rate``, ``empty_rate``, ``per_position`` (a list, ``None``
    where no truth reaches a position), ``confusions`` (``{"truth", "pred", "count"}``, most
    frequent first) and latency: ``ms_per_image``, ``ms_p50``, ``ms_p95``, ``images_per_s``
    (``None`` when no latency was given).

    ``normalize`` (the lenient measure's VIN finder) and ``is_valid`` default to
    :mod:`vin_ocr.vin`'s.
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
        self.n = self.exact = self.exact_lenient = self.valid = self.empty = 0
        self.matched = self.positional = self.distance = self.truth_chars = 0
        self.norm_distance = 0.0  # sum of per-sample distance / max(len(pred), len(truth))
        self.pos_correct: list[int] = []
        self.pos_total: list[int] = []
        self.confusions: Counter[tuple[str, str]] = Counter()
        self.latencies: list[float] = []

    def update(self, truth: str, pred: str, latency_s: float | None = None) -> SampleScore:
        """Score one answer against its label (both cleaned by :func:`clean`); returns the
        sample's score."""
        truth = clean(truth)
        if not truth:
            raise ValueError("VinMetric.update: empty truth (unlabelled samples cannot be scored)")
        raw, pred = pred, clean(pred)
        matched = pos = 0  # pos: index into truth
        for t, p in align(truth, pred):
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
        lenient = self.normalize(raw)
        score = SampleScore(
            truth=truth,
            raw=raw,
            pred=pred,
            exact=pred == truth,
            lenient=lenient,
            exact_lenient=lenient == truth,
            valid=self.is_valid(pred) if pred else False,
            matched=matched,
            positional=sum(t == p for t, p in zip(truth, pred, strict=False)),
            distance=levenshtein(truth, pred),
            latency_s=latency_s,
        )
        self.n += 1
        self.exact += score.exact
        self.exact_lenient += score.exact_lenient
        self.valid += score.valid
        self.empty += not pred
        self.matched += matched
        self.positional += score.positional
        self.distance += score.distance
        self.norm_distance += 1 - score.norm_edit_dis
        self.truth_chars += len(truth)
        if latency_s is not None:
            self.latencies.append(float(latency_s))
        return score

    def merge(self, other: VinMetric) -> VinMetric:
        """Add ``other``'s counts into this metric (e.g. from another process); returns self."""
        for name in _COUNTS:
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
        """The headline numbers (see :data:`DEFINITIONS`); ``None`` before any update."""
        n = self.n
        lat = np.asarray(self.latencies, dtype=float) * 1000
        mean_ms = float(lat.mean()) if lat.size else None
        cer = self.distance / self.truth_chars if n else None
        npos = max(VIN_LENGTH, len(self.pos_total))
        return {
            "n": n,
            "exact_match": self.exact / n if n else None,
            "exact_match_lenient": self.exact_lenient / n if n else None,
            "cer": cer,
            "char_accuracy": 1 - cer if cer is not None else None,
            "norm_edit_dis": 1 - self.norm_distance / n if n else None,
            "positional_accuracy": self.positional / self.truth_chars if n else None,
            "valid_rate": self.valid / n if n else None,
            "empty_rate": self.empty / n if n else None,
            "ms_per_image": mean_ms,
            "ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "ms_p95": float(np.percentile(lat, 95)) if lat.size else None,
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
