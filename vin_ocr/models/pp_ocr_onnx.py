"""ONNX export of the PP-OCR networks and reading them back on onnxruntime.

Three graphs, each exported from the torch model and checked against it on onnxruntime:

- the VIN recogniser (:func:`export_onnx`): ``pixel_values`` (batch, 3, 48, width) ->
  ``probs`` (batch, width / 8, 34), softmax over blank + the VIN alphabet (``model.onnx``);
- the general reader (:func:`export_onnx` without ``class_index``): the same over its full
  dictionary;
- the text detector (:func:`export_det_onnx`): ``pixel_values`` (batch, 3, H, W) -> ``probs``
  (batch, 1, H, W), the DB text probability map.

:class:`OnnxNet` runs one of them (a file or the bytes of one) with numpy in and out; a family put
in ONNX mode (:meth:`vin_ocr.models.pp_ocr.PPOCRFamily.use_onnx`) reads through them.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from vin_ocr.models.pp_ocr_rec import ctc_logits, unwrap

if TYPE_CHECKING:
    from vin_ocr.models.pp_ocr_det import DetSettings, TextDetector
    from vin_ocr.models.pp_ocr_scene import GeneralReader

__all__ = [
    "OnnxNet",
    "export_det_onnx",
    "export_onnx",
    "export_scene_onnx",
    "onnx_bytes",
    "onnx_detector",
    "onnx_general_reader",
]

#: ``export_*`` fail when onnxruntime and torch differ by more than this on random inputs.
ATOL = 1e-4


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


class _DetProbs(nn.Module):
    """The exported detector: pixel values -> the text probability map."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state


