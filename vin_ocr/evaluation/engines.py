"""OCR engines behind one small interface, so the harness can run any of them on any data set.

An engine reads a batch of PIL images and returns one :class:`vin_ocr.reading.Reading` per image
(``read``: the text, plus per-character confidences, the box of the line read and the reading
before VIN-constrained decoding where the engine has them); ``predict`` is the texts alone.
``crops[i]`` says whether image ``i`` is a line crop holding only the VIN (recognition only) or a
scene (detection, recognition, then :func:`vin_ocr.vin.pick_vin` chooses the VIN among the lines
read). ``crops`` left out means every image is a line crop.

Engines are built from Hydra config (``configs/engine/*.yaml``, each naming its class with
``_target_``) or by name through :data:`ENGINES`. An engine that cannot run here (binary or
package missing, weights not reachable) raises :class:`EngineUnavailable` with the reason; no
engine ever falls back to another.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vin_ocr.reading import Reading, TextsFromReadings

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


class EngineUnavailable(RuntimeError):
    """The engine cannot run here; the message says why and what to install or pass."""


@runtime_checkable
class Engine(Protocol):
    name: str

    def read(
        self, images: Sequence[Image], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:
        """One reading per image (text ``""`` when nothing was read)."""
        ...

    def predict(
        self, images: Sequence[Image], crops: Sequence[bool | None] | None = None
    ) -> list[str]:
        """The texts of :meth:`read`."""
        ...


def _crop_flags(images: Sequence[Any], crops: Sequence[bool | None] | None) -> list[bool]:
    """One flag per image; ``None`` entries (decide per image) are settled by the image's shape
    alone (:func:`vin_ocr.layout.settle` without detection), for engines whose detection cannot
    be run on its own."""
    from vin_ocr.layout import settle

    return settle(images, crops)[0]


def _bgr(image: Image) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _pick(lines: Sequence[str], boxes: Sequence[Any] | None = None) -> Reading:
    """The VIN among a scene's lines, with the box of its line when ``boxes`` (one quadrilateral
    or rectangle of points per line) are given."""
    from vin_ocr.vin import pick_vin_at

    keep = [i for i, line in enumerate(lines) if line.strip()]
    text, at = pick_vin_at([lines[i] for i in keep])
    if at is None or boxes is None:
        return Reading(text)
    return Reading(text, box=_bounds(boxes[keep[at]]))


def _line(text: str) -> Reading:
    """A line crop's reading as the VIN it holds (:func:`vin_ocr.vin.normalize`: labels and
    separators dropped, I/O/Q -> 1/0/0): the answer a user receives and the metric scores."""
    from vin_ocr.vin import normalize

    return Reading(normalize(text))


def _bounds(points: Any) -> tuple[int, int, int, int]:
    import numpy as np

    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    left, top = np.floor(pts.min(axis=0)).astype(int)
    right, bottom = np.ceil(pts.max(axis=0)).astype(int)
    return int(left), int(top), int(right), int(bottom)


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _rec_dictionary(path: Path) -> list[str] | None:
    """The characters to give RapidOCR for the recognition ONNX ``path``: None when its metadata
    holds them (RapidOCR's own models); the VIN alphabet for a vin-ocr export (``RUN/model.onnx``:
    blank + 33 VIN classes); otherwise :class:`EngineUnavailable` saying why."""
    import onnxruntime as ort

    from vin_ocr.vin import ALPHABET

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise EngineUnavailable(
            f"engine=rapidocr: {path} is not a loadable ONNX model ({e})"
        ) from None
    if "character" in session.get_modelmeta().custom_metadata_map:
        return None
    classes = session.get_outputs()[0].shape[-1]
    if classes == len(ALPHABET) + 1:
        return list(ALPHABET)
    raise EngineUnavailable(
        f"engine=rapidocr: {path} has no character dictionary in its metadata and {classes} "
        f"output classes (a vin-ocr export has {len(ALPHABET) + 1}: blank + the VIN alphabet)"
    )


class RapidOCREngine(TextsFromReadings):
    """PP-OCRv6 small (det + rec ONNX shipped in the ``rapidocr`` wheel) on onnxruntime; offline.

    Line crops go through recognition only (batched, no detection, no angle classifier); scenes
    through detection + recognition, then ``pick_vin``. ``path`` replaces the recognition ONNX:
    one with its dictionary in the ONNX metadata (as in RapidOCR's) or a fine-tuned run's
    ``model.onnx`` (blank + VIN alphabet; the dictionary is supplied). ``det_path`` replaces the
    detector.
    """

    name = "rapidocr"

    def __init__(
        self,
        path: str | None = None,
        det_path: str | None = None,
        threads: int | None = None,
        text_score: float = 0.5,
        rec_batch_num: int = 8,
    ) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as e:  # pragma: no cover - rapidocr is a core dependency
            raise EngineUnavailable(f"rapidocr is not installed ({e}): pip install rapidocr") from e
        for p in (path, det_path):
            if p is not None and not Path(p).is_file():
                raise EngineUnavailable(f"engine=rapidocr: model file {p} not found")
        threads = threads or _default_threads()
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Global.text_score": text_score,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "Rec.rec_batch_num": rec_batch_num,
        }
        keys = _rec_dictionary(Path(path)) if path is not None else None
        if path is not None:
            params["Rec.model_path"] = str(path)
        if det_path is not None:
            params["Det.model_path"] = str(det_path)
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory(prefix="vin-ocr-rec-keys-") as tmp:
            if keys is not None:  # RapidOCR reads the dictionary from a file, once, at load
                keys_file = Path(tmp) / "keys.txt"
                keys_file.write_text("".join(f"{c}\n" for c in keys), encoding="utf-8")
                params["Rec.rec_keys_path"] = str(keys_file)
            self._ocr = RapidOCR(params=params)
            # Load both models now, so that the first timed batch does not pay for it.
            self._rec = self._ocr._load_rec_model()
            self._ocr._load_det_model()

    def read(
        self, images: Sequence[Image], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:
        from rapidocr.ch_ppocr_rec import TextRecInput

        from vin_ocr.layout import settle

        def detect(image: Image) -> tuple[Any, list[tuple[int, int, int, int]]]:
            # Decide by the pipeline's own detection; its result serves if it is a scene.
            res = self._ocr(_bgr(image))
            boxes = getattr(res, "boxes", None)
            return res, [_bounds(b) for b in boxes] if boxes is not None else []

        flags, scenes = settle(images, crops, detect)
        out = [Reading("")] * len(images)
        line_idx = [i for i, c in enumerate(flags) if c]
        if line_idx:
            res = self._rec(TextRecInput(img=[_bgr(images[i]) for i in line_idx]))
            for i, text in zip(line_idx, res.txts or (), strict=True):
                out[i] = _line(text)
        for i, crop in enumerate(flags):
            if not crop:
                res = scenes[i] if i in scenes else self._ocr(_bgr(images[i]))
                boxes = getattr(res, "boxes", None)
                out[i] = _pick(list(getattr(res, "txts", None) or ()), boxes)
        return out


class TesseractEngine(TextsFromReadings):
    """The ``tesseract`` binary (a subprocess per image) restricted to the VIN alphabet.

    Line crops use ``psm_crop`` (7: a single line) and the character ``whitelist`` (default
    :data:`vin_ocr.vin.ALPHABET`); scenes use ``psm_scene`` (6: a block of text), then
    ``pick_vin`` over the lines. Scenes are read without the whitelist unless
    ``whitelist_scenes``: forced into the VIN alphabet, labels such as "VIN:" and the words around
    the VIN turn into VIN-like noise that hides it (on the bundled scenes: 1 of 8 read with the
    whitelist, 2 of 8 without; psm 11: 0 and 1).
    """

    name = "tesseract"

    def __init__(
        self,
        binary: str = "tesseract",
        lang: str = "eng",
        psm_crop: int = 7,
        psm_scene: int = 6,
        whitelist: str | None = None,
        whitelist_scenes: bool = False,
        workers: int = 1,
        timeout_s: float = 60.0,
    ) -> None:
        exe = shutil.which(binary)
        if exe is None:
            raise EngineUnavailable(
                f"engine=tesseract: the {binary!r} binary is not on PATH; install it with "
                "`apt-get install tesseract-ocr` (Debian/Ubuntu) or `brew install tesseract`"
            )
        if whitelist is None:
            from vin_ocr.vin import ALPHABET

            whitelist = ALPHABET
        self.exe, self.lang, self.whitelist = exe, lang, whitelist
        self.psm_crop, self.psm_scene = psm_crop, psm_scene
        self.whitelist_scenes = whitelist_scenes
        self.workers, self.timeout_s = max(1, workers), timeout_s
        self.version = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, check=True
        ).stdout.split("\n", 1)[0]

    def _read(self, image: Image, crop: bool) -> Reading:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        psm = self.psm_crop if crop else self.psm_scene
        cmd = [self.exe, "stdin", "stdout", "-l", self.lang, "--psm", str(psm)]
        if crop or self.whitelist_scenes:
            cmd += ["-c", f"tessedit_char_whitelist={self.whitelist}"]
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        proc = subprocess.run(
            cmd, input=buf.getvalue(), capture_output=True, timeout=self.timeout_s, env=env
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"tesseract failed (exit {proc.returncode}): {err}")
        lines = proc.stdout.decode(errors="replace").splitlines()
        if crop:
            return _line(" ".join(line.strip() for line in lines if line.strip()))
        return _pick(lines)

    def read(
        self, images: Sequence[Image], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:
        flags = _crop_flags(images, crops)
        if self.workers == 1:
            return [self._read(im, c) for im, c in zip(images, flags, strict=True)]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._read, images, flags))


class PaddleOCREngine(TextsFromReadings):
    """The official ``paddleocr`` package (optional extra: ``pip install 'vin-ocr[paddle]'``).

    Line crops go through ``TextRecognition``; scenes through the ``PaddleOCR`` pipeline
    (document orientation, unwarping and text-line orientation off), then ``pick_vin``.
    ``path`` / ``det_path`` are local model folders; without them PaddleOCR downloads its
    default models, which fails offline: that failure is reported as :class:`EngineUnavailable`.
    """

    name = "paddleocr"

    def __init__(
        self,
        path: str | None = None,
        det_path: str | None = None,
        rec_model: str = "en_PP-OCRv5_mobile_rec",
        det_model: str = "PP-OCRv5_mobile_det",
        device: str = "cpu",
    ) -> None:
        try:
            import paddleocr
        except ImportError as e:
            raise EngineUnavailable(
                f"engine=paddleocr: the paddleocr package is not installed ({e}); "
                "install it with `pip install 'vin-ocr[paddle]'`"
            ) from e
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        for p in (path, det_path):
            if p is not None and not Path(p).is_dir():
                raise EngineUnavailable(f"engine=paddleocr: model folder {p} not found")
        try:
            # The same recognition model serves line crops and the pipeline's lines.
            self._rec = paddleocr.TextRecognition(
                model_name=rec_model, model_dir=path, device=device
            )
            self._ocr = paddleocr.PaddleOCR(
                text_recognition_model_name=rec_model,
                text_recognition_model_dir=path,
                text_detection_model_name=det_model,
                text_detection_model_dir=det_path,
                use_doc_orientation_classify=False,
                use_doc_unwarping=False,
                use_textline_orientation=False,
                device=device,
            )
        except Exception as e:  # paddle raises many kinds; report the reason, never fall back
            raise EngineUnavailable(
                f"engine=paddleocr: could not load {rec_model} / {det_model} "
                f"({type(e).__name__}: {e}). Offline, download them once elsewhere and pass "
                "engine.path=REC_MODEL_DIR engine.det_path=DET_MODEL_DIR"
            ) from e

    def read(
        self, images: Sequence[Image], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:
        flags = _crop_flags(images, crops)
        out = [Reading("")] * len(images)
        line_idx = [i for i, c in enumerate(flags) if c]
        if line_idx:
            arrays = [_bgr(images[i]) for i in line_idx]
            results = self._rec.predict(input=arrays, batch_size=len(arrays))
            for i, res in zip(line_idx, results, strict=True):
                out[i] = _line(str(res["rec_text"]))
        for i, crop in enumerate(flags):
            if not crop:
                lines: list[str] = []
                boxes: list[Any] = []
                for res in self._ocr.predict(input=_bgr(images[i])):
                    lines.extend(str(t) for t in res["rec_texts"])
                    boxes.extend(res["rec_polys"])
                out[i] = _pick(lines, boxes if len(boxes) == len(lines) else None)
        return out


class CheckpointEngine(TextsFromReadings):
    """A finished training run folder (``engine=checkpoint engine.path=RUN``), read through the
    same model family that trained it (:func:`vin_ocr.models.engine.load_run`); ``model``
    changes keys of the run's model config for reading (decoding settings, say)."""

    name = "checkpoint"

    def __init__(self, path: str | None = None, model: dict[str, Any] | None = None) -> None:
        if not path:
            raise EngineUnavailable("engine=checkpoint needs engine.path=RUN_FOLDER")
        run = Path(path)
        if not run.is_dir():
            raise EngineUnavailable(f"engine=checkpoint: run folder {run} does not exist")
        from vin_ocr.models.engine import load_run

        try:
            self._engine = load_run(run, overrides=model)
        except FileNotFoundError as exc:
            raise EngineUnavailable(f"engine=checkpoint: {exc}") from None
        self.name = self._engine.name

    def read(
        self, images: Sequence[Image], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:
        return self._engine.read(images, crops)


#: Engine name -> builder (the class); Hydra configs name the same classes with ``_target_``.
ENGINES: dict[str, Callable[..., Engine]] = {
    "rapidocr": RapidOCREngine,
    "tesseract": TesseractEngine,
    "paddleocr": PaddleOCREngine,
    "checkpoint": CheckpointEngine,
}


def build_engine(spec: str | Any, **kwargs: Any) -> Engine:
    """Build an engine from its registry name (``build_engine("tesseract", psm_crop=8)``) or from
    a Hydra config node with ``_target_`` (``build_engine(cfg.engine)``)."""
    if isinstance(spec, str):
        if spec not in ENGINES:
            raise ValueError(f"unknown engine {spec!r}; known: {', '.join(sorted(ENGINES))}")
        return ENGINES[spec](**kwargs)
    from hydra.utils import instantiate

    try:
        return instantiate(spec, **kwargs)
    except Exception as e:
        # Hydra wraps errors raised by the target; surface EngineUnavailable itself.
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, EngineUnavailable):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
