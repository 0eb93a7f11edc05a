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
Small initializers (at most 8 values: reshape targets, slice bounds, the GELU / layer-norm /
attention-scale scalars) are graph constants, not weights; the numerical comparison against
onnxruntime in the tests checks that the native modules compute what they compute.

The charset returned with the recogniser is ``["", *metadata_dictionary, " "]``: index 0 is the
CTC blank (an empty string, so joining decoded indices needs no special case), and RapidOCR /
PaddleOCR append the space as the last class.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    import onnx
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


class ConversionError(RuntimeError):
    """The ONNX file cannot be mapped onto the native model; the message says what is wrong."""


def rapidocr_model_path(name: str) -> Path:
    """Path of a model file inside the installed ``rapidocr`` package (``rapidocr/models/``)."""
    try:
        import rapidocr
    except ImportError as exc:  # pragma: no cover - rapidocr is a dependency
        raise ConversionError(
            f"the rapidocr package is needed for the offline PP-OCR weights ({name}): {exc}"
        ) from exc
    return Path(rapidocr.__file__).resolve().parent / "models" / name


def read_onnx(path: str | Path) -> onnx.ModelProto:
    """Read and check an ONNX file; a missing or corrupt file raises naming the path."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ConversionError(f"{path}: not a readable ONNX model ({exc})") from exc
    if not model.graph.node:
        raise ConversionError(f"{path}: the ONNX graph has no nodes")
    return model


def rec_charset(model: onnx.ModelProto, path: str | Path = "<onnx>") -> list[str]:
    """The CTC classes of a PaddleOCR recogniser: blank (``""``), the dictionary, space."""
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise ConversionError(f"{path}: no 'character' dictionary in the ONNX metadata")
    return ["", *meta["character"].splitlines(), " "]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# The ONNX side: parameterised layers in graph order.


@dataclass
class _OnnxLayer:
    kind: str  # "conv" | "conv_transpose" | "linear" | "norm"
    node: str  # a readable name for error messages
    weight: np.ndarray
    bias: np.ndarray | None = None
    #: (scale, bias, mean, var, eps) of a kept BatchNormalization node
    bn: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None
    eps: float | None = None  # layer norm epsilon
    attrs: dict[str, Any] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)  # initializer names this layer consumed


class _Graph:
    """Producer/consumer look-ups over an ONNX graph with ``Identity`` nodes skipped."""

    def __init__(self, model: onnx.ModelProto):
        from onnx import numpy_helper

        self.nodes = list(model.graph.node)
        self.inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.alias: dict[str, str] = {}
        for node in self.nodes:
            if node.op_type == "Identity":
                self.alias[node.output[0]] = self.canon(node.input[0])
        self.consumers: dict[str, list[Any]] = {}
        self.producer: dict[str, Any] = {}
        for node in self.nodes:
            if node.op_type == "Identity":
                continue
            for name in node.input:
                self.consumers.setdefault(self.canon(name), []).append(node)
            for name in node.output:
                self.producer[name] = node

    def canon(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def init(self, name: str) -> np.ndarray | None:
        return self.inits.get(self.canon(name))

    def only_consumer(self, name: str) -> Any | None:
        users = self.consumers.get(self.canon(name), [])
        return users[0] if len(users) == 1 else None

    def const_operand(self, node: Any) -> tuple[str, np.ndarray] | None:
        """The single initializer operand of a binary node, if it has exactly one."""
        found = [(n, self.inits[n]) for n in map(self.canon, node.input) if n in self.inits]
        return found[0] if len(found) == 1 else None


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _channel_bias(graph: _Graph, node: Any, channels: int, ndim: int) -> tuple[str, Any] | None:
    """A following ``Add`` of a per-channel constant (the folded batch norm's bias)."""
    user = graph.only_consumer(node.output[0])
    if user is None or user.op_type != "Add":
        return None
    const = graph.const_operand(user)
    if const is None:
        return None
    name, value = const
    want = (1, channels) + (1,) * (ndim - 2) if ndim > 2 else (channels,)
    if value.shape not in (want, (channels,)):
        return None
    return name, value.reshape(channels)


def _onnx_layers(model: onnx.ModelProto) -> tuple[list[_OnnxLayer], _Graph]:
    graph = _Graph(model)
    layers: list[_OnnxLayer] = []
    for node in graph.nodes:
        op = node.op_type
        if op in ("Conv", "ConvTranspose"):
            w_name = graph.canon(node.input[1])
            weight = graph.inits.get(w_name)
            if weight is None:
                raise ConversionError(f"{op} node {node.name!r} has a computed weight")
            layer = _OnnxLayer(
                "conv" if op == "Conv" else "conv_transpose",
                f"{op}({w_name})",
                weight,
                attrs=_attrs(node),
                used=[w_name],
            )
            out_ch = (
                weight.shape[0] if op == "Conv" else weight.shape[1] * layer.attrs.get("group", 1)
            )
            if len(node.input) > 2 and node.input[2]:
                b_name = graph.canon(node.input[2])
                layer.bias, layer.used = graph.inits[b_name], [*layer.used, b_name]
            user = graph.only_consumer(node.output[0])
            if user is not None and user.op_type == "BatchNormalization":
                names = [graph.canon(n) for n in user.input[1:5]]
                scale, beta, mean, var = (graph.inits[n] for n in names)
                eps = float(_attrs(user).get("epsilon", 1e-5))
                layer.bn, layer.used = (scale, beta, mean, var, eps), layer.used + names
            elif layer.bias is None:
                found = _channel_bias(graph, node, out_ch, 4)
                if found is not None:
                    layer.bias, layer.used = found[1], [*layer.used, found[0]]
            layers.append(layer)
        elif op in ("MatMul", "Gemm"):
            w_name = graph.canon(node.input[1])
            weight = graph.inits.get(w_name)
            if weight is None or weight.ndim != 2:
                continue  # an activation x activation product (attention)
            if op == "Gemm" and _attrs(node).get("transB", 0):
                weight = weight.T
            layer = _OnnxLayer("linear", f"{op}({w_name})", weight.T, used=[w_name])
            if op == "Gemm" and len(node.input) > 2:
                b_name = graph.canon(node.input[2])
                layer.bias, layer.used = graph.inits[b_name], [*layer.used, b_name]
            else:
                found = _channel_bias(graph, node, weight.shape[1], 1)
                if found is not None:
                    layer.bias, layer.used = found[1], [*layer.used, found[0]]
            layers.append(layer)
        elif op == "Sqrt":
            layer_norm = _layer_norm_at(graph, node)
            if layer_norm is not None:
                layers.append(layer_norm)
        elif op in ("BatchNormalization", "LayerNormalization", "InstanceNormalization"):
            producer = graph.producer.get(graph.canon(node.input[0]))
            if (
                op == "BatchNormalization"
                and producer is not None
                and producer.op_type
                in (
                    "Conv",
                    "ConvTranspose",
                )
            ):
                continue  # taken with its convolution
            raise ConversionError(f"unsupported stand-alone {op} node {node.name!r}")
    return layers, graph


def _layer_norm_at(graph: _Graph, sqrt: Any) -> _OnnxLayer | None:
    """A decomposed layer norm: ``(x - mean) / Sqrt(var + eps) * weight + bias``."""
    add_eps = graph.producer.get(graph.canon(sqrt.input[0]))
    div = graph.only_consumer(sqrt.output[0])
    if add_eps is None or add_eps.op_type != "Add" or div is None or div.op_type != "Div":
        return None
    mul = graph.only_consumer(div.output[0])
    if mul is None or mul.op_type != "Mul":
        return None
    weight_const = graph.const_operand(mul)
    if weight_const is None:
        return None
    w_name, weight = weight_const
    eps_const = graph.const_operand(add_eps)
    add = graph.only_consumer(mul.output[0])
    bias_const = graph.const_operand(add) if add is not None and add.op_type == "Add" else None
    if eps_const is None or bias_const is None or weight.ndim != 1:
        raise ConversionError(f"unrecognised layer-norm pattern at {sqrt.name!r}")
    return _OnnxLayer(
        "norm",
        f"LayerNorm({w_name})",
        weight,
        bias=bias_const[1],
        eps=float(eps_const[1]),
        used=[eps_const[0], w_name, bias_const[0]],
    )


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
    model: nn.Module, order: list[tuple[str, nn.Module]], layers: list[_OnnxLayer], source: Path
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
    layers: list[_OnnxLayer],
    graph: _Graph,
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
    layers, graph = _onnx_layers(onnx_model)
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
    layers, graph = _onnx_layers(onnx_model)
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
