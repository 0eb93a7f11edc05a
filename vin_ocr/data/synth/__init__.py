"""Synthetic VIN images: line crops and whole scenes in four looks, deterministic by seed.

Looks (``LOOKS``):

* ``stamped``  -- punched, dot-peened or raised characters in steel, painted or rusty metal, or on
  a riveted type plate; often ``*`` delimiters; low contrast (relief shading only).
* ``plate``    -- the dashboard plate seen through the windshield: light characters on a dark
  plate, haze, a glare band, a tint.
* ``sticker``  -- the door-jamb certification label: dark print on a white or silver label,
  label text (MFD BY, DATE, GVWR, GAWR...) and a Code 39 barcode of the VIN.
* ``document`` -- a registration paper: printed VIN on tinted security paper with field labels
  (``VIN``, ``Fahrzeug-Ident.-Nr.``, ``Chassis No.``...) and other fields.

Two kinds: ``line`` (a tight crop of the VIN line, 32-64 px high, aspect about 6:1 to 12:1, the
recogniser's input) and ``scene`` (the VIN among other text, 480-960 px wide; the VIN's box is
recorded). :func:`render_sample` draws sample ``index`` of a ``seed`` -- the same image in any
process and order -- and is what training uses on the fly (:class:`SynthDataset`);
:func:`generate` writes a folder of images and a ``manifest.jsonl``:

    python -m vin_ocr.data.synth out=data/synth n=10000 seed=0 kind=line

>>> img, vin, meta = render_sample(3, seed=0)
>>> img.mode, len(vin), meta["look"] in LOOKS, meta["kind"]
('RGB', 17, True, 'line')

The package, one module per concern: ``config`` (what to render, checked), ``raster`` (numpy/PIL
helpers), ``glyphs`` (text and Code 39), ``looks`` (fonts, paints, styles), ``surfaces`` (metal,
plate, label, paper, ink, windshield), ``paper`` and ``metal`` (the four scene kinds), ``render``
(one sample), ``dataset``, ``writer`` (a folder and its manifest), ``sample_set`` (the bundled set,
contact sheet) and ``cli`` (the Hydra entry, run by ``__main__``).
"""

from vin_ocr.data.synth.cli import main, run
from vin_ocr.data.synth.config import KINDS, LOOKS, SynthConfig, SynthRun, to_config
from vin_ocr.data.synth.dataset import SynthDataset
from vin_ocr.data.synth.render import render_sample, sample_rngs
from vin_ocr.data.synth.sample_set import (
    SAMPLE_SET_LINES,
    SAMPLE_SET_SCENES,
    SAMPLE_SET_SEED,
    build_sample_set,
    contact_sheet,
)
from vin_ocr.data.synth.writer import generate

__all__ = [
    "KINDS",
    "LOOKS",
    "SAMPLE_SET_LINES",
    "SAMPLE_SET_SCENES",
    "SAMPLE_SET_SEED",
    "SynthConfig",
    "SynthDataset",
    "SynthRun",
    "build_sample_set",
    "contact_sheet",
    "generate",
    "main",
    "render_sample",
    "run",
    "sample_rngs",
    "to_config",
]
