"""The ONNX side of the PP-OCR conversion (:mod:`vin_ocr.models.pp_ocr_convert`): read and check
an ONNX file, its recogniser charset, and its parameterised layers (convolutions with their folded
or kept batch norm, linears, decomposed layer norms) in graph order."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx


class ConversionError(RuntimeError):
    """The ONNX file cannot be mapped onto the native model; the message says what is wrong."""


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


@dataclass
class OnnxLayer:
    kind: str  # "conv" | "conv_transpose" | "linear" | "norm"
    node: str  # a readable name for error messages
    weight: np.ndarray
    bias: np.ndarray | None = None
    #: (scale, bias, mean, var, eps) of a kept BatchNormalization node
    bn: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None
    eps: float | None = None  # layer norm epsilon
    attrs: dict[str, Any] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)  # initializer names this layer consumed


class OnnxGraph:
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


def _channel_bias(graph: OnnxGraph, node: Any, channels: int, ndim: int) -> tuple[str, Any] | None:
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


def onnx_layers(model: onnx.ModelProto) -> tuple[list[OnnxLayer], OnnxGraph]:
    graph = OnnxGraph(model)
    layers: list[OnnxLayer] = []
    for node in graph.nodes:
        op = node.op_type
        if op in ("Conv", "ConvTranspose"):
            w_name = graph.canon(node.input[1])
            weight = graph.inits.get(w_name)
            if weight is None:
                raise ConversionError(f"{op} node {node.name!r} has a computed weight")
            layer = OnnxLayer(
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
            layer = OnnxLayer("linear", f"{op}({w_name})", weight.T, used=[w_name])
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


def _layer_norm_at(graph: OnnxGraph, sqrt: Any) -> OnnxLayer | None:
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
    return OnnxLayer(
        "norm",
        f"LayerNorm({w_name})",
        weight,
        bias=bias_const[1],
        eps=float(eps_const[1]),
        used=[eps_const[0], w_name, bias_const[0]],
    )
