"""LFM3-VL family: what is particular to it (training, LoRA, merge and reload are the family
contract's, tests/models/test_family_contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import vin_ocr
from vin_ocr.data import Sample
from vin_ocr.hardware import load_model_cfg, model_spec
from vin_ocr.models.lfm3_vl import CHAT_TEMPLATE, LORA_TARGETS, Lfm3Vl, Lfm3VlSettings
from vin_ocr.models.lora import apply_lora, lora_module_names
from vin_ocr.models.registry import auto_order, facts
from vin_ocr.models.spec import on_meta
from vin_ocr.models.tiny import text_image
from vin_ocr.models.vlm import IGNORE_INDEX, ModelLoadError, settings_from
from vin_ocr.vin import ALPHABET, VIN_LENGTH, YEAR_CODES, check_digit_mandatory

VINS = ["1M8GDM9AXKP042788", "WVWZZZ1JZXW000001"]
TINY = {"tiny": True, "min_image_tokens": 8, "max_image_tokens": 16}

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def build(cfg: dict | None = None):
    torch.manual_seed(0)
    family = Lfm3Vl()
    model, processor = family.build(cfg or TINY, None)
    return family, model, processor


def samples(sizes) -> list[Sample]:
    return [
        Sample(image=Path(f"{v}.png"), vin=v, source="synth", pixels=text_image(v, size=size))
        for v, size in zip(VINS, sizes, strict=True)
    ]


def test_tiny_uses_the_real_classes_and_the_vision_placeholders():
    _, model, processor = build()
    assert type(model).__name__ == "Lfm3VlForConditionalGeneration"
    assert type(processor).__name__ == "Lfm3VlProcessor"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    assert model.config.image_token_id == processor.image_token_id
    assert set(model.config.text_config.layer_types) == {
        "conv",
        "sliding_attention",
        "full_attention",
    }
    assert sum(p.numel() for p in model.parameters()) < 400_000
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert processor.chat_template == CHAT_TEMPLATE
    assert text == (
        "<|startoftext|><|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(("low", "high"), [(8, 16), (16, 32)])
def test_the_image_budget_bounds_the_image_tokens(low, high):
    """A wide line crop and a small square both end up between min and max tokens."""
    family, _, processor = build({**TINY, "min_image_tokens": low, "max_image_tokens": high})
    batch = family.collate(samples([(400, 48), (32, 32)]))
    per_image = (batch["input_ids"] == processor.image_token_id).sum(dim=1).tolist()
    assert all(low <= n <= high for n in per_image), per_image
    merged = batch["image_grid_thw"].prod(dim=1) // 4  # 2 x 2 patches per token
    assert merged.tolist() == per_image
    with pytest.raises(ValueError, match="min_image_tokens"):
        settings_from(Lfm3VlSettings, {"min_image_tokens": 9, "max_image_tokens": 8}, "lfm3_vl")


def test_collate_labels_only_the_answer_and_end_token():
    family, _, processor = build()
    batch = family.collate(samples([(192, 32), (64, 64)]))
    for row, vin in enumerate(VINS):
        labels = batch["labels"][row]
        labelled = (labels != IGNORE_INDEX).nonzero().flatten()
        assert processor.tokenizer.decode(labels[labelled]) == vin + "<|im_end|>"
        image = (batch["input_ids"][row] == processor.image_token_id).nonzero()
        assert len(image) > 0 and image.max() < labelled.min()


def test_lora_lands_on_every_language_linear_and_nowhere_else():
    family, model, _ = build()
    language_linears = {
        name
        for name, module in model.named_modules()
        if name.startswith("model.language_model.") and isinstance(module, torch.nn.Linear)
    }
    landed = set(lora_module_names(apply_lora(model, family.lora_settings())))
    assert landed == language_linears  # no vision tower, projector or lm_head
    assert {n.rsplit(".", 1)[-1] for n in landed} == {
        *("q_proj", "k_proj", "v_proj", "o_proj", "g_proj", "in_proj", "out_proj"),
        *("w1", "w2", "w3"),
    }


def test_loading_failures_raise_with_the_reason(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load LFM3-VL from"):
        build({"checkpoint": str(tmp_path / "missing")})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "lfm2_vl"}')
    with pytest.raises(ModelLoadError, match="not lfm3_vl"):
        build({"checkpoint": str(tmp_path / "other")})


def test_model_config_and_real_size_preflight():
    cfg = OmegaConf.load(vin_ocr.CONFIG_DIR / "model" / "lfm3_vl.yaml")
    settings = settings_from(Lfm3VlSettings, cfg, "lfm3_vl")
    assert settings.checkpoint == "LiquidAI/LFM3-VL-2B"
    family, _, _ = build(OmegaConf.merge(cfg, TINY))
    assert family.lora_settings().target_modules == LORA_TARGETS
    decoding = family.decoding()  # the YAML's decoding keys are VlmDecoding's
    assert decoding.constrained and decoding.check_digit_search and decoding.num_beams == 4
    spec = model_spec(load_model_cfg("lfm3_vl"))
    assert 1.8e9 < spec.params < 2.1e9 and spec.vocab_size == 128_000  # "2B"
    assert [t.name for t in spec.towers] == ["vision", "language"]
    assert spec.lora_params(16, LORA_TARGETS) > 0
    assert not any("vision_tower" in n for n, _, _ in spec.linears if spec.targets(n, LORA_TARGETS))
    # The benchmarks' real-size model: the same architecture, the offline tokenizer's ids.
    tokenizer = build()[2].tokenizer
    cls, config = facts("lfm3_vl").real_config(cfg, tokenizer)
    assert sum(p.numel() for p in on_meta(cls, config).parameters()) == spec.params
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.text_config.eos_token_id == tokenizer.eos_token_id
    # model=auto: the successor is tried before LFM2.5-VL-1.6B.
    order = auto_order()
    assert order.index("lfm3_vl") < order.index("lfm2_5_vl")


def follows_rules(text: str) -> bool:
    if len(text) != VIN_LENGTH or not set(text) <= set(ALPHABET):
        return False
    return not check_digit_mandatory(text) or (text[8] in "0123456789X" and text[9] in YEAR_CODES)


def test_constrained_beam_search_reads_vins_image_by_image():
    """Beam search expands the flattened patches of a batch per image (transformers encodes the
    images once, then repeats each one's features for its beams): a batch of differently sized
    images reads as each image alone, and every reading follows the VIN rules."""
    family, model, _ = build()
    images = [s.load_image() for s in samples([(192, 32), (256, 48)])]
    family.settings.decoding = {"num_beams": 4}
    batch = family.read(model, images)
    assert all(follows_rules(r.text) for r in batch), batch
    alone = [family.read(model, [image])[0] for image in images]
    assert [r.text for r in batch] == [r.text for r in alone]
    family.settings.decoding = {"constrained": False, "check_digit_search": False, "num_beams": 1}
    assert not any(follows_rules(t) for t in family.predict(model, images))
