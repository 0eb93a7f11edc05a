"""The demo app's logic without the page: open an upload safely, choose and cache engines, read one
image and explain the VIN. Everything here is plain Python; :mod:`vin_ocr.app.ui` only lays it out.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import vin_ocr
from vin_ocr.evaluation.engines import (
    ENGINES,
    CheckpointEngine,
    Engine,
    EngineUnavailable,
    build_engine,
)
from vin_ocr.reading import Reading
from vin_ocr.vin import VinCheck, country, manufacturer, normalize, validate

if TYPE_CHECKING:
    from PIL.Image import Image

#: ``model=baseline``: the pretrained PP-OCRv6-small that ships inside the rapidocr wheel.
BASELINE = "baseline"
_ALIASES = {BASELINE: "rapidocr"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MIB = 1024**2
KINDS = ("auto", "line crop", "photo")


@dataclass
class AppConf:
    """``configs/app.yaml``; ``python -m vin_ocr.app key=value`` overrides any of these."""

    #: Engine loaded at start: ``baseline`` (offline), an engine name (``tesseract``...),
    #: a training run folder, or a Hub model id (a pushed run: run.json + model/).
    model: str = BASELINE
    #: More choices offered in the page's engine menus (the model comes first).
    engines: list[str] = field(default_factory=lambda: [BASELINE, "tesseract"])
    #: Let visitors type any run folder or Hub id into the engine menus (false on a public Space).
    custom_engines: bool = True
    title: str = "vin-ocr: read a VIN"
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    share: bool = False  # a public gradio.live link
    max_upload_mb: float = 10.0
    max_megapixels: float = 40.0
    #: ``auto`` treats an image at least this many times wider than tall as a line crop.
    crop_aspect: float = 5.0
    samples: bool = True  # offer the bundled sample images


class UploadError(ValueError):
    """The upload cannot be read as an image; the message names the file and the problem."""


# --------------------------------------------------------------------------- images


def load_image(
    source: bytes | str | Path | Image,
    *,
    max_mb: float = 10.0,
    max_megapixels: float = 40.0,
    name: str | None = None,
) -> Image:
    """An upload (bytes, a path or a PIL image) as an 8-bit RGB image, EXIF rotation applied
    (:func:`vin_ocr.data.images.to_rgb`, the reader training and evaluation use).

    Raises :class:`UploadError` for an empty, oversized, damaged or non-image upload.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    from vin_ocr.data.images import to_rgb

    if isinstance(source, PILImage.Image):
        image, name = source, name or "the pasted image"
    else:
        if isinstance(source, bytes):
            data, name = source, name or "the upload"
        else:
            path = Path(source)
            name = name or path.name
            if not path.is_file():
                raise UploadError(f"{name}: no such file")
            size = path.stat().st_size
            if size > max_mb * MIB:  # before reading it into memory
                raise UploadError(_too_big(name, size, max_mb))
            data = path.read_bytes()
        if not data:
            raise UploadError(f"{name} is empty (0 bytes)")
        if len(data) > max_mb * MIB:
            raise UploadError(_too_big(name, len(data), max_mb))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", PILImage.DecompressionBombWarning)
                image = PILImage.open(io.BytesIO(data))
                _check_pixels(image, name, max_megapixels)
                image.load()
        except UploadError:
            raise
        except UnidentifiedImageError:
            raise UploadError(
                f"{name} is not an image (expected PNG, JPEG, WebP, BMP or TIFF)"
            ) from None
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
            raise UploadError(
                f"{name} is too large in pixels (limit {max_megapixels:g} megapixels)"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise UploadError(f"{name}: the image data is damaged ({exc})") from None
    _check_pixels(image, name, max_megapixels)
    return to_rgb(image)


def _too_big(name: str, size: int, max_mb: float) -> str:
    return f"{name} is {size / MIB:.1f} MB; the limit is {max_mb:g} MB"


def _check_pixels(image: Image, name: str, max_megapixels: float) -> None:
    w, h = image.size
    if w < 1 or h < 1:
        raise UploadError(f"{name} has no pixels ({w}x{h})")
    if w * h > max_megapixels * 1e6:
        raise UploadError(
            f"{name} is {w}x{h} pixels ({w * h / 1e6:.1f} megapixels); "
            f"the limit is {max_megapixels:g} megapixels"
        )


def is_line_crop(image: Image, kind: str = "auto", crop_aspect: float = 5.0) -> bool | None:
    """Whether to read ``image`` as a line crop (recognition only) or as a photo (detection);
    ``None`` for "auto" on an image that is not clearly a line: the engine decides from what
    its text detection finds (:mod:`vin_ocr.layout`).

    >>> from PIL import Image
    >>> is_line_crop(Image.new("RGB", (500, 50))), is_line_crop(Image.new("RGB", (600, 400)))
    (True, None)
    >>> is_line_crop(Image.new("RGB", (600, 400)), "photo")
    False
    """
    if kind not in KINDS:
        raise ValueError(f"image kind {kind!r} is not one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind == "line crop"
    w, h = image.size
    return True if w >= crop_aspect * h else None


def sample_images(root: Path = vin_ocr.SAMPLES_DIR) -> dict[str, Path]:
    """The bundled samples as ``{"000000.jpg (line)": path}`` (labels stay out of the page)."""
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        return {}
    out = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            path = root / row["image"]
            out[f"{path.name} ({'line' if row.get('crop') else 'scene'})"] = path
    return out


# --------------------------------------------------------------------------- engines


def open_engine(spec: str) -> Engine:
    """The engine a page or config names: ``baseline``, a registry name, a run folder, a Hub id.

    A Hub id is downloaded with ``huggingface_hub.snapshot_download`` (a token, when the repo is
    private, comes from ``HF_TOKEN`` or ``hf auth login``) and loaded like a run folder.
    Raises :class:`EngineUnavailable` with the reason; never falls back to another engine.
    """
    spec = spec.strip()
    name = _ALIASES.get(spec, spec)
    if name in ENGINES and name != "checkpoint":
        return build_engine(name)
    if Path(spec).expanduser().exists():
        return CheckpointEngine(str(Path(spec).expanduser()))
    if _HUB_ID.match(spec):
        return CheckpointEngine(download_run(spec))
    known = ", ".join([BASELINE, *(n for n in ENGINES if n != "checkpoint")])
    raise EngineUnavailable(
        f"{spec!r} is not an engine ({known}), an existing run folder or a Hub model id "
        "(owner/name)"
    )


def download_run(repo_id: str) -> str:
    """A pushed run (run.json + model/) from the Hub, as a local folder."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id)
    except Exception as exc:  # offline, missing, gated: say which
        raise EngineUnavailable(
            f"could not download {repo_id} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{exc}). Offline? Fetch it once with `hf download {repo_id} --local-dir DIR` and "
            "pass the folder instead"
        ) from None


class EngineCache:
    """Engines built once per name and shared by the page's requests (thread-safe).

    With ``allowed`` given, any other name is refused (a public Space offers only its list).
    """

    def __init__(self, allowed: Sequence[str] | None = None) -> None:
        self.allowed = None if allowed is None else [a.strip() for a in allowed]
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, spec: str | None) -> Engine:
        spec = (spec or "").strip()
        if not spec:
            raise EngineUnavailable("choose an engine first")
        if self.allowed is not None and spec not in self.allowed:
            raise EngineUnavailable(
                f"this app offers only these engines: {', '.join(self.allowed)}"
            )
        with self._lock:
            if spec not in self._engines:
                self._engines[spec] = open_engine(spec)
            return self._engines[spec]


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Result:
    """What one engine made of one image."""

    engine: str
    reading: Reading
    vin: str  # normalize(reading.text): what the metric scores and the page shows
    check: VinCheck
    region_image: Image  # the line that was read (the box), or the whole image
    line_crop: bool
    seconds: float


def read_image(image: Image, engine: Engine, line_crop: bool | None) -> Result:
    """Read ``image`` (from :func:`load_image`) with ``engine`` and check the VIN it holds.
    A photo is also searched for a VIN barcode, fused with the engine's reading
    (:class:`vin_ocr.barcode.BarcodeFusion`); ``line_crop`` None lets the engine decide."""
    from vin_ocr.barcode import BarcodeFusion

    start = time.perf_counter()
    reading = BarcodeFusion(engine).read([image], [line_crop])[0]
    seconds = time.perf_counter() - start
    if line_crop is None:  # what the engine decided: a box means it detected text lines
        line_crop = reading.box is None and reading.source in (None, "ocr")
    vin = normalize(reading.text)
    region = image.crop(reading.box) if reading.box is not None else image
    return Result(engine.name, reading, vin, validate(vin), region, line_crop, seconds)


def explain(result: Result) -> str:
    """Markdown: valid or not and why, check digit, model year, region/country/maker, timing."""
    vin, check, reading = result.vin, result.check, result.reading
    if not vin:
        head = "### ❌ No VIN read"
    elif check.valid:
        head = f"### ✅ `{vin}` is a valid VIN"
    else:
        head = f"### ❌ `{vin}` is not a valid VIN"
    lines = [head, ""]
    region = check.region.replace("_", " ")
    lines += [f"- **Problem:** {r}" for r in check.reasons if vin]
    if check.check_digit_ok is not None:
        rule = "mandatory" if check.check_digit_mandatory else "optional"
        state = "correct" if check.check_digit_ok else "wrong"
        lines.append(f"- **Check digit** (position 9, {rule} in {region}): `{vin[8]}`, {state}")
    if len(vin) >= 10:
        years = " or ".join(map(str, check.years)) or "unknown (not a model-year code)"
        lines.append(f"- **Model year** (position 10, `{vin[9]}`): {years}")
    if vin:
        where = [region]
        where += [x for x in (country(vin), manufacturer(vin)) if x]
        lines.append(f"- **Region** (WMI `{vin[:3]}`): {', '.join(where)}")
    lines += [f"- **Note:** {w}" for w in check.warnings]
    how = "line crop (recognition only)" if result.line_crop else "photo (text detection first)"
    lines.append(f"- **Engine:** {result.engine}, read as a {how} in {result.seconds:.2f} s")
    box = reading.box
    lines.append(f"- **Region read:** {'the whole image' if box is None else f'the line at {box}'}")
    if reading.text != vin:
        lines.append(f"- **Text read:** `{reading.text}` (cleaned to the VIN above)")
    if reading.repaired:
        lines.append(f"- **Repaired** by VIN-constrained decoding from `{reading.unconstrained}`")
    source = _SOURCES.get(reading.source or "")
    if source:
        lines.append(f"- **Source:** {source.format(alt=reading.alternative)}")
    return "\n".join(lines)


#: How the page says where the VIN came from (``Reading.source``, vin_ocr.barcode.fuse).
_SOURCES = {
    "ocr": "the printed text (no VIN barcode found in the photo)",
    "barcode": "the VIN barcode alone (the text read gave no VIN)",
    "agree": "the printed text and the VIN barcode, which agree",
    "disagree": "the barcode and the printed text **disagree**; the other reading was `{alt}`",
}


def confidence_table(result: Result) -> str:
    """Markdown table of the confidence per character read, or why there is none."""
    reading = result.reading
    if not reading.text:
        return ""
    if reading.char_conf is None:
        return f"Per-character confidence: n/a (the {result.engine} engine does not give it)"
    chars = [c if c.strip() else "␣" for c in reading.text]
    return "\n".join(
        [
            "| position | " + " | ".join(str(i + 1) for i in range(len(chars))) + " |",
            "|---" * (len(chars) + 1) + "|",
            "| character | " + " | ".join(f"`{c}`" for c in chars) + " |",
            "| confidence | " + " | ".join(f"{c:.2f}" for c in reading.char_conf) + " |",
        ]
    )


def to_dict(result: Result) -> dict[str, Any]:
    """The result as JSON-ready values (what the page shows, for scripts and tests)."""
    return {
        "engine": result.engine,
        "vin": result.vin,
        "valid": result.check.valid,
        "reasons": list(result.check.reasons),
        "warnings": list(result.check.warnings),
        "region": result.check.region,
        "years": list(result.check.years),
        "line_crop": result.line_crop,
        "seconds": round(result.seconds, 4),
        **{f"reading_{k}": v for k, v in result.reading.to_json().items()},
    }
