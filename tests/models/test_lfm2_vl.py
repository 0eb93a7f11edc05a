"""LFM2-VL family on a tiny random model of the real architecture (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import vin_ocr
from vin_ocr.data import Sample
from vin_ocr.models.lfm2_vl import (
    CHAT_TEMPLATE,
    LORA_TARGETS,
    Lfm2Vl,
    Lfm2VlSettings,
    attn_implementation_map,
)
from vin_ocr.models.lora import apply_lora, lora_module_names
from vin_ocr.models.tiny import text_image
from vin_ocr.models.vlm import IGNORE_INDEX, ModelLoadError, settings_from

VINS = [
    "1M8GDM9AXKP042788",
    "WVWZZZ1JZXW000001",
    "JH4KA7561PC008269",
    "2T1BURHE0JC123456",
    "5YJ3E1EA7KF317000",
    "3VWFE21C04M000001",
    "KMHCT4AE3FU123456",
    "LSGJA52U26S012345",
]
TINY = {"tiny": True, "min_image_tokens": 8, "max_image_tokens": 16}


# PEFT 0.21 calls a transformers 5 method that warns about its own deprecation.
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def build(seed: int = 0, cfg: dict | None = None, hardware=None):
    torch.manual_seed(seed)
    family = Lfm2Vl()
    model, processor = family.build(cfg or TINY, hardware)
    return family, model, processor


def samples(vins, *, alternate: bool = False, sizes=None) -> list[Sample]:
    out = []
    for i, vin in enumerate(vins):
        size = sizes[i] if sizes else (192, 32)
        image = text_image(vin, inverted=alternate and i % 2 == 1, size=size)
        out.append(Sample(image=Path(f"{vin}.png"), vin=vin, source="synth", pixels=image))
    return out


def eval_logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits


def test_build_tiny_uses_the_real_classes_and_a_chat_template():
    _, model, processor = build()
    assert type(model).__name__ == "Lfm2VlForConditionalGeneration"
    assert type(processor).__name__ == "Lfm2VlProcessor"
    assert processor.chat_template == CHAT_TEMPLATE
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<image>")
    assert sum(p.numel() for p in model.parameters()) < 400_000
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert text == "<|startoftext|><|im_start|>user\n<image>Hi<|im_end|>\n<|im_start|>assistant\n"


def test_attention_is_set_per_tower():
    assert attn_implementation_map("flash_attention_2") == {
        "": "flash_attention_2",
        "text_config": "flash_attention_2",
        "vision_config": "sdpa",
    }
    # vin_ocr.hardware.Hardware spells dtypes bf16 / fp16 / fp32.
    hardware = type("HW", (), {"device": "cpu", "dtype": "fp32", "attn_implementation": "eager"})
    _, model, _ = build(hardware=hardware())
    assert model.config.text_config._attn_implementation == "eager"
    assert model.config.vision_config._attn_implementation == "eager"


def test_collate_labels_only_the_answer_and_end_token():
    family, _, processor = build()
    tok = processor.tokenizer
    # Different image shapes give different image-token counts, so prompts differ in length
    # and the shorter row is padded on the right.
    batch_samples = samples(VINS[:2], sizes=[(192, 32), (64, 64)])
    batch = family.collate(batch_samples)
    prompt_lengths = [
        int(family._prompts([s.load_image()])["attention_mask"].sum()) for s in batch_samples
    ]
    assert prompt_lengths[0] != prompt_lengths[1]
    width = batch["input_ids"].shape[1]
    for row, (sample, n) in enumerate(zip(batch_samples, prompt_lengths, strict=True)):
        labels = batch["labels"][row]
        labelled = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        assert labelled == list(range(n, n + 18))  # 17 VIN characters + <|im_end|>
        assert tok.decode(labels[labelled]) == sample.vin + "<|im_end|>"
        assert torch.equal(labels[labelled], batch["input_ids"][row, labelled])
        # Everything after the answer is padding: masked out of attention and loss.
        assert batch["attention_mask"][row].tolist() == [1] * (n + 18) + [0] * (width - n - 18)
        assert set(batch["input_ids"][row, n + 18 :].tolist()) <= {tok.pad_token_id}
        # The image placeholders are in the prompt and never labelled.
        image_positions = (batch["input_ids"][row] == processor.image_token_id).nonzero()
        assert len(image_positions) > 0 and image_positions.max() < n
    assert batch["pixel_values"].shape[0] == 2


@pytest.mark.slow
def test_predict_reads_back_overfitted_vins(train_steps):
    family, model, _ = build()
    train_samples = samples(VINS[:2], alternate=True)
    before = family.predict(model, [s.load_image() for s in train_samples])
    assert all(isinstance(p, str) for p in before) and len(before) == 2
    train_steps(family, model, family.collate(train_samples), steps=60, lr=3e-3)
    assert family.predict(model, [s.load_image() for s in train_samples]) == VINS[:2]


def test_lora_lands_only_on_the_language_model():
    """Where the adapters go; training, merge and reload are the family contract's
    (tests/models/test_family_contract.py)."""
    family, model, _ = build()
    peft_model = apply_lora(model, family.lora_settings())
    landed = set(lora_module_names(peft_model))
    language_linears = {
        name
        for name, module in peft_model.get_base_model().named_modules()
        if name.startswith("model.language_model.")
        and (isinstance(module, torch.nn.Linear) or hasattr(module, "base_layer"))
        and not any(part in name for part in ("lora_", "base_layer"))
    }
    assert landed == language_linears  # q/k/v/out_proj, conv in/out_proj, w1/w2/w3
    assert not any("vision_tower" in n or "projector" in n for n in landed)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)


def test_real_loading_path_keeps_the_processor(tmp_path):
    """``tiny: false`` runs the real ``from_pretrained`` code, here on a saved tiny model: the
    chat template and the batches come back the same (outputs: the family contract)."""
    family, model, processor = build()
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    cfg = {**TINY, "tiny": False, "checkpoint": str(tmp_path / "ckpt")}
    loaded_family, _, loaded_processor = build(cfg=cfg)
    assert loaded_processor.chat_template == processor.chat_template
    batch = family.collate(samples(VINS[:2]))
    assert torch.equal(loaded_family.collate(samples(VINS[:2]))["input_ids"], batch["input_ids"])


def test_loading_failures_raise_with_the_reason(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load LFM2-VL from"):
        build(cfg={"checkpoint": str(tmp_path / "missing")})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "siglip_vision_model"}')
    with pytest.raises(ModelLoadError, match="not lfm2_vl"):
        build(cfg={"checkpoint": str(tmp_path / "other")})


@pytest.mark.parametrize("name", ["lfm2_5_vl", "lfm2_vl_450m"])
def test_model_configs_build_tiny(name):
    cfg = OmegaConf.load(vin_ocr.CONFIG_DIR / "model" / f"{name}.yaml")
    settings = settings_from(Lfm2VlSettings, cfg, "lfm2_vl")
    assert settings.family == "lfm2_vl" and settings.checkpoint.startswith("LiquidAI/")
    assert 64 <= settings.min_image_tokens <= settings.max_image_tokens <= 256
    family, _, _ = build(cfg=OmegaConf.merge(cfg, TINY))
    assert family.lora_settings().target_modules == LORA_TARGETS  # model.lora: targets only
    with pytest.raises(ValueError, match="max_image_token"):
        settings_from(Lfm2VlSettings, OmegaConf.merge(cfg, {"max_image_token": 9}), "lfm2_vl")
