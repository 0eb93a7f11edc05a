"""The pp_ocr family: preprocessing, VIN heads, CTC training, decoding, ONNX export, LoRA."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from vin_ocr.data.sample import Sample
from vin_ocr.models.base import ModelFamily
from vin_ocr.models.pp_ocr import (
    TINY_CHARSET,
    VIN_CHARSET,
    PPOCRFamily,
    ctc_logits,
    export_onnx,
    greedy_decode,
    preprocess,
    tiny_rec_model,
    vin_class_index,
    vin_head,
)
from vin_ocr.vin import ALPHABET

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"
LABELS = ["1M8GD", "KP042", "WVWZZ", "XW000", "LSGJA", "7H012", "5YJ3E", "F3170"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def render(text: str, size: int = 30) -> Image.Image:
    font = ImageFont.truetype(str(FONT), size)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 16, bottom - top + 12), (240, 240, 235))
    ImageDraw.Draw(image).text((8 - left, 6 - top), text, font=font, fill=(15, 15, 20))
    return image


def samples(labels=LABELS) -> list[Sample]:
    return [
        Sample(image=Path(f"mem/{i}.png"), vin=v, source="synth", pixels=render(v))
        for i, v in enumerate(labels)
    ]


def tiny_family(**overrides) -> tuple[PPOCRFamily, torch.nn.Module]:
    family = PPOCRFamily({"tiny": True, "min_width": 64, **overrides})
    model, processor = family.build(None, None)
    assert processor.character_list == family.charset
    return family, model


def test_family_follows_the_protocol():
    assert isinstance(PPOCRFamily(), ModelFamily)


def test_unknown_or_bad_settings_fail_naming_the_key():
    with pytest.raises(ValueError, match="hed"):
        PPOCRFamily({"hed": "vin"})
    with pytest.raises(ValueError, match=r"model\.head must be one of"):
        PPOCRFamily({"head": "new"})


def test_preprocess_keeps_aspect_uses_bgr_and_pads_with_zero():
    red = Image.new("RGB", (100, 20), (255, 0, 0))  # 5:1 -> 240 x 48
    wide = Image.new("RGB", (200, 10), (0, 0, 255))  # 20:1 -> 960 x 48
    batch = preprocess([red, wide], min_width=320, max_width=1600)
    assert batch.shape == (2, 3, 48, 960)
    assert torch.allclose(batch[0, :, :, :240].mean((1, 2)), torch.tensor([-1.0, -1.0, 1.0]))
    assert torch.all(batch[0, :, :, 240:] == 0)
    assert torch.allclose(batch[1].mean((1, 2)), torch.tensor([1.0, -1.0, -1.0]))
    narrow = preprocess([Image.new("RGB", (30, 30), (255, 255, 255))], min_width=64)
    assert narrow.shape == (1, 3, 48, 64)  # min width, a multiple of 8
    assert preprocess([wide], max_width=400).shape[-1] == 400


def test_greedy_decode_merges_repeats_and_drops_blanks():
    steps = [0, 1, 1, 0, 1, 2, 2, 0, 0, 3]
    logits = torch.nn.functional.one_hot(torch.tensor([steps, [0] * 10]), 4).float()
    assert greedy_decode(logits, ["", "A", "B", "C"]) == ["AABC", ""]


def test_vin_head_copies_the_matching_rows():
    model = tiny_rec_model(len(TINY_CHARSET))
    old = model.head.head
    pixels = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        before = ctc_logits(model, pixels)
    vin_head(model, TINY_CHARSET)
    new = model.head.head
    assert new.out_features == model.config.head_out_channels == 34
    for row, char in enumerate(VIN_CHARSET):
        source = TINY_CHARSET.index(char)  # "" -> 0, the blank
        assert torch.equal(new.weight[row], old.weight[source])
        assert torch.equal(new.bias[row], old.bias[source])
    assert VIN_CHARSET[19] == "J" and torch.equal(new.weight[19], old.weight[20])  # skips I
    with torch.no_grad():
        after = ctc_logits(model, pixels)
    index = vin_class_index(TINY_CHARSET)
    assert torch.allclose(after, before[..., index], atol=1e-6)


def test_vin_class_index_needs_every_vin_character():
    assert vin_class_index(VIN_CHARSET).tolist() == list(range(34))
    with pytest.raises(ValueError, match=r"\['Z'\]"):
        vin_class_index(["", *ALPHABET[:-1]])


@pytest.mark.parametrize("head", ["vin", "masked"])
def test_training_steps_lower_the_ctc_loss(head):
    family, model = tiny_family(head=head)
    classes = 34 if head == "vin" else len(TINY_CHARSET)
    assert model.config.head_out_channels == classes
    batch = family.collate(samples())
    assert batch["pixel_values"].shape[:3] == (8, 3, 48)
    assert batch["targets"].tolist()[:5] == [ALPHABET.index(c) + 1 for c in "1M8GD"]
    assert batch["target_lengths"].tolist() == [5] * 8
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    losses = []
    for _ in range(12):
        loss = family.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]
    # Frozen batch norm: the statistics did not move.
    bn = model.model.backbone.encoder.convolution.stem1.normalization
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_loss_runs_the_models_own_forward():
    """DistributedDataParallel syncs gradients for what runs through ``forward``: the loss must
    call it (and read the classifier's pre-softmax output, whose softmax forward returns)."""
    family, model = tiny_family()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    family.loss(model, family.collate(samples()[:2])).backward()
    assert calls == [1]
    pixels = preprocess([s.pixels for s in samples()[:2]], min_width=64)
    with torch.no_grad():
        logits = ctc_logits(model.eval(), pixels)
        probs = model(pixels).last_hidden_state
    assert logits.abs().max() > 1  # logits, not probabilities
    assert torch.allclose(logits.softmax(-1), probs, atol=1e-6)


def test_predict_returns_vin_alphabet_strings():
    family, model = tiny_family(head="masked")
    images = [s.pixels for s in samples()[:3]]
    texts = family.predict(model, images)
    assert len(texts) == 3 and all(set(t) <= set(ALPHABET) for t in texts)
    assert family.vin_logits(model, preprocess(images, min_width=64)).shape[-1] == 34
    assert model.training  # predict leaves the mode as it was


def test_collate_rejects_a_label_outside_the_vin_alphabet():
    family, _ = tiny_family()
    bad = Sample(image=Path("mem/bad.png"), vin="1M8GI", pixels=render("1M8GI"))
    with pytest.raises(ValueError, match=r"mem/bad\.png.*\['I'\]"):
        family.collate([bad])


@pytest.mark.parametrize("head", ["vin", "masked"])
def test_onnx_export_round_trip(tmp_path, head):
    import onnxruntime as ort

    family, model = tiny_family(head=head)
    path = tmp_path / "out" / "rec.onnx"
    worst = export_onnx(model, path, family.class_index)
    assert path.is_file() and worst < 1e-4
    assert not path.with_name("rec.onnx.tmp").exists()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pixels = preprocess([s.pixels for s in samples()[:2]], min_width=64)
    probs = session.run(None, {"pixel_values": pixels.numpy()})[0]
    assert probs.shape == (2, pixels.shape[-1] // 8, 34)
    with torch.no_grad():
        want = family.vin_logits(model.eval(), pixels).softmax(-1).numpy()
    assert np.abs(probs - want).max() < 1e-4


def test_lora_option_trains_adapters_and_the_head():
    family, model = tiny_family(finetune="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    assert any("head.head.modules_to_save" in n for n in trainable)  # saved with the adapter
    assert not any("stem1.convolution.weight" in n for n in trainable)
    batch = family.collate(samples()[:4])
    lora_b = next(p for n, p in model.named_parameters() if "lora_B" in n)
    before = lora_b.detach().clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = family.loss(model, batch)
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, lora_b)
    assert len(family.predict(model, [s.pixels for s in samples()[:2]])) == 2


def test_lora_adapter_alone_carries_the_trained_head(tmp_path):
    """The classifier trains fully under LoRA; saved with the adapter (modules_to_save), the
    adapter alone on a fresh base gives the trained model's outputs, and so does its merge."""
    from vin_ocr.models.lora import load_adapter, merge_lora

    lora = {"r": 4, "alpha": 8, "dropout": 0.0}
    torch.manual_seed(0)
    family, model = tiny_family(finetune="lora", lora=lora)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # adapters and the head: as if trained
                param.add_(torch.randn_like(param) * 0.3)
    model.save_pretrained(tmp_path / "adapter")
    torch.manual_seed(0)
    _, base = tiny_family()  # the same random base, no adapter
    pixels = preprocess([s.pixels for s in samples()[:2]], min_width=64)
    with torch.no_grad():
        want = family.vin_logits(model.eval(), pixels)
        untrained = family.vin_logits(base.eval(), pixels)
        got = family.vin_logits(load_adapter(base, tmp_path / "adapter").eval(), pixels)
        merged = family.vin_logits(merge_lora(model).eval(), pixels)
    assert not torch.allclose(untrained, want, atol=1e-3)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(merged, want, atol=1e-4)


def test_converted_model_reads_a_vin_zero_shot():
    family = PPOCRFamily({"checkpoint": "rapidocr", "head": "vin"})
    model, processor = family.build(None, None)
    assert processor.character_list == VIN_CHARSET
    vins = ["1M8GDM9AXKP042788", "WVWZZZ1JZXW000001"]
    assert family.predict(model, [render(v, 32) for v in vins]) == vins


@pytest.mark.parametrize("head", ["vin", "masked"])
def test_saved_model_reloads_through_the_family(tmp_path, head):
    family, model = tiny_family(head=head)
    _, processor = family.build(None, None)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded_family = PPOCRFamily({"checkpoint": str(tmp_path), "head": head, "min_width": 64})
    reloaded, _ = reloaded_family.build(None, None)
    assert reloaded_family.charset == family.charset
    pixels = preprocess([s.pixels for s in samples()[:2]], min_width=64)
    with torch.no_grad():
        want = family.vin_logits(model.eval(), pixels)
        got = reloaded_family.vin_logits(reloaded.eval(), pixels)
    assert want.abs().mean() > 0.1  # real values, not a vanishing tiny model
    assert torch.allclose(got, want, atol=1e-5)


def test_the_model_yaml_configures_the_family():
    from omegaconf import OmegaConf

    import vin_ocr

    cfg = OmegaConf.load(vin_ocr.CONFIG_DIR / "model" / "pp_ocr.yaml")
    family = PPOCRFamily(cfg)
    assert family.settings.checkpoint == "rapidocr" and family.settings.head in ("vin", "masked")
    cfg.tiny = True
    model, _ = family.build(cfg, None)
    assert len(family.class_index) == len(VIN_CHARSET)  # both heads: blank + 33 VIN classes
    want = len(VIN_CHARSET) if cfg.head == "vin" else len(TINY_CHARSET)  # masked: full charset
    assert model.config.head_out_channels == want
