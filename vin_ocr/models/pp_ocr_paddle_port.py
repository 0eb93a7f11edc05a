"""A PP-OCR torch model copied, weight for weight, into PaddleX's own Paddle port of the same
transformers classes (``paddlex.inference.models.*.modeling``), saved with ``paddle.jit.save``
with the ``inference.yml`` PaddleOCR 3.x reads. The export and its verification through the
official package: :mod:`vin_ocr.models.pp_ocr_paddle`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

REC_MODEL_NAME = "PP-OCRv6_small_rec"
DET_MODEL_NAME = "PP-OCRv6_small_det"
#: paddleocr and paddlex go in without their pins (numpy<2.4, ...), after the ``paddle`` extra.
PADDLEOCR_INSTALL = "pip install --no-deps paddleocr==3.7.0 paddlex==3.7.2"
#: What ``export.json`` in an exported folder is called (the verification figures).
REPORT_FILE = "export.json"


class PaddleExportError(RuntimeError):
    """The model cannot be exported, or the official package does not read it as torch does."""


def _require_paddle() -> None:
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    try:
        import paddle  # noqa: F401
        import paddleocr  # noqa: F401
    except ImportError as exc:
        raise PaddleExportError(
            f"the Paddle export needs paddlepaddle and paddleocr ({exc}); "
            f"install them with `pip install 'vin-ocr[paddle]'` and `{PADDLEOCR_INSTALL}`"
        ) from exc


# ------------------------------------------------------------------------------------------------
# torch -> Paddle (dynamic graph), weight for weight.


def _paddle_class(model_type: str) -> tuple[Any, Any]:
    """PaddleX's Paddle model class and config class for a transformers ``model_type``."""
    import importlib

    tasks = {"pp_ocrv6_small_rec": "text_recognition", "pp_ocrv6_small_det": "text_detection"}
    if model_type not in tasks:
        raise PaddleExportError(
            f"only PP-OCRv6-small rec/det export to Paddle (PaddleX ports them), not {model_type!r}"
        )
    package = f"paddlex.inference.models.{tasks[model_type]}.modeling"
    model_module = importlib.import_module(f"{package}.{model_type}")
    config_module = importlib.import_module(f"{package}._config_{model_type}")
    cls = "PPOCRV6SmallRec" if model_type.endswith("rec") else "PPOCRV6SmallDet"
    return getattr(model_module, cls), getattr(config_module, cls + "Config")


