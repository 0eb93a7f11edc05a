"""``python -m vin_ocr.data.synth [hydra overrides]``: see :mod:`vin_ocr.data.synth.cli`."""

from vin_ocr.config import register_configs
from vin_ocr.data.synth.cli import main

if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