class OnnxNet:
    """One exported graph on onnxruntime's CPU provider: ``net(pixels) -> probs`` (numpy float32).
    ``threads`` 0 follows torch's thread count (``torch.get_num_threads()``)."""

    def __init__(self, source: str | Path | bytes, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        where = source if isinstance(source, bytes) else str(source)
        self.source = "<memory>" if isinstance(source, bytes) else str(source)
        try:
            self.session = ort.InferenceSession(where, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise ValueError(f"{self.source}: not a readable ONNX model ({exc})") from exc
        self.input = self.session.get_inputs()[0].name

    def __call__(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(pixels, torch.Tensor):
            pixels = pixels.detach().float().cpu().numpy()
        return self.session.run(None, {self.input: np.ascontiguousarray(pixels, np.float32)})[0]


def _export(
    wrapper: nn.Module,
    path: str | Path | io.BytesIO,
    example: tuple[int, ...],
    dynamic: dict[str, dict[int, str]],
    checks: Sequence[tuple[int, ...]],
    opset: int,
    atol: float,
) -> float:
    """Export ``wrapper`` (input ``pixel_values``, output ``probs``) to ``path`` (through a
    temporary file beside it) or into a buffer; check it on onnxruntime on the ``checks`` shapes;
    return the largest difference from torch, ``RuntimeError`` above ``atol``."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter (deprecated in favour of dynamo, which needs onnxscript) warns
        # about traced Python booleans that are constant for these models (checked below).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (torch.zeros(example),),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to a buffer too
            input_names=["pixel_values"],
            output_names=["probs"],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    data = buffer.getvalue()
    net = OnnxNet(data)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in checks:
        x = torch.rand(shape, generator=generator) * 2 - 1
        with torch.no_grad():
            want = wrapper(x).numpy()
        got = net(x)
        if got.shape != want.shape:
            raise RuntimeError(f"{path}: ONNX output {got.shape} vs torch {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > atol:
        raise RuntimeError(f"{path}: ONNX and torch differ by {worst:.2e} (> {atol:.0e})")
    if isinstance(path, io.BytesIO):
        path.write(data)
    else:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return worst


def _float_cpu(model: nn.Module) -> Any:
    """The plain model in fp32 on the CPU, in eval mode; a PEFT model merged into a copy."""
    base = unwrap(model)
    if base is not model:  # PEFT: fold the adapters into a copy
        import copy

        base = copy.deepcopy(model).merge_and_unload()  # type: ignore[operator]
    return base.float().cpu().eval()


def export_onnx(
    model: nn.Module,
    path: str | Path | io.BytesIO,
    class_index: torch.Tensor | None = None,
    opset: int = 17,
    atol: float = ATOL,
) -> float:
    """Export the recogniser to ONNX (input ``pixel_values`` (batch, 3, 48, width), output
    ``probs`` (batch, width / 8, classes)), dynamic batch and width; ``class_index`` picks the
    classes (the VIN head's 34; all of them when None: a general reader). A PEFT model is merged
    first. The graph is checked with onnxruntime on two shapes; returns the largest difference
    from torch, and raises ``RuntimeError`` if it exceeds ``atol``."""
    base = _float_cpu(model)
    if class_index is None:
        class_index = torch.arange(base.config.head_out_channels)
    wrapper = _VinProbs(base, class_index).eval()
    dynamic = {"pixel_values": {0: "batch", 3: "width"}, "probs": {0: "batch", 1: "time"}}
    checks = ((2, 3, 48, 320), (3, 3, 48, 480))
    return _export(wrapper, path, (1, 3, 48, 320), dynamic, checks, opset, atol)


def export_det_onnx(
    model: Any, path: str | Path | io.BytesIO, opset: int = 17, atol: float = ATOL
) -> float:
    """Export a PP-OCR text detector (its output ``last_hidden_state``, the probability map) to
    ONNX: input ``pixel_values`` (batch, 3, H, W), H and W multiples of 32, all dynamic; checked
    as :func:`export_onnx` is."""
    wrapper = _DetProbs(_float_cpu(model)).eval()
    dynamic = {
        "pixel_values": {0: "batch", 2: "height", 3: "width"},
        "probs": {0: "batch", 2: "height", 3: "width"},
    }
    checks = ((1, 3, 96, 160), (2, 3, 128, 64))
    return _export(wrapper, path, (1, 3, 128, 128), dynamic, checks, opset, atol)


def onnx_bytes(export: Any, model: Any, *args: Any) -> bytes:
    """``export(model, buffer, *args)`` into memory: the graph's bytes (for :class:`OnnxNet`)."""
    buffer = io.BytesIO()
    export(model, buffer, *args)
    return buffer.getvalue()


def export_scene_onnx(
    det_settings: DetSettings, general_checkpoint: str, det: str | Path, general: str | Path
) -> dict[str, float]:
    """Export the text detector of ``det_settings`` to ``det`` and (unless ``none``) the
    general reader ``general_checkpoint`` to ``general``; each graph's largest difference from
    torch."""
    from vin_ocr.models.pp_ocr_det import TextDetector
    from vin_ocr.models.pp_ocr_scene import GeneralReader

    out = {"det_onnx_max_abs_diff": export_det_onnx(TextDetector(det_settings).model, det)}
    if general_checkpoint.lower() != "none":
        reader = GeneralReader.load(general_checkpoint)
        out["general_onnx_max_abs_diff"] = export_onnx(reader.model, general)
    return out


def onnx_detector(settings: DetSettings, graph: str | Path | None) -> TextDetector:
    """The text detector of ``settings`` on onnxruntime: the graph ``graph``, or (None) its torch
    model exported into memory."""
    from vin_ocr.models.pp_ocr_det import TextDetector

    source = graph or onnx_bytes(export_det_onnx, TextDetector(settings).model)
    return TextDetector(settings, net=OnnxNet(source))


def onnx_general_reader(checkpoint: str, graph: str | Path | None) -> GeneralReader:
    """The general reader ``checkpoint`` on onnxruntime: the graph ``graph``, or (None) its torch
    model exported into memory. (The torch model is loaded either way, for its charset.)"""
    from vin_ocr.models.pp_ocr_scene import GeneralReader

    reader = GeneralReader.load(checkpoint)
    net = OnnxNet(graph if graph is not None else onnx_bytes(export_onnx, reader.model))
    return GeneralReader(net, reader.charset)
