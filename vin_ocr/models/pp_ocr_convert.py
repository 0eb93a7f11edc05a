"""Load the PP-OCRv6-small ONNX files shipped in the RapidOCR wheel into the native transformers
classes (``PPOCRV6SmallRecForTextRecognition``, ``PPOCRV6SmallDetForObjectDetection``).

The ONNX graphs were exported from PaddlePaddle with batch norm folded into most convolutions
(``Conv`` then ``Add`` of a per-channel bias). The native classes keep ``Conv2d(bias=False)`` +
``BatchNorm2d``; a folded convolution is loaded as its folded weight plus a batch norm that is an
exact affine identity carrying the bias (weight 1, running mean 0, running variance ``1 - eps``).
Where the graph kept a ``BatchNormalization`` node its statistics are copied as they are.

Weights are matched by *execution order*: the ONNX nodes in graph order against the native
modules in the order a forward pass calls them, kind by kind (convolution, linear, layer norm),
with every shape checked. The load is strict: a native parameter or buffer left without a value,
or a weight-sized ONNX initializer left unused, raises :class:`ConversionError` listing them.
The ONNX side (layers in graph order) is :mod:`vin_ocr.models.pp_ocr_graph`.
Small initializers (at most 8 values: reshape targets, slice bounds, the GELU / layer-norm /
attention-scale scalars) are graph constants, not weights; the numerical comparison against
onnxruntime in the tests checks that the native modules compute what they compute.

The charset returned with the recogniser is ``["", *metadata_dictionary, " "]``: index 0 is the
CTC blank (an empty string, so joining decoded indices needs no special case), and RapidOCR /
PaddleOCR append the space as the last class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from vin_ocr.models.pp_ocr_graph import (
    ConversionError,
    OnnxGraph,
    OnnxLayer,
    onnx_layers,
    read_onnx,
    rec_charset,
)

if TYPE_CHECKING:
    from transformers import PPOCRV6SmallDetForObjectDetection, PPOCRV6SmallRecForTextRecognition

__all__ = [
    "DET_ONNX",
    "REC_ONNX",
    "ConversionError",
    "load_rapidocr_det",
    "load_rapidocr_rec",
    "rapidocr_model_path",
    "read_onnx",
    "rec_charset",
]

REC_ONNX = "PP-OCRv6_rec_small.onnx"
DET_ONNX = "PP-OCRv6_det_small.onnx"

#: Initializers with at most this many values are graph constants, not weights.
_CONSTANT_MAX_NUMEL = 8


def rapidocr_model_path(name: str) -> Path:
    """Path of a model file inside the installed ``rapidocr`` package (``rapidocr/models/``)."""
    try:
        import rapidocr
    except ImportError as exc:  # pragma: no cover - rapidocr is a dependency
        raise ConversionError(
            f"the rapidocr package is needed for the offline PP-OCR weights ({name}): {exc}"
        ) from exc
    return Path(rapidocr.__file__).resolve().parent / "models" / name


# --------------------------------------------------------------------------------------------
# The torch side: parameterised modules in call order.

_KINDS: dict[type[nn.Module], str] = {
    nn.Conv2d: "conv",
    nn.ConvTranspose2d: "conv_transpose",
    nn.Linear: "linear",
    nn.LayerNorm: "norm",
}


def _call_order(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The convolutions, linears and layer norms of ``model`` in the order forward calls them."""
    order: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    names = {id(m): n for n, m in model.named_modules()}

    def hook(module: nn.Module, _args: Any, _out: Any) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            order.append((names[id(module)], module))

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m) in _KINDS]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return order


def _batch_norm_of(model: nn.Module) -> dict[int, tuple[str, nn.BatchNorm2d]]:
    """Conv id -> the batch norm applied right after it: the transformers PP-OCR conv layers hold
    a ``convolution`` and a ``normalization`` (or ``norm``) sibling."""
    found: dict[int, tuple[str, nn.BatchNorm2d]] = {}
    for name, module in model.named_modules():
        conv = getattr(module, "convolution", None)
        if not isinstance(conv, nn.Conv2d | nn.ConvTranspose2d):
            continue
        for attr in ("normalization", "norm"):
            bn = getattr(module, attr, None)
            if isinstance(bn, nn.BatchNorm2d):
                found[id(conv)] = (f"{name}.{attr}", bn)
    return found


