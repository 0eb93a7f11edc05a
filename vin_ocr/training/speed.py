"""The training loop's speed settings (:class:`vin_ocr.training.loop.LoopConfig`): bf16 autocast
(``autocast``) and channels-last memory format (``channels_last``). ``scripts/bench_pp_step.py``
measures what each pays on PP-OCR (docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

import torch

AUTOCAST = ("none", "bf16", "auto")  # LoopConfig.autocast


def autocast_dtype(name: str, device: str) -> torch.dtype | None:
    """The dtype :attr:`LoopConfig.autocast` ``name`` runs the steps in on ``device``."""
    if name == "auto":
        from vin_ocr.hardware.detect import _cpu_amx

        cuda = device == "cuda" and torch.cuda.is_bf16_supported()
        name = "bf16" if cuda or (device == "cpu" and _cpu_amx()) else "none"
    return torch.bfloat16 if name == "bf16" else None


def channels_last_batch(batch: Any) -> Any:
    """``batch`` (a mapping of tensors) with its 4-D floating tensors in channels-last format."""
    if not isinstance(batch, dict):
        return batch
    return {
        k: v.contiguous(memory_format=torch.channels_last)
        if isinstance(v, torch.Tensor) and v.dim() == 4 and v.is_floating_point()
        else v
        for k, v in batch.items()
    }
