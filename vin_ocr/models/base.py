"""The contract of a model family: one protocol, a few optional capabilities, and its facts.

A family module (``pp_ocr.py``, ``lfm2_vl.py``, ``deepseek_ocr.py``, ...) exposes a class that:

- ``build(cfg, hardware)`` loads (or, for tests, builds tiny from config) the model and its
  processor and returns them; loading failures raise with the reason, never fall back silently;
- ``collate(samples)`` turns a list of :class:`vin_ocr.data.Sample` into a batch of tensors
  (labels aligned, padding masked out of the loss with -100 for token models);
- ``loss(model, batch)`` returns the scalar training loss;
- ``predict(model, images)`` returns one raw string per PIL image (the VIN path, normalisation
  and VIN rules, is applied by the caller, the same way for every family);
- ``facts``: a class attribute, the :class:`FamilyFacts` the rest of the code asks for (memory
  spec for the preflight, tiny model, pipeline tag, model=auto candidates, Space needs).

Optional capabilities are the small protocols below (:class:`Reads`, :class:`Lora`,
:class:`Logits`, :class:`ExportsOnnx`). The registry checks a family class against each one once,
when it registers it; callers ask :func:`vin_ocr.models.registry.supports` instead of probing
with ``hasattr``. The loop, LoRA set-up, merge, hub push, card and metric are shared functions,
not base classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from vin_ocr.data import Sample
    from vin_ocr.models.lora import LoraSettings
    from vin_ocr.models.spec import ModelSpec
    from vin_ocr.reading import Reading

#: The methods every family implements (checked at registration).
REQUIRED = ("build", "collate", "loss", "predict")


@runtime_checkable
class ModelFamily(Protocol):
    name: str

    def build(self, cfg: Any, hardware: Any) -> tuple[torch.nn.Module, Any]: ...

    def collate(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]: ...

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def predict(self, model: torch.nn.Module, images: Sequence[Image]) -> list[str]: ...


# -- optional capabilities -----------------------------------------------------------------------


@runtime_checkable
class Reads(Protocol):
    """Readings with per-character confidences, the box of the line read in a scene, and the
    reading before the VIN-constrained search; ``crops[i]`` says whether image ``i`` is a line
    crop (None: decide per image). Engines and validation use it instead of ``predict``."""

    def read(
        self,
        model: torch.nn.Module,
        images: Sequence[Image],
        crops: Sequence[bool | None] | None = None,
    ) -> list[Reading]: ...


@runtime_checkable
class Lora(Protocol):
    """LoRA fine-tuning: the run's :class:`~vin_ocr.models.lora.LoraSettings` from
    ``training.lora`` over the model config's ``lora`` (targets default to the family's)."""

    def lora_settings(
        self, training: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None
    ) -> LoraSettings: ...


@runtime_checkable
class Logits(Protocol):
    """The scores of a collated batch that a merge must reproduce (e.g. CTC logits over the VIN
    classes, or a language model's logits), for merge verification and the contract tests."""

    def logits(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor: ...


@runtime_checkable
class ExportsOnnx(Protocol):
    """An ONNX file of the model, checked against torch; returns the largest difference."""

    def export_onnx(self, model: torch.nn.Module, path: str | Path) -> float: ...


CAPABILITIES: tuple[type, ...] = (Reads, Lora, Logits, ExportsOnnx)


# -- facts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyFacts:
    """What the rest of the code knows about a family; the family module is the one place that
    says it (hardware/, hub/, app/ and tests ask the registry and never spell a family name)."""

    #: The preflight's memory spec of a ``model`` config (name, checkpoint, its own keys):
    #: parameters, towers and attention support, with no download (:mod:`vin_ocr.models.spec`).
    spec: Callable[[Any], ModelSpec]
    #: Model-config keys that build the family's tiny random model offline (tests, smoke runs);
    #: None: the family has none (inference-only, remote code).
    tiny: Mapping[str, Any] | None = None
    #: The Hub ``pipeline_tag`` of a fine-tuned model's card.
    pipeline_tag: str = "image-to-text"
    #: ``model=auto`` candidates of this family: model config name -> strength (higher first).
    auto: Mapping[str, int] = field(default_factory=dict)
    #: Inference runs well on a CPU (a Space gets ``cpu-basic``); else the smallest GPU tier.
    cpu_inference: bool = False
    #: LoRA is applied inside ``build`` when the model config says ``finetune: lora`` (training
    #: sets ``model.finetune`` from ``training.method`` and puts the resolved LoRA settings in
    #: ``model.lora``); otherwise training wraps the built model with LoRA itself.
    lora_in_build: bool = False
    #: For a ``checkpoint`` that names a source rather than a Hub id (e.g. a wheel): the Hub id of
    #: the same weights and the card's sentence about the source, from the model config.
    named_source: Callable[[Mapping[str, Any]], tuple[str | None, str | None] | None] | None = None
    #: The real-size architecture of a ``model`` config, offline, with the special-token ids of
    #: the given tokenizer: ``(model class, config)``, for random-weight benchmarks
    #: (``scripts/bench_train.py``); None: the script builds it itself.
    real_config: Callable[[Any, Any], tuple[type, Any]] | None = None
