"""The preflight's memory model: its constants, what it reads of ``training``
(:class:`TrainingSpec`) and what it answers (:class:`Estimate`, with its report);
:mod:`vin_ocr.hardware.estimate` computes it.

The memory model (see docs/hardware.md for its measured error):

- weights: every parameter in the run dtype (LoRA), 4-bit NF4 for the nn.Linear weights plus the
  run dtype for the rest (QLoRA), or fp32 master weights (full fine-tuning, also under bf16/fp16
  mixed precision);
- trainable parameters (full: all; LoRA/QLoRA: the adapters, in fp32): their fp32 gradients and
  the optimiser state (AdamW: two fp32 moments = 8 bytes per trainable parameter);
- activations autograd keeps for backward, per layer and token of each tower that gradients flow
  through, plus the logits over the vocabulary; with gradient checkpointing, only each layer's
  input plus one layer's activations;
- a fixed runtime overhead (CUDA context, or the imported libraries on CPU).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

GIB = 1024**3
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
OPTIMIZER_BYTES = {"adamw": 8, "sgd": 0}  # state per trainable parameter
METHODS = ("lora", "qlora", "full")
NF4_BYTES = 0.5 + 0.127 / 8  # 4-bit weights + double-quantised block constants
#: Memory a process uses before the model: CUDA context, or torch + transformers imported (CPU,
#: measured 0.73 GiB RSS here).
OVERHEAD_GB = {"cuda": 0.6, "mps": 0.5, "cpu": 0.75}
FITS_BELOW = 0.85  # estimate / available memory below this: fits
TIGHT_BELOW = 1.0  # ... below this: tight; above: does not fit
# Elements autograd keeps per token and layer: pre-norm decoder with a gated MLP, and a ViT block.
DECODER_H, DECODER_I = 8, 4
ENCODER_H, ENCODER_I = 8, 2
EAGER_SCORES = 2  # attention scores + softmax probabilities, per head and query-key pair
SAM_SCORES = 3  # ... plus SAM's decomposed relative-position terms
LOGIT_EXTRA_BYTES = 8  # fp32 log-softmax kept for backward + its fp32 gradient
#: Peak memory per byte of the activations counted above: backward transients, autograd's extra
#: saves (LoRA paths, conv blocks) and allocator slack. Fitted on CPU peak RSS with
#: scripts/bench_preflight.py (LFM2-VL-450M LoRA: 2.3 and 2.4; PP-OCRv6 full: 1.6 and 1.7);
#: see docs/hardware.md for the held-out check.
ACTIVATION_FACTOR = 2.35
MEASURED_ACTIVATION_FACTOR = 1.6


class PreflightError(RuntimeError):
    """The run does not fit this machine (message: the full estimate and the ways out)."""


@dataclass(frozen=True)
class TrainingSpec:
    """The part of a ``training`` config the preflight reads."""

    method: str = "lora"
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"
    max_length: int = 64
    image_size: int | None = None
    lora_r: int = 16
    lora_target_modules: str | tuple[str, ...] = "all-linear"

    @classmethod
    def from_cfg(cls, cfg: Any) -> TrainingSpec:
        """Read a ``training`` config (DictConfig or dict); unknown keys are left to training."""

        def get(key: str, default: Any) -> Any:
            value = cfg.get(key, default) if cfg is not None else default
            return default if value is None and key != "image_size" else value

        lora = get("lora", {}) or {}
        targets = lora.get("target_modules", "all-linear")
        spec = cls(
            method=str(get("method", "lora")).lower(),
            batch_size=int(get("batch_size", 8)),
            gradient_accumulation_steps=int(get("gradient_accumulation_steps", 1)),
            gradient_checkpointing=bool(get("gradient_checkpointing", False)),
            optimizer=str(get("optimizer", "adamw")).lower(),
            max_length=int(get("max_length", 64)),
            image_size=None if get("image_size", None) is None else int(get("image_size", 0)),
            lora_r=int(lora.get("r", 16)),
            lora_target_modules=targets if isinstance(targets, str) else tuple(targets),
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"training.method={self.method!r} is not one of {', '.join(METHODS)}")
        if self.optimizer not in OPTIMIZER_BYTES:
            known = ", ".join(OPTIMIZER_BYTES)
            raise ValueError(f"training.optimizer={self.optimizer!r} is not one of {known}")
        for key in ("batch_size", "gradient_accumulation_steps", "max_length", "lora_r"):
            if getattr(self, key) < 1:
                raise ValueError(f"training.{key} must be at least 1, got {getattr(self, key)}")
        if self.image_size is not None and self.image_size < 16:
            raise ValueError(f"training.image_size must be at least 16, got {self.image_size}")


@dataclass(frozen=True)
class Estimate:
    model: str
    method: str
    device: str
    dtype: str
    params: int
    trainable: int
    param_source: str
    download_gb: float
    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    available_gb: float
    batch_size: int
    image_size: int
    blockers: tuple[str, ...] = ()
    ways_out: tuple[str, ...] = ()

    @property
    def total_gb(self) -> float:
        parts = (self.weights_gb, self.gradients_gb, self.optimizer_gb, self.activations_gb)
        return sum(parts) + self.overhead_gb

    @property
    def verdict(self) -> str:
        ratio = self.total_gb / self.available_gb if self.available_gb > 0 else math.inf
        if ratio <= FITS_BELOW:
            return "fits"
        return "tight" if ratio <= TIGHT_BELOW else "does not fit"

    @property
    def ok(self) -> bool:
        return not self.blockers and self.verdict != "does not fit"

    @property
    def status(self) -> str:
        """The one verdict a user reads: ``cannot run`` when something other than memory stops
        the run (``blockers``), else the memory :attr:`verdict`."""
        return "cannot run" if self.blockers else self.verdict

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(total_gb=self.total_gb, verdict=self.verdict, status=self.status)
        return data

    def report(self) -> str:
        memory = "GPU memory" if self.device == "cuda" else f"{self.device} memory"
        rows = [
            ("weights", self.weights_gb),
            ("gradients", self.gradients_gb),
            ("optimizer state", self.optimizer_gb),
            (
                f"activations (batch {self.batch_size}, image {self.image_size})",
                self.activations_gb,
            ),
            ("runtime overhead", self.overhead_gb),
        ]
        lines = [
            f"Preflight: {self.model}, {self.method} on {self.device} ({self.dtype})",
            f"  parameters      {self.params:,} (source: {self.param_source})",
            f"  trainable       {self.trainable:,}",
            f"  download        {self.download_gb:.2f} GiB",
        ]
        lines += [f"  {name:<40} {gb:8.2f} GiB" for name, gb in rows]
        lines.append(f"  {'total':<40} {self.total_gb:8.2f} GiB")
        lines.append(f"  {'available ' + memory:<40} {self.available_gb:8.2f} GiB")
        if self.blockers:  # memory is not the problem: say what is, and nothing else
            lines.append(f"  verdict: CANNOT RUN (memory alone would be {self.verdict})")
            lines += [f"  why: {b}" for b in self.blockers]
        else:
            lines.append(f"  verdict: {self.verdict.upper()}")
        if self.ways_out:
            lines.append("  ways out:")
            lines += [f"    - {w}" for w in self.ways_out]
        return "\n".join(lines)
