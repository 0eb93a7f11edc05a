"""The demo app: ``python -m vin_ocr.app [model=baseline|RUN_FOLDER|HUB_ID]`` serves a Gradio page
that reads a VIN from a photo, says whether it is valid and why, and compares two engines.

``python -m vin_ocr.app.export_space out=DIR model=...`` writes a ready Hugging Face Space.
Gradio is imported only when the page is built (``pip install 'vin-ocr[app]'``).
"""

from vin_ocr.app.core import (
    BASELINE,
    AppConf,
    EngineCache,
    Result,
    UploadError,
    confidence_table,
    explain,
    is_line_crop,
    load_image,
    open_engine,
    read_image,
    sample_images,
    to_dict,
)
from vin_ocr.app.ui import build_app, compare_panels, engine_choices, read_panel, serve

__all__ = [
    "BASELINE",
    "AppConf",
    "EngineCache",
    "Result",
    "UploadError",
    "build_app",
    "compare_panels",
    "confidence_table",
    "engine_choices",
    "explain",
    "is_line_crop",
    "load_image",
    "open_engine",
    "read_image",
    "read_panel",
    "sample_images",
    "serve",
    "to_dict",
]
