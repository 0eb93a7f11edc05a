"""DeepSeek-OCR-2 family on a tiny random model of the real architecture; the v1 config's guard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import vin_ocr
from vin_ocr.data import Sample
from vin_ocr.models.deepseek_ocr import EXPERT_PARAMETERS, DeepseekOcr2, DeepseekOcrSettings
from vin_ocr.models.deepseek_ocr_v1 import DeepseekOcrV1, check_v1_environment
from vin_ocr.models.lora import apply_lora, load_adapter, lora_module_names, merge_lora
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
TINY = {"tiny": True}
EOS = "<｜end▁of▁sentence｜>"


# PEFT 0.21 calls a transformers 5 method that warns about its own deprecation.
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def build(seed: int = 0, cfg=None):
    torch.manual_seed(seed)
    family = DeepseekOcr2()
    model, processor = family.build(cfg or TINY, None)
    return family, model, processor


def samples(vins, *, alternate: bool = False) -> list[Sample]:
    return [
        Sample(
            image=Path(f"{vin}.png"),
            vin=vin,
            source="synth",
            pixels=text_image(vin, inverted=alternate and i % 2 == 1),
        )
        for i, vin in enumerate(vins)
    ]


def eval_logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_build_tiny_uses_the_real_classes_and_consistent_image_tokens():
    family, model, processor = build()
    assert type(model).__name__ == "DeepseekOcr2ForConditionalGeneration"
    assert type(processor).__name__ == "DeepseekOcr2Processor"
    assert family.settings.crop_mode is False and family.settings.base_size == 768
    prompts = family._prompts([text_image(VINS[0])])
    tok = processor.tokenizer
    ids = prompts["input_ids"][0]
    assert ids[0] == tok.bos_token_id
    # 144 queries for a 768-px view + 1 separator: what the model emits, so forward works.
    assert int((ids == model.config.image_token_id).sum()) == 145
    assert eval_logits(model, prompts).shape[:2] == (1, len(ids))


def test_collate_labels_only_the_answer_and_end_token():
    family, _, processor = build()
    tok = processor.tokenizer
    batch_samples = samples(VINS[:2])
    batch = family.collate(batch_samples)
    n = int(family._prompts([batch_samples[0].load_image()])["attention_mask"].sum())
    for row, sample in enumerate(batch_samples):
        labels = batch["labels"][row]
        labelled = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        assert labelled == list(range(n, n + 18))  # 17 VIN characters + end of sentence
        assert tok.decode(labels[labelled]) == sample.vin + EOS
        assert torch.equal(labels[labelled], batch["input_ids"][row, labelled])
        prompt_text = tok.decode(batch["input_ids"][row, :n])
        assert prompt_text.endswith(
            "\nWhat is the VIN in this image? Answer with the 17 characters only."
        )
    assert int(batch["attention_mask"].sum()) == 2 * (n + 18)


@pytest.mark.slow
def test_predict_reads_back_overfitted_vins(train_steps):
    family, model, _ = build()
    train_samples = samples(VINS[:2], alternate=True)
    before = family.predict(model, [s.load_image() for s in train_samples])
    assert all(isinstance(p, str) for p in before) and len(before) == 2
    train_steps(family, model, family.collate(train_samples), steps=100, lr=1.5e-3)
    assert family.predict(model, [s.load_image() for s in train_samples]) == VINS[:2]


def test_lora_adapts_attention_and_dense_mlps_of_the_language_model():
    """Where the adapters go; training, merge and reload are the family contract's."""
    family, model, _ = build()
    peft_model = apply_lora(model, family.lora_settings())
    landed = set(lora_module_names(peft_model))
    assert landed == {
        *(f"model.language_model.layers.{i}.self_attn.{p}_proj" for i in (0, 1) for p in "qkvo"),
        *(f"model.language_model.layers.0.mlp.{p}_proj" for p in ("gate", "up", "down")),
        *(
            f"model.language_model.layers.1.mlp.shared_experts.{p}_proj"
            for p in ("gate", "up", "down")
        ),
    }
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)


def test_lora_target_parameters_reach_the_moe_experts(tmp_path, train_steps):
    family, model, _ = build()
    family.settings.lora = {"target_parameters": EXPERT_PARAMETERS}
    with pytest.raises(ValueError, match="dropout: 0"):
        apply_lora(model, family.lora_settings())
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = apply_lora(model, family.lora_settings({"dropout": 0.0}))  # training.lora
    expert_adapters = {
        n: p.detach().clone()
        for n, p in peft_model.named_parameters()
        if p.requires_grad and ".mlp.experts." in n
    }
    assert expert_adapters  # 3-D gate_up_proj / down_proj got adapters
    batch = family.collate(samples(VINS[:2]))
    train_steps(family, peft_model, batch, steps=3, lr=1e-2)
    after = dict(peft_model.named_parameters())
    assert all(not torch.equal(after[n], p) for n, p in expert_adapters.items())
    logits = eval_logits(peft_model, batch)
    peft_model.save_pretrained(tmp_path / "adapter")
    _, fresh, _ = build(seed=7)
    fresh.load_state_dict(base_state)
    assert torch.equal(eval_logits(load_adapter(fresh, tmp_path / "adapter"), batch), logits)
    merged = merge_lora(peft_model)
    torch.testing.assert_close(eval_logits(merged, batch), logits, atol=1e-5, rtol=1e-5)


def test_loading_failures_raise_with_the_reason(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load DeepSeek-OCR-2"):
        build(cfg={"checkpoint": str(tmp_path / "missing")})
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "config.json").write_text('{"model_type": "deepseek_vl_v2"}')
    with pytest.raises(ModelLoadError, match="deepseek-community/DeepSeek-OCR-2"):
        build(cfg={"checkpoint": str(tmp_path / "remote")})


def test_crop_mode_off_needs_matching_sizes():
    with pytest.raises(ValueError, match="base_size == image_size"):
        DeepseekOcrSettings(base_size=1024, image_size=768, crop_mode=False)


def test_deepseek_ocr_config_builds_tiny():
    cfg = OmegaConf.load(vin_ocr.CONFIG_DIR / "model" / "deepseek_ocr.yaml")
    settings = settings_from(DeepseekOcrSettings, cfg, "deepseek_ocr2")
    assert settings.checkpoint == "deepseek-community/DeepSeek-OCR-2"
    assert (settings.base_size, settings.image_size, settings.crop_mode) == (1024, 768, True)
    family, _, _ = build(cfg=OmegaConf.merge(cfg, TINY))
    assert family.lora_settings().target_parameters == []


def test_v1_config_fails_with_the_separate_environment_recipe():
    cfg = OmegaConf.load(vin_ocr.CONFIG_DIR / "model" / "deepseek_ocr_v1.yaml")
    assert settings_from(DeepseekOcrSettings, cfg, "deepseek_ocr_v1").crop_mode is True
    import transformers

    assert transformers.__version__.startswith("5.")
    with pytest.raises(RuntimeError) as err:
        DeepseekOcrV1().build(cfg, None)
    message = str(err.value)
    assert f"transformers {transformers.__version__} is installed" in message
    assert "pip install transformers==4.46.3 tokenizers==0.20.3" in message
    assert "docs/models.md" in message
    with pytest.raises(RuntimeError, match=r"needs >=4\.46,<4\.48"):
        check_v1_environment()
    with pytest.raises(NotImplementedError, match="inference only"):
        DeepseekOcrV1().collate(samples(VINS[:1]))
