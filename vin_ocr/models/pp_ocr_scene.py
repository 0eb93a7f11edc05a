"""Whole photos with PP-OCR: find the VIN line with a general reader, read it with the VIN model.

A model fine-tuned with the 34-class VIN head reads *any* text line as VIN characters: on a door
sticker a tyre-pressure line becomes ``PRESSUREFRS207516`` and can win the VIN pick. So a scene is
read in two steps:

1. every detected line is read by the **general reader**, a full-dictionary recogniser (by default
   the pretrained PP-OCRv6-small from the rapidocr wheel, ``model.general_checkpoint``), and
   :func:`vin_ocr.vin.pick_vin_at` picks the VIN among those readings, as the pretrained pipeline
   does;
2. the picked VIN's span in its line (from the CTC frames of the general reading) is cut out with a
   margin and read by the **VIN model** (the fine-tuned head, with the check-digit search). The
   two readings are fused by the VIN rules (:func:`fuse_line`): the VIN model's wins unless the
   general reading is the better VIN (valid where the other is not, a correct mandatory check
   digit where the other fails it).

When the general reader finds no VIN, detection runs again with lower thresholds, on the photo
and then on a darkened copy (:func:`retry_views`: glare hides characters from the detector). If
that finds none either, the VIN model reads every line and its pick is accepted
only if it is a valid VIN (stamped fonts the general reader cannot read). With
``general_checkpoint: none`` the VIN model alone reads every line (the behaviour before).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image as PILImage

from vin_ocr.decoding.ctc import greedy, greedy_spans
from vin_ocr.models.pp_ocr_rec import (
    HUB_CHECKPOINTS,
    PPOCRSettings,
    ctc_logits,
    load_recognizer,
    preprocess,
)
from vin_ocr.reading import Reading
from vin_ocr.vin import VIN_LENGTH, is_valid, pick_vin_at

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["GeneralReader", "LineReading", "fuse_line", "span_box", "vin_span"]

#: The general reader keeps long lines whole (up to this many pixels at height 48), as
#: RapidOCR does; squashing a 40-character sticker line to 320 pixels leaves too few CTC frames.
GENERAL_MAX_WIDTH = 2048
#: Pixels of the resized (height 48) line per CTC frame.
FRAME_PX = 8
#: Margin added on each side of the VIN span, in character widths.
SPAN_MARGIN = 0.8
#: Character-level fusion of the two readings of a VIN line is tried up to this many differences.
FUSE_MAX_DIFF = 3
#: Gamma of the darkened view (:func:`retry_views`).
GLARE_GAMMA = 2.0
_SAFE = str.maketrans({"I": "1", "O": "0", "Q": "0"})


@dataclass(frozen=True)
class LineReading:
    """The general reader's text of one line, each character's confidence, and where each
    character is in the line image (left, right in pixels)."""

    text: str
    conf: tuple[float, ...]
    spans: tuple[tuple[float, float], ...]


class GeneralReader:
    """A full-dictionary PP-OCR recogniser (eval mode, no gradients) for reading scene lines:
    the torch model, or its graph on onnxruntime (an :class:`~vin_ocr.models.pp_ocr_onnx.OnnxNet`
    from :func:`~vin_ocr.models.pp_ocr_onnx.export_onnx` without ``class_index``)."""

    def __init__(self, model: Any, charset: Sequence[str], batch_size: int = 16):
        self.model = model.eval() if isinstance(model, torch.nn.Module) else model
        self.charset = list(charset)
        self.batch_size = batch_size

    @classmethod
    def load(cls, checkpoint: str, device: Any = "cpu") -> GeneralReader:
        """``rapidocr`` (the wheel's PP-OCRv6-small), ``hub`` (the official PP-OCRv6-small
        safetensors) or a Hub id / folder of a full-dictionary PP-OCR recogniser."""
        source = HUB_CHECKPOINTS["v6_small"] if checkpoint == "hub" else checkpoint
        model, charset = load_recognizer(PPOCRSettings(checkpoint=source))
        return cls(model.to(device, dtype=torch.float32), charset)

    def probs(self, pixels: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (batch, time, classes) of preprocessed ``pixels``."""
        if not isinstance(self.model, torch.nn.Module):
            return self.model(pixels)
        device = next(self.model.parameters()).device
        return ctc_logits(self.model, pixels.to(device)).float().softmax(-1).cpu().numpy()

    @torch.no_grad()
    def read(self, images: Sequence[Image]) -> list[LineReading]:
        out: list[LineReading | None] = [None] * len(images)
        # Batches of similar widths (padding changes little, but costs time).
        order = sorted(range(len(images)), key=lambda i: images[i].size[0] / images[i].size[1])
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [images[i] for i in idx]
            probs = self.probs(preprocess(batch, 48, 320, GENERAL_MAX_WIDTH))
            for i, p in zip(idx, probs, strict=True):
                w, h = images[i].size
                resized = min(GENERAL_MAX_WIDTH, max(1, math.ceil(48 * w / h)))
                p = p[: math.ceil(resized / FRAME_PX)]  # drop the padding's frames
                scale = w / resized
                text, conf = greedy(p, self.charset)
                spans = tuple(
                    (f0 * FRAME_PX * scale, f1 * FRAME_PX * scale)
                    for _, f0, f1 in greedy_spans(p, self.charset)
                )
                out[i] = LineReading(text, conf, spans)
        return [r for r in out if r is not None]


