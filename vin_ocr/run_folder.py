"""The run folder: its layout, ``run.json``, finding a run, rebuilding its base, loading it.

A training run (``python -m vin_ocr.training.hf_finetune``), a merge and a Hub repo pushed from
either share one layout::

    run.json        family, resolved model config, hardware, metrics, seed (written last)
    model/          weights + processor (save_pretrained layout); a LoRA run also has
      adapter/      its adapter (adapter_model.safetensors); merged weights beside it or not
    model.onnx      the ONNX export (PP-OCR)
    det.onnx        PP-OCR: the text detector's ONNX export, and
    general.onnx    the general reader's (whole photos on onnxruntime, ``load_run(onnx=True)``)
    README.md       the model card
    config.yaml     the resolved config
    eval/<set>/     the harness's reports after training; eval_baseline/<set>/ before
    metrics.jsonl   one line per logged step
    train.log       the run's log
    checkpoints/    resumable state (training.resume=auto)
    hub_upload/     what hub.dry_run staged

This module is the only one that knows it: training writes through it, merge, the Hub push, the
app, the Space export and ``engine=checkpoint`` read through it. It sits above ``models/`` (it
builds a family's model) and below ``evaluation/``, ``training/``, ``hub/`` and ``app/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vin_ocr.data.sample import atomic_write_text
from vin_ocr.errors import UserError
from vin_ocr.models.engine import FamilyEngine
from vin_ocr.models.registry import facts

RUN_FILE = "run.json"
MODEL_DIR = "model"
ADAPTER_DIR = "adapter"  # inside MODEL_DIR
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ONNX_FILE = "model.onnx"
DET_ONNX_FILE = "det.onnx"
GENERAL_ONNX_FILE = "general.onnx"
CARD_FILE = "README.md"
CONFIG_FILE = "config.yaml"
EVAL_DIR = "eval"
BASELINE_DIR = "eval_baseline"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
CHECKPOINTS_DIR = "checkpoints"
STAGING_DIR = "hub_upload"
#: everything a training run leaves in its folder (``overwrite=true`` removes these, only these)
ARTEFACTS = (CHECKPOINTS_DIR, MODEL_DIR, EVAL_DIR, BASELINE_DIR, STAGING_DIR, RUN_FILE, CARD_FILE,
             ONNX_FILE, DET_ONNX_FILE, GENERAL_ONNX_FILE, METRICS_FILE, CONFIG_FILE,
             LOG_FILE)  # fmt: skip


class RunFolderError(UserError):
    """A folder that is not the run folder asked for; the message says what is missing."""


def is_finished(run: str | Path) -> bool:
    """True when ``run`` holds ``run.json`` (written last, once the run is complete)."""
    return (Path(run) / RUN_FILE).is_file()


def write_info(run: str | Path, info: dict[str, Any]) -> Path:
    """Write ``run.json`` atomically (the last file a run writes)."""
    return atomic_write_text(Path(run) / RUN_FILE, json.dumps(info, indent=1))


def read_info(run: str | Path) -> dict[str, Any]:
    """``run.json`` of the run folder ``run``."""
    return json.loads((Path(run) / RUN_FILE).read_text())


def has_merged_weights(model_dir: Path) -> bool:
    return any(Path(model_dir).glob("model*.safetensors"))


def has_adapter(model_dir: Path) -> bool:
    return (Path(model_dir) / ADAPTER_DIR / ADAPTER_WEIGHTS).is_file()


def full_run(path: str | Path) -> Path | None:
    """The run folder when ``path`` is a finished full (non-LoRA) fine-tune, else None."""
    run = Path(path)
    model_dir = run / MODEL_DIR
    if not is_finished(run) or (model_dir / ADAPTER_DIR).exists():
        return None
    return run if has_merged_weights(model_dir) else None


def find_run(path: str | Path) -> tuple[Path, Path, dict[str, Any]]:
    """(run folder, adapter folder, run.json) for a LoRA run folder, its ``model/`` or its
    ``model/adapter/``."""
    path = Path(path)
    for run in (path, path.parent, path.parent.parent):
        adapter = run / MODEL_DIR / ADAPTER_DIR
        if is_finished(run) and (path == run or adapter in (path, path / ADAPTER_DIR)):
            if not (adapter / ADAPTER_WEIGHTS).is_file():
                raise RunFolderError(
                    f"{run}: the run has no LoRA adapter ({adapter}/{ADAPTER_WEIGHTS}); "
                    "only LoRA/QLoRA runs (training=lora|qlora) can be merged"
                )
            return run, adapter, read_info(run)
    raise RunFolderError(f"{path}: not a training run folder (no {RUN_FILE} in it or above it)")


def base_model_cfg(info: dict[str, Any], base: str | None = None) -> DictConfig:
    """The ``model`` config that rebuilds a run's base for merging: never quantised, no fresh
    LoRA of the family's own (PP-OCR ``finetune``), ``base`` as the checkpoint when given."""
    model_cfg = OmegaConf.create(info["model"])
    if "quantization" in model_cfg:
        model_cfg.quantization = "none"  # 16-bit reload: never merge into 4-bit weights
    if facts(model_cfg.family).lora_in_build:
        model_cfg.finetune = "full"  # the adapter comes from disk
    if base:
        model_cfg.checkpoint = base
        if "tiny" in model_cfg:
            model_cfg.tiny = False
    return model_cfg


