"""The baseline engines, offline on the CPU: RapidOCR (PP-OCRv6 small on onnxruntime, shipped
in the ``rapidocr`` wheel) and the ``tesseract`` binary. Built by name through
:data:`vin_ocr.evaluation.engines.ENGINES` or from
``configs/eval/engine/{rapidocr,tesseract}.yaml``.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vin_ocr.evaluation.engine_base import (
    EngineUnavailable,
    box_bounds,
    crop_flags,
    line_reading,
    scene_reading,
    to_bgr,
)
from vin_ocr.reading import Reading, TextsFromReadings

if TYPE_CHECKING:
    from PIL.Image import Image


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
            res = self._ocr(to_bgr(image))
            boxes = getattr(res, "boxes", None)
            return res, [box_bounds(b) for b in boxes] if boxes is not None else []

        flags, scenes = settle(images, crops, detect)
        out = [Reading("")] * len(images)
        line_idx = [i for i, c in enumerate(flags) if c]
        if line_idx:
            res = self._rec(TextRecInput(img=[to_bgr(images[i]) for i in line_idx]))
            for i, text in zip(line_idx, res.txts or (), strict=True):
                out[i] = line_reading(text)
        for i, crop in enumerate(flags):
            if not crop:
                res = scenes[i] if i in scenes else self._ocr(to_bgr(images[i]))
                boxes = getattr(res, "boxes", None)
                out[i] = scene_reading(list(getattr(res, "txts", None) or ()), boxes)
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
            return line_reading(" ".join(line.strip() for line in lines if line.strip()))
        return scene_reading(lines)

    def read(
        self, images: Sequence[Image], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:
        flags = crop_flags(images, crops)
        if self.workers == 1:
            return [self._read(im, c) for im, c in zip(images, flags, strict=True)]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._read, images, flags))