def _alnum(text: str) -> tuple[list[int], str]:
    """The indices of ``text``'s letters and digits, and those characters upper-cased with the
    safe ``I``/``O``/``Q`` -> ``1``/``0``/``0`` mapping: where a picked VIN is looked up."""
    keep = [i for i, c in enumerate(text) if c.isalnum()]
    return keep, "".join(text[i] for i in keep).upper().translate(_SAFE)


def vin_span(line: LineReading, vin: str) -> tuple[int, int] | None:
    """Where ``vin`` (as :func:`~vin_ocr.vin.pick_vin_at` returned it) lies in ``line``: the
    pixel columns (left, right) of its first and last characters, or None when the VIN is not a
    run of the line's alphanumeric characters (split over two lines, an import marker dropped).

    >>> line = LineReading("VIN: 1HG", (1.0,) * 8, tuple((8.0 * i, 8.0 * i + 6) for i in range(8)))
    >>> vin_span(line, "1HG")
    (40, 62)
    """
    keep, chars = _alnum(line.text)
    at = chars.find(vin)
    if at < 0:
        return None
    first, last = keep[at], keep[at + len(vin) - 1]
    return math.floor(line.spans[first][0]), math.ceil(line.spans[last][1])


def cut_span(image: Image, span: tuple[int, int], n_chars: int = VIN_LENGTH) -> Image:
    """The columns ``span`` of a line image holding ``n_chars`` characters, widened by
    :data:`SPAN_MARGIN` characters a side, and by one more character a side for each character
    a shorter-than-VIN reading lacks (the general reader lost one: keep it in the cut)."""
    left, right = span
    char = (right - left) / max(1, n_chars)
    margin = char * (SPAN_MARGIN + max(0, VIN_LENGTH - n_chars))
    width, height = image.size
    left = max(0, math.floor(left - margin))
    right = min(width, math.ceil(right + margin))
    return image.crop((left, 0, right, height)) if right - left >= 8 else image


