"""PaddleOCR-VL family on a tiny random model of the real architecture (offline): what is
particular to it. Training, LoRA, merge and reload are the family contract's
(tests/models/test_family_contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import vin_ocr
from vin_ocr.data import Sample
from vin_ocr.models.lora import apply_lora, lora_module_names
from vin_ocr.models.paddleocr_vl import (
    CHAT_TEMPLATE,
    LORA_TARGETS,
    PaddleOcrVl,
    PaddleOcrVlSettings,
    spec,
)
from vin_ocr.models.registry import facts
from vin_ocr.models.spec import on_meta
from vin_ocr.models.tiny import text_image
from vin_ocr.models.vlm import IGNORE_INDEX, ModelLoadError, settings_from
from vin_ocr.vin import ALPHABET, VIN_LENGTH, YEAR_CODES, check_digit_mandatory

VINS = ["1M8GDM9AXKP042788", "WVWZZZ1JZXW000001"]

# PEFT 0.21 calls a transformers 5 method that warns about its own deprecation.
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def build(cfg: dict | None = None):
    torch.manual_seed(0)
    family = PaddleOcrVl()
    model, processor = family.build({**facts("paddleocr_vl").tiny, **(cfg or {})}, None)
    return family, model, processor


def samples(sizes=((192, 32), (320, 40))) -> list[Sample]:
    return [
        Sample(image=Path(f"{v}.png"), vin=v, source="synth", pixels=text_image(v, size=size))
        for v, size in zip(VINS, sizes, strict=True)
    ]


def test_prompt_is_the_checkpoints_chat_template_with_the_ocr_task():
    _, model, processor = build()
    assert type(model).__name__ == "PaddleOCRVLForConditionalGeneration"
    assert processor.chat_template == CHAT_TEMPLATE
    tok = processor.tokenizer
    # ERNIE's ids for the first specials; the image token is named, as the processor needs
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert model.config.image_token_id == tok.image_token_id
    assert not model.config.tie_word_embeddings
    user = [{"type": "image"}, {"type": "text", "text": "OCR:"}]
    text = processor.apply_chat_template(
        [{"role": "user", "content": user}, {"role": "assistant", "content": [
            {"type": "text", "text": VINS[0]}]}],
        tokenize=False,
    )  # fmt: skip
    assert text == (
        "<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>OCR:\n"
        f"Assistant: {VINS[0]}</s>"
    )


def test_collate_labels_the_answer_and_keeps_the_image_token_types_aligned():
    """Rows of different image sizes: each row's ``mm_token_type_ids`` (M-RoPE) marks exactly
    its image tokens after the re-padding, and only ``VIN</s>`` is labelled."""
    family, _, processor = build()
    tok = processor.tokenizer
    batch = family.collate(samples())
    rows = batch["input_ids"].shape[0]
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert lengths[0] != lengths[1]
    for row in range(rows):
        ids = batch["input_ids"][row]
        assert torch.equal(batch["mm_token_type_ids"][row].bool(), ids == tok.image_token_id)
        labels = batch["labels"][row]
        labelled = (labels != IGNORE_INDEX).nonzero().flatten()
        assert tok.decode(labels[labelled]) == VINS[row] + "</s>"
        assert int(labelled.max()) == lengths[row] - 1


def test_pixel_bounds_set_the_image_tokens():
    """min_pixels = max_pixels = B blocks of 28 x 28: about B image tokens per image, whatever
    its size (whole blocks, so a long line crop may round up a little)."""
    counts = {}
    for blocks in (16, 64):
        family, _, processor = build({"min_pixels": 784 * blocks, "max_pixels": 784 * blocks})
        batch = family.collate(samples())
        counts[blocks] = (batch["input_ids"] == processor.tokenizer.image_token_id).sum(dim=1)
        assert all(blocks * 0.75 <= int(n) <= blocks * 1.5 for n in counts[blocks]), counts
    assert (counts[64] > counts[16]).all()
    with pytest.raises(ValueError, match="min_pixels"):
        PaddleOcrVlSettings(min_pixels=5000, max_pixels=4000)


def test_constrained_decoding_reads_only_valid_vins_from_an_untrained_model():
    family, model, _ = build()
    readings = family.read(model, [s.load_image() for s in samples()])
    assert len(readings) == 2
    for reading in readings:  # M-RoPE positions carried through beam search and the cache
        text = reading.text
        assert len(text) == VIN_LENGTH and set(text) <= set(ALPHABET), text
        if check_digit_mandatory(text):
            assert text[8] in "0123456789X" and text[9] in YEAR_CODES, text


def test_lora_lands_only_on_the_language_model():
    family, model, _ = build()
    peft_model = apply_lora(model, family.lora_settings())
    landed = set(lora_module_names(peft_model))
    assert landed and all(n.startswith("model.language_model.layers.") for n in landed)
    assert {n.rsplit(".", 1)[-1] for n in landed} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    assert len(landed) == 7 * model.config.text_config.num_hidden_layers


def test_loading_failures_raise_with_the_reason(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load PaddleOCR-VL from"):
        build({"tiny": False, "checkpoint": str(tmp_path / "missing")})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "siglip_vision_model"}')
    with pytest.raises(ModelLoadError, match="not paddleocr_vl"):
        build({"tiny": False, "checkpoint": str(tmp_path / "other")})


def test_model_config_and_real_size_spec():
    cfg = OmegaConf.load(vin_ocr.CONFIG_DIR / "model" / "paddleocr_vl.yaml")
    settings = settings_from(PaddleOcrVlSettings, cfg, "paddleocr_vl")
    assert (settings.checkpoint, settings.prompt) == ("PaddlePaddle/PaddleOCR-VL", "OCR:")
    assert PaddleOcrVl().lora_settings(model=cfg.lora).target_modules == LORA_TARGETS
    real = spec(cfg)
    # NaViT encoder 27 x 1152 + projector + ERNIE-4.5-0.3B with an untied output layer: "0.9 B"
    assert real.params == 905_601_648
    assert real.vocab_size == 103424 and real.output_layer == "lm_head"
    assert real.tokens is not None
    # a line crop is enlarged to min_pixels (147,384 px): 751 patches, 187 tokens + the answer
    assert real.tokens(100, 18) == {"vision": 751, "language": 187 + 18}
    # the benchmarks' real-size model: the published architecture with the offline tokenizer's ids
    tok = build()[2].tokenizer
    cls, config = facts("paddleocr_vl").real_config(cfg, tok)
    assert (config.image_token_id, config.text_config.eos_token_id) == (tok.image_token_id, 2)
    assert sum(p.numel() for p in on_meta(cls, config).parameters()) == real.params