def _assign(
    model: nn.Module, order: list[tuple[str, nn.Module]], layers: list[OnnxLayer], source: Path
) -> set[str]:
    """Copy ``layers`` into the modules of ``order``; returns the state-dict keys given a value."""
    bns = _batch_norm_of(model)
    native = [_KINDS[type(m)] for _, m in order]
    if native != [x.kind for x in layers]:
        at = next(
            (i for i, (a, b) in enumerate(zip(native, layers, strict=False)) if a != b.kind),
            min(len(native), len(layers)),
        )
        raise ConversionError(
            f"{source}: the ONNX graph has {_summary(x.kind for x in layers)}, the native model "
            f"{_summary(native)}; they part at layer {at}"
        )
    done: set[str] = set()
    problems: list[str] = []

    def put(key: str, target: Any, value: np.ndarray | float) -> None:
        tensor = torch.from_numpy(np.array(value, dtype=np.float32))
        if tuple(tensor.shape) != tuple(target.shape):
            problems.append(f"{key}: native {tuple(target.shape)} vs ONNX {tuple(tensor.shape)}")
            return
        with torch.no_grad():
            target.copy_(tensor)
        done.add(key)

    module: Any
    for (name, module), layer in zip(order, layers, strict=True):
        where = f"{name} <- {layer.node}"
        if layer.kind == "norm":
            assert isinstance(module, nn.LayerNorm)
            put(f"{name}.weight", module.weight, layer.weight)
            put(f"{name}.bias", module.bias, layer.bias)  # type: ignore[arg-type]
            # The native config has one epsilon for all layer norms; the source may differ per
            # layer (PP-OCRv6 rec: 1e-5 in the SVTR blocks, 1e-6 in the final norm).
            module.eps = float(np.float32(layer.eps))
            continue
        put(f"{name}.weight", module.weight, layer.weight)
        has_bias = getattr(module, "bias", None) is not None
        bn_name, bn = bns.get(id(module), (None, None))
        if layer.bn is not None:
            if bn is None or bn_name is None:
                problems.append(f"{where}: ONNX keeps a batch norm the native layer lacks")
                continue
            scale, beta, mean, var, eps = layer.bn
            for part, value in zip(
                ("weight", "bias", "running_mean", "running_var"),
                (scale, beta, mean, var),
                strict=True,
            ):
                put(f"{bn_name}.{part}", getattr(bn, part), value)
            bn.num_batches_tracked.zero_()  # type: ignore[union-attr]
            done.add(f"{bn_name}.num_batches_tracked")
            if not math.isclose(bn.eps, eps, rel_tol=1e-3):
                problems.append(f"{where}: batch-norm eps {bn.eps} vs ONNX {eps}")
            if has_bias:
                put(f"{name}.bias", module.bias, layer.bias if layer.bias is not None else 0.0)
            continue
        out_channels = module.weight.shape[0]
        if isinstance(module, nn.ConvTranspose2d):
            out_channels = module.out_channels
        bias = layer.bias if layer.bias is not None else np.zeros(out_channels)
        if has_bias:
            put(f"{name}.bias", module.bias, bias)
        if bn is not None and bn_name is not None:
            # Folded batch norm: an exact affine identity (carrying the bias if the conv has none).
            channels = bn.num_features
            put(f"{bn_name}.weight", bn.weight, np.ones(channels))
            put(f"{bn_name}.bias", bn.bias, np.zeros(channels) if has_bias else bias)
            put(f"{bn_name}.running_mean", bn.running_mean, np.zeros(channels))
            put(f"{bn_name}.running_var", bn.running_var, np.full(channels, 1.0 - bn.eps))
            bn.num_batches_tracked.zero_()  # type: ignore[union-attr]
            done.add(f"{bn_name}.num_batches_tracked")
        elif not has_bias and layer.bias is not None:
            problems.append(f"{where}: the ONNX layer has a bias the native layer has no place for")
    if problems:
        raise ConversionError(
            f"{source}: weights do not fit the native model:\n  " + "\n  ".join(problems)
        )
    return done


def _summary(kinds: Any) -> str:
    kinds = list(kinds)
    return ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))


def _reverse_levels(order: list[tuple[str, nn.Module]], prefix: str) -> None:
    """Reverse, in place, the order of the numbered sub-modules ``prefix<i>.`` in ``order``."""
    slots = [i for i, (name, _) in enumerate(order) if name.startswith(prefix)]
    items = [order[i] for i in slots]

    def level(name: str) -> int:
        return int(name[len(prefix) :].split(".")[0])

    items.sort(key=lambda item: -level(item[0]))  # stable: keeps the order inside a level
    for slot, item in zip(slots, items, strict=True):
        order[slot] = item