def span_box(quad: np.ndarray, line_width: int, span: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box (left, top, right, bottom, image pixels) of the columns ``span`` of a line cut
    out of ``quad`` (4 x 2, clockwise from top-left) at ``line_width`` pixels wide: the part of
    the line that holds the VIN, not its label.

    >>> quad = np.array([[100, 50], [300, 50], [300, 70], [100, 70]], dtype=float)
    >>> span_box(quad, 200, (50, 150))
    (150, 50, 250, 70)
    """
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    points = []
    for x in span:
        f = min(1.0, max(0.0, x / max(1, line_width)))
        points.append(q[0] + f * (q[1] - q[0]))  # along the top edge
        points.append(q[3] + f * (q[2] - q[3]))  # along the bottom edge
    pts = np.asarray(points)
    left, top = np.floor(pts.min(axis=0)).astype(int)
    right, bottom = np.ceil(pts.max(axis=0)).astype(int)
    return int(left), int(top), int(right), int(bottom)


def fuse_line(vin_model: Reading, general: str, general_conf: tuple[float, ...] | None) -> Reading:
    """One reading of the VIN line from the VIN model's and the general reader's.

    1. The general reading wins when it is the better VIN by the VIN rules
       (:func:`vin_ocr.vin.pick_vin_at` over the two, the VIN model first so it wins ties).
    2. Where the rules cannot tell (two 17-character readings differing in at most
       :data:`FUSE_MAX_DIFF` positions, e.g. two valid European VINs), each differing position
       takes the character read with the higher confidence, as long as the result is at least as
       good a VIN as the VIN model's.
    3. Otherwise the VIN model's reading.

    >>> fuse_line(Reading("WVWZZZ1JZXW000008", char_conf=(0.9,) * 16 + (0.4,)),
    ...           "WVWZZZ1JZXW000001", (0.9,) * 17).text
    'WVWZZZ1JZXW000001'
    """
    if vin_model.text == general or not general:
        return vin_model
    text, at = pick_vin_at([vin_model.text, general])
    if at == 1 and text == general:
        return Reading(general, char_conf=general_conf)
    mine, theirs = vin_model.char_conf, general_conf
    diff = [i for i, (a, b) in enumerate(zip(vin_model.text, general, strict=False)) if a != b]
    if (
        mine is None
        or theirs is None
        or len(vin_model.text) != VIN_LENGTH
        or len(general) != VIN_LENGTH
        or len(diff) > FUSE_MAX_DIFF
    ):
        return vin_model
    chars, conf = list(vin_model.text), list(mine)
    for i in diff:
        if theirs[i] > mine[i]:
            chars[i], conf[i] = general[i], theirs[i]
    fused = "".join(chars)
    if fused != vin_model.text and pick_vin_at([fused, vin_model.text])[0] == fused:
        return Reading(fused, unconstrained=vin_model.unconstrained, char_conf=tuple(conf))
    return vin_model


def line_confidence(line: LineReading, vin: str) -> tuple[float, ...] | None:
    """The general reader's confidences of the characters of ``vin`` in ``line``."""
    keep, chars = _alnum(line.text)
    at = chars.find(vin)
    if at < 0 or not line.conf:
        return None
    return tuple(line.conf[keep[at + k]] for k in range(len(vin)))


def retry_views(image: Image) -> Iterator[Image]:
    """The photo as the second detection pass sees it: as it is, then darkened (gamma 2) so that
    characters washed out by glare on a windshield get their contrast back. Lazily, so a pass
    that finds the VIN stops the rest."""
    yield image
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    yield PILImage.fromarray((pixels**GLARE_GAMMA * 255.0).round().astype(np.uint8))


#: A photo's line must match its label at least this well (RapidFuzz partial ratio, 0-100) to be
#: taken as the VIN line for training.
MATCH_MIN = 75.0
#: Margin around a labelled VIN box, as a share of the box height (each side).
BOX_MARGIN = 0.15


def box_crop(image: Image, box: Sequence[float]) -> Image:
    """The labelled VIN ``box`` (left, top, right, bottom) of a photo, with a margin of
    :data:`BOX_MARGIN` box heights on each side (clamped to the image)."""
    left, top, right, bottom = (float(v) for v in box)
    margin = BOX_MARGIN * max(1.0, bottom - top)
    width, height = image.size
    return image.crop(
        (
            max(0, math.floor(left - margin)),
            max(0, math.floor(top - margin)),
            min(width, math.ceil(right + margin)),
            min(height, math.ceil(bottom + margin)),
        )
    )


def label_line(lines: Sequence[Any], readings: Sequence[LineReading], vin: str) -> Image | None:
    """The cut of the detected line that best matches the label ``vin`` (what the VIN model is
    given when it reads this photo), or None when no line matches at least :data:`MATCH_MIN`."""
    from rapidfuzz import fuzz

    best: tuple[float, int, Any] | None = None
    for i, reading in enumerate(readings):
        _, chars = _alnum(reading.text)
        if not chars:
            continue
        found = fuzz.partial_ratio_alignment(vin, chars)
        if found is not None and (best is None or found.score > best[0]):
            best = (found.score, i, found)
    if best is None or best[0] < MATCH_MIN:
        return None
    _, i, found = best
    keep, _ = _alnum(readings[i].text)
    first, last = keep[found.dest_start], keep[max(found.dest_start, found.dest_end - 1)]
    span = (math.floor(readings[i].spans[first][0]), math.ceil(readings[i].spans[last][1]))
    n = found.dest_end - found.dest_start
    return cut_span(lines[i].image, span, n)


def fallback_ok(text: str) -> bool:
    """A VIN model's pick, made where the general reader found no VIN, is kept only when it is
    a valid VIN."""
    return len(text) == VIN_LENGTH and is_valid(text)


# -- reading a whole photo ----------------------------------------------------------------------

#: Text-detection (pixel, box) thresholds of the second pass on a scene where no VIN was found.
RETRY_THRESHOLDS = (0.2, 0.3)
#: A detected line narrower than this many times its height (one or two characters: a logo, a
#: symbol) can hold neither a VIN nor a part of one worth joining: it is not read. VIN lines of the
#: real dev photos are at least 5.6 times wider than tall, pieces of a split VIN at least 2.
MIN_LINE_ASPECT = 1.0


def vin_shaped(lines: Sequence[Any]) -> list[Any]:
    """The detected ``lines`` whose shape can hold (part of) a VIN (:data:`MIN_LINE_ASPECT`)."""
    return [ln for ln in lines if ln.image.size[0] >= MIN_LINE_ASPECT * ln.image.size[1]]


def read_scene(family: Any, model: Any, image: Image, lines: list[Any] | None = None) -> Reading:
    """A whole photo read by ``family`` (:class:`~vin_ocr.models.pp_ocr.PPOCRFamily`): the
    general reader finds the VIN line among the detected ``lines`` (detected here when None),
    the VIN model reads that line's VIN span, and the two readings are fused."""
    device = next(model.parameters()).device
    if lines is None:
        lines = family.detector(device).detect(image)
    if not lines:
        return Reading("")
    lines = vin_shaped(lines)
    general = family.general_reader(device)
    if general is None:
        return read_lines_vin_model(family, model, lines) if lines else Reading("")
    read = general.read([line.image for line in lines]) if lines else []
    text, at = pick_vin_at([r.text for r in read])
    # Glare and widely spaced characters split or hide a VIN line at the default thresholds:
    # detect again, more permissively, then on the photo darkened against glare.
    for view in retry_views(image) if at is None and family.settings.det_retry else ():
        retry = vin_shaped(family.detector(device).detect(view, *RETRY_THRESHOLDS))
        retry_read = general.read([line.image for line in retry]) if retry else []
        text, at = pick_vin_at([r.text for r in retry_read])
        if at is not None:
            lines, read = retry, retry_read
            break
    if at is None and not lines:
        return Reading("")
    if at is None:  # the general reader found no VIN: the VIN model's pick, if valid
        found = read_lines_vin_model(family, model, lines)
        return found if fallback_ok(found.text) else Reading("")
    line = lines[at]
    span = vin_span(read[at], text)
    crop = cut_span(line.image, span, len(text)) if span is not None else line.image
    vin_model = family.decode_line(family.line_probs(model, [crop])[0])
    if span is None:  # the VIN model read the whole line: its VIN, if any
        picked, where = pick_vin_at([vin_model.text])
        vin_model = Reading(picked) if where is not None else Reading("")
    fused = fuse_line(vin_model, text, line_confidence(read[at], text))
    box = span_box(line.quad, line.image.size[0], span) if span is not None else line.box
    return replace(fused, box=box)


def read_lines_vin_model(family: Any, model: Any, lines: Sequence[Any]) -> Reading:
    """Every line read by the VIN model, the VIN picked among them (no general reader)."""
    probs = family.line_probs(model, [line.image for line in lines])
    readings = [family.decode_line(p, search=False) for p in probs]
    text, at = pick_vin_at([r.text for r in readings])
    if at is None:
        # The VIN alphabet has no space or punctuation: a label on the VIN's line merges
        # with it ("V.I.N. WAUR..." reads "VJNWAUR..."). Labels come first: try line ends.
        text, at = pick_vin_at([r.text[-VIN_LENGTH:] for r in readings])
    if at is None:
        return Reading("")
    box = lines[at].box
    line = readings[at]
    if line.text == text and family.settings.check_digit_search:
        return replace(family.decode_line(probs[at]), box=box)
    start = line.text.find(text)
    conf = line.char_conf[start : start + len(text)] if start >= 0 and line.char_conf else None
    return Reading(text, char_conf=conf, box=box)
