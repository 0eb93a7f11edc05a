"""The family contract, once for every registered family with a tiny model: the loss falls, LoRA
trains its adapters and nothing else, the merge reproduces the adapter's outputs, and both the
adapter and the saved model reload to the same outputs.

A new family is tested here as soon as it is registered with ``FamilyFacts.tiny`` set; its own
test file holds only what is particular to it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from vin_ocr.data import Sample
from vin_ocr.models.base import Logits, Lora, ModelFamily
from vin_ocr.models.lora import apply_lora, load_adapter, lora_module_names, merge_lora
from vin_ocr.models.registry import FAMILIES, facts, get_family, supports
from vin_ocr.models.tiny import text_image

VINS = ["1M8GDM9AXKP042788", "WVWZZZ1JZXW000001"]
TINY = [name for name in FAMILIES if facts(name).tiny is not None]

# PEFT 0.21 calls a transformers 5 method that warns about its own deprecation.
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def build(name: str, **cfg) -> tuple[ModelFamily, torch.nn.Module, object]:
    """The family's tiny model, from the same seed every time (the same random weights)."""
    torch.manual_seed(0)
    cfg = {**facts(name).tiny, **cfg}
    family = get_family(name, cfg)
    model, processor = family.build(cfg, None)
    return family, model, processor


def samples() -> list[Sample]:
    return [
        Sample(image=Path(f"{v}.png"), vin=v, source="synth", pixels=text_image(v), crop=True)
        for v in VINS
    ]


def outputs(family, model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return family.logits(model, batch).float()


def with_lora(name: str, family, model):
    """LoRA the way training sets it up: inside ``build`` for families that apply it there
    (``FamilyFacts.lora_in_build``), else around the built model."""
    settings = family.lora_settings({"r": 4, "alpha": 8, "dropout": 0.0}, None)
    if facts(name).lora_in_build:
        lora = dataclasses.asdict(settings)
        return build(name, finetune="lora", lora=lora)[1]
    return apply_lora(model, settings)


def test_every_family_is_trainable_tiny_or_says_why_not():
    """Families without a tiny model are inference-only: they cannot be trained."""
    for name in FAMILIES:
        if facts(name).tiny is None:
            with pytest.raises(NotImplementedError, match="inference only"):
                get_family(name).collate(samples())


@pytest.mark.parametrize("name", TINY)
def test_capabilities_a_trainable_family_needs(name):
    assert supports(name, Lora) and supports(name, Logits)
    family, model, _ = build(name)
    assert isinstance(family, ModelFamily)
    texts = family.predict(model, [s.load_image() for s in samples()])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("name", TINY)
def test_full_training_lowers_the_loss(name, train_steps):
    family, model, _ = build(name)
    losses = train_steps(family, model, family.collate(samples()), steps=6, lr=1e-3)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", TINY)
def test_lora_trains_adapters_merges_and_reloads(name, tmp_path, train_steps):
    family, model, processor = build(name)
    batch = family.collate(samples())
    peft_model = with_lora(name, family, model)
    assert lora_module_names(peft_model)
    params = dict(peft_model.named_parameters())
    frozen = {n: p.detach().clone() for n, p in params.items() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
    assert frozen and trained

    losses = train_steps(family, peft_model, batch, steps=4, lr=1e-2)
    assert losses[-1] < losses[0], losses
    for n, p in peft_model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"base weight {n} changed"
        else:
            assert not torch.equal(p, trained[n]), f"adapter {n} did not change"
    want = outputs(family, peft_model, batch)

    # The adapter alone on a fresh copy of the base (same seed) gives the same outputs.
    peft_model.save_pretrained(tmp_path / "adapter")
    _, base, _ = build(name)
    reloaded = load_adapter(base, tmp_path / "adapter")
    torch.testing.assert_close(outputs(family, reloaded, batch), want, atol=1e-5, rtol=1e-5)

    # The merge: a plain model with the same outputs within float32 rounding.
    merged = merge_lora(peft_model)
    assert not lora_module_names(merged)
    torch.testing.assert_close(outputs(family, merged, batch), want, atol=1e-4, rtol=1e-4)

    # Saved as training saves it, the merged model reloads through the family.
    merged.save_pretrained(tmp_path / "model")
    if processor is not None:
        processor.save_pretrained(tmp_path / "model")
    again, loaded, _ = build(name, tiny=False, checkpoint=str(tmp_path / "model"))
    torch.testing.assert_close(
        outputs(again, loaded, again.collate(samples())), want, atol=1e-4, rtol=1e-4
    )
