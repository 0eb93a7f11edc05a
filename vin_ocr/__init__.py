"""vin-ocr: fine-tune and evaluate OCR models for Vehicle Identification Numbers."""

from pathlib import Path

__version__ = "0.1.0"

_PACKAGE = Path(__file__).resolve().parent
#: The source checkout (scripts/, docs/, stubs/): meaningful only in a checkout, not in an
#: installed wheel. Everything a command needs at run time lives inside the package.
REPO_ROOT = _PACKAGE.parent
#: The Hydra configs, shipped in the package (the checkout's ``configs/`` links here).
CONFIG_DIR = _PACKAGE / "configs"
#: The 40 bundled synthetic samples (``data/samples`` in a checkout links here).
SAMPLES_DIR = _PACKAGE / "assets" / "samples"
#: 20 real windshield photos with hand-checked VINs (CC BY 4.0, its README.md credits them), for
#: evaluation only (``data/real`` in a checkout links here).
REAL_DIR = _PACKAGE / "assets" / "real"
