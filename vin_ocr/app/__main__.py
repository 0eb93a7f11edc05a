"""``python -m vin_ocr.app [model=baseline|tesseract|RUN_FOLDER|HUB_ID] [port=7860] [share=true]``.

Serves the demo page on ``host:port`` (default 127.0.0.1 and a free port; the URL is printed).
Exit code 1, with the reason, when the model cannot be loaded.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import vin_ocr
from vin_ocr.app.core import EngineUnavailable
from vin_ocr.app.ui import serve
from vin_ocr.config import register_configs
from vin_ocr.errors import exit_on_user_error


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR / "app"), config_name="app", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(EngineUnavailable, prefix=f"cannot load model={cfg.model}: "):
        serve(cfg)


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
