"""CTC decoding for PP-OCR: the greedy reading and an exact search for a valid VIN.

``probs`` is a (T, C) array of per-frame softmax probabilities, class 0 the CTC blank and
``charset[i]`` the character of class ``i`` (``charset[0] == ""``).

:func:`ctc_read` decodes greedily (best path: argmax per frame, merge repeats, drop blanks).
When the reading belongs to a region where the check digit is mandatory
(:func:`vin_ocr.vin.check_digit_mandatory`: North America ``1``-``5`` and ``7F``-``7Z``, China
``L`` and ``H``) and is not a valid VIN there (17 characters, right
check digit, a model-year code in position 10), it searches for the most probable VIN that is:
a Viterbi pass over the CTC alignments whose state is (characters emitted, last symbol for the
repeat rule, weighted sum mod 11), so a dropped or doubled character is repaired as well as a
misread one. The search keeps the WMI's first two characters in a mandatory region (never
``7A``-``7E``: New Zealand), position 9 in ``0``-``9``/``X`` and position 10 off ``U``, ``Z``
and ``0``.

A misread first character hides a mandatory-region VIN (``MGKT1G87N1145940X``: the ``L`` of
``LMGKT...`` lost, an ``X`` gained). Where the reading starts with another character, is 17 +- 2
characters long and is *not* a clean VIN (:func:`reads_clean`: 17 VIN characters ending in four
digits), the same search runs too, and its VIN is taken only when its alignment costs at most
``first_char_margin`` nats more than the greedy path's (the model gave the repair real
probability). A European (or any optional-region) reading that is clean is returned as read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vin_ocr.reading import Reading
from vin_ocr.vin import (
    ALPHABET,
    TRANSLITERATION,
    VIN_LENGTH,
    WEIGHTS,
    YEAR_CODES,
    check_digit_mandatory,
    check_digit_ok,
)

__all__ = [
    "FIRST_CHAR_MARGIN",
    "MAX_LENGTH_OFF",
    "ctc_read",
    "greedy",
    "greedy_spans",
    "needs_search",
    "reads_clean",
    "vin_search",
]

#: The search runs on greedy readings of 17 +- this many characters (a longer or shorter one is
#: not a VIN with a slip but something else, and forcing 17 characters onto it invents a VIN).
MAX_LENGTH_OFF = 2
#: How many nats the first-character search's VIN may cost beyond the greedy path (see above).
FIRST_CHAR_MARGIN = 6.0

_CHECK_POS = 8  # position 9, 0-based
_YEAR_POS = 9
#: First characters of a mandatory-region WMI (vin.check_digit_mandatory on the first two).
_MANDATORY_FIRST = frozenset(
    c for c in ALPHABET if any(check_digit_mandatory(c + x) for x in ALPHABET)
)
#: First characters whose region the second decides, with the second characters that make the
#: check digit mandatory (``7``: ``7F``-``7Z`` and ``70``-``79`` United States, not ``7A``-``7E``).
_SECOND_DECIDES = {
    c: frozenset(x for x in ALPHABET if check_digit_mandatory(c + x))
    for c in _MANDATORY_FIRST
    if not all(check_digit_mandatory(c + x) for x in ALPHABET)
}
_FLOOR = 1e-30  # probabilities are clipped here before the log
_ALPHABET_SET = frozenset(ALPHABET)


def greedy(probs: np.ndarray, charset: Sequence[str]) -> tuple[str, tuple[float, ...]]:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks. Each character's
    confidence is the highest probability among the frames that emitted it."""
    probs = _check(probs, charset)
    best = probs.argmax(1)
    conf = probs[np.arange(len(best)), best]
    starts = np.flatnonzero((best != 0) & np.r_[True, best[1:] != best[:-1]])
    ends = np.r_[starts, len(best)][1:]
    text = "".join(charset[best[s]] for s in starts)
    # A run ends where its symbol changes; blanks inside [start, next start) have other labels.
    confs = tuple(
        float(conf[s:e][best[s:e] == best[s]].max()) for s, e in zip(starts, ends, strict=True)
    )
    return text, confs


def greedy_spans(probs: np.ndarray, charset: Sequence[str]) -> list[tuple[str, int, int]]:
    """Best-path decoding with where each character was read: (character, first frame, last
    frame + 1) per emitted character; frame ``t`` covers input columns ``[8t, 8t + 8)``.

    >>> p = np.eye(3)[[1, 1, 0, 2, 0, 0]]
    >>> greedy_spans(p, ["", "A", "B"])
    [('A', 0, 2), ('B', 3, 4)]
    """
    probs = _check(probs, charset)
    best = probs.argmax(1)
    spans = []
    t = 0
    while t < len(best):
        end = t + 1
        while end < len(best) and best[end] == best[t]:
            end += 1
        if best[t] != 0:
            spans.append((charset[best[t]], t, end))
        t = end
    return spans


