"""Every Hydra config schema, registered by one call: :func:`register_configs`.

Each command's Hydra entry point calls it before composing (``if __name__ == "__main__"``), and
so do tests that compose configs with Hydra's compose API (:func:`compose` does both). A schema
is a dataclass in the module that reads the config; its YAML names it first in its defaults list,
so a mistyped key fails while composing, naming the key. Nothing registers on import.

The config folders mirror the code::

    train.yaml    model/ training/ data/ (training data) hardware/ hub/ logger/ experiment/ debug/
    eval/         eval.yaml, engine/ and data/ (the manifest evaluated): vin_ocr.evaluation
    app/          app.yaml (the demo page) and space.yaml (a Hugging Face Space): vin_ocr.app
    merge.yaml  preflight.yaml  prepare.yaml (source/)  synth.yaml  compare.yaml  paddle_export.yaml

A ``model/NAME.yaml`` is checked against the schema ``model_schema/NAME``: :class:`ModelConf`
(``name`` and ``family``, which every model config has) plus the keys that file declares
(``train.yaml`` puts it first: ``model_schema@model: ${model}``). An experiment, ``debug=smoke``
or an override that sets a key the model's file does not declare fails, naming it.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

import vin_ocr

#: Top-level config name -> the folder it is composed from (the others: :data:`CONFIG_DIR`).
CONFIG_DIRS: dict[str, Path] = {
    "eval": vin_ocr.CONFIG_DIR / "eval",
    "app": vin_ocr.CONFIG_DIR / "app",
    "space": vin_ocr.CONFIG_DIR / "app",
}
#: Every top-level config (what ``vin-ocr COMMAND`` composes).
TOP_LEVEL = (
    "train", "eval", "merge", "prepare", "synth", "compare", "preflight", "app", "space",
    "paddle_export",
)  # fmt: skip


@dataclass
class ModelConf:
    """The keys every ``model/*.yaml`` has; a family's own keys are those its file declares."""

    name: str = MISSING  # the config's name (run folders and cards use it)
    family: str = MISSING  # the registered family that builds it (vin_ocr.models.registry)
    #: The base checkpoint's license, for the model card: a Hub license id ("apache-2.0", "mit"),
    #: or {id: other, name: ..., link: ...}; null: unknown (the card then claims none).
    license: Any = None


#: ``ModelConf`` keys that describe the checkpoint for people (cards), not for the family's build.
CARD_KEYS = ("license",)


def model_schema(path: Path) -> type:
    """:class:`ModelConf` plus the keys ``path`` (a ``model/*.yaml``) declares, any type."""
    declared = OmegaConf.load(path)
    common = {f.name for f in dataclasses.fields(ModelConf)}
    extra = [str(k) for k in declared if k not in common and k != "defaults"]
    fields = [(k, Any, dataclasses.field(default=None)) for k in extra]
    return dataclasses.make_dataclass(f"{path.stem}_ModelConf", fields, bases=(ModelConf,))


def _entry_class(module: str, name: str) -> Any:
    """``module.name``, taken from ``__main__`` when ``module`` is the command running
    (``python -m module``, ``vin-ocr COMMAND``): importing it again would make a second copy of
    the module, its classes different from the ones the running command merges its config with."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == module:
        return getattr(main, name)
    return getattr(importlib.import_module(module), name)


def _schemas() -> list[tuple[str | None, str, Any]]:
    """(group, name, dataclass) of every schema; imported here, not at module import."""
    from vin_ocr.app.core import AppConf
    from vin_ocr.data.prepare_config import (
        FolderSource,
        HFSource,
        ManifestSource,
        PaddleSource,
        PrepareConfig,
        YoloSource,
    )
    from vin_ocr.data.synth.config import SynthRun
    from vin_ocr.evaluation.schema import (
        CheckpointConf,
        DataConf,
        EvalConf,
        PaddleOCRConf,
        RapidOCRConf,
        TesseractConf,
    )
    from vin_ocr.hardware.resolve import HardwareConfig
    from vin_ocr.hub.push import HubConf
    from vin_ocr.training.data import TrainDataConf
    from vin_ocr.training.loggers import WandbConf
    from vin_ocr.training.merging import MergeConf
    from vin_ocr.training.start import TrainingConf

    # schemas defined in a command's own module (see _entry_class)
    CompareConf = _entry_class("vin_ocr.evaluation.compare", "CompareConf")
    SpaceConf = _entry_class("vin_ocr.app.export_space", "SpaceConf")
    PaddleExportConf = _entry_class("vin_ocr.training.export_paddle", "PaddleExportConf")

    models = sorted((vin_ocr.CONFIG_DIR / "model").glob("*.yaml"))
    return [
        # train.yaml and its groups
        ("training", "training_schema", TrainingConf),
        *[("model_schema", p.stem, model_schema(p)) for p in models],
        ("data", "train_data_schema", TrainDataConf),
        ("hardware", "hardware_schema", HardwareConfig),
        ("hub", "hub_schema", HubConf),
        ("logger", "wandb_schema", WandbConf),
        # eval/eval.yaml and its groups
        (None, "eval_schema", EvalConf),
        ("data", "eval_data_schema", DataConf),
        ("engine", "rapidocr_schema", RapidOCRConf),
        ("engine", "tesseract_schema", TesseractConf),
        ("engine", "paddleocr_schema", PaddleOCRConf),
        ("engine", "checkpoint_schema", CheckpointConf),
        # the other commands
        (None, "merge_schema", MergeConf),
        (None, "prepare_schema", PrepareConfig),
        ("source", "folder_schema", FolderSource),
        ("source", "paddle_schema", PaddleSource),
        ("source", "hf_schema", HFSource),
        ("source", "manifest_schema", ManifestSource),
        ("source", "yolo_schema", YoloSource),
        (None, "synth_schema", SynthRun),
        (None, "compare_schema", CompareConf),
        (None, "paddle_export_schema", PaddleExportConf),
        (None, "app_schema", AppConf),
        (None, "space_schema", SpaceConf),
    ]


def register_configs() -> None:
    """Put every schema in Hydra's ConfigStore (idempotent). Call it before composing."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, name, node in _schemas():
        cs.store(group=group, name=name, node=node)


def compose(name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The top-level config ``name`` composed as its command would (schemas registered),
    without running it: for tests and tools."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    folder = CONFIG_DIRS.get(name, vin_ocr.CONFIG_DIR)
    with initialize_config_dir(str(folder), version_base="1.3"):
        return hydra_compose(name, overrides=list(overrides))
