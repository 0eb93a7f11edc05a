"""Tiny random models of the real architectures, and the offline character-level tokenizer.

Tests and ``debug=smoke`` runs use these (``cfg.tiny: true``): the same transformers classes as
the real checkpoints (``Lfm2VlForConditionalGeneration``, ``DeepseekOcr2ForConditionalGeneration``),
built from small configs with random weights, and a processor around a tokenizer made here
(no Hub access). The dimensions and traps are those measured in
``shared/notes/offline-models.md``: for DeepSeek-OCR-2 the processor's image-token count and the
model's query count only agree with a 768-pixel global view, no local crops and a SAM patch of 64.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

#: Every printable ASCII character plus newline and tab: enough for prompts and any VIN.
CHARACTERS = "".join(ch for ch in string.printable if ch not in "\r\x0b\x0c")

# Special tokens, spelled as in the real tokenizers.
LFM2_SPECIALS = (
    "<|pad|>",
    "<|startoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<image>",
    "<|image_start|>",
    "<|image_end|>",
    "<|img_thumbnail|>",
    # Tile markers, used only when image splitting is on (at most 4 x 4 tiles here).
    *(f"<|img_row_{r}_col_{c}|>" for r in range(1, 5) for c in range(1, 5)),
)
DEEPSEEK_SPECIALS = ("<｜▁pad▁｜>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<image>")

#: The structure of LFM2-VL's chat template (``<|im_start|>role\n...<|im_end|>\n``, images as
#: ``<image>`` placeholders the processor expands), without its tool-calling branches.
LFM2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def char_tokenizer(
    specials: Sequence[str],
    *,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str = "<unk>",
    add_bos: bool = False,
) -> Any:
    """A character-level ``PreTrainedTokenizerFast``: one id per special token, then one per
    character of :data:`CHARACTERS`. Decoding joins characters (``decoders.Fuse``). With
    ``add_bos`` the tokenizer prepends ``bos`` when asked for special tokens (as Llama-style
    tokenizers such as DeepSeek's do)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in (*specials, unk, *CHARACTERS):
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
    )
    return tokenizer


def _pad_vocab(n: int, multiple: int = 8) -> int:
    return (n + multiple - 1) // multiple * multiple


def tiny_lfm2_vl(
    *,
    min_image_tokens: int = 4,
    max_image_tokens: int = 16,
    do_image_splitting: bool = False,
) -> tuple[Any, Any]:
    """A ~0.25 M-parameter ``Lfm2VlForConditionalGeneration`` and its ``Lfm2VlProcessor``."""
    from transformers import (
        Lfm2VlConfig,
        Lfm2VlForConditionalGeneration,
        Lfm2VlImageProcessor,
        Lfm2VlProcessor,
    )

    tokenizer = char_tokenizer(
        LFM2_SPECIALS, bos="<|startoftext|>", eos="<|im_end|>", pad="<|pad|>"
    )
    image_processor = Lfm2VlImageProcessor(
        do_image_splitting=do_image_splitting,
        min_image_tokens=min_image_tokens,
        max_image_tokens=max_image_tokens,
        encoder_patch_size=16,
        tile_size=64,
        max_tiles=4,
    )
    processor = Lfm2VlProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=LFM2_CHAT_TEMPLATE
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Lfm2VlConfig(
        vision_config={
            "model_type": "siglip2_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "patch_size": 16,
            "num_patches": 256,
        },
        text_config={
            "model_type": "lfm2",
            "vocab_size": _pad_vocab(len(tokenizer)),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "layer_types": ["conv", "full_attention", "conv", "full_attention"],
            "block_auto_adjust_ff_dim": False,
            "max_position_embeddings": 1024,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        image_token_id=ids("<image>"),
        projector_hidden_size=64,
        downsample_factor=2,
    )
    model = Lfm2VlForConditionalGeneration(config)
    _set_generation_ids(model, tokenizer)
    return model, processor


#: DeepSeek-OCR-2 tiny settings: global view 768 px, no local crops (see the module docstring).
DEEPSEEK_TINY_IMAGE_SIZE = 768


def tiny_deepseek_ocr2() -> tuple[Any, Any]:
    """A tiny ``DeepseekOcr2ForConditionalGeneration`` (SAM + Qwen2-style encoder + MoE decoder
    with one dense and one sparse layer) and its ``DeepseekOcr2Processor``."""
    from transformers import (
        DeepseekOcr2Config,
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2ImageProcessorPil,
        DeepseekOcr2Processor,
    )

    size = DEEPSEEK_TINY_IMAGE_SIZE
    tokenizer = char_tokenizer(
        DEEPSEEK_SPECIALS,
        bos="<｜begin▁of▁sentence｜>",
        eos="<｜end▁of▁sentence｜>",
        pad="<｜▁pad▁｜>",
        add_bos=True,
    )
    image_processor = DeepseekOcr2ImageProcessorPil(
        size={"height": size, "width": size}, tile_size=size, crop_to_patches=False
    )
    processor = DeepseekOcr2Processor(image_processor=image_processor, tokenizer=tokenizer)
    config = DeepseekOcr2Config(
        vision_config={
            "sam_config": {
                "hidden_size": 32,
                "output_channels": 16,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": size,
                "patch_size": 64,
                "window_size": 4,
                "global_attn_indexes": [1],
                "mlp_dim": 64,
                "downsample_channels": [32, 64],
                # The default (1e-10) starts SAM at ~0: features would not depend on pixels.
                "initializer_range": 0.02,
            },
            "encoder_config": {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 1024,
            },
        },
        text_config={
            "vocab_size": _pad_vocab(len(tokenizer)),
            "hidden_size": 64,
            "intermediate_size": 128,
            "moe_intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "n_routed_experts": 4,
            "n_shared_experts": 1,
            "num_experts_per_tok": 2,
            "mlp_layer_types": ["dense", "sparse"],
            "max_position_embeddings": 1024,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = DeepseekOcr2ForConditionalGeneration(config)
    _set_generation_ids(model, tokenizer)
    return model, processor


def _set_generation_ids(model: Any, tokenizer: Any) -> None:
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