def _check(probs: np.ndarray, charset: Sequence[str]) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(charset):
        raise ValueError(f"probs must be (T, {len(charset)}), got {probs.shape}")
    if len(charset) and charset[0] != "":
        raise ValueError(f"charset[0] must be the CTC blank '', not {charset[0]!r}")
    return probs


def reads_clean(text: str) -> bool:
    """17 VIN characters ending in four digits: a reading the first-character search leaves
    alone (a European VIN that reads cleanly is never changed).

    >>> reads_clean("WVWZZZ1JZXW000001"), reads_clean("MGKT1G87N1145940X")
    (True, False)
    """
    return len(text) == VIN_LENGTH and all(c in _ALPHABET_SET for c in text) and text[-4:].isdigit()


def _first_char_candidate(text: str) -> bool:
    """A reading whose first character is outside the mandatory regions but which could be a
    mandatory-region VIN with its first character misread, lost or preceded by noise."""
    return (
        bool(text)
        and not check_digit_mandatory(text)
        and abs(len(text) - VIN_LENGTH) <= MAX_LENGTH_OFF
        and not reads_clean(text)
    )


def needs_search(text: str) -> bool:
    """Whether the search runs on greedy reading ``text``: a mandatory-region reading (its WMI,
    ``vin.check_digit_mandatory``) that is not a valid VIN there, and at most
    :data:`MAX_LENGTH_OFF` characters longer or shorter than 17."""
    if not text or not check_digit_mandatory(text):
        return False
    if abs(len(text) - VIN_LENGTH) > MAX_LENGTH_OFF:
        return False
    return not (len(text) == VIN_LENGTH and check_digit_ok(text) and text[_YEAR_POS] in YEAR_CODES)


