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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.generation.logits_process import LogitsProcessorList

from vin_ocr.decoding.vin_tokens import VinLogitsProcessor, VinTokens, token_texts
from vin_ocr.reading import Reading
from vin_ocr.vin import (
    VIN_LENGTH,
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
