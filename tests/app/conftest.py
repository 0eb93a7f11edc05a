"""The app's config and one shared baseline engine (RapidOCR loads in ~1 s)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

import vin_ocr
from vin_ocr.app import EngineCache
from vin_ocr.config import register_configs

#: A bundled line crop and a bundled scene (data/samples).
LINE = vin_ocr.SAMPLES_DIR / "images" / "000000.jpg"
SCENE = vin_ocr.SAMPLES_DIR / "images" / "000037.jpg"


def app_cfg(*overrides: str):
    register_configs()
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR / "app"), version_base="1.3"):
        return compose("app", overrides=list(overrides))


@pytest.fixture(scope="session")
def cache() -> EngineCache:
    return EngineCache()
