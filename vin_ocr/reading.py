"""What an engine read in one image: the text the harness scores, plus what explains it.

Every engine (:mod:`vin_ocr.evaluation.engines`, a trained model through
:class:`vin_ocr.models.engine.FamilyEngine`) returns one :class:`Reading` per image, so the
harness, the reports and the demo app treat them alike:

- ``text``: the prediction that is scored (``""`` when nothing was read);
- ``unconstrained``: what the engine read before VIN-constrained decoding (the check-digit
  search); ``None`` when no such search ran. ``repaired`` is true when the search changed the
  reading, so the harness can count the repairs that fixed an error and the ones that broke a
  correct reading;
- ``char_conf``: one confidence in [0, 1] per character of ``text``, where the engine has them;
- ``box``: ``(left, top, right, bottom)`` in pixels of the line that was read inside the image
  (scenes, after text detection); ``None`` when the whole image was read.
- ``source``: where the VIN came from once the image's barcodes were searched
  (:func:`vin_ocr.barcode.fuse`): ``"ocr"``, ``"barcode"``, ``"agree"`` (both, the same VIN)
  or ``"disagree"`` (both, different); ``None`` when no barcode search ran;
- ``alternative``: in a disagreement, the reading that lost (reported, never hidden).

>>> r = Reading("1HGCM82633A004352", unconstrained="1HGCM82633AO04352")
>>> r.repaired, r.check_digit_ok
(True, True)
>>> Reading("1HGCM82633A004352").repaired
False
>>> Reading("1HGCM82633A004352", source="disagree", alternative="1HGCM82633A004353").to_json()
{'text': '1HGCM82633A004352', 'source': 'disagree', 'alternative': '1HGCM82633A004353'}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Values of :attr:`Reading.source` (``None``: no barcode search ran).
SOURCES = (None, "ocr", "barcode", "agree", "disagree")


@dataclass(frozen=True)
class Reading:
    text: str
    unconstrained: str | None = None
    char_conf: tuple[float, ...] | None = None
    box: tuple[int, int, int, int] | None = None
    source: str | None = None
    alternative: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(
                f"Reading({self.text!r}): source={self.source!r}, expected one of "
                f"{', '.join(map(repr, SOURCES))}"
            )
        if self.char_conf is not None and len(self.char_conf) != len(self.text):
            raise ValueError(
                f"Reading({self.text!r}): {len(self.char_conf)} confidences for "
                f"{len(self.text)} characters"
            )

    @property
    def repaired(self) -> bool:
        """The VIN-constrained search changed the raw reading."""
        return self.unconstrained is not None and self.unconstrained != self.text

    @property
    def check_digit_ok(self) -> bool:
        """``text`` is 17 characters whose position-9 check digit is right (any region)."""
        from vin_ocr.vin import check_digit_ok

        return check_digit_ok(self.text)  # False for a malformed text

    def to_json(self) -> dict[str, object]:
        """The fields that are set, for ``predictions.jsonl``."""
        out: dict[str, object] = {"text": self.text}
        if self.unconstrained is not None:
            out["unconstrained"] = self.unconstrained
            out["repaired"] = self.repaired
        if self.char_conf is not None:
            out["char_conf"] = [round(c, 4) for c in self.char_conf]
        if self.box is not None:
            out["box"] = list(self.box)
        if self.source is not None:
            out["source"] = self.source
        if self.alternative is not None:
            out["alternative"] = self.alternative
        return out


def texts(readings: Sequence[Reading]) -> list[str]:
    """The scored strings of ``readings``."""
    return [r.text for r in readings]


class TextsFromReadings:
    """``predict`` (the texts) written once, for every engine class that implements ``read``."""

    def read(
        self, images: Sequence[Any], crops: Sequence[bool | None] | None = None
    ) -> list[Reading]:  # pragma: no cover - implemented by each engine
        raise NotImplementedError

    def predict(
        self, images: Sequence[Any], crops: Sequence[bool | None] | None = None
    ) -> list[str]:
        return texts(self.read(images, crops))
