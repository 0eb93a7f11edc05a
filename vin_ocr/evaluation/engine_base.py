"""What every OCR engine is: :class:`Engine` (one small interface, so the harness can run any
engine on any data set), :class:`EngineUnavailable`, and the helpers engines share to turn OCR
output into :class:`vin_ocr.reading.Reading` objects.

An engine reads a batch of PIL images and returns one :class:`vin_ocr.reading.Reading` per image
(``read``: the text, plus per-character confidences, the box of the line read and the reading
before VIN-constrained decoding where the engine has them); ``predict`` is the texts alone.
``crops[i]`` says whether image ``i`` is a line crop holding only the VIN (recognition only) or a
scene (detection, recognition, then :func:`vin_ocr.vin.pick_vin` chooses the VIN among the lines
read). ``crops`` left out means every image is a line crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vin_ocr.reading import Reading

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


def crop_flags(images: Sequence[Any], crops: Sequence[bool | None] | None) -> list[bool]:
    """One flag per image; ``None`` entries (decide per image) are settled by the image's shape
    alone (:func:`vin_ocr.layout.settle` without detection), for engines whose detection cannot
    be run on its own."""
    from vin_ocr.layout import settle

    return settle(images, crops)[0]


def to_bgr(image: Image) -> np.ndarray:
    """The image as a contiguous BGR array, the channel order the OCR packages read."""
    import numpy as np

    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def scene_reading(lines: Sequence[str], boxes: Sequence[Any] | None = None) -> Reading:
    """The VIN among a scene's lines, with the box of its line when ``boxes`` (one quadrilateral
    or rectangle of points per line) are given."""
    from vin_ocr.vin import pick_vin_at

    keep = [i for i, line in enumerate(lines) if line.strip()]
    text, at = pick_vin_at([lines[i] for i in keep])
    if at is None or boxes is None:
        return Reading(text)
    return Reading(text, box=box_bounds(boxes[keep[at]]))


def line_reading(text: str) -> Reading:
    """A line crop's reading as the VIN it holds (:func:`vin_ocr.vin.normalize`: labels and
    separators dropped, I/O/Q -> 1/0/0): the answer a user receives and the metric scores."""
    from vin_ocr.vin import normalize

    return Reading(normalize(text))


def box_bounds(points: Any) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` around a quadrilateral or rectangle of points, rounded out."""
    import numpy as np

    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    left, top = np.floor(pts.min(axis=0)).astype(int)
    right, bottom = np.ceil(pts.max(axis=0)).astype(int)
    return int(left), int(top), int(right), int(bottom)