def to_paddle(model: Any) -> Any:
    """PaddleX's Paddle port of a transformers PP-OCRv6-small rec/det ``model`` (eval mode) with
    ``model``'s weights. Strict: a Paddle parameter without a torch value, a torch tensor left
    unused, or a shape mismatch raises :class:`PaddleExportError` naming the keys."""
    import paddle

    config = model.config
    paddle_cls, config_cls = _paddle_class(config.model_type)
    target = paddle_cls(config_cls(**config.to_dict()))
    source = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}

    def torch_key(key: str) -> str:
        return key.replace("._mean", ".running_mean").replace("._variance", ".running_var")

    wanted = target.state_dict()
    missing = [k for k in wanted if torch_key(k) not in source]
    unused = sorted(set(source) - {torch_key(k) for k in wanted})
    if missing or unused:
        raise PaddleExportError(
            f"{config.model_type}: Paddle keys without a torch value {missing[:5]} "
            f"({len(missing)}), torch keys unused {unused[:5]} ({len(unused)})"
        )
    values = {}
    for key, param in wanted.items():
        value = source[torch_key(key)].detach().float().cpu().numpy()
        if len(param.shape) == 2 and key.endswith("weight"):
            value = value.T  # paddle.nn.Linear stores (in, out)
        if list(value.shape) != list(param.shape):
            raise PaddleExportError(f"{key}: torch shape {value.shape} vs Paddle {param.shape}")
        values[key] = value
    target.set_state_dict(values)
    # Epsilons per module (the converted recogniser's final norm differs from its config).
    torch_eps = {n: m.eps for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    for name, layer in target.named_sublayers():
        if isinstance(layer, paddle.nn.LayerNorm) and name in torch_eps:
            layer._epsilon = torch_eps[name]
    target.eval()
    return target


def _static_layer(target: Any) -> Any:
    """Tensor in, tensor out (PaddleX's ``forward`` takes and returns numpy lists)."""
    import paddle

    class Probs(paddle.nn.Layer):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.model, self.head = inner.model, inner.head

        def forward(self, x: Any) -> Any:
            return self.head(self.model(x))

    return Probs(target)


def _nearest_as_repeat(x: Any, scale_factor: Any = None, mode: str = "nearest", **kw: Any) -> Any:
    """Nearest upsampling by an integer factor as ``repeat_interleave`` (the same values): the
    ``interpolate`` op's double-array ``scale`` attribute makes Paddle's oneDNN executor (on by
    default in PaddleOCR on CPU) fail with ``ConvertPirAttribute2RuntimeAttribute``."""
    import paddle.nn.functional as F

    if mode != "nearest" or kw or int(scale_factor) != scale_factor:
        interpolate: Any = F.interpolate
        return interpolate(x, scale_factor=scale_factor, mode=mode, **kw)
    k = int(scale_factor)
    return x.repeat_interleave(k, axis=2).repeat_interleave(k, axis=3)


def _jit_save(target: Any, folder: Path, height: int | None) -> None:
    import types

    import paddle
    import paddle.nn.functional as F

    module: Any = sys.modules[type(target).__module__]
    spec = paddle.static.InputSpec([None, 3, height, None], "float32", "x")
    module.F = types.SimpleNamespace(**{**vars(F), "interpolate": _nearest_as_repeat})
    try:
        static = paddle.jit.to_static(_static_layer(target), input_spec=[spec], full_graph=True)
        paddle.jit.save(static, str(folder / "inference"))
    finally:
        module.F = F


def _write_yml(folder: Path, content: dict[str, Any]) -> None:
    import yaml

    text = yaml.safe_dump(content, allow_unicode=True, sort_keys=False)
    (folder / "inference.yml").write_text(text, encoding="utf-8")


def rec_yml(charset: Sequence[str], height: int = 48) -> dict[str, Any]:
    """``inference.yml`` of a recogniser whose classes are ``charset`` (index 0 = blank).
    PaddleOCR's ``CTCLabelDecode`` adds the blank and a trailing space itself."""
    chars = list(charset[1:])
    if chars and chars[-1] == " ":
        chars = chars[:-1]
    return {
        "Global": {"model_name": REC_MODEL_NAME},
        "PreProcess": {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
                {"RecResizeImg": {"image_shape": [3, height, 320]}},
                {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_gtc", "length"]}},
            ]
        },
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": chars},
    }


def det_yml(settings: Any) -> dict[str, Any]:
    """``inference.yml`` of the detector, with the project's DB post-processing settings
    (:class:`vin_ocr.models.pp_ocr_det.DetSettings`) and RapidOCR's normalisation."""
    return {
        "Global": {"model_name": DET_MODEL_NAME},
        "PreProcess": {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"DetLabelEncode": None},
                # PaddleOCR ignores sizes here: for PP-OCRv6_small_det its predictor resizes to
                # a longer side of at most 960 unless text_det_limit_side_len/_type are passed
                {"DetResizeForTest": None},
                {
                    "NormalizeImage": {
                        "mean": [0.5, 0.5, 0.5],
                        "std": [0.5, 0.5, 0.5],
                        "scale": 1.0 / 255.0,
                        "order": "hwc",
                    }
                },
                {"ToCHWImage": None},
                {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}},
            ]
        },
        "PostProcess": {
            "name": "DBPostProcess",
            "thresh": float(settings.thresh),
            "box_thresh": float(settings.box_thresh),
            "max_candidates": 1000,
            "unclip_ratio": float(settings.unclip_ratio),
            "use_dilation": bool(settings.dilation),
        },
    }
