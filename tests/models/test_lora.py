"""The shared LoRA helpers: scoping, refusals, adapter loading, QLoRA guard."""

from __future__ import annotations

import re

import pytest
import torch

from vin_ocr.models.lfm2_vl import LORA_TARGETS, Lfm2Vl
from vin_ocr.models.lora import (
    LoraSettings,
    apply_lora,
    load_adapter,
    lora_module_names,
    quantization_config,
    scoped_pattern,
)

# PEFT 0.21 calls a transformers 5 method that warns about its own deprecation.
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")


@pytest.fixture(scope="module")
def tiny_lfm2():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, _ = Lfm2Vl().build({"tiny": True}, None)
    yield model
    torch.set_num_threads(threads)


def fresh(model):
    import copy

    return copy.deepcopy(model)


def test_scoped_pattern_matches_only_under_the_scope():
    pattern = scoped_pattern("model.language_model", ["q_proj", "w1"])
    assert re.fullmatch(pattern, "model.language_model.layers.1.self_attn.q_proj")
    assert re.fullmatch(pattern, "model.language_model.layers.0.feed_forward.w1")
    assert not re.fullmatch(pattern, "model.vision_tower.encoder.layers.0.self_attn.q_proj")
    assert not re.fullmatch(pattern, "model.language_model.layers.0.feed_forward.w12")


def test_default_lfm2_targets_are_exactly_the_language_model_linears():
    linears = [
        "model.language_model.layers.0.conv.in_proj",
        "model.language_model.layers.0.conv.out_proj",
        "model.language_model.layers.3.self_attn.out_proj",
        "model.language_model.layers.3.feed_forward.w2",
    ]
    assert all(re.fullmatch(LORA_TARGETS, n) for n in linears)
    for other in (
        "model.vision_tower.encoder.layers.0.self_attn.out_proj",
        "model.multi_modal_projector.linear_1",
        "lm_head",
    ):
        assert not re.fullmatch(LORA_TARGETS, other)


def test_name_list_targets_are_scoped_away_from_the_vision_tower(tiny_lfm2):
    peft_model = apply_lora(fresh(tiny_lfm2), LoraSettings(target_modules=["q_proj", "out_proj"]))
    landed = lora_module_names(peft_model)
    assert landed and all(n.startswith("model.language_model.") for n in landed)
    assert {n.rsplit(".", 1)[1] for n in landed} == {"q_proj", "out_proj"}


def test_an_adapter_in_the_vision_tower_is_refused(tiny_lfm2):
    with pytest.raises(ValueError, match=r"frozen part of the model.*model\.vision_tower"):
        apply_lora(fresh(tiny_lfm2), LoraSettings(target_modules=r".*\.q_proj"))


def test_targets_that_match_nothing_fail_with_the_pattern(tiny_lfm2):
    with pytest.raises(ValueError, match="LoRA set-up failed for targets"):
        apply_lora(fresh(tiny_lfm2), LoraSettings(target_modules=["o_proj"]))
    with pytest.raises(ValueError, match="needs target_modules"):
        apply_lora(fresh(tiny_lfm2), LoraSettings(target_modules=[]))


def test_settings_reject_unknown_keys():
    assert LoraSettings.from_mapping({"r": 4, "target_modules": ("a", "b")}).target_modules == [
        "a",
        "b",
    ]
    with pytest.raises(ValueError, match=r"unknown LoRA setting\(s\) \['rank'\]"):
        LoraSettings.from_mapping({"rank": 4})


def test_load_adapter_refuses_a_folder_without_weights(tmp_path, tiny_lfm2):
    with pytest.raises(FileNotFoundError, match=r"no adapter_model\.safetensors"):
        load_adapter(fresh(tiny_lfm2), tmp_path)


def test_load_adapter_refuses_an_adapter_for_another_model(tmp_path, tiny_lfm2):
    peft_model = apply_lora(fresh(tiny_lfm2), LoraSettings(target_modules=["q_proj"]))
    peft_model.save_pretrained(tmp_path)
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "adapter_model.safetensors")
    weights["base_model.model.model.language_model.layers.9.self_attn.q_proj.lora_A.weight"] = (
        torch.zeros(16, 64)
    )
    save_file(weights, tmp_path / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="does not fit the model: unexpected"):
        load_adapter(fresh(tiny_lfm2), tmp_path)


def test_quantization_config():
    assert quantization_config("none", "cpu", torch.float32) is None
    assert quantization_config(None, "cuda", torch.bfloat16) is None
    with pytest.raises(ValueError, match="'none' or '4bit'"):
        quantization_config("8bit", "cpu", torch.float32)
    with pytest.raises(RuntimeError, match=r"needs bitsandbytes on a CUDA GPU.*device is 'cpu'"):
        quantization_config("4bit", "cpu", torch.float32)


def test_qlora_on_cpu_fails_before_loading_anything():
    with pytest.raises(RuntimeError, match="quantization: 4bit"):
        Lfm2Vl().build({"checkpoint": "LiquidAI/LFM2.5-VL-1.6B", "quantization": "4bit"}, None)


def test_lora_settings_layers_and_all_linear():
    from omegaconf import OmegaConf

    family = Lfm2Vl()  # training.lora (the argument) over model.lora (settings) over the family
    settings = family.lora_settings(OmegaConf.create({"r": 4, "target_modules": "all-linear"}))
    assert (settings.r, settings.alpha, settings.target_modules) == (4, 32, LORA_TARGETS)
    family.settings.lora = {"target_modules": ["w1"]}
    assert family.lora_settings({"target_modules": "all-linear"}).target_modules == ["w1"]
    assert family.lora_settings({"target_modules": ["w2"]}).target_modules == ["w2"]