def _tables(
    chars: str, first: frozenset[str], second: frozenset[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per position n (0-16) and character: the step added to the running sum mod 11, and 0 or
    -inf for allowed / forbidden (position 1 in ``first``, position 2 in ``second`` if given).
    The running sum is sum(weight * value) - check value, so a VIN satisfies its check digit
    exactly when it ends at 0."""
    shift = np.zeros((VIN_LENGTH, len(chars)), dtype=np.int64)
    allowed = np.ones((VIN_LENGTH, len(chars)), dtype=bool)
    for n in range(VIN_LENGTH):
        for k, c in enumerate(chars):
            if n == _CHECK_POS:
                allowed[n, k] = c.isdigit() or c == "X"
                shift[n, k] = -(10 if c == "X" else int(c) if c.isdigit() else 0) % 11
            else:
                shift[n, k] = WEIGHTS[n] * TRANSLITERATION[c] % 11
    allowed[0] = [c in first for c in chars]
    if second is not None:
        allowed[1] = [c in second for c in chars]
    allowed[_YEAR_POS] = [c in YEAR_CODES for c in chars]
    return shift, np.where(allowed, 0.0, -np.inf)


def vin_search(
    probs: np.ndarray, charset: Sequence[str]
) -> tuple[str, float, tuple[float, ...]] | None:
    """The most probable CTC alignment (Viterbi) that spells a 17-character VIN with a correct
    check digit, the first character of a mandatory region and a model-year code in position
    10. Returns (VIN, log-probability of that alignment, per-character confidence: the highest
    probability among the frames that emitted the character), or None when no alignment fits
    (fewer frames than the VIN needs).

    The region is the WMI's (:func:`vin_ocr.vin.check_digit_mandatory`): a first pass allows every
    first character of a mandatory region; where its VIN's first two characters are not (``7A``-
    ``7E``), the best of the passes that split the region by the second character is taken."""
    probs = _check(probs, charset)
    found = _viterbi(probs, charset, _MANDATORY_FIRST)
    if found is None or check_digit_mandatory(found[0]):
        return found  # the best over a superset, and inside the set: the best of the set
    passes = [_viterbi(probs, charset, _MANDATORY_FIRST - _SECOND_DECIDES.keys())]
    passes += [_viterbi(probs, charset, frozenset(c), xs) for c, xs in _SECOND_DECIDES.items()]
    return max((f for f in passes if f is not None), key=lambda f: f[1], default=None)


def _viterbi(
    probs: np.ndarray,
    charset: Sequence[str],
    first: frozenset[str],
    second: frozenset[str] | None = None,
) -> tuple[str, float, tuple[float, ...]] | None:
    """:func:`vin_search` with position 1 in ``first`` and position 2 in ``second`` (if given)."""
    cls = [i for i, c in enumerate(charset) if c in ALPHABET and i > 0]
    chars = "".join(charset[i] for i in cls)
    logp = np.log(np.clip(probs[:, [0, *cls]], _FLOOR, None))  # (T, K): blank + VIN chars
    steps, k = logp.shape
    shift, mask = _tables(chars, first, second)  # (17, K-1)
    s_idx = np.arange(11)
    # Source sum of an emission of character c as the (n+1)-th character ending at sum s.
    src = (s_idx[None, None, :] - shift[:, :, None]) % 11  # (17, K-1, 11)
    rows = np.arange(VIN_LENGTH)[:, None, None]
    char_ids = np.arange(1, k)[None, :, None]

    score = np.full((VIN_LENGTH + 1, k, 11), -np.inf)  # (chars emitted, last symbol, sum)
    score[0, 0, 0] = 0.0
    back_l = np.zeros((steps, VIN_LENGTH + 1, k, 11), dtype=np.int8)  # previous last symbol
    back_emit = np.zeros((steps, VIN_LENGTH + 1, k, 11), dtype=bool)  # frame emitted a char
    for t in range(steps):
        top1 = score.argmax(1)  # (n, s): best previous symbol, and top2 best
        best1 = np.take_along_axis(score, top1[:, None], 1)[:, 0]
        rest = score.copy()
        np.put_along_axis(rest, top1[:, None], -np.inf, 1)
        top2 = rest.argmax(1)
        best2 = np.take_along_axis(rest, top2[:, None], 1)[:, 0]

        new = np.empty_like(score)
        new[:, 0] = best1 + logp[t, 0]  # a blank frame after any symbol
        back_l[t, :, 0] = top1
        new[:, 1:] = score[:, 1:] + logp[t, 1:, None]  # the same character repeated
        back_l[t, :, 1:] = np.arange(1, k)[None, :, None]
        # A new character: from the best previous symbol other than itself, sum shifted.
        f, b1 = top1[rows, src], best1[rows, src]  # (17, K-1, 11)
        same = f == char_ids
        emit = np.where(same, best2[rows, src], b1) + logp[t, 1:, None] + mask[:, :, None]
        take = emit > new[1:, 1:]
        new[1:, 1:] = np.where(take, emit, new[1:, 1:])
        back_emit[t, 1:, 1:] = take
        back_l[t, 1:, 1:] = np.where(take, np.where(same, top2[rows, src], f), back_l[t, 1:, 1:])
        score = new

    last = int(score[VIN_LENGTH, :, 0].argmax())
    total = float(score[VIN_LENGTH, last, 0])
    if not np.isfinite(total):
        return None
    text: list[str] = [""] * VIN_LENGTH
    conf = [0.0] * VIN_LENGTH
    n, s = VIN_LENGTH, 0
    for t in range(steps - 1, -1, -1):
        if last:
            text[n - 1] = chars[last - 1]
            conf[n - 1] = max(conf[n - 1], float(probs[t, cls[last - 1]]))
        prev = int(back_l[t, n, last, s])
        if back_emit[t, n, last, s]:
            n, s = n - 1, int(src[n - 1, last - 1, s])
        last = prev
    return "".join(text), total, tuple(conf)


def _greedy_logp(probs: np.ndarray) -> float:
    """Log-probability of the best path (the greedy alignment)."""
    p = np.asarray(probs, dtype=np.float64)
    return float(np.log(np.clip(p.max(1), _FLOOR, None)).sum())


def ctc_read(
    probs: np.ndarray,
    charset: Sequence[str],
    search: bool = True,
    first_char_margin: float | None = FIRST_CHAR_MARGIN,
) -> Reading:
    """Read one CTC output: the greedy reading, or, with ``search`` on, the most probable valid
    VIN where the greedy reading is an invalid one of a mandatory-region VIN, or (unless
    ``first_char_margin`` is None) one whose first character was misread and whose repair costs
    at most ``first_char_margin`` nats (see the module docstring). ``unconstrained`` holds the
    greedy reading whenever a search ran (also when it kept it) and is None otherwise."""
    text, confs = greedy(probs, charset)
    if not search:
        return Reading(text, char_conf=confs)
    if needs_search(text):
        found = vin_search(probs, charset)
        if found is None:
            return Reading(text, unconstrained=text, char_conf=confs)
        vin, _, vin_confs = found
        return Reading(vin, unconstrained=text, char_conf=vin_confs)
    if first_char_margin is not None and _first_char_candidate(text):
        found = vin_search(probs, charset)
        if found is not None and _greedy_logp(probs) - found[1] <= first_char_margin:
            return Reading(found[0], unconstrained=text, char_conf=found[2])
        return Reading(text, unconstrained=text, char_conf=confs)
    return Reading(text, char_conf=confs)