def _convert(
    source: Path,
    model: nn.Module,
    example: torch.Tensor,
    layers: list[OnnxLayer],
    graph: OnnxGraph,
    reorder: Callable[[list[tuple[str, nn.Module]]], None] | None = None,
) -> None:
    order = _call_order(model.eval(), example)
    if reorder is not None:
        reorder(order)
    done = _assign(model, order, layers, source)
    missing = [k for k in model.state_dict() if k not in done]
    used = {n for layer in layers for n in layer.used}
    unused = [
        f"{n} {list(v.shape)}"
        for n, v in graph.inits.items()
        if n not in used and v.size > _CONSTANT_MAX_NUMEL
    ]
    if missing or unused:
        raise ConversionError(
            f"{source}: incomplete conversion; native tensors without a value: "
            f"{missing or 'none'}; ONNX weights not used: {unused or 'none'}"
        )


# --------------------------------------------------------------------------------------------
# Public loaders.


def _resolve(path: str | Path | None, default: str) -> Path:
    return Path(path) if path is not None else rapidocr_model_path(default)


def load_rapidocr_rec(
    onnx_path: str | Path | None = None,
) -> tuple[PPOCRV6SmallRecForTextRecognition, list[str]]:
    """The PP-OCRv6-small recogniser from RapidOCR's ONNX as the native transformers model
    (eval mode) and its charset (index 0 = CTC blank ``""``, last = space)."""
    from transformers import PPOCRV6SmallRecConfig, PPOCRV6SmallRecForTextRecognition

    source = _resolve(onnx_path, REC_ONNX)
    onnx_model = read_onnx(source)
    charset = rec_charset(onnx_model, source)
    layers, graph = onnx_layers(onnx_model)
    norm_eps = [layer.eps for layer in layers if layer.kind == "norm"]
    # The config holds one epsilon: the most common one (the rest are set per module).
    eps = float(np.float32(max(set(norm_eps), key=norm_eps.count))) if norm_eps else 1e-6
    config = PPOCRV6SmallRecConfig(head_out_channels=len(charset), layer_norm_eps=eps)
    model = _build(PPOCRV6SmallRecForTextRecognition, config)
    _convert(source, model, torch.zeros(1, 3, 48, 32), layers, graph)
    return model.eval(), charset


def load_rapidocr_det(onnx_path: str | Path | None = None) -> PPOCRV6SmallDetForObjectDetection:
    """The PP-OCRv6-small text detector from RapidOCR's ONNX as the native transformers model
    (eval mode). Its output ``last_hidden_state`` is the text probability map (batch, 1, H, W)."""
    from transformers import PPOCRV6SmallDetForObjectDetection

    source = _resolve(onnx_path, DET_ONNX)
    onnx_model = read_onnx(source)
    layers, graph = onnx_layers(onnx_model)
    model = _build(PPOCRV6SmallDetForObjectDetection, _det_config())

    def paddle_order(order: list[tuple[str, nn.Module]]) -> None:
        # PaddleOCR's neck runs the pyramid levels coarse to fine, transformers' fine to coarse.
        _reverse_levels(order, "model.neck.insert_conv.")
        _reverse_levels(order, "model.neck.input_conv.")

    _convert(source, model, torch.zeros(1, 3, 32, 32), layers, graph, paddle_order)
    return model.eval()


def _det_config() -> Any:
    """PP-OCRv6-small detection as exported by RapidOCR: a PP-LCNetV4 backbone (stem 3-24-48,
    13 depthwise-separable blocks, pyramid levels of 48/96/192/384 channels at strides 4-32)."""
    from transformers import PPLCNetV4Config, PPOCRV6SmallDetConfig

    stages = [
        [[3, 48, 48, 1, True], [3, 48, 48, 1, False]],
        [[3, 48, 96, 2, False], [3, 96, 96, 1, True], [3, 96, 96, 1, False]],
        [[3, 96, 192, 2, False]] + [[3, 192, 192, 1, True], [3, 192, 192, 1, False]] * 2,
        [[3, 192, 384, 2, False], [3, 384, 384, 1, True], [3, 384, 384, 1, False]],
    ]
    backbone = PPLCNetV4Config(
        stem_channels=[3, 24, 48],
        block_configs=stages,
        out_features=["stage1", "stage2", "stage3", "stage4"],  # type: ignore[call-arg]
    )
    return PPOCRV6SmallDetConfig(
        backbone_config=backbone, layer_list_out_channels=[48, 96, 192, 384]
    )


def _build(cls: Callable[..., Any], config: Any) -> Any:
    """A model from config, skipping the random initialisation every weight overwrites."""
    from transformers.initialization import no_init_weights

    with no_init_weights():
        return cls(config)
