"""vin-ocr: fine-tune and evaluate OCR models for Vehicle Identification Numbers."""

from pathlib import Path

__version__ = "0.1.0"

#: Repository root (the package is installed editable; configs/ and data/ live beside it).
REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
SAMPLES_DIR = REPO_ROOT / "data" / "samples"
#: 20 real windshield photos with hand-checked VINs (CC BY 4.0, data/real/README.md), for
#: evaluation only.
REAL_DIR = REPO_ROOT / "data" / "real"
