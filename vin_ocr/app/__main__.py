"""``python -m vin_ocr.app [model=baseline|tesseract|RUN_FOLDER|HUB_ID] [port=7860] [share=true]``.

Serves the demo page on ``host:port`` (default 127.0.0.1 and a free port; the URL is printed).
Exit code 1, with the reason, when the model cannot be loaded.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import vin_ocr
from vin_ocr.app.core import EngineUnavailable, register_configs
from vin_ocr.app.ui import serve

register_configs()


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR / "app"), config_name="app", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        serve(cfg)
    except EngineUnavailable as exc:
        print(f"vin_ocr.app: cannot load model={cfg.model}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
