"""Write a ready Hugging Face Space for the demo app.

    python -m vin_ocr.app.export_space out=DIR [model=baseline|HUB_ID|RUN_FOLDER] \\
        [hardware=auto|cpu-basic|t4-small|...] [zero_gpu=true] [push_to=USER/SPACE]

``DIR`` receives ``app.py``, a pinned ``requirements.txt`` and a ``README.md`` whose YAML header
holds sdk, sdk_version (the gradio installed here), app_file, suggested_hardware and the model
repo; with ``package=vendor`` (default) also this checkout's ``vin_ocr/`` (its configs and the
bundled samples inside), and a local run folder's ``run.json`` + ``model/`` under ``run/``.

Hardware ``auto`` is the smallest tier that runs the model (CPU for PP-OCR and the baselines, see
:func:`pick_hardware`). No token is ever written: a private model repo needs ``HF_TOKEN`` set as
a secret in the Space's settings, where ``huggingface_hub`` reads it.

Bad requests end with :class:`SpaceError` (the CLI: one ``error:`` line, exit code 1) and leave
``out`` as it was: a non-empty ``out`` without ``overwrite=true``, a local path that does not
exist, a run folder without ``run.json`` or ``model/`` weights (still training, or interrupted),
a Hub id whose ``run.json`` cannot be read (offline, private, missing) without ``model_config``.

The export itself is the library :mod:`vin_ocr.app.space`; its names are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hydra
from omegaconf import MISSING, DictConfig

import vin_ocr
from vin_ocr.app.core import BASELINE
from vin_ocr.app.space import (
    GPU_TIERS,
    INFERENCE_FACTOR,
    ZERO_GPU,
    SpaceError,
    SpaceExport,
    app_source,
    export_space,
    local_run_info,
    pick_hardware,
    push,
    readme,
    requirements,
)
from vin_ocr.config import register_configs
from vin_ocr.errors import exit_on_user_error

__all__ = [
    "GPU_TIERS",
    "INFERENCE_FACTOR",
    "ZERO_GPU",
    "SpaceConf",
    "SpaceError",
    "SpaceExport",
    "app_source",
    "export_space",
    "local_run_info",
    "main",
    "pick_hardware",
    "push",
    "readme",
    "requirements",
]


@dataclass
class SpaceConf:
    out: str = MISSING
    #: baseline | an engine name | a Hub model id (a pushed run) | a local run folder (copied in)
    model: str = BASELINE
    #: configs/model/<name>.yaml to size the hardware when the run's run.json cannot be read
    model_config: str | None = None
    engines: list[str] = field(default_factory=lambda: [BASELINE])
    title: str = "VIN reader"
    hardware: str = "auto"
    zero_gpu: bool = False
    #: vendor: copy this checkout's vin_ocr/ (configs and samples inside); else a pip requirement
    package: str = "vendor"
    license: str = "apache-2.0"
    overwrite: bool = False
    push_to: str | None = None  # a Space id (user/name) to create and upload to (needs a login)
    private: bool = False


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR / "app"), config_name="space", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(SpaceError, out="out"):  # bad input: one line, no traceback
        result = export_space(cfg)
    print(f"Space written to {result.out}: {', '.join(result.files)}")
    print(f"hardware: {result.hardware} ({result.why})")


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
