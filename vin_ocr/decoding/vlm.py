"""VIN-constrained generation for the vision-language models (LFM2-VL, DeepSeek-OCR-2).

:class:`VinLogitsProcessor` lets a model generate only what spells a VIN: 17 characters of the
VIN alphabet (upper case, no ``I``/``O``/``Q``), then only the end token, so generation stops
after exactly 17 characters. It works on the tokenizer's vocabulary as it is: every token is
decoded *in context* (after a ``0``, so SentencePiece ``▁`` and byte-level ``Ġ`` prefixes come
out as the space they are) and a token is usable where all its characters fit the next
positions, so multi-character tokens (``1HG``, ``00``) are allowed wherever they fit. A leading
space is allowed once, inside the first token (``Ġ1HG``), never as a token of its own nor inside
the VIN.

Position rules follow the VIN's region, decided by its first two characters (the WMI's, through
:func:`vin_ocr.vin.check_digit_mandatory`) as soon as they are generated: where the check digit
is mandatory (North America ``1``-``5`` and ``7F``-``7Z``, China ``L`` and ``H``) position 9 is
``0``-``9``/``X`` and position 10 a model-year code (never ``U``, ``Z``, ``0``). Elsewhere both
are free: VW's ``WVWZZZ...`` has ``Z`` in position 9 by design, and New Zealand's ``7A``-``7E``
need no check digit.

The check-digit search rescores the n-best list of a constrained beam search (:func:`choose`):
if the best sequence is a mandatory-region VIN whose check digit fails, the most probable
mandatory-region sequence on the list whose check digit holds is returned instead, with the best
one kept as ``Reading.unconstrained``. Optional-region readings (Europe, ...) are never changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.generation.logits_process import LogitsProcessor, LogitsProcessorList

from vin_ocr.reading import Reading
from vin_ocr.vin import (
    ALPHABET,
    VIN_LENGTH,
    YEAR_CODES,
    check_digit_mandatory,
    check_digit_ok,
    normalize,
)

__all__ = [
    "Candidate",
    "VinLogitsProcessor",
    "VinTokens",
    "VlmDecoding",
    "choose",
    "eos_ids",
    "generate_candidates",
    "generation_kwargs",
    "read_vins",
    "token_logprobs",
    "token_texts",
]

_VIN_CHARS = frozenset(ALPHABET)
_CHECK_CHARS = frozenset("0123456789X")
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
#: The first two characters of every VIN with a mandatory check digit (vin.check_digit_mandatory).
_MANDATORY_WMI = frozenset(
    a + b for a in ALPHABET for b in ALPHABET if check_digit_mandatory(a + b)
)
#: ``_MANDATORY[i, j]``: a VIN starting ``ALPHABET[i] + ALPHABET[j]`` has a mandatory check digit.
_MANDATORY = torch.tensor([[a + b in _MANDATORY_WMI for b in ALPHABET] for a in ALPHABET])


_CHECK_POS, _YEAR_POS = 8, 9  # positions 9 and 10, 0-based


@dataclass
class VlmDecoding:
    """The ``decoding`` keys of a VLM model config (``configs/model/lfm2_5_vl.yaml``, ...)."""

    #: Only VIN-shaped answers: 17 VIN characters, position rules, then the end token.
    constrained: bool = True
    #: Rescore the n-best list for a correct check digit where it is mandatory.
    check_digit_search: bool = True
    #: Beam width; the check-digit search rescores all ``num_beams`` finished beams.
    num_beams: int = 4
    #: Extra ``model.generate`` keyword arguments (``repetition_penalty``, ...); they win.
    generation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise ValueError(f"decoding.num_beams must be >= 1, got {self.num_beams}")
        if self.check_digit_search and self.num_beams < 2:
            raise ValueError(
                "decoding.check_digit_search rescores the n-best list of a beam search: "
                f"set decoding.num_beams >= 2 (got {self.num_beams}) or check_digit_search: false"
            )


def _fits(chars: str, start: int, strict: bool) -> bool:
    """``chars`` may fill positions ``start``.. (0-based); ``strict``: mandatory-region rules."""
    if start + len(chars) > VIN_LENGTH:
        return False
    if not strict:
        return True
    for pos, ch in enumerate(chars, start):
        if (pos == _CHECK_POS and ch not in _CHECK_CHARS) or (
            pos == _YEAR_POS and ch not in YEAR_CODES
        ):
            return False
    return True


def token_texts(tokenizer: Any) -> list[str]:
    """The text each token id adds when it follows other text (``""`` for special tokens)."""
    ref = tokenizer.encode("0", add_special_tokens=False)[-1:]
    head = tokenizer.decode(ref)
    if not ref or not head:
        raise ValueError("the tokenizer cannot encode the character '0'")
    pairs = [[ref[0], i] for i in range(len(tokenizer))]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the Rust tokenizer directly: ~10x faster than batch_decode
        decoded = backend.decode_batch(pairs, skip_special_tokens=False)
    else:
        decoded = tokenizer.batch_decode(
            pairs, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
    texts = [text[len(head) :] if text.startswith(head) else "" for text in decoded]
    for i in tokenizer.all_special_ids:
        texts[i] = ""
    return texts


class VinTokens:
    """Which tokens of a vocabulary spell VIN characters and where in a VIN each may go.

    ``allowed[n, strict]`` is the mask of tokens that may follow ``n`` VIN characters
    (``strict``: the first two characters are of a mandatory-region VIN); ``allowed[17]`` holds
    only the end tokens. At ``n = 0`` a token's own characters decide its rules; at ``n = 1``
    the first character and the token's do: ``after_first[i]`` is the mask after the first
    character ``ALPHABET[i]``. Build it once per tokenizer: it decodes every token (~1 s for
    150 k).
    """

    def __init__(
        self,
        tokenizer: Any,
        eos_token_id: int | Sequence[int] | None = None,
        *,
        leading_space: bool = True,
    ) -> None:
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        self.eos_ids = sorted({eos} if isinstance(eos, int) else set(eos or ()))
        if not self.eos_ids:
            raise ValueError("constrained decoding needs an end token: the tokenizer has no eos")
        texts = token_texts(tokenizer)
        piece = re.compile(f"{' ?' if leading_space else ''}[{ALPHABET}]{{1,{VIN_LENGTH}}}")
        #: token id -> its VIN characters, for the tokens that spell some.
        self.pieces: dict[int, str] = {}
        where: list[list[list[int]]] = [[[], []] for _ in range(VIN_LENGTH)]
        for i, text in enumerate(texts):
            if not piece.fullmatch(text):
                continue
            chars = text.lstrip(" ")
            self.pieces[i] = chars
            own = chars[:2] in _MANDATORY_WMI  # one character never reaches position 9 anyway
            for start in range(1 if chars != text else VIN_LENGTH):
                for strict in (0, 1):
                    if _fits(chars, start, bool(strict) if start else own):
                        where[start][strict].append(i)
        size = max(len(texts), max(self.eos_ids) + 1)
        self.length = torch.zeros(size, dtype=torch.long)
        #: index in ALPHABET of each token's first and second character (-1: none)
        self.first_char = torch.zeros(size, dtype=torch.long)
        self.second_char = torch.full((size,), -1, dtype=torch.long)
        ids = torch.tensor(list(self.pieces), dtype=torch.long)
        self.length[ids] = torch.tensor([len(c) for c in self.pieces.values()])
        self.first_char[ids] = torch.tensor([_INDEX[c[0]] for c in self.pieces.values()])
        self.second_char[ids] = torch.tensor(
            [_INDEX[c[1]] if len(c) > 1 else -1 for c in self.pieces.values()]
        )
        self.after_first = torch.zeros(len(ALPHABET), size, dtype=torch.bool)
        for first, a in _INDEX.items():  # the second character, the token's first, decides
            for strict, ids_ in enumerate(where[1]):
                keep = [i for i in ids_ if (first + self.pieces[i][0] in _MANDATORY_WMI) == strict]
                self.after_first[a, keep] = True
        self.allowed = torch.zeros(VIN_LENGTH + 1, 2, size, dtype=torch.bool)
        for start, by_rule in enumerate(where):
            for strict, allowed_ids in enumerate(by_rule):
                self.allowed[start, strict, allowed_ids] = True
        self.allowed[VIN_LENGTH, :, self.eos_ids] = True
        singles = {c for c in self.pieces.values() if len(c) == 1}
        if missing := sorted(_VIN_CHARS - singles):
            raise ValueError(
                f"the tokenizer has no single-character token for {''.join(missing)!r}: "
                "constrained decoding needs one per VIN character"
            )
        self._on: dict[tuple[int, torch.device], tuple[torch.Tensor, ...]] = {}

    def tables(self, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """``(length, first_char, second_char, allowed, after_first, mandatory)``, the token
        tables padded to ``width`` tokens, on ``device``."""
        key = (width, device)
        if key not in self._on:
            pad = max(0, width - self.length.shape[0])
            tables = (
                torch.nn.functional.pad(self.length, (0, pad))[:width],
                torch.nn.functional.pad(self.first_char, (0, pad))[:width],
                torch.nn.functional.pad(self.second_char, (0, pad), value=-1)[:width],
                torch.nn.functional.pad(self.allowed, (0, pad))[..., :width],
                torch.nn.functional.pad(self.after_first, (0, pad))[..., :width],
                _MANDATORY.long(),
            )
            self._on[key] = tuple(t.to(device) for t in tables)
        return self._on[key]


class VinLogitsProcessor(LogitsProcessor):
    """Allow only tokens that continue a VIN (see the module docstring), then only the end token.

    ``vocab`` is a tokenizer or a prebuilt :class:`VinTokens`; ``prompt_length`` is the width of
    the (left-padded) prompt batch: what follows it in ``input_ids`` is the answer. It keeps no
    state between steps, so beam search may reorder rows freely.
    """

    def __init__(self, vocab: Any, prompt_length: int) -> None:
        self.tokens = vocab if isinstance(vocab, VinTokens) else VinTokens(vocab)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        tables = self.tokens.tables(scores.shape[-1], scores.device)
        length, first_char, second_char, allowed, after_first, mandatory = tables
        answer = input_ids[:, self.prompt_length :]
        if not answer.shape[1]:
            return scores.masked_fill(~allowed[0, 0], float("-inf"))
        count = length[answer].sum(1).clamp(max=VIN_LENGTH)
        first = first_char[answer[:, 0]]
        second = second_char[answer[:, 0]]  # -1: the first token is one character
        after = first_char[answer[:, min(1, answer.shape[1] - 1)]]
        strict = mandatory[first, torch.where(second >= 0, second, after)]
        mask = torch.where((count == 1)[:, None], after_first[first], allowed[count, strict])
        return scores.masked_fill(~mask, float("-inf"))


@dataclass(frozen=True)
class Candidate:
    """One generated answer: its text (whitespace stripped), its score (beam search: the beam
    score, with ``length_penalty: 0`` the model's log-probability of the whole answer, end token
    included; greedy: the log-probability under the decoding distribution) and each character's
    probability under the decoding distribution (renormalised over the allowed tokens when
    constrained)."""

    text: str
    logprob: float
    char_conf: tuple[float, ...]


def choose(candidates: Sequence[Candidate], search: bool = True) -> Reading:
    """The reading from an n-best list (best first): the first candidate, or, when ``search`` and
    it is a mandatory-region VIN whose check digit fails, the best mandatory-region one whose
    check digit holds (``unconstrained`` is then the first candidate, also when none holds).

    >>> c = [Candidate("1M8GDM9A3KP042788", -1.0, (0.9,) * 17),
    ...      Candidate("1M8GDM9AXKP042788", -2.0, (0.8,) * 17)]
    >>> choose(c).text, choose(c).unconstrained, choose(c, search=False).text
    ('1M8GDM9AXKP042788', '1M8GDM9A3KP042788', '1M8GDM9A3KP042788')
    """
    if not candidates:
        return Reading("")
    best = candidates[0]
    vin = normalize(best.text)
    if not search or not check_digit_mandatory(vin) or _digit_ok(vin):
        return _answer(best)
    pick = next((c for c in candidates if _valid_mandatory(normalize(c.text))), best)
    return _answer(pick, unconstrained=vin)


def _answer(c: Candidate, unconstrained: str | None = None) -> Reading:
    """``c`` as the VIN its text holds (:func:`vin_ocr.vin.normalize`; free generation may add a
    label or spaces), with the confidences of those characters where they are one piece.

    >>> r = _answer(Candidate("VIN: 1hgcm82633a004352", -1.0, (0.1,) * 5 + (0.9,) * 17))
    >>> r.text, r.char_conf == (0.9,) * 17
    ('1HGCM82633A004352', True)
    """
    vin = normalize(c.text)
    if vin == c.text:
        return Reading(vin, unconstrained=unconstrained, char_conf=c.char_conf)
    start = c.text.upper().translate(str.maketrans("IOQ", "100")).find(vin)
    conf = c.char_conf[start : start + len(vin)] if start >= 0 and vin else None
    return Reading(vin, unconstrained=unconstrained, char_conf=conf)


def _digit_ok(vin: str) -> bool:
    return len(vin) == VIN_LENGTH and check_digit_ok(vin)


def _valid_mandatory(vin: str) -> bool:
    """A replacement stays in a mandatory region (never turns into a European VIN)."""
    return _digit_ok(vin) and check_digit_mandatory(vin)


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The end tokens generation stops at: the model's generation config's and the tokenizer's."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list | tuple) else [] if eos is None else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def generation_kwargs(
    decoding: VlmDecoding,
    tokenizer: Any,
    ends: Sequence[int],
    processor: VinLogitsProcessor | None,
    max_new_tokens: int,
) -> dict[str, Any]:
    """``model.generate`` keyword arguments for ``decoding`` (its ``generation`` dict wins)."""
    beams = decoding.num_beams
    kwargs: dict[str, Any] = {
        # Constrained: 17 one-character tokens and the end token at most.
        "max_new_tokens": VIN_LENGTH + 1 if processor is not None else max_new_tokens,
        "do_sample": False,
        "num_beams": beams,
        "num_return_sequences": beams if decoding.check_digit_search else 1,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": list(ends),
        "return_dict_in_generate": True,
        "output_scores": True,  # kept: rows x vocabulary floats per step, for char_conf
    }
    if beams > 1:
        # Rank by the answer's probability, not per token: a VIN spelled with fewer
        # multi-character tokens must not be favoured.
        kwargs.update(length_penalty=0.0, early_stopping=True)
    if processor is not None:
        kwargs["logits_processor"] = LogitsProcessorList([processor])
    kwargs.update(decoding.generation)
    return kwargs


@torch.no_grad()
def generate_candidates(
    model: Any,
    tokenizer: Any,
    inputs: Mapping[str, Any],
    decoding: VlmDecoding,
    *,
    tokens: VinTokens | None = None,
    max_new_tokens: int = 24,
) -> list[list[Candidate]]:
    """Generate after the left-padded prompts ``inputs`` (already on the model's device);
    return each prompt's candidates, best first (one, or ``num_beams`` for the search).

    ``tokens`` is the tokenizer's :class:`VinTokens` (built here when constrained and None).
    """
    width = inputs["input_ids"].shape[1]
    ends = eos_ids(model, tokenizer)
    processor = None
    if decoding.constrained:
        processor = VinLogitsProcessor(tokens or VinTokens(tokenizer, ends), width)
    out = model.generate(
        **inputs, **generation_kwargs(decoding, tokenizer, ends, processor, max_new_tokens)
    )
    answers = out.sequences[:, width:]
    logp = token_logprobs(out.scores, answers, getattr(out, "beam_indices", None))
    beam_scores = getattr(out, "sequences_scores", None)
    per_prompt = len(answers) // len(inputs["input_ids"])
    found = []
    for i, ids in enumerate(answers.tolist()):
        n = next((k + 1 for k, t in enumerate(ids) if t in ends), len(ids))
        total = float(logp[i, :n].sum() if beam_scores is None else beam_scores[i])
        found.append(_candidate(tokenizer, ids[:n], total, logp[i, :n].exp().tolist()))
    return [found[j : j + per_prompt] for j in range(0, len(found), per_prompt)]


def token_logprobs(
    steps: Sequence[torch.Tensor], answers: torch.Tensor, beam_rows: torch.Tensor | None
) -> torch.Tensor:
    """Log-softmax of each step's scores at the token each answer took, from the row (beam)
    that produced it; 0 after a beam finished."""
    n, length = answers.shape
    out = torch.zeros(n, length)
    for t in range(min(length, len(steps))):
        step = steps[t]
        rows = torch.arange(n, device=step.device) if beam_rows is None else beam_rows[:, t]
        rows = rows.to(step.device)
        picked = step.float().log_softmax(-1)[rows.clamp(min=0), answers[:, t].to(step.device)]
        out[:, t] = torch.where(rows >= 0, picked, torch.zeros_like(picked)).cpu()
    return out


def _candidate(
    tokenizer: Any, ids: Sequence[int], logprob: float, probs: Sequence[float]
) -> Candidate:
    """The stripped text of ``ids`` with each character's probability: that of the token that
    produced the character (a multi-character token gives each of its characters its own)."""
    conf: list[float] = []
    for k in range(len(ids)):
        produced = len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True))
        conf += [probs[k]] * max(0, produced - len(conf))
    full = tokenizer.decode(ids, skip_special_tokens=True)
    conf = (conf + [0.0] * len(full))[: len(full)]
    start = len(full) - len(full.lstrip())
    text = full.strip()
    return Candidate(text, logprob, tuple(conf[start : start + len(text)]))


def read_vins(
    model: Any,
    tokenizer: Any,
    inputs: Mapping[str, Any],
    decoding: VlmDecoding,
    *,
    tokens: VinTokens | None = None,
    max_new_tokens: int = 24,
) -> list[Reading]:
    """One :class:`Reading` per prompt: :func:`generate_candidates`, then :func:`choose`."""
    candidates = generate_candidates(
        model, tokenizer, inputs, decoding, tokens=tokens, max_new_tokens=max_new_tokens
    )
    return [choose(c, decoding.check_digit_search) for c in candidates]
