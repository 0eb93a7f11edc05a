"""The VLM training step's shortcuts change no value: the answer-only LM head gives the model's own
full-sequence loss and gradients, the trimmed patch padding the same logits, and the frozen vision
tower builds no autograd graph (tiny random models of the real architectures, fp32)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vin_ocr.data import Sample
from vin_ocr.models.deepseek_ocr import DeepseekOcr2
from vin_ocr.models.lfm2_vl import Lfm2Vl
from vin_ocr.models.lora import apply_lora
from vin_ocr.models.tiny import text_image
from vin_ocr.models.vlm import IGNORE_INDEX, accepts_logits_to_keep, to_model

VINS = ["1M8GDM9AXKP042788", "WVWZZZ1JZXW000001", "JH4KA7561PC008269"]
LFM2_TINY = {"tiny": True, "min_image_tokens": 8, "max_image_tokens": 16}

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def samples(sizes=((192, 32), (96, 24), (240, 40))) -> list[Sample]:
    return [
        Sample(image=Path(f"{v}.png"), vin=v, source="synth", pixels=text_image(v, size=size))
        for v, size in zip(VINS, sizes, strict=True)
    ]


def lora_model(kind: str):
    torch.manual_seed(0)
    family = Lfm2Vl() if kind == "lfm2_vl" else DeepseekOcr2()
    model, _ = family.build(LFM2_TINY if kind == "lfm2_vl" else {"tiny": True}, None)
    model = apply_lora(model, family.lora_settings({"r": 4, "alpha": 8, "dropout": 0.0}))
    return family, model


def hf_loss(model, batch) -> torch.Tensor:
    """What a plain Trainer computes: the model's own loss over the whole sequence."""
    return model(**to_model(batch, model)).loss


@pytest.mark.parametrize("kind", ["lfm2_vl", "deepseek_ocr2"])
def test_answer_only_loss_and_gradients_equal_the_full_sequence_loss(kind):
    family, model = lora_model(kind)
    assert accepts_logits_to_keep(model)
    model.train()
    batch = family.collate(samples())
    assert (batch["labels"] != IGNORE_INDEX).sum() < batch["labels"].numel() / 2
    trained = [p for p in model.parameters() if p.requires_grad]
    # LoRA's B starts at zero: move it so that the adapters' gradients are not trivially equal
    with torch.no_grad():
        for p in trained:
            p.add_(0.05 * torch.randn_like(p))
    ours = family.loss(model, batch)
    ours.backward()
    ours_grads = [p.grad.clone() for p in trained]
    model.zero_grad()
    theirs = hf_loss(model, batch)
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)
    for mine, hf in zip(ours_grads, (p.grad for p in trained), strict=True):
        torch.testing.assert_close(mine, hf, atol=1e-5, rtol=1e-4)


def test_the_lm_head_runs_only_at_answer_positions():
    family, model = lora_model("lfm2_vl")
    batch = family.collate(samples())
    rows: list[int] = []
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[-2]))
    try:
        family.loss(model, batch)
    finally:
        handle.remove()
    labelled = int((batch["labels"] != IGNORE_INDEX).sum())
    assert rows == [labelled]  # flattened (answer positions, hidden), not (batch, sequence, hidden)


def test_a_model_without_logits_to_keep_gets_the_full_sequence_loss():
    family, model = lora_model("lfm2_vl")
    batch = family.collate(samples())

    class NoKeep(torch.nn.Module):  # a forward that does not take logits_to_keep
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, labels=None, **inputs):
            return self.inner(labels=labels, **inputs)

    wrapped = NoKeep(model)
    assert not accepts_logits_to_keep(wrapped)
    assert family.loss(wrapped, batch).item() == pytest.approx(hf_loss(model, batch).item(), 1e-6)


def test_trimmed_patch_padding_gives_the_same_logits():
    family, model = lora_model("lfm2_vl")
    model.eval()
    batch = family.collate(samples())
    mask = batch["pixel_attention_mask"]
    assert mask.shape[1] == int(mask.sum(1).max())  # trimmed to the longest image
    padded = dict(batch)
    pad = 64 - mask.shape[1]
    assert pad > 0
    padded["pixel_values"] = torch.nn.functional.pad(batch["pixel_values"], (0, 0, 0, pad))
    padded["pixel_attention_mask"] = torch.nn.functional.pad(mask, (0, pad))
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        trimmed = model(**inputs).logits
        inputs = {k: v for k, v in padded.items() if k != "labels"}
        untrimmed = model(**inputs).logits
    torch.testing.assert_close(trimmed, untrimmed, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["lfm2_vl", "deepseek_ocr2"])
def test_the_frozen_vision_tower_builds_no_autograd_graph(kind):
    family, model = lora_model(kind)
    model.train()
    tower = model.get_base_model().model.vision_tower
    assert not any(p.requires_grad for p in tower.parameters())
    graphs: list[bool] = []
    handle = tower.register_forward_hook(
        lambda _m, _args, out: graphs.append(any(t.requires_grad for t in _tensors(out)))
    )
    try:
        loss = family.loss(model, family.collate(samples()))
    finally:
        handle.remove()
    assert loss.requires_grad  # the adapters do get gradients
    assert graphs == [False]  # the tower ran once, and built no graph


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):  # ModelOutput
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _tensors(item)]
    return []


def test_a_short_run_trains_the_same_as_on_the_models_own_loss(train_steps):
    """A few steps on the answer-only loss give the losses and the readings of the same steps on
    the model's own full-sequence loss (tiny model, fp32, dropout off)."""

    class OwnLoss:  # what a plain Trainer minimises
        loss = staticmethod(hf_loss)

    runs = []
    for objective in ("ours", "theirs"):
        family, model = lora_model("lfm2_vl")
        data = samples()
        batch = family.collate(data)
        losses = train_steps(family if objective == "ours" else OwnLoss, model, batch, 6, 5e-3)
        runs.append((losses, family.predict(model, [s.load_image() for s in data])))
    (ours, read_ours), (theirs, read_theirs) = runs
    assert ours[-1] < ours[0]  # it did learn
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert read_ours == read_theirs


def test_the_preflight_counts_the_configured_image_tokens():
    from vin_ocr.models.lfm2_vl import spec

    checkpoint = "LiquidAI/LFM2-VL-450M"
    default = spec({"name": "lfm2_vl_450m", "checkpoint": checkpoint})
    small = spec({"name": "lfm2_vl_450m", "checkpoint": checkpoint, "max_image_tokens": 64})
    assert default.tokens(512, 64) == {"vision": 1024, "language": 256 + 64}
    assert small.tokens(512, 64) == {"vision": 256, "language": 64 + 64}
    assert small.max_patches == 256
