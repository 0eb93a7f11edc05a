"""A toy model family written only where a family lives: this module (the model, the family class
and its facts), a model config and one registry call (tests/models/test_toy_family.py).

The model reads a 16 x 64 grey image with one linear layer and classifies each of the 17 VIN
positions over blank + the 33 VIN characters: tiny, trainable, LoRA-able, saved and reloaded with
``save_pretrained`` / ``from_pretrained`` like a transformers model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from vin_ocr.models.base import FamilyFacts
from vin_ocr.models.spec import AttnSupport, ModelSpec, Tower, cfg_get, on_meta, spec_from_module
from vin_ocr.vin import ALPHABET, VIN_LENGTH

HEIGHT, WIDTH = 16, 64
CLASSES = ["", *ALPHABET]  # 0: blank (no character at this position)


class ToyConfig(PretrainedConfig):
    model_type = "vin_ocr_toy"

    def __init__(self, hidden: int = 32, **kwargs: Any) -> None:
        self.hidden = hidden
        super().__init__(**kwargs)


class ToyModel(PreTrainedModel):
    config_class = ToyConfig
    base_model_prefix = "toy"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.encoder = nn.Linear(HEIGHT * WIDTH, config.hidden)
        self.head = nn.Linear(config.hidden, VIN_LENGTH * len(CLASSES))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            module.reset_parameters()

    def forward(self, pixel_values: torch.Tensor, labels: Any = None, **_: Any) -> ModelOutput:
        hidden = torch.tanh(self.encoder(pixel_values.flatten(1)))
        logits = self.head(hidden).view(-1, VIN_LENGTH, len(CLASSES))
        return ModelOutput(logits=logits)


def spec(model_cfg: Any) -> ModelSpec:
    """Counted on the meta device; activations: a measured-style figure of one tower."""
    tower = Tower("toy", "", 0, 0, 0, 0, "measured", bytes_per_sample_fp32=4096, measured_width=64)
    return spec_from_module(
        on_meta(ToyModel, ToyConfig()),
        name=str(cfg_get(model_cfg, "name", "")),
        family="toy",
        checkpoint=str(cfg_get(model_cfg, "checkpoint", "")),
        towers=(tower,),
        source="the toy's own count",
        checkpoint_dtype="fp32",
        attn=AttnSupport(flash_attention_2=False, sdpa=False),
        default_image_size=WIDTH,
        qlora=False,
        image_budget=False,
    )


class ToyFamily:
    name = "toy"
    facts = FamilyFacts(
        spec=spec,
        tiny={"tiny": True},
        pipeline_tag="image-classification",
        cpu_inference=True,
    )

    def __init__(self, cfg: Any = None) -> None:
        self.cfg = dict(cfg or {})

    def build(self, cfg: Any, hardware: Any) -> tuple[nn.Module, Any]:
        from vin_ocr.models.vlm import resolve_hardware

        cfg = dict(cfg or self.cfg)
        place = resolve_hardware(hardware)
        if cfg.get("tiny"):
            model = ToyModel(ToyConfig())
        else:
            model = ToyModel.from_pretrained(cfg["checkpoint"])
        return model.to(place.device, dtype=place.dtype), None

    def pixels(self, images: Sequence[Any]) -> torch.Tensor:
        grey = [np.asarray(im.convert("L").resize((WIDTH, HEIGHT)), np.float32) for im in images]
        return torch.from_numpy(np.stack(grey)) / 127.5 - 1.0

    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        labels = torch.zeros(len(samples), VIN_LENGTH, dtype=torch.long)
        for i, sample in enumerate(samples):
            for j, char in enumerate(sample.vin[:VIN_LENGTH]):
                labels[i, j] = CLASSES.index(char) if char in ALPHABET else 0
        return {"pixel_values": self.pixels([s.load_image() for s in samples]), "labels": labels}

    def logits(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        param = next(model.parameters())
        return model(batch["pixel_values"].to(param.device, dtype=param.dtype)).logits

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.logits(model, batch)
        labels = batch["labels"].to(logits.device)
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())

    @torch.no_grad()
    def predict(self, model: nn.Module, images: Sequence[Any]) -> list[str]:
        best = self.logits(model, {"pixel_values": self.pixels(images)}).argmax(-1).cpu()
        return ["".join(CLASSES[int(i)] for i in row) for row in best]

    def lora_settings(
        self, training: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None
    ) -> Any:
        from vin_ocr.models.lora import resolve_lora

        defaults = {"target_modules": "encoder|head", "frozen_prefixes": []}  # a full-match regex
        return resolve_lora(defaults, model or {}, training)
