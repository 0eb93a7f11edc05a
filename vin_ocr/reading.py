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

>>> r = Reading("1HGCM82633A004352", unconstrained="1HGCM82633AO04352")
>>> r.repaired, r.check_digit_ok
(True, True)
>>> Reading("1HGCM82633A004352").repaired
False
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reading:
    text: str
    unconstrained: str | None = None
    char_conf: tuple[float, ...] | None = None
    box: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
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
        return out


def texts(readings: Sequence[Reading]) -> list[str]:
    """The scored strings of ``readings``."""
    return [r.text for r in readings]


class TextsFromReadings:
    """``predict`` (the texts) written once, for every engine class that implements ``read``."""

    def read(
        self, images: Sequence[Any], crops: Sequence[bool] | None = None
    ) -> list[Reading]:  # pragma: no cover - implemented by each engine
        raise NotImplementedError

    def predict(self, images: Sequence[Any], crops: Sequence[bool] | None = None) -> list[str]:
        return texts(self.read(images, crops))
