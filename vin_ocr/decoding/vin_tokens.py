"""Which tokens of a tokenizer spell VIN characters, and the logits processor built on them.

The rules are the ones :mod:`vin_ocr.decoding.vlm` describes: 17 characters of the VIN alphabet,
then only the end token; where the first two characters (the WMI's, through
:func:`vin_ocr.vin.check_digit_mandatory`) make the check digit mandatory, position 9 is
``0``-``9``/``X`` and position 10 a model-year code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from transformers.generation.logits_process import LogitsProcessor

from vin_ocr.vin import ALPHABET, VIN_LENGTH, YEAR_CODES, check_digit_mandatory

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
