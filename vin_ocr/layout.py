"""Line crop or whole photo: how an image must be read.

A *line crop* holds one text line (the VIN) and goes straight to recognition; a *scene* (a whole
photo: a sticker, a windshield plate with its surroundings, a stamped number with a margin) needs
text detection first, then the VIN is picked among the lines read. Every engine's ``read`` takes
``crops``: one flag per image, ``True`` (line crop), ``False`` (scene) or ``None`` (decide from the
image: :func:`is_line_crop`); ``crops`` left out means every image is a line crop.

The decision (``crops=auto`` in the harness, for images without a ``crop`` flag): an image at
least :data:`LINE_ASPECT` times wider than tall is a line (no photo of a VIN with margins has
that shape); otherwise text detection runs and the image is a line crop only when the boxes found
form one row that fills most of it (:data:`FILL_WIDTH` of its width, :data:`FILL_HEIGHT` of its
height). No box at all: the image is read whole, as a line.

>>> is_line_crop((460, 48), None)
True
>>> is_line_crop((1150, 450), [(60, 180, 1090, 260)])  # one VIN line with a wide margin
False
>>> is_line_crop((400, 90), [(8, 10, 392, 80)])
True
>>> is_line_crop((800, 600), [(50, 40, 700, 90), (50, 300, 760, 350)])  # a sticker
False
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "FILL_HEIGHT",
    "FILL_WIDTH",
    "LINE_ASPECT",
    "crop_flags",
    "is_line_crop",
    "needs_detection",
    "sample_flag",
    "settle",
]

#: An image this many times wider than tall is a text line without detection.
LINE_ASPECT = 6.0
#: One row of boxes covering this share of the width and of the height: a tight line crop.
FILL_WIDTH = 0.75
FILL_HEIGHT = 0.45

Box = tuple[float, float, float, float]


def crop_flags(images: Sequence[Any], crops: Sequence[bool | None] | None) -> list[bool | None]:
    """One flag per image: ``crops`` checked against ``images``; every image a line crop when
    ``crops`` is None. ``None`` entries (decide per image) are kept."""
    if crops is None:
        return [True] * len(images)
    if len(crops) != len(images):
        raise ValueError(f"{len(images)} images but {len(crops)} crop flags")
    return [None if c is None else bool(c) for c in crops]


def needs_detection(size: tuple[int, int]) -> bool:
    """Whether the image's shape alone cannot say it is a line (see the module docstring)."""
    width, height = size
    return width < LINE_ASPECT * max(1, height)


def is_line_crop(size: tuple[int, int], boxes: Sequence[Box] | None) -> bool:
    """Whether an image of ``size`` (width, height) whose text detection found ``boxes``
    (left, top, right, bottom; ``None`` when detection did not run) is a tight line crop."""
    if not needs_detection(size) or boxes is None:
        return not needs_detection(size)
    if not boxes:
        return True
    width, height = size
    heights = sorted(b[3] - b[1] for b in boxes)
    tallest = heights[-1]
    top, bottom = min(b[1] for b in boxes), max(b[3] for b in boxes)
    if bottom - top > 1.5 * tallest:  # more than one row of text
        return False
    left, right = min(b[0] for b in boxes), max(b[2] for b in boxes)
    return right - left >= FILL_WIDTH * width and bottom - top >= FILL_HEIGHT * height


def settle(
    images: Sequence[Any],
    crops: Sequence[bool | None] | None,
    detect: Callable[[Any], tuple[Any, Sequence[Box]]] | None = None,
) -> tuple[list[bool], dict[int, Any]]:
    """Every image's flag, the ``None`` entries decided (:func:`is_line_crop`): by shape, and,
    where the shape cannot tell and ``detect`` is given, by ``detect(image) -> (result, boxes)``.
    Returns the flags and the detection results by image index, so an engine reuses them for
    the images that turn out to be scenes."""
    flags: list[bool] = []
    found: dict[int, Any] = {}
    for i, (image, flag) in enumerate(zip(images, crop_flags(images, crops), strict=True)):
        if flag is None and detect is not None and needs_detection(image.size):
            found[i], boxes = detect(image)
            flag = is_line_crop(image.size, boxes)
        elif flag is None:
            flag = is_line_crop(image.size, None)
        flags.append(flag)
    return flags, found


def sample_flag(sample: Any) -> bool | None:
    """How a manifest sample is read: its ``crop`` flag; else a scene when it has a ``box`` (the
    VIN's place in a photo); else ``None``, decided per image."""
    if sample.crop is not None:
        return bool(sample.crop)
    return False if sample.box is not None else None
