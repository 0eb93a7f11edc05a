"""What every family's tiny random model shares: the offline character-level tokenizer and a
text image to read.

Tests and ``debug=smoke`` runs use tiny models (``cfg.tiny: true``): the same transformers classes
as the real checkpoints, built from small configs with random weights, and a processor around a
tokenizer made here (no Hub access). Each family module builds its own (its ``FamilyFacts.tiny``
says which model-config keys do), with the dimensions and traps measured in
``shared/notes/offline-models.md``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

#: Every printable ASCII character plus newline and tab: enough for prompts and any VIN.
CHARACTERS = "".join(ch for ch in string.printable if ch not in "\r\x0b\x0c")


def char_tokenizer(
    specials: Sequence[str],
    *,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str = "<unk>",
    add_bos: bool = False,
    **named: str,
) -> Any:
    """A character-level ``PreTrainedTokenizerFast``: one id per special token, then one per
    character of :data:`CHARACTERS`. Decoding joins characters (``decoders.Fuse``). With
    ``add_bos`` the tokenizer prepends ``bos`` when asked for special tokens (as Llama-style
    tokenizers such as DeepSeek's do). ``named``: model-specific named special tokens, e.g.
    ``image_token="<image>"`` (the tokenizer then has ``image_token``/``image_token_id``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in (*specials, *named.values(), unk, *CHARACTERS):
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    # Split into single characters ("(?s)." is rejected by Oniguruma; "[\s\S]" is not).
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    if add_bos:
        if bos is None:
            raise ValueError("add_bos needs a bos token")
        core.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        additional_special_tokens=[t for t in specials if t not in (bos, eos, pad)],
        **named,
    )
    return tokenizer


def pad_vocab(n: int, multiple: int = 8) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (the vocabulary size of a tiny model)."""
    return (n + multiple - 1) // multiple * multiple


def set_generation_ids(model: Any, tokenizer: Any) -> None:
    """The tokenizer's pad, eos and bos ids in the model's generation config."""
    gen = model.generation_config
    gen.pad_token_id = tokenizer.pad_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.bos_token_id = tokenizer.bos_token_id


def text_image(text: str, *, inverted: bool = False, size: tuple[int, int] = (192, 32)) -> Any:
    """A small RGB image with ``text`` drawn on it (black on white, or white on black)."""
    from PIL import Image, ImageDraw, ImageFont

    ink, paper = ("white", "black") if inverted else ("black", "white")
    image = Image.new("RGB", size, paper)
    try:
        font: Any = ImageFont.load_default(size=max(8, size[1] // 2))
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    ImageDraw.Draw(image).text((2, size[1] // 4), text, fill=ink, font=font)
    return image
