"""ONNX export of a PP-OCR recogniser: pixel values in, probabilities over blank + VIN out."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vin_ocr.models.pp_ocr_rec import ctc_logits, unwrap


class _VinProbs(nn.Module):
    """The exported graph: pixel values -> softmax probabilities over blank + VIN alphabet."""

    class_index: torch.Tensor

    def __init__(self, model: Any, class_index: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("class_index", class_index.clone(), persistent=False)
        self.sliced = len(class_index) != model.config.head_out_channels

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        logits = ctc_logits(self.model, pixel_values)
        if self.sliced:
            logits = logits.index_select(-1, self.class_index)
        return logits.softmax(-1)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    class_index: torch.Tensor | None = None,
    opset: int = 17,
    atol: float = 1e-4,
) -> float:
    """Export the recogniser to ONNX (input ``pixel_values`` (batch, 3, 48, width), output
    ``probs`` (batch, width / 8, 34)), dynamic batch and width; a PEFT model is merged first.
    The file is checked with onnxruntime on two shapes; returns the largest difference from
    torch, and raises ``RuntimeError`` if it exceeds ``atol``. Written via a temporary file."""
    import onnxruntime as ort

    path = Path(path)
    base = unwrap(model)
    if base is not model:  # PEFT: fold the adapters into a copy
        import copy

        base = copy.deepcopy(model).merge_and_unload()  # type: ignore[operator]
    base = base.float().cpu().eval()
    if class_index is None:
        class_index = torch.arange(base.config.head_out_channels)
    wrapper = _VinProbs(base, class_index).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    example = torch.zeros(1, 3, 48, 320)
    with warnings.catch_warnings():
        # The TorchScript exporter (deprecated in favour of dynamo, which needs onnxscript) warns
        # about traced Python booleans that are constant for this model (checked below).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(tmp),
            input_names=["pixel_values"],
            output_names=["probs"],
            dynamic_axes={
                "pixel_values": {0: "batch", 3: "width"},
                "probs": {0: "batch", 1: "time"},
            },
            opset_version=opset,
            dynamo=False,
        )
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in ((2, 3, 48, 320), (3, 3, 48, 480)):
        x = torch.rand(shape, generator=generator) * 2 - 1
        with torch.no_grad():
            want = wrapper(x).numpy()
        got = session.run(None, {"pixel_values": x.numpy()})[0]
        if got.shape != want.shape:
            raise RuntimeError(f"{path}: ONNX output {got.shape} vs torch {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > atol:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{path}: ONNX and torch differ by {worst:.2e} (> {atol:.0e})")
    tmp.replace(path)
    return worst