def build_base(
    info: dict[str, Any], hardware: Any = None, base: str | None = None
) -> tuple[Any, Any, Any]:
    """(family, base model, processor) of a run's ``run.json`` ``info``. A tiny (random) base is
    rebuilt from the run's seed, as training built it."""
    from accelerate.utils import set_seed

    from vin_ocr.models.registry import get_family

    model_cfg = base_model_cfg(info, base)
    if model_cfg.get("tiny"):
        if "seed" not in info:
            raise RunFolderError("the run's base is a tiny random model and run.json has no seed")
        set_seed(int(info["seed"]))
    family = get_family(info["family"], model_cfg)
    model, processor = family.build(model_cfg, hardware)
    return family, model, processor


def load_run(
    path: str | Path,
    hardware: Any = None,
    overrides: dict[str, Any] | None = None,
    onnx: bool = False,
) -> FamilyEngine:
    """The trained model of the run folder ``path`` as an engine; clear errors for what is not.
    ``overrides`` change keys of the run's model config (``run.json``'s ``model``) for reading,
    e.g. ``{"check_digit_search": False}``; a key the run's model config lacks is an error.
    ``onnx``: a family that reads through onnxruntime (PP-OCR, ``use_onnx``) reads with the run's
    ONNX graphs (``model.onnx``, ``det.onnx``, ``general.onnx``; one missing is exported into
    memory from its torch model)."""
    engine = _load_run(path, hardware, overrides)
    use_onnx = getattr(engine.family, "use_onnx", None)
    if onnx and use_onnx is not None:
        from vin_ocr.models.pp_ocr_onnx import onnx_bytes

        run = Path(path)
        found = [p if p.is_file() else None for p in (run / ONNX_FILE, run / DET_ONNX_FILE,
                                                      run / GENERAL_ONNX_FILE)]  # fmt: skip
        vin = found[0] or onnx_bytes(engine.family.export_onnx, engine.model)  # type: ignore[attr-defined]
        use_onnx(vin, found[1], found[2])
    return engine


def _load_run(
    path: str | Path, hardware: Any = None, overrides: dict[str, Any] | None = None
) -> FamilyEngine:
    from vin_ocr.models.registry import get_family

    run = Path(path)
    if not is_finished(run):
        raise FileNotFoundError(
            f"{run}: not a finished training run folder (no {RUN_FILE}); train one with "
            "python -m vin_ocr.training.hf_finetune"
        )
    info = read_info(run)
    for key in overrides or {}:
        if key not in info["model"]:
            raise ValueError(
                f"{run}: model config has no key {key!r} to override "
                f"(keys: {', '.join(sorted(info['model']))})"
            )
    if overrides:
        merged = OmegaConf.merge(OmegaConf.create(info["model"]), OmegaConf.create(overrides))
        info["model"] = OmegaConf.to_container(merged, resolve=True)
    model_dir = run / MODEL_DIR
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{run}: the run has no {MODEL_DIR}/ folder (was it interrupted?)")
    name = f"checkpoint:{run.name}"
    adapter = model_dir / ADAPTER_DIR
    if not any(model_dir.glob("*.safetensors")) and adapter.is_dir():
        # adapter only (training.merge=false, or an adapter pushed to the Hub): base + adapter
        from vin_ocr.models.lora import load_adapter

        family, base, _ = build_base(info, hardware)
        return FamilyEngine(family, load_adapter(base, adapter), name=name)
    model_cfg = OmegaConf.create(info["model"])
    model_cfg.checkpoint = str(model_dir.resolve())
    if "tiny" in model_cfg:
        model_cfg.tiny = False  # the saved weights, whatever built them
    family = get_family(info["family"], model_cfg)
    model, _ = family.build(model_cfg, hardware)
    return FamilyEngine(family, model, name=name)
